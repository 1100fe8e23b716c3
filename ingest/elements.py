"""The typed record every extractor returns and the chunker consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Element:
    """One block of a document, in reading order.

    `category` uses unstructured's names (Title, NarrativeText, ListItem, Table, ...) so that PDF
    pages read by pypdfium2 and Office files read by unstructured look the same downstream.
    """

    text: str
    category: str
    page: int | None = None  # 1-based; None for formats without pages
    title_depth: int | None = None  # for Title elements: 0 is the top level
    table_html: str | None = None  # for Table elements, when the extractor kept the structure
