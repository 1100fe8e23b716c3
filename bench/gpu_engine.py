"""The serving engine (continuous batching, what `python -m model.server` runs) on a GPU.

    python bench/gpu_engine.py --tokenizer data/models/tokenizers/deepseek-r1 [--out DIR]

A V3-architecture model with random bf16 weights (8 layers, hidden 1024, 64 experts of which 6
active, R1's tokenizer and chat template) is saved as a checkpoint and loaded through
`model.load(..., device="cuda")`. Then: every prompt generated alone, then all submitted at once
to the running scheduler loop (they share decode steps) — are the greedy outputs the same? — and
served tokens/s at 1, 4 and 16 concurrent requests. The engine's decode step is eager (no CUDA
graph yet), so this measures the serving path, not the kernels (bench/gpu_moe.py does that).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import load  # noqa: E402
from model.engine.sampler import SamplingParams  # noqa: E402

SIZES = {"hidden_size": 1024, "intermediate_size": 2816, "moe_intermediate_size": 704, "num_hidden_layers": 8,
         "num_attention_heads": 16, "num_key_value_heads": 16, "q_lora_rank": 384, "kv_lora_rank": 512,
         "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64,
         "num_experts_per_tok": 6, "n_shared_experts": 1, "n_group": 8, "topk_group": 4,
         "first_k_dense_replace": 1}
QUESTIONS = ["什么是知库？", "How do I back up the data?", "请总结这份文件。", "Who may read HR documents?",
             "如何上传文件？", "What is a knowledge base?", "备份多久做一次？", "List the supported file types.",
             "报销流程是什么？", "How are answers cited?", "谁能看到审计日志？", "What happens to deleted files?",
             "如何重置密码？", "Which model answers?", "知库支持哪些语言？", "How is PII redacted?"]
MAX_TOKENS = 48


def make_checkpoint(folder: Path, tokenizer: Path) -> None:
    import transformers

    vocab = transformers.AutoTokenizer.from_pretrained(tokenizer).__len__()
    config = transformers.DeepseekV3Config(**SIZES, vocab_size=vocab, max_position_embeddings=4096)
    torch.manual_seed(0)
    transformers.DeepseekV3ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    for item in tokenizer.iterdir():
        if item.is_file() and item.name != "config.json":
            shutil.copy(item, folder / item.name)


def generate_alone(engine, params: SamplingParams) -> list[list[int]]:
    """Token ids of each question generated on its own."""
    return [[t for d in engine.generate([{"role": "user", "content": q}], params) for t in d.token_ids]
            for q in QUESTIONS]


def serve_concurrently(engine, questions: list[str], params: SamplingParams) -> tuple[list[list[int]], int, float]:
    """All requests submitted at once to the running loop: (token ids, completion tokens, seconds)."""
    outputs: list[list[int]] = [[] for _ in questions]
    done = [threading.Event() for _ in questions]

    def emitter(i: int):
        def emit(delta) -> None:
            outputs[i].extend(delta.token_ids)
            if delta.finish_reason is not None:
                done[i].set()
        return emit

    prompts = [engine.encode_prompt([{"role": "user", "content": q}]) for q in questions]
    started = time.perf_counter()
    sequences = [engine.submit(p, params, emitter(i)) for i, p in enumerate(prompts)]
    for event in done:
        event.wait(timeout=600)
    elapsed = time.perf_counter() - started
    return outputs, sum(len(s.output_ids) for s in sequences), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, default=Path("data/models/tokenizers/deepseek-r1"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", help="float32: batched and alone should agree exactly")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(Path(tmp), args.tokenizer)
        engine = load(tmp, dtype=args.dtype, device=args.device, max_batch_size=16, max_seq_len=512)
    params = SamplingParams(max_tokens=MAX_TOKENS)
    alone = generate_alone(engine, params)
    engine.start()
    result = {"device": torch.cuda.get_device_name() if args.device != "cpu" else "cpu", "dtype": args.dtype,
              "sizes": SIZES,
              "max_tokens": MAX_TOKENS, "concurrency": []}
    for concurrency in (1, 4, 16):
        questions = QUESTIONS[:concurrency]
        serve_concurrently(engine, questions, params)  # warm-up of this batch size
        texts, tokens, seconds = serve_concurrently(engine, questions, params)
        same = sum(t == a for t, a in zip(texts, alone))
        result["concurrency"].append({"requests": concurrency, "completion_tokens": tokens, "seconds": seconds,
                                      "tokens_per_s": tokens / seconds, "same_as_alone": same})
        print(json.dumps(result["concurrency"][-1]), flush=True)
    engine.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"gpu_engine_{args.dtype}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
