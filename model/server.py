"""OpenAI-compatible HTTP server over one `Engine` (no model code here).

    python -m model.server --model PATH [--quant int8|int4] [--port N] [--host 127.0.0.1]
        [--max-batch-size N] [--max-seq-len N] [--threads N] [--dtype float32|bfloat16]

Routes: /v1/models, /v1/chat/completions (SSE stream or JSON; R1-style reasoning goes to
`reasoning_content` as in DeepSeek's API; `logprobs` / `top_logprobs` as OpenAI's), /health, /metrics
(Prometheus text). The engine's
scheduler runs on its own thread; each request hands it a callback that posts deltas back to the
event loop, so concurrent requests share decode steps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from model.engine import Engine, FinishReason, RequestTooLongError, SamplingParams, TextDelta
from model.engine.sampler import MAX_TOP_LOGPROBS, TokenLogprob
from model.engine.sequence import Sequence


class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart]

    def as_template_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The OpenAI request fields we honour, plus `top_k` and `repetition_penalty` as vLLM does."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # OpenAI's defaults: sampling at temperature 1 unless the client asks for less.
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    repetition_penalty: float = Field(default=1.0, gt=0.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)

    def sampling_params(self) -> SamplingParams:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(
            top_logprobs=(self.top_logprobs or 0) if self.logprobs else None,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            stop=stop,
        )


def error_response(status: int, message: str, code: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "code": code}}
    )


def usage_of(delta: TextDelta) -> dict[str, int]:
    return {
        "prompt_tokens": delta.num_prompt_tokens,
        "completion_tokens": delta.num_completion_tokens,
        "total_tokens": delta.num_prompt_tokens + delta.num_completion_tokens,
    }


def logprobs_payload(records: list[TokenLogprob], token_text) -> dict:
    """OpenAI's `logprobs` object of a choice or chunk; `token_text(id)` spells one token."""

    def entry(token_id: int, logprob: float) -> dict:
        text = token_text(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [entry(r.token_id, r.logprob) | {"top_logprobs": [entry(t, lp) for t, lp in r.top]}
                        for r in records]}


def metrics_text(engine: Engine) -> str:
    stats = engine.stats
    rows = [
        ("model_requests_total", "counter", "Chat requests accepted.", stats.num_requests),
        ("model_prompt_tokens_total", "counter", "Prompt tokens prefilled.", stats.num_prompt_tokens),
        ("model_generated_tokens_total", "counter", "Tokens generated.", stats.num_generated_tokens),
        ("model_requests_running", "gauge", "Requests holding a KV-cache slot.", stats.num_running),
        ("model_requests_waiting", "gauge", "Requests queued for a slot.", stats.num_waiting),
    ]
    return "".join(
        f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n{name} {value}\n"
        for name, kind, help_text, value in rows
    )


class DeltaChannel:
    """Carries one request's deltas from the scheduler thread into the event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[TextDelta] = asyncio.Queue()

    def put(self, delta: TextDelta) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, delta)
        except RuntimeError:
            # The event loop has shut down: nobody is listening, and the scheduler must go on.
            pass

    async def deltas(self, seq: Sequence) -> AsyncIterator[TextDelta]:
        try:
            while True:
                delta = await self.queue.get()
                yield delta
                if delta.finish_reason is not None:
                    return
        finally:
            # Client gone (or done): frees the slot at the next scheduler step.
            seq.cancel()


def create_app(engine: Engine, *, model_name: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        engine.start()
        yield
        engine.stop()

    app = FastAPI(title="Zhiku model server", lifespan=lifespan)
    created_s = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, str(exc.errors()), "invalid_request")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": model_name}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics_text(engine), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models() -> dict:
        card = {"id": model_name, "object": "model", "created": created_s, "owned_by": "zhiku"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest):
        try:
            params = body.sampling_params()
            prompt_ids = engine.encode_prompt([m.as_template_dict() for m in body.messages])
            channel = DeltaChannel()
            seq = engine.submit(prompt_ids, params, channel.put)
        except RequestTooLongError as exc:
            return error_response(400, str(exc), "context_length_exceeded")
        except ValueError as exc:
            return error_response(400, str(exc), "invalid_request")
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        header = {"id": completion_id, "created": int(time.time()), "model": model_name}
        deltas = channel.deltas(seq)
        spell = (lambda token_id: engine.tokenizer.decode([token_id])) if body.logprobs else None
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                sse_chunks(deltas, header, include_usage=include_usage, spell=spell),
                media_type="text/event-stream",
            )
        return await complete(deltas, header, spell=spell)

    return app


async def complete(deltas: AsyncIterator[TextDelta], header: dict, *, spell=None) -> JSONResponse:
    """`spell` (token id -> text) is given when the request asked for log-probabilities."""
    content, reasoning, logprobs = [], [], []
    async for delta in deltas:
        content.append(delta.content)
        reasoning.append(delta.reasoning)
        logprobs += delta.logprobs
    if delta.finish_reason is FinishReason.ERROR:
        return error_response(500, "generation failed; see the server log", "generation_failed")
    message = {"role": "assistant", "content": "".join(content)}
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    choice = {"index": 0, "message": message, "finish_reason": delta.finish_reason.value}
    if spell is not None:
        choice["logprobs"] = logprobs_payload(logprobs, spell)
    return JSONResponse(
        {**header, "object": "chat.completion", "choices": [choice], "usage": usage_of(delta)}
    )


async def sse_chunks(
    deltas: AsyncIterator[TextDelta], header: dict, *, include_usage: bool, spell=None
) -> AsyncIterator[str]:
    def chunk(choices: list[dict], **extra) -> str:
        body = {**header, "object": "chat.completion.chunk", "choices": choices, **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    async for delta in deltas:
        if delta.finish_reason is FinishReason.ERROR:
            error = {"message": "generation failed; see the server log", "type": "server_error"}
            yield f"data: {json.dumps({'error': error})}\n\n"
            break
        fields = {}
        if delta.reasoning:
            fields["reasoning_content"] = delta.reasoning
        if delta.content:
            fields["content"] = delta.content
        finish = delta.finish_reason.value if delta.finish_reason else None
        choice = {"index": 0, "delta": fields, "finish_reason": finish}
        if spell is not None and delta.logprobs:
            choice["logprobs"] = logprobs_payload(list(delta.logprobs), spell)
        if fields or finish or "logprobs" in choice:
            yield chunk([choice])
        if finish and include_usage:
            yield chunk([], usage=usage_of(delta))
    yield "data: [DONE]\n\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m model.server", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="GGUF file or Hugging Face model folder")
    parser.add_argument("--quant", choices=["int8", "int4"], default=None)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N (bfloat16, no --quant; docs/gpu.md)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--served-model-name", default=None, help="defaults to the file/folder name")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import torch
    import uvicorn

    from model import load

    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_options = {"dtype": args.dtype} if args.dtype else {}
    engine = load(
        args.model,
        quant=args.quant,
        device=args.device,
        max_batch_size=args.max_batch_size,
        max_seq_len=args.max_seq_len,
        **load_options,
    )
    app = create_app(engine, model_name=args.served_model_name or Path(args.model).name)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
