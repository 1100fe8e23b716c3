"""PDF text, page by page, with pypdfium2.

Not unstructured's PDF path: even its "fast" strategy imports unstructured-inference,
onnxruntime and OpenCV, and pdfminer turns CJK from GBK CMaps into Kangxi radicals; PDFium
reads those fonts correctly and takes milliseconds per page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pypdfium2 as pdfium

from ingest.elements import Element

# PDFium's error text for a document that needs a user password.
_PASSWORD_ERROR = "password"
_BLANK_LINES = re.compile(r"\n\s*\n")
# PDFium puts a space between CJK glyphs that the PDF positions separately (e.g. GBK
# documents set in 小标宋); in Chinese those spaces are not word boundaries and they break
# BM25/jieba tokens, so they are dropped — only between two CJK characters.
_CJK = r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<={_CJK})[ \u3000]+(?={_CJK})")


class PdfError(Exception):
    """A PDF that cannot be read; the message is meant for the user."""


def extract_pdf(path: Path) -> list[Element]:
    """One NarrativeText element per paragraph (blank-line separated), with 1-based page numbers.

    Image-only (scanned) pages yield nothing; a PDF in which no page has text raises PdfError.
    """
    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as error:
        if _PASSWORD_ERROR in str(error).lower():
            raise PdfError("PDF is password-protected") from error
        raise PdfError(f"PDF is corrupt or not a PDF ({error})") from error
    try:
        if len(document) == 0:
            raise PdfError("PDF has no pages")
        elements = [
            element
            for page_number in range(1, len(document) + 1)
            for element in _page_elements(document, page_number)
        ]
    finally:
        document.close()
    if not elements:
        raise PdfError("PDF has no text layer (scanned); OCR is not enabled")
    return elements


def _page_elements(document: pdfium.PdfDocument, page_number: int) -> list[Element]:
    page = document[page_number - 1]
    try:
        text_page = page.get_textpage()
        try:
            text = text_page.get_text_bounded()
        finally:
            text_page.close()
    finally:
        page.close()
    text = _SPACE_BETWEEN_CJK.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return [
        Element(text=paragraph, category="NarrativeText", page=page_number)
        for paragraph in (block.strip() for block in _BLANK_LINES.split(text))
        if paragraph
    ]
