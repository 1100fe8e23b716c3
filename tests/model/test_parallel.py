"""Tensor- and expert-parallel DeepSeek-V3/V2 over gloo processes gives the unsharded model's logits
(float32) for prefill and decode, on every rank; a model that cannot be split is refused clearly."""

from __future__ import annotations

import multiprocessing

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from model.loader import load_model
from model.parallel import Shard, ShardingError, shard_deepseek
from tests.model.test_deepseek_parity import _SIZES, CASES, DECODE_STEPS, VOCAB, relative_error

TOLERANCE = 1e-5  # float32; only the order of the all-reduce sums differs
PROMPT_LENGTHS = (6, 11)


def run_rows(model, *, sync_free: bool) -> torch.Tensor:
    """Prefill of two rows of different lengths in their own slots, then DECODE_STEPS batched steps;
    logits of every position, [2, max prompt + steps, vocab] (unused positions zero)."""
    for module in model.modules():
        if hasattr(module, "sync_free"):
            module.sync_free = sync_free
    generator = torch.Generator().manual_seed(5)
    rows = [torch.randint(0, VOCAB, (n + DECODE_STEPS,), generator=generator) for n in PROMPT_LENGTHS]
    out = torch.zeros(2, max(PROMPT_LENGTHS) + DECODE_STEPS, VOCAB)
    slots = torch.tensor([1, 0])
    with torch.inference_mode():
        for b, (row, n) in enumerate(zip(rows, PROMPT_LENGTHS)):
            out[b, :n] = model(row[None, :n], torch.arange(n)[None], slots[b:b + 1])[0]
        for step in range(DECODE_STEPS):
            positions = torch.tensor([[n + step] for n in PROMPT_LENGTHS])
            tokens = torch.stack([row[n + step] for row, n in zip(rows, PROMPT_LENGTHS)])[:, None]
            logits = model(tokens, positions, slots)
            for b, n in enumerate(PROMPT_LENGTHS):
                out[b, n + step] = logits[b, 0]
    return out


def _rank_main(rank: int, world_size: int, folder: str, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        model, _, _ = load_model(folder, dtype="float32", max_batch_size=2, max_seq_len=64)
        shard_deepseek(model, Shard(rank, world_size))
        save_file({"looped": run_rows(model, sync_free=False), "sync_free": run_rows(model, sync_free=True)},
                  f"{out}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def run_sharded(folder, world_size: int, tmp_path) -> list[dict[str, torch.Tensor]]:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_rank_main, args=(rank, world_size, str(folder), str(tmp_path / "store"),
                                                          str(tmp_path)))
                 for rank in range(world_size)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0, f"rank exited with {process.exitcode}"
    return [load_file(tmp_path / f"rank{rank}.safetensors") for rank in range(world_size)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folders = {}
    for name in ("v3-qlora-yarn-groups", "v2-softmax-greedy"):
        config_cls, model_cls, extra = CASES[name]
        torch.manual_seed(0)
        reference = model_cls(config_cls(**_SIZES, **extra)).eval()
        with torch.no_grad():
            for tensor_name, tensor in reference.state_dict().items():
                if tensor_name.endswith("e_score_correction_bias"):
                    tensor.normal_(0, 0.3)
        folders[name] = tmp_path_factory.mktemp(name)
        reference.save_pretrained(folders[name])
    return folders


@pytest.mark.parametrize(("name", "world_size"), [("v3-qlora-yarn-groups", 2), ("v3-qlora-yarn-groups", 4),
                                                   ("v2-softmax-greedy", 2)])
def test_sharded_logits_equal_the_unsharded_model(checkpoints, name, world_size, tmp_path):
    folder = checkpoints[name]
    whole, _, _ = load_model(folder, dtype="float32", max_batch_size=2, max_seq_len=64)
    want = run_rows(whole, sync_free=False)
    for rank, got in enumerate(run_sharded(folder, world_size, tmp_path)):
        for path in ("looped", "sync_free"):  # sync_free: GEMV experts in decode, grouped GEMM in prefill
            assert relative_error(got[path], want) <= TOLERANCE, f"rank {rank}, {path} experts"


def test_expert_count_not_divisible_by_world_size_is_refused_before_anything_is_cut(tmp_path):
    config_cls, model_cls, extra = CASES["v2-softmax-greedy"]  # one expert group: 6 experts are valid
    reference = model_cls(config_cls(**(_SIZES | {"n_routed_experts": 6}), **extra))
    reference.save_pretrained(tmp_path)
    model, _, _ = load_model(tmp_path, dtype="float32", max_batch_size=1, max_seq_len=16)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(ShardingError, match=r"routed experts \(6\) is not divisible by the world size \(4\)"):
        shard_deepseek(model, Shard(0, 4))
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
