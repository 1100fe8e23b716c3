"""Documents in, `list[Element]` out: one function per format family, one isolated runner.

- `detect_type` (ingest.filetype) decides the format from the bytes.
- PDFs go through pypdfium2 (ingest.pdf); everything else through the matching
  `unstructured.partition.<format>` module — never `partition.auto`, which can reach the PDF/image
  path and its unstructured-inference/onnxruntime/OpenCV imports.
- unstructured is imported lazily, inside the partitioner that needs it, after
  `offline_nlp.install_blank_spacy()` can run: the caller's process must already have
  `offline_nlp.OFFLINE_ENV` in its environment (the worker and the CLI get it from app/settings.py;
  the isolated child inherits it).
- `extract_isolated` runs `extract` in a spawned child with an address-space limit and a wall
  clock, so a hostile file can exhaust only the child.

Formats: DOCX, PPTX, XLSX, HTML, Markdown, TXT, CSV, EML, MSG (python-oxmsg is already a
dependency) and EPUB (its chapters are XHTML, read with our HTML partitioner). ODT and RTF are
refused: unstructured reads them only through pandoc, a 155 MB binary we do not ship.
"""

from __future__ import annotations

import codecs
import multiprocessing
import resource
import zipfile
from dataclasses import asdict, dataclass
from email.parser import BytesHeaderParser
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

from ingest.elements import Element
from ingest.filetype import FileType, describe_mime, detect_type
from ingest.offline_nlp import install_blank_spacy
from ingest.pdf import PdfError, extract_pdf

# Page furniture repeated on every page: it would pollute every chunk of the document.
_DROPPED_CATEGORIES = frozenset({"Header", "Footer", "PageBreak", "PageNumber"})
_UNSUPPORTED_REASONS = {
    FileType.ODT: "ODT documents are not supported (they need pandoc); save the file as DOCX",
    FileType.RTF: "RTF documents are not supported (they need pandoc); save the file as DOCX",
    FileType.ENCRYPTED_OFFICE: "document is password-protected",
}


@dataclass(frozen=True)
class ExtractConfig:
    # Passed explicitly to unstructured: its detector labels short Chinese as Korean or Dutch.
    languages: tuple[str, ...] = ("zho", "eng")
    # Keep <table> structure next to the table's text, for the chunker and the citation view.
    keep_table_html: bool = True


class ExtractionError(Exception):
    """A document that cannot be turned into text; `reason` is shown to the user as is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def extract(path: Path, *, config: ExtractConfig, suffix: str | None = None) -> list[Element]:
    """The document's text blocks in reading order. Raises ExtractionError with a readable reason.
    `suffix`: the uploaded file name's, when `path` is a stored copy without one."""
    file_type = detect_type(path, suffix)
    if file_type is FileType.EMPTY:
        raise ExtractionError("document is empty")
    if file_type in _UNSUPPORTED_REASONS:
        raise ExtractionError(_UNSUPPORTED_REASONS[file_type])
    if file_type is FileType.UNSUPPORTED:
        raise ExtractionError(f"file type {describe_mime(path)} is not supported")
    if file_type is FileType.PDF:
        try:
            return extract_pdf(path)
        except PdfError as error:
            raise ExtractionError(str(error)) from error
    if file_type is FileType.EML and _is_encrypted_email(path):
        raise ExtractionError("e-mail is encrypted (PGP/S/MIME); it has no readable text")
    elements = _partition_with_unstructured(path, file_type, config)
    if not any(element.text.strip() for element in elements):
        raise ExtractionError("document is empty (no text found)")
    return elements


def _partition_with_unstructured(path: Path, file_type: FileType, config: ExtractConfig) -> list[Element]:
    install_blank_spacy()
    options = _partition_options(path, file_type, config)
    try:
        if file_type is FileType.EPUB:
            raw_elements = _partition_epub(path, options)
        else:
            raw_elements = _partition_file(path, file_type, options)
    except MemoryError:
        raise  # a resource limit, not a property of the file: extract_isolated reports it
    except Exception as error:  # unstructured and its parsers raise anything on broken files
        detail = str(error) or type(error).__name__
        raise ExtractionError(f"{file_type.value.upper()} file is corrupt or unreadable ({detail})") from error
    return [
        converted
        for converted in (_to_element(raw, config) for raw in raw_elements)
        if converted is not None
    ]


