"""Elements → token-budgeted chunks that keep a document's structure.

Policy, in order of precedence:
- a chunk never crosses a section boundary: each chunk has one section path (the Title hierarchy);
- tables stay whole; a table over budget is split between rows, each piece repeating the header row;
- consecutive list items stay together when they fit in one chunk;
- text is split only at sentence ends (。！？；!? and ". ") or line breaks; a single sentence over
  budget is hard-split by tokens, the last resort;
- consecutive chunks of one section overlap by whole sentences, at most `overlap_tokens`.
Budgets use the embedder's own tokenizer (`count_tokens`), so a chunk never gets truncated by it.
Titles are not repeated in chunk text: `section_path` carries them, and `chunk_text_for_embedding`
puts them back where the caller wants them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from html.parser import HTMLParser

from ingest.elements import Element

CountTokens = Callable[[str], int]

# A sentence ends after CJK/ASCII terminal punctuation (plus closing quotes/brackets), after a
# period followed by whitespace (so "3.14" and "setup.py" stay whole), or at a line break.
SENTENCE_END = re.compile(r"[。！？；!?]+[”’」』）)\]\"']*\s*|\.(?:\s+|$)|\n+")
MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+")
NUMBERED_HEADING = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+\S")
CHINESE_HEADING = re.compile(r"^第[一二三四五六七八九十百零〇\d]+([章节条])")
CHINESE_HEADING_DEPTH = {"章": 0, "节": 1, "条": 2}
CELL_SEPARATOR = " | "


@dataclass(frozen=True)
class ChunkConfig:
    # 256 / 40 ranked the pooled DEV KB as well (R@1 0.851 vs 0.848, docs/quality.md) but cut the
    # backup steps of docs/operations.md mid-list, and the default model then refused "如何备份数据？"
    # (tests/e2e/test_cli.py): kept at 400 / 60 until answers are measured with both.
    chunk_tokens: int = 400
    overlap_tokens: int = 60

    def __post_init__(self) -> None:
        if self.chunk_tokens < 16:
            raise ValueError(f"chunk_tokens must be >= 16, got {self.chunk_tokens}")
        if not 0 <= self.overlap_tokens < self.chunk_tokens // 2:
            raise ValueError(f"overlap_tokens must be in [0, chunk_tokens/2), got {self.overlap_tokens}")


@dataclass(frozen=True)
class ChunkDraft:
    ordinal: int
    text: str
    pages: tuple[int, ...]
    section_path: tuple[str, ...]
    element_types: tuple[str, ...]


def chunk_text_for_embedding(draft: ChunkDraft) -> str:
    """The chunk as the embedder and BM25 should see it: its section path, then its text."""
    if not draft.section_path:
        return draft.text
    return " > ".join(draft.section_path) + "\n" + draft.text


@dataclass(frozen=True)
class _Unit:
    """The smallest piece the packer moves: a sentence, a list item, a table or a table piece."""

    text: str
    tokens: int
    page: int | None
    category: str
    joiner: str  # put before this unit when it follows another one in a chunk
    overlappable: bool  # whole sentences may be repeated at the start of the next chunk


@dataclass(frozen=True)
class _Block:
    """Units that go into one chunk together; `alone` blocks (table pieces) get a chunk of their own."""

    units: tuple[_Unit, ...]
    section_path: tuple[str, ...]
    alone: bool = False

    @property
    def tokens(self) -> int:
        return sum(u.tokens for u in self.units)


def heading_depth(element: Element) -> int:
    if element.title_depth is not None:
        return element.title_depth
    text = element.text.strip()
    if match := MARKDOWN_HEADING.match(text):
        return len(match.group(1)) - 1
    if match := NUMBERED_HEADING.match(text):
        return match.group(1).count(".")
    if match := CHINESE_HEADING.match(text):
        return CHINESE_HEADING_DEPTH[match.group(1)]
    return 0


def split_sentences(text: str) -> list[str]:
    pieces, start = [], 0
    for match in SENTENCE_END.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    pieces.append(text[start:])
    return [p for p in pieces if p.strip()]


def hard_split(text: str, budget: int, count_tokens: CountTokens) -> list[str]:
    """Longest prefixes within `budget` tokens, found by bisection on characters."""
    pieces = []
    while text:
        if count_tokens(text) <= budget:
            pieces.append(text)
            break
        low, high = 1, len(text)
        while low < high:
            mid = (low + high + 1) // 2
            if count_tokens(text[:mid]) <= budget:
                low = mid
            else:
                high = mid - 1
        pieces.append(text[:low])
        text = text[low:]
    return pieces


class _TableRows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            if not self.rows:
                self.rows.append([])
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(element: Element) -> list[str]:
    """One line per table row, cells joined by " | " (from the HTML structure when we have it)."""
    if element.table_html:
        parser = _TableRows()
        parser.feed(element.table_html)
        rows = [CELL_SEPARATOR.join(cells) for cells in parser.rows if any(cells)]
        if rows:
            return rows
    return [line for line in element.text.splitlines() if line.strip()]


class _Splitter:
    """Turns elements into blocks, tracking the section path."""

    def __init__(self, config: ChunkConfig, count_tokens: CountTokens) -> None:
        self.budget = config.chunk_tokens
        self.count = count_tokens
        self.path: list[tuple[int, str]] = []  # (depth, title) from the top down

    @property
    def section_path(self) -> tuple[str, ...]:
        return tuple(title for _, title in self.path)

    def blocks(self, elements: list[Element]) -> Iterator[_Block]:
        pending_list: list[Element] = []
        for element in elements:
            if element.category == "ListItem" and element.text.strip():
                pending_list.append(element)
                continue
            if pending_list:
                yield from self._list_blocks(pending_list)
                pending_list = []
            if not element.text.strip() and not element.table_html:
                continue
            if element.category == "Title":
                self._enter_section(element)
            elif element.category == "Table":
                yield from self._table_blocks(element)
            else:
                yield from self._text_blocks(element, element.text)
        if pending_list:
            yield from self._list_blocks(pending_list)

    def _enter_section(self, element: Element) -> None:
        depth = heading_depth(element)
        title = MARKDOWN_HEADING.sub("", " ".join(element.text.split()))
        self.path = [(d, t) for d, t in self.path if d < depth] + [(depth, title)]

    def _unit(self, text: str, element: Element, *, joiner: str, overlappable: bool) -> _Unit:
        return _Unit(text, self.count(text), element.page, element.category, joiner, overlappable)

    def _sentence_units(self, element: Element, text: str) -> list[_Unit]:
        units = []
        for sentence in split_sentences(text.strip()):
            for piece in hard_split(sentence, self.budget, self.count):
                units.append(self._unit(piece, element, joiner="" if units else "\n", overlappable=True))
        return units

    def _text_blocks(self, element: Element, text: str) -> Iterator[_Block]:
        for unit in self._sentence_units(element, text):
            yield _Block((unit,), self.section_path)

    def _list_blocks(self, items: list[Element]) -> Iterator[_Block]:
        units = [self._unit(item.text.strip(), item, joiner="\n", overlappable=False) for item in items]
        if sum(u.tokens for u in units) <= self.budget:
            yield _Block(tuple(units), self.section_path)
            return
        for item, unit in zip(items, units, strict=True):
            if unit.tokens <= self.budget:
                yield _Block((unit,), self.section_path)
            else:
                yield from self._text_blocks(item, item.text)

    def _table_blocks(self, element: Element) -> Iterator[_Block]:
        rows = table_rows(element)
        whole = "\n".join(rows)
        if self.count(whole) <= self.budget:
            yield _Block((self._unit(whole, element, joiner="\n", overlappable=False),), self.section_path)
            return
        header, body = rows[0], rows[1:]
        header_tokens = self.count(header)
        if header_tokens > self.budget // 2:
            # A header this wide (hundreds of columns) repeated in every piece would leave almost no
            # room for rows: measured, a 7,480-character CSV header split its 53 KB file into
            # 47,610 one-token chunks. Such a header becomes an ordinary row instead.
            header, body, header_tokens = "", rows, 0
        row_budget = self.budget - header_tokens - 1
        piece: list[str] = []
        piece_tokens = header_tokens
        for row in body:
            # A row longer than the budget left after the header is hard-split: the last resort.
            for part in hard_split(row, row_budget, self.count):
                # Token counts of lines joined by newlines add up (a newline is its own token), so
                # summing avoids re-tokenising the growing piece for every row.
                part_tokens = self.count(part) + 1
                if piece and piece_tokens + part_tokens > self.budget:
                    yield self._table_piece(element, header, piece)
                    piece, piece_tokens = [], header_tokens
                piece.append(part)
                piece_tokens += part_tokens
        if piece or not body:
            yield self._table_piece(element, header, piece)

    def _table_piece(self, element: Element, header: str, rows: list[str]) -> _Block:
        text = "\n".join([header, *rows] if header else rows)
        unit = self._unit(text, element, joiner="\n", overlappable=False)
        return _Block((unit,), self.section_path, alone=True)


def _draft(ordinal: int, units: list[_Unit], section_path: tuple[str, ...]) -> ChunkDraft:
    text = units[0].text + "".join(u.joiner + u.text for u in units[1:])
    pages = tuple(sorted({u.page for u in units if u.page is not None}))
    types = tuple(dict.fromkeys(u.category for u in units))
    return ChunkDraft(ordinal, text.strip(), pages, section_path, types)


def _overlap(units: list[_Unit], limit: int) -> list[_Unit]:
    """The trailing whole sentences of a chunk that fit in `limit` tokens."""
    tail: list[_Unit] = []
    total = 0
    for unit in reversed(units):
        if not unit.overlappable or total + unit.tokens > limit:
            break
        tail.insert(0, unit)
        total += unit.tokens
    return tail


def chunk(elements: list[Element], *, config: ChunkConfig, count_tokens: CountTokens) -> list[ChunkDraft]:
    drafts = _chunk(elements, config=config, count_tokens=count_tokens)
    if drafts or not any(e.category == "Title" and e.text.strip() for e in elements):
        return drafts
    # Only titles: short plain-text lines and one-line e-mail bodies come out of the extractor as
    # titles, and a file of them is text, not "a document with no text to index".
    as_text = [replace(e, category="UncategorizedText") if e.category == "Title" else e for e in elements]
    return _chunk(as_text, config=config, count_tokens=count_tokens)


def _chunk(elements: list[Element], *, config: ChunkConfig, count_tokens: CountTokens) -> list[ChunkDraft]:
    drafts: list[ChunkDraft] = []
    current: list[_Unit] = []
    fresh = 0  # units of `current` not already emitted as the previous chunk's overlap
    path: tuple[str, ...] = ()

    def flush() -> None:
        nonlocal current, fresh
        if fresh:
            drafts.append(_draft(len(drafts), current, path))
        current, fresh = [], 0

    for block in _Splitter(config, count_tokens).blocks(elements):
        if block.section_path != path or block.alone:
            flush()
            path = block.section_path
        if block.alone:
            current, fresh = list(block.units), len(block.units)
            flush()
            continue
        used = sum(u.tokens for u in current)
        if current and used + block.tokens > config.chunk_tokens:
            carried = _overlap(current, config.overlap_tokens)
            flush()
            if sum(u.tokens for u in carried) + block.tokens <= config.chunk_tokens:
                current = carried
        current += block.units
        fresh += len(block.units)
    flush()
    return drafts
