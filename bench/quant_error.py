"""How far int8 and int4 (our load-time schemes) move the default model's logits from bf16.

    python bench/quant_error.py [--model data/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf] [--group-size 32]

The GGUF's weights are dequantized to bfloat16 (the "unquantized" reference, as transformers would
load them), then loaded again as int8 and as int4; each runs the same grounded Chinese and English
prompts (the answer prompt Zhiku builds, with sources) through `engine.logits`. Reported per scheme:
max |Δlogit| / max |logit| and ||Δ|| / ||ref|| over all positions, and how often the greedy next token
is the same as the reference's. Writes bench/results/quant_error.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import load  # noqa: E402
from rag.prompt import Source, build_messages  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCES = [
    Source(n=1, chunk_id=1, document="运维手册.docx", page=4, pages=(4,), section="数据备份", score=0.7,
           dense_score=0.7, document_id=1,
           text="数据备份：系统每天凌晨两点自动备份数据目录，备份文件保存在 /var/backups/zhiku，保留七天。"),
    Source(n=2, chunk_id=2, document="security-policy.md", page=1, pages=(1,), section="Passwords", score=0.6,
           dense_score=0.6, document_id=2,
           text="Passwords must be at least 14 characters long and expire after 90 days."),
]
QUESTIONS = ["备份文件保存在哪里？", "How many characters must a password have at least?"]


def prompts(engine) -> list[torch.Tensor]:  # noqa: ANN001
    return [torch.tensor([engine.encode_prompt(build_messages(q, SOURCES))]) for q in QUESTIONS]


def logits_of(path: Path, quant: str | None, group_size: int) -> list[torch.Tensor]:
    engine = load(path, dtype="bfloat16", quant=quant, group_size=group_size)
    out = []
    for tokens in prompts(engine):
        engine.reset()
        out.append(engine.logits(tokens)[0].float())
    return out


def compare(got: list[torch.Tensor], want: list[torch.Tensor]) -> dict:
    got_all, want_all = torch.cat(got), torch.cat(want)
    return {"max_rel": ((got_all - want_all).abs().max() / want_all.abs().max()).item(),
            "norm_rel": ((got_all - want_all).norm() / want_all.norm()).item(),
            "top1_agreement": (got_all.argmax(-1) == want_all.argmax(-1)).float().mean().item(),
            "positions": got_all.shape[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "data/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    parser.add_argument("--group-size", type=int, default=32)
    args = parser.parse_args()
    reference = logits_of(args.model, None, args.group_size)
    result = {"model": args.model.name, "reference": "bfloat16 (GGUF dequantized)", "group_size": args.group_size,
              "schemes": {quant: compare(logits_of(args.model, quant, args.group_size), reference)
                          for quant in ("int8", "int4")}}
    (REPO / "bench/results/quant_error.json").write_text(json.dumps(result, indent=1))
    print("| scheme | max |Δ| / max |ref| | ‖Δ‖ / ‖ref‖ | greedy token = bf16's |")
    print("|---|---|---|---|")
    for quant, row in result["schemes"].items():
        print(f"| {quant} | {row['max_rel']:.4f} | {row['norm_rel']:.4f} | {row['top1_agreement']:.1%} "
              f"of {row['positions']} positions |")


if __name__ == "__main__":
    main()