def _partition_options(path: Path, file_type: FileType, config: ExtractConfig) -> dict:
    options: dict = {"languages": list(config.languages)}
    if file_type in (FileType.EML, FileType.MSG):
        # Attachments are routed through `partition.auto`, which can reach unstructured's PDF
        # and image paths (the heavy imports we avoid); upload attachments as files instead.
        options["process_attachments"] = False
    bom_encoding = _bom_encoding(path)
    if bom_encoding and file_type in (FileType.CSV, FileType.TEXT, FileType.MARKDOWN, FileType.HTML):
        # unstructured's CSV reader assumes UTF-8; a byte-order mark tells us for certain.
        options["encoding"] = bom_encoding
    return options


def _partition_file(path: Path, file_type: FileType, options: dict) -> list:
    try:
        return _unstructured_partitioner(file_type)(filename=str(path), **options)
    except ValueError:
        if file_type is not FileType.CSV:
            raise
        # Ragged rows (more cells than the header) make pandas refuse the file; the text is
        # still worth indexing, so read it line by line instead of as a table.
        return _unstructured_partitioner(FileType.TEXT)(filename=str(path), **options)


def _bom_encoding(path: Path) -> str | None:
    with path.open("rb") as file:
        head = file.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _is_encrypted_email(path: Path) -> bool:
    with path.open("rb") as file:
        headers = BytesHeaderParser().parse(file)
    return headers.get_content_type() in ("multipart/encrypted", "application/pkcs7-mime")


def _unstructured_partitioner(file_type: FileType):
    # Each import is local so that a process extracting PDFs never loads unstructured at all.
    if file_type is FileType.DOCX:
        from unstructured.partition.docx import partition_docx as partition
    elif file_type is FileType.PPTX:
        from unstructured.partition.pptx import partition_pptx as partition
    elif file_type is FileType.XLSX:
        from unstructured.partition.xlsx import partition_xlsx as partition
    elif file_type is FileType.HTML:
        from unstructured.partition.html import partition_html as partition
    elif file_type is FileType.MARKDOWN:
        from unstructured.partition.md import partition_md as partition
    elif file_type is FileType.CSV:
        from unstructured.partition.csv import partition_csv as partition
    elif file_type is FileType.EML:
        from unstructured.partition.email import partition_email as partition
    elif file_type is FileType.MSG:
        from unstructured.partition.msg import partition_msg as partition
    else:
        from unstructured.partition.text import partition_text as partition
    return partition


def _partition_epub(path: Path, options: dict) -> list:
    """EPUB chapters in spine order, each read as HTML (unstructured's own EPUB path needs pandoc)."""
    from unstructured.partition.html import partition_html

    with zipfile.ZipFile(path) as archive:
        chapters = [archive.read(name) for name in _epub_spine(archive)]
    return [
        raw
        for chapter in chapters
        for raw in partition_html(text=chapter.decode("utf-8", errors="replace"), **options)
    ]


def _epub_spine(archive: zipfile.ZipFile) -> list[str]:
    container = ElementTree.fromstring(archive.read("META-INF/container.xml"))
    rootfile = next(node for node in container.iter() if node.tag.endswith("rootfile"))
    opf_path = PurePosixPath(rootfile.attrib["full-path"])
    package = ElementTree.fromstring(archive.read(str(opf_path)))
    hrefs = {
        node.attrib["id"]: node.attrib["href"]
        for node in package.iter()
        if node.tag.endswith("item") and "html" in node.attrib.get("media-type", "")
    }
    spine_ids = [node.attrib["idref"] for node in package.iter() if node.tag.endswith("itemref")]
    return [str(opf_path.parent / hrefs[item_id]) for item_id in spine_ids if item_id in hrefs]


