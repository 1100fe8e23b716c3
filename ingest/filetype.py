"""What kind of document a file is, decided by its bytes (libmagic), not by its name.

Decisions:
- Binary formats (PDF, OLE, zip) are decided by content only. Office files, EPUB and ODT are
  all zip containers; libmagic names most of them, and when it only says "zip" we look at the
  members ([Content_Types].xml parts, `mimetype`), so a renamed .docx is still a DOCX.
- Plain-text formats (txt, Markdown, CSV, HTML, e-mail) are indistinguishable by magic alone
  (libmagic calls our Markdown files text/plain or text/html and most .eml files text/plain).
  For content that libmagic calls text, the file name's suffix picks among the TEXT family
  only; without a known suffix we fall back to libmagic's label. A name can therefore never
  turn a binary into something else, only choose how text is read.
"""

from __future__ import annotations

import enum
import zipfile
from pathlib import Path

import magic


class FileType(enum.Enum):
    PDF = "pdf"
    DOCX = "docx"
    PPTX = "pptx"
    XLSX = "xlsx"
    EPUB = "epub"
    ODT = "odt"
    MSG = "msg"
    RTF = "rtf"
    HTML = "html"
    MARKDOWN = "md"
    TEXT = "txt"
    CSV = "csv"
    EML = "eml"
    EMPTY = "empty"
    ENCRYPTED_OFFICE = "encrypted-office"
    UNSUPPORTED = "unsupported"


_MIME_TYPES = {
    "application/pdf": FileType.PDF,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": FileType.DOCX,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": FileType.PPTX,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": FileType.XLSX,
    "application/epub+zip": FileType.EPUB,
    "application/vnd.oasis.opendocument.text": FileType.ODT,
    "application/vnd.ms-outlook": FileType.MSG,
    "text/rtf": FileType.RTF,
    "application/rtf": FileType.RTF,
    "message/rfc822": FileType.EML,
    "inode/x-empty": FileType.EMPTY,
    # Office files encrypted with a password are wrapped in an OLE container.
    "application/encrypted": FileType.ENCRYPTED_OFFICE,
}

# The main part of each OOXML kind, as listed in [Content_Types].xml.
_ZIP_MARKERS = (
    ("word/document.xml", FileType.DOCX),
    ("ppt/presentation.xml", FileType.PPTX),
    ("xl/workbook.xml", FileType.XLSX),
)
_ODF_MIMETYPES = {
    b"application/epub+zip": FileType.EPUB,
    b"application/vnd.oasis.opendocument.text": FileType.ODT,
}

_TEXT_SUFFIXES = {
    ".txt": FileType.TEXT,
    ".text": FileType.TEXT,
    ".log": FileType.TEXT,
    ".md": FileType.MARKDOWN,
    ".markdown": FileType.MARKDOWN,
    ".csv": FileType.CSV,
    ".html": FileType.HTML,
    ".htm": FileType.HTML,
    ".xhtml": FileType.HTML,
    ".eml": FileType.EML,
}
_TEXT_MIME_TYPES = {
    "text/html": FileType.HTML,
    "text/xml": FileType.HTML,
    "text/csv": FileType.CSV,
    "text/markdown": FileType.MARKDOWN,
}


def detect_type(path: Path, suffix: str | None = None) -> FileType:
    """The document type of `path`, judged by content (see the module docstring). `suffix` is the
    uploaded file's own (".md"), for stored copies whose path has none."""
    mime = magic.from_file(str(path), mime=True)
    if mime == "application/zip":
        return _zip_type(path)
    if mime in _MIME_TYPES:
        return _MIME_TYPES[mime]
    if mime.startswith("text/"):
        by_suffix = _TEXT_SUFFIXES.get((path.suffix if suffix is None else suffix).lower())
        return by_suffix or _TEXT_MIME_TYPES.get(mime, FileType.TEXT)
    return FileType.UNSUPPORTED


def describe_mime(path: Path) -> str:
    """libmagic's MIME type, for error messages about unsupported files."""
    return magic.from_file(str(path), mime=True)


def _zip_type(path: Path) -> FileType:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            for marker, file_type in _ZIP_MARKERS:
                if marker in names:
                    return file_type
            if "mimetype" in names:
                return _ODF_MIMETYPES.get(archive.read("mimetype").strip(), FileType.UNSUPPORTED)
    except zipfile.BadZipFile:
        return FileType.UNSUPPORTED
    return FileType.UNSUPPORTED
