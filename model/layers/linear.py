"""Linear layers that own how checkpoint tensors are loaded into them: float, int8 and int4 weight-only.

Every layer has `load_tensor(name, tensor)` (name = the part after the module path: "weight",
"bias", or for a saved quantized checkpoint "qweight" / "scales" / "scales_and_zeros") and
`checkpoint_tensors()` (what a saved folder holds for it). Quantized layers quantize a float
"weight" as it arrives, so a model never holds its float weights and their quantized copy at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model import native
from model.quant import pack_nibbles, quantize_int4, quantize_int8, unpack_nibbles


# The int8/int4 CPU kernels are fast only in bfloat16 (float32 runs 10-50x slower), so quantized
# layers compute in bfloat16 whatever the runtime dtype and hand back the runtime dtype.
KERNEL_DTYPE = torch.bfloat16
_KERNEL_ROW_BLOCK = 64  # the int4 kernel packs output channels in blocks of 64
_PACK_ROWS = 64 * _KERNEL_ROW_BLOCK  # rows per conversion into the kernel layout (a multiple of 64)
# Long inputs (prefill) run an int4 or int8 layer as a bf16 GEMM on its weight expanded for that call
# (no bf16 copy is kept: resident memory stays 4/8-bit) where the CPU has a bf16 dot product (AVX512-BF16
# or AMX), from EXPAND_FROM_ROWS rows on; shorter inputs, and every input elsewhere, take the int4/int8
# kernel. torch's int8 kernel is as slow as the int4 one on long inputs (int8 prefill 0.25x transformers
# on the Zen 4, docs/benchmarks.md); its expansion is a conversion times the channel's scale.
# Measured with bench/quant_gemm.py on a 2-core AMD EPYC Zen 4 (AVX512-BF16, no AMX), 1 thread, for the
# 1.5B model's 8960x1536 gate/up at 400 rows: int4 kernel 129 ms, bf16 F.linear 52 ms, expand + GEMM
# 65 ms (break-even near 70 rows for the large matrices, 90 for 1536x1536). Its 400-token int4 prefill
# went from ~0.5x transformers bf16 (kernel) to 0.82x (docs/benchmarks.md). On the AVX512-BF16 Xeon
# measured before, the GEMM was only 1.2x faster than the kernel (133 vs 164 ms, 1536x8960, 400 rows)
# and the expansion then ~3x slower than this one, so it stayed on the kernel; with this expansion
# (~12 ms for 1536x8960) the estimate there is even at 128 rows, ~10% faster at 400 (not re-measured).
# Without a bf16 dot product oneDNN computes bf16 GEMMs in fp32, like the kernel: nothing to win.
# A timing of both paths at startup was tried instead and dropped: on this shared machine a busy
# moment made a process pick the kernel for its whole life, and the two paths round differently, so
# a restart could change greedy outputs. EXPAND_FROM_ROWS stays above any decode batch, and prefill
# runs one request at a time, so a request's path depends on its own prompt length only.
EXPAND_FROM_ROWS = 128
_CPU_HAS_BF16_DOT = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
# The weight is expanded a slice of output channels at a time, ~4 MB of bf16, into one buffer reused by
# every slice of a call (its pages fault in once). Slices bound the transient of a large LM head and
# keep the expansion's output near the cache; narrower slices make thin GEMMs: with 1 MB slices the
# 1536x8960 down projection ran in 64-channel slices, 27 ms against 18 ms at 4 MB (400 rows, 1 thread,
# Sapphire Rapids; bf16 F.linear 14 ms). The torch-op expansion (no model/native) was measured at 1 MB.
_EXPAND_MAX_ELEMENTS = 1 << 21


def _copy_checked(dst: torch.Tensor, src: torch.Tensor, what: str) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"{what}: checkpoint shape {tuple(src.shape)} != expected {tuple(dst.shape)}")
    dst.copy_(src)


class _LoadableLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype), requires_grad=False) if bias else None

    def _load_bias(self, tensor: torch.Tensor) -> None:
        if self.bias is None:
            raise KeyError("checkpoint has a bias for a layer built without one")
        _copy_checked(self.bias.data, tensor.to(self.dtype), "bias")

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias is None else y + self.bias


class Linear(_LoadableLinear):
    """y = x W^T + b in the runtime dtype. The weight is left uninitialised: it is always loaded."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__(in_features, out_features, bias, dtype)
        # torch.empty of a large block is fresh mmap'd memory: it costs no RAM until loaded.
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype), requires_grad=False)

    def load_tensor(self, name: str, tensor: torch.Tensor) -> None:
        if name == "bias":
            return self._load_bias(tensor)
        if name != "weight":
            raise KeyError(f"a float Linear has no tensor {name!r} (quantized checkpoint for a float model?)")
        _copy_checked(self.weight.data, tensor.to(self.dtype), "weight")

    def checkpoint_names(self) -> tuple[str, ...]:
        return ("weight",) + (() if self.bias is None else ("bias",))

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight.data} | ({} if self.bias is None else {"bias": self.bias.data})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class Int8WeightOnlyLinear(_LoadableLinear):
    """int8 weights, one scale per output channel; activations stay in the runtime dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__(in_features, out_features, bias, dtype)
        self.register_buffer("qweight", torch.empty(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.empty(out_features, dtype=KERNEL_DTYPE))

    def load_tensor(self, name: str, tensor: torch.Tensor) -> None:
        if name == "bias":
            return self._load_bias(tensor)
        if name == "weight":
            tensor, scales = quantize_int8(tensor)
            _copy_checked(self.scales, scales.to(KERNEL_DTYPE), "scales")
        elif name == "scales":
            return _copy_checked(self.scales, tensor.to(KERNEL_DTYPE), "scales")
        elif name != "qweight":
            raise KeyError(f"an int8 Linear has no tensor {name!r}")
        _copy_checked(self.qweight, tensor, "qweight")

    def checkpoint_names(self) -> tuple[str, ...]:
        return ("qweight", "scales") + (() if self.bias is None else ("bias",))

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        out = {"qweight": self.qweight, "scales": self.scales}
        return out | ({} if self.bias is None else {"bias": self.bias.data})

    def kernel_mm(self, x2: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(x2, self.qweight, self.scales)

    def expanded_mm(self, x2: torch.Tensor) -> torch.Tensor:
        """x2 @ W^T as a bf16 GEMM on the weight expanded for this call. The scale goes into the weight,
        as in the kernel: scaling the bf16 product instead rounds every output twice (4.8e-3 relative
        logit difference from the kernel on the tiny test model)."""
        return _sliced_mm(x2, self.out_features, self.in_features, lambda rows, buffer: self.dequantized(rows, buffer).t())

    def dequantized(self, rows: slice = slice(None), buffer: torch.Tensor | None = None) -> torch.Tensor:
        """The weight of output channels `rows` as [len(rows), in] in the kernel dtype (written into the
        front of the flat bf16 `buffer` when given and model/native runs on this CPU)."""
        q = self.qweight[rows]
        if not native.SUPPORTED:
            return q.to(KERNEL_DTYPE) * self.scales[rows, None]
        out = _view_of(buffer, q.shape)
        return native.expand_int8(q, self.scales[rows].float(), out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _quantized_forward(self, x)


class Int4WeightOnlyLinear(_LoadableLinear):
    """4-bit weights in groups of `group_size` inputs with a scale and zero each (torch's CPU int4 kernel)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype, group_size: int) -> None:
        super().__init__(in_features, out_features, bias, dtype)
        if in_features % group_size or out_features % _KERNEL_ROW_BLOCK:
            raise ValueError(f"int4 needs in_features % {group_size} == 0 and out_features % 64 == 0, "
                             f"got {in_features}x{out_features}")
        self.group_size = group_size
        # Kernel-specific layout; never saved as is (see checkpoint_tensors).
        self.register_buffer("packed", torch.empty(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("scales_and_zeros",
                             torch.empty(in_features // group_size, out_features, 2, dtype=KERNEL_DTYPE))

    def load_tensor(self, name: str, tensor: torch.Tensor) -> None:
        if name == "bias":
            return self._load_bias(tensor)
        if name == "weight":
            q, scales_and_zeros = quantize_int4(tensor, self.group_size)
            self.scales_and_zeros.copy_(scales_and_zeros.to(KERNEL_DTYPE))
        elif name == "qweight":
            q = unpack_nibbles(tensor)
        elif name == "scales_and_zeros":
            return _copy_checked(self.scales_and_zeros, tensor.to(KERNEL_DTYPE), "scales_and_zeros")
        else:
            raise KeyError(f"an int4 Linear has no tensor {name!r}")
        self.load_int4_values(q)

    def load_int4_values(self, q: torch.Tensor) -> None:
        """q: values 0..15 [out, in], any integer dtype."""
        _copy_checked(torch.empty(self.out_features, self.in_features, device="meta"), q.to("meta"), "qweight")
        # Converted a block of rows at a time (the kernel layout packs each 64 rows on their own), so
        # the int32 copy the conversion takes never spans a large matrix: for the 150k-row LM head of
        # the default model it would be 0.9 GB, the peak of the whole load.
        packed = torch.empty(self.out_features, self.in_features // 2, dtype=torch.uint8)
        for start in range(0, self.out_features, _PACK_ROWS):
            rows = q[start:start + _PACK_ROWS].to(torch.int32).contiguous()
            packed[start:start + _PACK_ROWS] = torch.ops.aten._convert_weight_to_int4pack_for_cpu(rows, 1)
        self.packed = packed

    def int4_values(self) -> torch.Tensor:
        """The 0..15 values [out, in], read out of the CPU kernel's layout: [out/64, in, 32] bytes whose
        low nibbles hold rows 0..31 and high nibbles rows 32..63 of each block of 64 outputs."""
        blocks = self.packed.reshape(self.out_features // _KERNEL_ROW_BLOCK, self.in_features, _KERNEL_ROW_BLOCK // 2)
        q = torch.cat([blocks & 0xF, blocks >> 4], dim=2)  # (N/64, K, 64)
        return q.permute(0, 2, 1).reshape(self.out_features, self.in_features)

    def checkpoint_names(self) -> tuple[str, ...]:
        return ("qweight", "scales_and_zeros") + (() if self.bias is None else ("bias",))

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        out = {"qweight": pack_nibbles(self.int4_values().to(torch.int32)), "scales_and_zeros": self.scales_and_zeros}
        return out | ({} if self.bias is None else {"bias": self.bias.data})

    def dequantized_transposed(self, rows: slice = slice(None), buffer: torch.Tensor | None = None) -> torch.Tensor:
        """The weight of output channels `rows` (whole blocks of 64) as [in, len(rows)] in the kernel
        dtype: (q - 8) * scale + zero, per group (written into the front of the flat bf16 `buffer` when
        given and model/native runs on this CPU).

        Read straight from the kernel layout ([out/64, in, 32] bytes, see `int4_values`) into
        [in, out/64, 64], so no pass permutes the expanded weight: in one pass by model/native where the
        CPU supports it, else by torch ops scaling in place.
        """
        first, stop, _ = rows.indices(self.out_features)
        num_blocks, half = (stop - first) // _KERNEL_ROW_BLOCK, _KERNEL_ROW_BLOCK // 2
        blocks = self.packed[first:stop].reshape(num_blocks, self.in_features, half)
        if native.SUPPORTED:
            out = _view_of(buffer, (self.in_features, stop - first))
            return native.expand_int4(blocks, self.scales_and_zeros, first, self.group_size, out)
        weight_t = torch.empty(self.in_features, num_blocks, _KERNEL_ROW_BLOCK, dtype=KERNEL_DTYPE)
        as_blocks = weight_t.permute(1, 0, 2)
        as_blocks[..., :half] = blocks & 0xF
        as_blocks[..., half:] = blocks >> 4
        # Contiguous copies of the scales: read in place (every other bf16 of scales_and_zeros) they
        # take the in-place ops off their vectorised loop, which made the expansion 2-3x slower.
        scales = self.scales_and_zeros[:, first:stop, 0].contiguous()
        offsets = self.scales_and_zeros[:, first:stop, 1] - 8 * scales
        by_group = weight_t.view(self.in_features // self.group_size, self.group_size, stop - first)
        by_group.mul_(scales[:, None]).add_(offsets[:, None])
        return weight_t.view(self.in_features, stop - first)

    def kernel_mm(self, x2: torch.Tensor) -> torch.Tensor:
        """x2 [rows, in] (kernel dtype) @ W^T. Decode rows (≤ 4) on one torch thread: model/native's int4
        GEMV (8.54 against 7.88 tok/s through torch's kernel, 1 thread, docs/benchmarks.md). On more
        threads torch's kernel, which runs on torch's own OpenMP workers (13.0 tok/s at 2 threads, 91%
        of the copy bandwidth); splitting our GEMV over threads of our own lost to it (gemv.c says how).
        Longer inputs: torch's int4 kernel."""
        if native.SUPPORTED and x2.shape[0] <= native.GEMV_MAX_ROWS and torch.get_num_threads() == 1:
            return _native_gemv_int4(self, x2)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.packed, self.group_size,
                                                          self.scales_and_zeros)

    def expanded_mm(self, x2: torch.Tensor) -> torch.Tensor:
        """x2 @ W^T as a bf16 GEMM on the weight expanded for this call."""
        return _sliced_mm(x2, self.out_features, self.in_features, self.dequantized_transposed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _quantized_forward(self, x)


def _native_gemv_int4(layer: Int4WeightOnlyLinear, x2: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x2.shape[0], layer.out_features)
    return native.gemv_int4(x2.float().contiguous(), layer.packed, layer.scales_and_zeros, layer.group_size, out,
                            range(layer.out_features // _KERNEL_ROW_BLOCK))


def expands_quantized(rows: int) -> bool:
    """Whether int4/int8 layers run an input of `rows` rows as a bf16 GEMM on the expanded weight (else
    through torch's int4/int8 kernel); see EXPAND_FROM_ROWS. Tests force either path by patching this."""
    return _CPU_HAS_BF16_DOT and rows >= EXPAND_FROM_ROWS


def _sliced_mm(x2: torch.Tensor, out_features: int, in_features: int, expand) -> torch.Tensor:
    """x2 @ W^T a slice of output channels at a time (see _EXPAND_MAX_ELEMENTS); `expand(rows, buffer)`
    gives the slice's weight as [in, len(rows)] bf16 (rows are whole blocks of 64 channels), written into
    `buffer`, one flat bf16 tensor that every slice of the call reuses."""
    rows_per_slice = _EXPAND_MAX_ELEMENTS // in_features // _KERNEL_ROW_BLOCK * _KERNEL_ROW_BLOCK
    step = min(out_features, max(_KERNEL_ROW_BLOCK, rows_per_slice))
    buffer = torch.empty(step * in_features, dtype=KERNEL_DTYPE)
    parts = [torch.mm(x2, expand(slice(start, start + step), buffer)) for start in range(0, out_features, step)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _view_of(buffer: torch.Tensor | None, shape: tuple[int, int]) -> torch.Tensor:
    size = shape[0] * shape[1]
    return torch.empty(shape, dtype=KERNEL_DTYPE) if buffer is None else buffer[:size].view(shape)


def _quantized_forward(layer: Int8WeightOnlyLinear | Int4WeightOnlyLinear, x: torch.Tensor) -> torch.Tensor:
    x2 = x.reshape(-1, layer.in_features).to(KERNEL_DTYPE)
    y = layer.expanded_mm(x2) if expands_quantized(x2.shape[0]) else layer.kernel_mm(x2)
    return layer._add_bias(y.to(x.dtype).reshape(*x.shape[:-1], layer.out_features))


class Embedding(nn.Module):
    """Token id -> vector lookup; loaded like the linear layers (its weight may also feed a tied lm_head)."""

    def __init__(self, num_embeddings: int, dim: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_embeddings, dim, dtype=dtype), requires_grad=False)

    def load_tensor(self, name: str, tensor: torch.Tensor) -> None:
        if name != "weight":
            raise KeyError(f"an Embedding has no tensor {name!r}")
        _copy_checked(self.weight.data, tensor.to(self.weight.dtype), "embedding weight")

    def checkpoint_names(self) -> tuple[str, ...]:
        return ("weight",)

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight.data}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens, self.weight)
