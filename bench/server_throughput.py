"""Concurrent throughput of `model.server`: 1, 4 and 16 parallel streaming chat requests.

Starts the server as a subprocess (unless --base-url is given), sends `--waves` rounds of N
simultaneous greedy requests for each N, and reports generated tokens/s over the whole round, mean
time to first token, and per-request decode tokens/s. Prints a markdown table; writes JSON to
bench/results/server_throughput_<quant>.json. Timings only (never asserted).

    .venv/bin/python bench/server_throughput.py [--model PATH] [--quant int4] [--threads 2]
        [--levels 1 4 16] [--max-tokens 64] [--waves 1] [--base-url URL]
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import openai

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "data" / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QUESTIONS = [
    "Explain in a few sentences what a knowledge base is used for in a company.",
    "用几句话说明企业知识库的作用。",
    "List three ways to keep documents secure in an on-premises system.",
    "请简要介绍检索增强生成（RAG）的基本流程。",
]


@dataclass(frozen=True)
class LevelResult:
    parallel_requests: int
    num_requests: int
    generated_tokens: int
    wall_s: float
    throughput_tok_s: float
    mean_ttft_s: float
    mean_request_decode_tok_s: float


def stream_one(client: openai.OpenAI, model: str, question: str, max_tokens: int) -> tuple[float, float, int]:
    """(time to first token, total time, completion tokens) of one streamed request."""
    started = time.perf_counter()
    first_token_s = None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    num_tokens = 0
    for chunk in stream:
        if first_token_s is None and chunk.choices and chunk.choices[0].delta.content:
            first_token_s = time.perf_counter() - started
        if chunk.usage is not None:
            num_tokens = chunk.usage.completion_tokens
    total_s = time.perf_counter() - started
    return first_token_s or total_s, total_s, num_tokens


def run_level(client: openai.OpenAI, model: str, parallel: int, waves: int, max_tokens: int) -> LevelResult:
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(parallel)]
    results = []
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        for _ in range(waves):
            results += pool.map(lambda q: stream_one(client, model, q, max_tokens), questions)
    wall_s = time.perf_counter() - started
    generated = sum(n for _, _, n in results)
    decode_rates = [(n - 1) / (total - ttft) for ttft, total, n in results if n > 1 and total > ttft]
    return LevelResult(
        parallel_requests=parallel,
        num_requests=len(results),
        generated_tokens=generated,
        wall_s=round(wall_s, 2),
        throughput_tok_s=round(generated / wall_s, 2),
        mean_ttft_s=round(sum(r[0] for r in results) / len(results), 3),
        mean_request_decode_tok_s=round(sum(decode_rates) / max(len(decode_rates), 1), 2),
    )


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "model.server", "--model", str(args.model), "--port", str(port),
               "--max-batch-size", str(max(args.levels)), "--max-seq-len", "1024",
               "--threads", str(args.threads)]
    if args.quant:
        command += ["--quant", args.quant]
    server = subprocess.Popen(command, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(1)
    server.terminate()
    raise SystemExit("server did not become healthy in 10 minutes")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--quant", choices=["int8", "int4"], default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--waves", type=int, default=1)
    parser.add_argument("--base-url", default="")
    args = parser.parse_args()

    server, url = (None, args.base_url) if args.base_url else start_server(args)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=1800)
        model = client.models.list().data[0].id
        stream_one(client, model, QUESTIONS[0], 4)  # warm-up: page in the weights
        levels = [run_level(client, model, n, args.waves, args.max_tokens) for n in args.levels]
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)

    print(f"\nServer throughput — {model}, quant={args.quant}, {args.threads} threads, "
          f"max_tokens={args.max_tokens}, {platform.processor() or platform.machine()}\n")
    print("| parallel | requests | tokens | wall s | tok/s (all) | mean TTFT s | tok/s per request |")
    print("|---|---|---|---|---|---|---|")
    for r in levels:
        print(f"| {r.parallel_requests} | {r.num_requests} | {r.generated_tokens} | {r.wall_s} | "
              f"{r.throughput_tok_s} | {r.mean_ttft_s} | {r.mean_request_decode_tok_s} |")
    out = REPO / "bench" / "results" / f"server_throughput_{args.quant or 'unquantized'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": model, "quant": args.quant, "threads": args.threads, "max_tokens": args.max_tokens,
               "machine": platform.platform(), "levels": [asdict(r) for r in levels]}
    out.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
