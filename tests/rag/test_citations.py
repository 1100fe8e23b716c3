from __future__ import annotations

from rag.citations import check_sentences, cited_numbers, parse_citations, split_sentences, support_score
from rag.prompt import Source


def source(n: int, text: str) -> Source:
    return Source(n=n, chunk_id=100 + n, text=text, document=f"doc{n}.pdf", page=n, section="", score=0.5)


SOURCES = [
    source(1, "Normandy is a region in France. The Normans gave their name to it in the 10th century."),
    source(2, "数据目录每天夜里自动备份，备份文件保存在 backups 文件夹中，保留七天。"),
]


def test_marker_forms_are_all_read():
    assert cited_numbers("a [1] b [1, 2] c 【2】 d [1，2] e [3、1]") == [1, 1, 2, 2, 1, 2, 3, 1]


def test_markers_pointing_nowhere_are_dropped():
    citations = parse_citations("Normandy is in France [1][7]. Also [0].", SOURCES)
    assert [c.n for c in citations] == [1]
    assert citations[0].source.document == "doc1.pdf"


def test_citations_in_order_of_first_mention_without_repeats():
    answer = "备份在夜里自动进行【2】。Normandy is in France [1]. 保留七天 [2]。"
    assert [c.n for c in parse_citations(answer, SOURCES)] == [2, 1]


def test_marker_after_the_full_stop_belongs_to_the_sentence_before():
    sentences = split_sentences("Normandy is a region in France. [1] Backups are kept seven days. [2]")
    assert sentences == ["Normandy is a region in France[1].", "Backups are kept seven days[2]."]


def test_supported_sentences_pass_and_wrong_source_is_flagged():
    checked = check_sentences("数据每天夜里自动备份，保留七天[2]。Normandy is a region in France [2].", SOURCES)
    assert [(s.ns, s.is_supported) for s in checked] == [((2,), True), ((2,), False)]
    assert checked[0].support > 0.6 and checked[1].support < 0.3


def test_invented_detail_lowers_support():
    grounded = support_score("The Normans named Normandy in the 10th century.", SOURCES[0].text)
    invented = support_score("The Vikings conquered Sicily and Naples in 1130.", SOURCES[0].text)
    assert grounded > 0.7 and invented < 0.2


def test_unsupported_citation_is_flagged_in_parse():
    citations = parse_citations("Bananas are yellow fruit grown in Ecuador [1].", SOURCES)
    assert len(citations) == 1 and not citations[0].is_supported


def test_an_answer_without_markers_is_attributed_to_the_source_that_supports_it() -> None:
    from rag.citations import attribute_citations
    from rag.prompt import Source

    sources = [
        Source(1, 11, "Iwan Wyn Roberts (born 26 June 1968) is a Welsh former footballer.", "norwich.txt", None, "", 0.9),
        Source(2, 12, "FSDP算法是由来自DeepSpeed的ZeroRedundancyOptimizer技术驱动的。", "fsdp.md", None, "数据并行", 0.8),
    ]
    cited = attribute_citations("FSDP算法是由DeepSpeed的ZeroRedundancyOptimizer技术驱动的。", sources)
    assert [(c.n, c.is_inferred) for c in cited] == [(2, True)]
    assert attribute_citations("The weather in Paris is sunny today.", sources) == []
