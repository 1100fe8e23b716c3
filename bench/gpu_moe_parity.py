"""Parity of our DeepSeek-V3-architecture model with transformers' on the same random weights
(bench/gpu_moe.py runs it per config; `python bench/gpu_moe.py --parity-only` alone)."""

from __future__ import annotations

import torch
from gpu_moe_models import MAX_SEQ_LEN, PARITY_STEPS, PROMPT_LEN, build_models, ours_sharing


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours.float() - ref.float()).norm() / ref.float().norm()).item()


def parity_tokens(vocab: int, device: str) -> torch.Tensor:
    return torch.randint(0, vocab, (2, PROMPT_LEN + PARITY_STEPS), generator=torch.Generator().manual_seed(1)).to(device)


@torch.inference_mode()
def our_logits(ours, tokens: torch.Tensor, step=None) -> torch.Tensor:
    """Logits of a prefill of the first PROMPT_LEN tokens, then one decode step per further token
    (through `step`, e.g. a CUDA graph, when given)."""
    batch, device = tokens.shape[0], tokens.device
    slots = torch.arange(batch, device=device)
    out = [ours(tokens[:, :PROMPT_LEN], torch.arange(PROMPT_LEN, device=device).expand(batch, -1), slots)]
    for pos in range(PROMPT_LEN, tokens.shape[1]):
        token, position = tokens[:, pos:pos + 1], torch.full((batch, 1), pos, device=device)
        out.append((step or ours)(token, position, slots).clone())
    return torch.cat(out, dim=1)


def split_errors(got: torch.Tensor, want: torch.Tensor) -> dict:
    return {"prefill": relative_error(got[:, :PROMPT_LEN], want[:, :PROMPT_LEN]),
            "decode": [relative_error(got[:, p:p + 1], want[:, p:p + 1]) for p in range(PROMPT_LEN, got.shape[1])]}


@torch.inference_mode()
def parity(sizes: dict, device: str) -> dict:
    """Float32: ours (per-expert loop, no graph) vs transformers, an exactness check of the logic.
    bfloat16: ours eager and through a CUDA graph vs transformers, and both vs the float32 logits
    of the same weights (random routers make near-tied expert choices, which bf16 rounding flips
    differently in any two implementations; the distance to float32 says which is more accurate)."""
    tokens = parity_tokens(sizes["vocab_size"], device)
    reference, ours = build_models(sizes, device, 2, torch.float32)
    ours.merge_projections()  # as load_model does on a GPU
    exact = reference(tokens).logits.float()
    result = {"float32": split_errors(our_logits(ours, tokens), exact)}
    del ours
    reference = reference.to(torch.bfloat16)  # the same weights, rounded
    ours = ours_sharing(reference, device, 2)
    ours.merge_projections()
    theirs = reference(tokens).logits.float()
    eager = our_logits(ours, tokens)
    result["bfloat16_eager"] = split_errors(eager, theirs)
    result["bfloat16_vs_float32"] = {"ours": split_errors(eager, exact), "transformers": split_errors(theirs, exact)}
    if device != "cpu":
        from model.engine.cuda_graph import DecodeGraph

        ours.reset_cache()
        graph = DecodeGraph(ours, 2, MAX_SEQ_LEN, torch.device(device))
        graph_logits = our_logits(ours, tokens, graph)
        result["bfloat16_graph"] = split_errors(graph_logits, theirs)
        result["bfloat16_graph_vs_eager"] = {"identical": bool(torch.equal(graph_logits, eager)),
                                             **split_errors(graph_logits, eager)}
    return result
