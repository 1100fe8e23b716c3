"""ingest/extract.py on the real files of ../shared/evaldata/docs (see its MANIFEST.md).

Normal files are extracted in this process (one unstructured import for the whole module);
hostile, encrypted and resource-limit cases go through `extract_isolated`, one child each.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest.extract import ExtractConfig, ExtractionError, extract, extract_isolated
from ingest.filetype import FileType, detect_type
from ingest.offline_nlp import OFFLINE_ENV

REPO = Path(__file__).resolve().parents[2]
CONFIG = ExtractConfig()
CJK = re.compile(r"[\u4e00-\u9fff]")
# Generous: the child imports unstructured (and, through spaCy's thinc, torch) in ~5 s.
TIMEOUT_S = 120.0
MAX_MEMORY_BYTES = 3 * 2**30

NORMAL_FILES = {
    "csv": ["stanley-cups.csv", "csv-with-long-lines.csv", "stanley-cups-utf-16.csv",
            "docling-csv-too-many-columns.csv", "docling-csv-inconsistent-header.csv",
            "zh-chatchat-issues_open.csv"],
    "docx": ["docx-tables.docx", "category-level.docx", "handbook-1p.docx", "docx-hdrftr.docx",
             "docling-word_sample.docx", "docling-unit_test_headers_numbered.docx",
             "docling-word_tables.docx", "zh-chatchat-ocr_test.docx"],
    "eml": ["fake-email.eml", "fake-email-attachment.eml", "email-with-image.eml",
            "email-no-utf8-2014-03-17.111517.eml", "fake-email-malformed-encoding.eml",
            "mime-word-encoded-subject.eml"],
    "epub": ["winter-sports.epub"],
    "html": ["example-10k-1p.html", "example-steelJIS-datasheet.html", "example-with-scripts.html",
             "fake-html-cp1252.html", "docling-wiki_duck.html"],
    "md": ["codeblock.md", "simple-table.md", "umlauts-non-utf8.md",
           "zh-chatchat-distributed-training.md", "zh-chatchat-inference-optimization.md",
           "zh-chatchat-llm-stack-algorithms.md"],
    "msg": ["fake-email.msg"],
    "pdf": ["chatchat-langchain.pdf", "docling-2305.03393v1-pg9.pdf", "docling-redp5110_sampled.pdf",
            "embedded-images-tables.pdf", "encrypted-copy-protected.pdf", "korean-text-with-tables.pdf",
            "layout-parser-paper-with-table.pdf", "multi-column-2p.pdf", "reliance.pdf",
            "zh-chatchat-ocr_test.pdf", "zh-pdfjs-XiaoBiaoSong.pdf", "zh-pdfjs-issue3521.pdf"],
    "pptx": ["docling-powerpoint_sample.pptx", "fake-power-point-table.pptx",
             "sample-presentation.pptx", "zh-chatchat-ocr_test.pptx"],
    "txt": ["UDHR_first_article_all.txt", "fake-text-utf-16.txt", "norwich-city.txt",
            "zh-chatchat-test.txt"],
    "xlsx": ["2023-half-year-analyses-by-segment.xlsx", "docling-test-01.xlsx", "vodafone.xlsx",
             "xlsx-subtable-cases.xlsx", "zh-chatchat-issues_closed.xlsx"],
}


@pytest.fixture(scope="module")
def docs(evaldata: Path) -> Path:
    os.environ.update(OFFLINE_ENV)
    return evaldata / "docs"


def _text(elements) -> str:
    return "\n".join(element.text for element in elements)


@pytest.mark.parametrize(
    "relative", [f"{family}/{name}" for family, names in NORMAL_FILES.items() for name in names]
)
def test_every_normal_file_yields_text(docs: Path, relative: str) -> None:
    elements = extract(docs / relative, config=CONFIG)
    assert _text(elements).strip()
    if relative.startswith("pdf/"):
        assert all(element.page is not None and element.page >= 1 for element in elements)
    if Path(relative).name.startswith("zh-"):
        assert CJK.search(_text(elements))


@pytest.mark.parametrize(
    "name", ["zh-chatchat-distributed-training.md", "zh-chatchat-inference-optimization.md",
             "zh-chatchat-llm-stack-algorithms.md"],
)
def test_chinese_markdown_keeps_chinese_titles(docs: Path, name: str) -> None:
    titles = [element for element in extract(docs / "md" / name, config=CONFIG) if element.category == "Title"]
    assert titles and CJK.search(titles[0].text)
    assert titles[0].title_depth is not None


def test_gbk_pdfs_read_as_chinese_not_mojibake(docs: Path) -> None:
    assert "我们都是黑体字" in _text(extract(docs / "pdf/zh-pdfjs-issue3521.pdf", config=CONFIG))
    # PDFium spaces out separately positioned CJK glyphs; those spaces are removed.
    assert "关于红军作战的原则" in _text(extract(docs / "pdf/zh-pdfjs-XiaoBiaoSong.pdf", config=CONFIG))


def test_docx_keeps_heading_depth_and_table_html(docs: Path) -> None:
    elements = extract(docs / "docx/docling-unit_test_headers_numbered.docx", config=CONFIG)
    depths = {element.title_depth for element in elements if element.category == "Title"}
    assert len(depths) >= 2
    tables = [e for e in extract(docs / "docx/docx-tables.docx", config=CONFIG) if e.category == "Table"]
    assert tables and all(table.table_html and "<table" in table.table_html for table in tables)


def test_docx_headers_and_footers_are_dropped(docs: Path) -> None:
    text = _text(extract(docs / "docx/docx-hdrftr.docx", config=CONFIG))
    assert "Main document" in text
    assert "header para" not in text and "para1" not in text


def test_html_scripts_are_dropped(docs: Path) -> None:
    text = _text(extract(docs / "html/example-with-scripts.html", config=CONFIG))
    assert "switchTo5x" not in text and "stLight" not in text


def test_pptx_slides_are_pages(docs: Path) -> None:
    elements = extract(docs / "pptx/sample-presentation.pptx", config=CONFIG)
    assert max(element.page for element in elements) > 1


@pytest.mark.parametrize(
    ("relative", "expected"),
    [("txt/fake-text-utf-16.txt", "This is a test document"),
     ("csv/stanley-cups-utf-16.csv", "Stanley Cups"),
     ("html/fake-html-cp1252.html", "My First Heading"),
     ("md/umlauts-non-utf8.md", "können")],
)
def test_non_utf8_encodings_decode(docs: Path, relative: str, expected: str) -> None:
    assert expected in _text(extract(docs / relative, config=CONFIG))


@pytest.mark.parametrize("relative", ["txt/empty.txt", "xlsx/empty.xlsx", "eml/empty.eml"])
def test_empty_documents_fail_clearly(docs: Path, relative: str) -> None:
    with pytest.raises(ExtractionError, match="empty"):
        extract(docs / relative, config=CONFIG)


@pytest.mark.parametrize(
    ("relative", "reason"),
    [("legacy/fake.doc", "application/msword is not supported"),
     ("image/chi_sim_image.jpeg", "image/jpeg is not supported"),
     ("archive/simple.zip", "application/zip is not supported"),
     ("odt/fake.odt", "ODT documents are not supported"),
     ("rtf/fake-doc.rtf", "RTF documents are not supported"),
     ("pdf/scanned-mineru-small_ocr.pdf", "no text layer"),
     ("pdf/loremipsum-flat.pdf", "no text layer")],
)
def test_unsupported_and_textless_files_say_why(docs: Path, relative: str, reason: str) -> None:
    with pytest.raises(ExtractionError, match=reason):
        extract(docs / relative, config=CONFIG)


@pytest.mark.parametrize(
    ("relative", "expected"),
    [("docx/handbook-1p.docx", FileType.DOCX), ("pptx/sample-presentation.pptx", FileType.PPTX),
     ("xlsx/vodafone.xlsx", FileType.XLSX), ("epub/winter-sports.epub", FileType.EPUB),
     ("pdf/reliance.pdf", FileType.PDF), ("msg/fake-email.msg", FileType.MSG)],
)
def test_type_comes_from_content_not_name(docs: Path, tmp_path: Path, relative: str, expected) -> None:
    disguised = tmp_path / "upload.txt"
    shutil.copyfile(docs / relative, disguised)
    assert detect_type(disguised) is expected


def test_text_family_uses_the_suffix(docs: Path) -> None:
    assert detect_type(docs / "md/simple-table.md") is FileType.MARKDOWN
    assert detect_type(docs / "eml/fake-email.eml") is FileType.EML
    assert detect_type(docs / "csv/docling-csv-too-many-columns.csv") is FileType.CSV


# --- isolated child: hostile files, encryption, limits ------------------------------------

ENCRYPTED = {
    "pdf/encrypted-password.pdf": "PDF is password-protected",
    "pdf/encrypted-pdfjs-issue6010_1.pdf": "PDF is password-protected",
    "hostile/encrypted-password_protected.xlsx": "password-protected",
    "hostile/fake-encrypted.eml": "e-mail is encrypted",
}


@pytest.mark.parametrize(("relative", "reason"), ENCRYPTED.items())
def test_encrypted_files_fail_with_a_readable_reason(docs: Path, relative: str, reason: str) -> None:
    with pytest.raises(ExtractionError, match=reason):
        extract_isolated(docs / relative, config=CONFIG, timeout_s=TIMEOUT_S,
                         max_memory_bytes=MAX_MEMORY_BYTES)


@pytest.mark.parametrize(
    "name", ["invalid-pdf-structure-pdfminer-one-page.pdf", "failure-after-repair.pdf",
             "fake-power-point-malformed.pptx", "pdfjs-helloworld-bad.pdf", "pdfjs-bomb_giant.pdf",
             "pdfjs-scan-bad.pdf"],
)
def test_hostile_files_end_cleanly(docs: Path, name: str) -> None:
    """PDFium repairs most broken PDFs, so text is a fine outcome; a crash or hang is not."""
    try:
        elements = extract_isolated(docs / "hostile" / name, config=CONFIG, timeout_s=TIMEOUT_S,
                                    max_memory_bytes=MAX_MEMORY_BYTES)
    except ExtractionError as error:
        assert error.reason
    else:
        assert _text(elements).strip()


def test_bomb_pdf_stays_within_a_small_memory_limit(docs: Path) -> None:
    elements = extract_isolated(docs / "hostile/pdfjs-bomb_giant.pdf", config=CONFIG,
                                timeout_s=TIMEOUT_S, max_memory_bytes=512 * 2**20)
    assert "GIANT JBIG2 BOMB" in _text(elements)


def test_619_page_pdf_keeps_every_page_number(docs: Path) -> None:
    elements = extract_isolated(docs / "pdf/DA-619p.pdf", config=CONFIG, timeout_s=TIMEOUT_S,
                                max_memory_bytes=MAX_MEMORY_BYTES)
    assert max(element.page for element in elements) == 619


def test_timeout_kills_the_child(docs: Path) -> None:
    with pytest.raises(ExtractionError, match="timed out after 0.5 s"):
        extract_isolated(docs / "docx/handbook-1p.docx", config=CONFIG, timeout_s=0.5,
                         max_memory_bytes=MAX_MEMORY_BYTES)


def test_memory_limit_ends_in_an_error_not_a_dead_parent(docs: Path) -> None:
    # 300 MiB cannot even hold unstructured's imports: the child fails, the parent reports it.
    with pytest.raises(ExtractionError, match="memory limit"):
        extract_isolated(docs / "docx/handbook-1p.docx", config=CONFIG, timeout_s=TIMEOUT_S,
                         max_memory_bytes=300 * 2**20)


def test_text_formats_extract_offline_without_detection_or_pdf_stack(docs: Path) -> None:
    """A fresh process with the network blocked, as in production:

    trap 1: unstructured downloads a spaCy model on first use — ours must never try;
    trap 3: unstructured's PDF/OCR stack (unstructured_inference, onnxruntime, cv2, pdfminer)
    must never be imported; trap 4: languages are passed explicitly, so langdetect (which calls
    short Chinese Korean) is never consulted — it is made to fail to prove that.
    """
    script = textwrap.dedent(
        """
        import socket, sys
        from pathlib import Path

        def refuse(*args, **kwargs):
            raise OSError("network is blocked in this test")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        import langdetect

        def no_detection(*args, **kwargs):
            raise AssertionError("language detection was called")

        langdetect.detect_langs = langdetect.detect = no_detection
        try:
            import en_core_web_sm  # noqa: F401
            sys.exit("en_core_web_sm is installed: this test would prove nothing")
        except ImportError:
            pass
        from ingest.extract import ExtractConfig, extract
        for name in sys.argv[1:]:
            text = "".join(e.text for e in extract(Path(name), config=ExtractConfig()))
            assert text.strip(), name
            print("ok", name)
        heavy = ("unstructured.partition.pdf", "unstructured_inference", "onnxruntime", "cv2", "pdfminer")
        assert not [m for m in sys.modules if m.split(".")[0] in heavy or m in heavy], "PDF stack loaded"
        """
    )
    names = [str(docs / relative) for relative in
             ("txt/norwich-city.txt", "md/codeblock.md", "html/example-10k-1p.html",
              "docx/handbook-1p.docx", "eml/fake-email.eml", "txt/zh-chatchat-test.txt",
              "pdf/zh-pdfjs-issue3521.pdf", "pptx/sample-presentation.pptx", "xlsx/vodafone.xlsx")]
    command = [sys.executable, "-c", script, *names]
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"]).returncode == 0:
        command = ["unshare", "-rn", *command]
    environment = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok ") == len(names)


def test_one_reader_process_serves_many_files_and_is_replaced_after_a_timeout(evaldata: Path) -> None:
    from ingest.extract import IsolatedExtractor

    reader = IsolatedExtractor(config=ExtractConfig(), timeout_s=120, max_memory_bytes=3 * 1024**3)
    try:
        reader.extract(evaldata / "docs/docx/handbook-1p.docx")
        first_pid = reader._child.pid
        assert reader.extract(evaldata / "docs/txt/norwich-city.txt")
        assert reader._child.pid == first_pid  # no new interpreter per document
        reader.timeout_s = 0.001
        with pytest.raises(ExtractionError, match="timed out"):
            reader.extract(evaldata / "docs/pdf/DA-619p.pdf")
        reader.timeout_s = 120
        assert reader.extract(evaldata / "docs/md/zh-chatchat-distributed-training.md")
        assert reader._child.pid != first_pid
    finally:
        reader.close()


def test_a_stored_copy_without_a_suffix_extracts_like_the_uploaded_file(docs, tmp_path):
    # Blobs are stored by hash, without the name: the uploaded name's suffix tells Markdown from text.
    original = docs / "md" / "zh-chatchat-distributed-training.md"
    blob = tmp_path / "3f2a9c"
    blob.write_bytes(original.read_bytes())
    assert extract(blob, config=CONFIG, suffix=".md") == extract(original, config=CONFIG)
    assert extract(blob, config=CONFIG) != extract(original, config=CONFIG)
