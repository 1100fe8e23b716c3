"""The OpenAI-compatible server as a real subprocess on the 0.5B Qwen2.5 GGUF, via the `openai` client."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

import model
from model.server import create_app
from tests.model.tiny_qwen2 import save_tiny_qwen2
from tests.servers import model_server

pytestmark = pytest.mark.slow

MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MAX_SEQ_LEN = 1024
STARTUP_TIMEOUT_S = 300

ENGLISH_QUESTION = (
    "Answer the question using only the passage.\n\n"
    "Passage: The Zhiku project was founded in 2019 by the engineer Lin Wei in the city of Hangzhou. "
    "Its first customer was a hospital.\n\n"
    "Question: In which city was the Zhiku project founded?"
)
CHINESE_QUESTION = "请只根据资料回答问题。\n\n资料：知库系统的管理员名叫王小明，他负责每周备份数据。\n\n问题：知库系统的管理员叫什么名字？"


@pytest.fixture(scope="module")
def base_url(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with model_server(models_dir / MODEL_FILE, log, "--max-batch-size", "4", "--max-seq-len", str(MAX_SEQ_LEN),
                      "--threads", "2", timeout_s=STARTUP_TIMEOUT_S) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", timeout=300)


def _ask(client: openai.OpenAI, question: str, max_tokens: int = 40) -> str:
    response = client.chat.completions.create(
        model=MODEL_FILE,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
    )
    return response.choices[0].message.content


def test_health_and_models(base_url: str, client: openai.OpenAI) -> None:
    assert httpx.get(f"{base_url}/health").json()["status"] == "ok"
    assert [m.id for m in client.models.list().data] == [MODEL_FILE]


def test_english_grounded_answer_non_streaming(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL_FILE,
        messages=[{"role": "user", "content": ENGLISH_QUESTION}],
        max_tokens=40,
        temperature=0,
    )
    choice = response.choices[0]
    assert "Hangzhou" in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.prompt_tokens > 40
    assert 0 < response.usage.completion_tokens <= 40
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_chinese_grounded_answer_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL_FILE,
        messages=[{"role": "user", "content": CHINESE_QUESTION}],
        max_tokens=40,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "王小明" in text
    assert "\ufffd" not in text
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2
    finish_reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish_reasons in (["stop"], ["length"])
    assert chunks[-1].usage.completion_tokens > 0
    assert text == _ask(client, CHINESE_QUESTION)


def test_stop_string_is_honoured(client: openai.OpenAI) -> None:
    full = _ask(client, ENGLISH_QUESTION)
    response = client.chat.completions.create(
        model=MODEL_FILE,
        messages=[{"role": "user", "content": ENGLISH_QUESTION}],
        max_tokens=40,
        temperature=0,
        stop=["Hangzhou"],
    )
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.content == full[: full.index("Hangzhou")]


def test_concurrent_requests_all_complete_with_their_solo_answers(client: openai.OpenAI) -> None:
    questions = [ENGLISH_QUESTION, CHINESE_QUESTION, "What is 2 + 3? Answer with a number.", "用一句话介绍杭州。"]
    solo = [_ask(client, q, max_tokens=24) for q in questions]
    with ThreadPoolExecutor(len(questions)) as pool:
        together = list(pool.map(lambda q: _ask(client, q, max_tokens=24), questions))
    assert all(together)
    assert together == solo


def test_logprobs_of_the_chosen_tokens_and_their_alternatives(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL_FILE, messages=[{"role": "user", "content": ENGLISH_QUESTION}], max_tokens=6,
        temperature=0, logprobs=True, top_logprobs=5,
    )
    choice = response.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == response.usage.completion_tokens
    # Every generated token, the end-of-turn token included (it is counted in the usage too).
    assert "".join(e.token for e in entries).removesuffix("<|im_end|>") == choice.message.content
    for entry in entries:
        assert len(entry.top_logprobs) == 5
        # Greedy: the chosen token is the most likely one, and the alternatives come in order.
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
        assert entry.logprob <= 0
    assert response.choices[0].logprobs.content[0].top_logprobs[0].logprob > -1.0  # a confident first token

    stream = client.chat.completions.create(
        model=MODEL_FILE, messages=[{"role": "user", "content": ENGLISH_QUESTION}], max_tokens=6,
        temperature=0, logprobs=True, top_logprobs=2, stream=True,
    )
    streamed = [e for c in stream if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in entries]

    plain = client.chat.completions.create(
        model=MODEL_FILE, messages=[{"role": "user", "content": ENGLISH_QUESTION}], max_tokens=6, temperature=0)
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == choice.message.content
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.chat.completions.create(model=MODEL_FILE, messages=[{"role": "user", "content": "hi"}],
                                       top_logprobs=3)


def test_too_long_request_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="context window"):
        _ask(client, "word " * MAX_SEQ_LEN)


def test_invalid_sampling_setting_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL_FILE, messages=[{"role": "user", "content": "hi"}], temperature=-1
        )


def test_metrics_count_requests_and_tokens(base_url: str, client: openai.OpenAI) -> None:
    _ask(client, "Say hi.", max_tokens=4)
    text = httpx.get(f"{base_url}/metrics").text
    values = dict(line.split() for line in text.splitlines() if not line.startswith("#"))
    assert int(values["model_requests_total"]) >= 1
    assert int(values["model_generated_tokens_total"]) >= 4
    assert values["model_requests_running"] == "0"
    assert values["model_requests_waiting"] == "0"


def test_qwen_output_has_no_reasoning_content(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=MODEL_FILE, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0
    )
    assert getattr(response.choices[0].message, "reasoning_content", None) is None


def test_r1_template_output_arrives_as_reasoning_content(tmp_path: Path, models_dir: Path) -> None:
    """R1's prompt ends inside `<think>`: until `</think>` the output is reasoning, not content.

    A tiny random Qwen2 with the real R1 tokenizer and template, served in-process (random weights
    never close the think block, so everything generated must land in `reasoning_content`).
    """
    r1_tokenizer = models_dir / "tokenizers" / "deepseek-r1"
    folder = save_tiny_qwen2(tmp_path, r1_tokenizer, vocab_size=129280, max_seq_len=64)
    engine = model.load(folder, max_batch_size=2, max_seq_len=64)
    with TestClient(create_app(engine, model_name="tiny-r1")) as http:
        r1 = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http)
        messages = [{"role": "user", "content": "1+1?"}]
        request = {"model": "tiny-r1", "messages": messages, "max_tokens": 8, "temperature": 0}
        message = r1.chat.completions.create(**request).choices[0].message
        chunks = list(r1.chat.completions.create(**request, stream=True))
    assert message.reasoning_content and not message.content
    streamed = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks)
    assert streamed == message.reasoning_content