def _to_element(raw, config: ExtractConfig) -> Element | None:
    category = raw.category
    text = raw.text.strip()
    if category in _DROPPED_CATEGORIES or not text:
        return None
    metadata = raw.metadata
    return Element(
        text=text,
        category=category,
        page=metadata.page_number,
        title_depth=metadata.category_depth if category == "Title" else None,
        table_html=metadata.text_as_html if category == "Table" and config.keep_table_html else None,
    )


class IsolatedExtractor:
    """`extract` in a spawned child limited to `max_memory_bytes` of address space and `timeout_s` per file.

    The child is reused from file to file (importing unstructured costs seconds) and replaced after a
    timeout or a crash. It sends back plain dicts over a pipe we own. Anything that kills the child
    (memory, a crash in a native parser, the timeout) becomes an ExtractionError; the caller survives.
    """

    def __init__(self, *, config: ExtractConfig, timeout_s: float, max_memory_bytes: int) -> None:
        self.config, self.timeout_s, self.max_memory_bytes = config, timeout_s, max_memory_bytes
        self._child = None
        self._conn = None

    def extract(self, path: Path, suffix: str | None = None) -> list[Element]:
        if self._child is None or not self._child.is_alive():
            self._start()
        self._conn.send((str(path), suffix))
        if not self._conn.poll(self.timeout_s):
            alive = self._child.is_alive()
            reason = f"extraction timed out after {self.timeout_s:g} s" if alive else self._death_reason()
            self.close()
            raise ExtractionError(reason)
        try:
            status, payload = self._conn.recv()
        except EOFError:
            reason = self._death_reason()
            self.close()
            raise ExtractionError(reason) from None
        if status == "error":
            raise ExtractionError(payload)
        return [Element(**fields) for fields in payload]

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe(duplex=True)
        self._child = context.Process(
            target=_serve_child, args=(child_end, self.config, self.max_memory_bytes), name="zhiku-extract", daemon=True
        )
        self._child.start()
        child_end.close()

    def _death_reason(self) -> str:
        return _death_reason(self._child, self.max_memory_bytes)

    def close(self) -> None:
        if self._child is not None:
            if self._child.is_alive():
                self._child.kill()
            self._child.join(timeout=5)
            self._conn.close()
        self._child, self._conn = None, None


def extract_isolated(
    path: Path, *, config: ExtractConfig, timeout_s: float, max_memory_bytes: int
) -> list[Element]:
    """One file through a fresh `IsolatedExtractor`."""
    extractor = IsolatedExtractor(config=config, timeout_s=timeout_s, max_memory_bytes=max_memory_bytes)
    try:
        return extractor.extract(path)
    finally:
        extractor.close()


def _death_reason(child, max_memory_bytes: int) -> str:
    child.join(timeout=5)
    limit_mib = max_memory_bytes // 2**20
    return (
        f"extraction process died (exit code {child.exitcode}); the document may be corrupt "
        f"or need more than the {limit_mib} MiB memory limit"
    )


def _serve_child(conn, config: ExtractConfig, max_memory_bytes: int) -> None:
    """Entry point of the spawned child: limits first, then one (status, payload) reply per path."""
    # A fresh interpreter, started with the parent's environment: offline already (app/settings.py
    # applies it at start-up), before unstructured is first imported here (see ingest.offline_nlp).
    resource.setrlimit(resource.RLIMIT_AS, (max_memory_bytes, max_memory_bytes))
    while True:
        try:
            path, suffix = conn.recv()
        except EOFError:
            return
        try:
            elements = extract(Path(path), config=config, suffix=suffix)
            conn.send(("ok", [asdict(element) for element in elements]))
        except ExtractionError as error:
            conn.send(("error", error.reason))
        except MemoryError:
            conn.send(("error", f"document needs more than the {max_memory_bytes // 2**20} MiB memory limit"))
