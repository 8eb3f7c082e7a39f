"""Paged attention in Triton: one flash-attention kernel over the block table for prefill and decode (fresh
prompts go to PyTorch's SDPA where it is faster: sdpa_prefill.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ember.attention import sdpa_prefill
from ember.attention.backend import AttentionBackend, AttentionLayerSpec
from ember.attention.kv_quant import is_fp8, quantize_kv
from ember.attention.metadata import AttentionMetadata

try:
    # Kernels are reached as `kernels.NAME` at call time, so tests can reload the module under TRITON_INTERPRET=1.
    from ember.attention import triton_kernels as kernels
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("the 'triton' attention backend needs the triton package: pip install triton") from exc

MAX_HEAD_DIM = 256


@dataclass(frozen=True)
class KernelConfig:
    """Tile shape and launch options of paged_attention_kernel for one kind of step."""

    block_m: int        # rows per program: queries * padded GQA group (decode: the group alone, at least 16)
    block_n: int        # keys per loop iteration
    num_warps: int
    num_stages: int
    fp8_as_f16: bool = True   # fp8 cache: widen e4m3 tiles to fp16 (q * scale and p follow), not to q's dtype
    programs_per_sm: int = 2  # key splits aim at this many programs per SM (decode-only steps with few sequences)
    # Mask only the key blocks on the causal diagonal, the window edge and the end of a split; the rest run unmasked.
    # Prefill only: decode's one masked tail block after the loop loses its prefetch (H100 decode b32 ctx1024
    # 55.9 -> 64.1 us, b64 ctx4096 362.6 -> 433.1 us).
    mask_edges_only: bool = False


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class TritonAttentionBackend(AttentionBackend):
    """Decode-only steps split each sequence's keys over several programs (flash-decoding) and merge them in a
    second kernel; prefill and mixed steps tile the queries. GQA heads that share a kv head share one program."""

    name = "triton"
    supports_cuda_graphs = True   # decode grid = (B, 1, Hkv * splits), splits fixed by meta.seq_len_bound
    # fp8 (e4m3) caches; class attributes, so benchmarks/fp8_kv_bench.py can give a whole engine a candidate.
    # Why 2 warps: an e4m3 tile is half the bytes, and 64 keys over 4 warps left each warp too little to load per
    # step (128 keys over 4 warps fixes it too, a little slower). H100, Qwen3-8B heads, decode b64 ctx4096
    # (ctx16384), write + attend, graph replay: bf16 361.7 (1421.0) us; fp8 64 keys 4 warps widened to bf16 (the
    # first config) 311.2 (1201.1); 128 keys 4 warps 213.8 (816.7); 64 keys 2 warps 203.5 (794.7) us = x1.78 (x1.79).
    fp8_decode_config = KernelConfig(block_m=16, block_n=64, num_warps=2, num_stages=4)
    # 8 x 2048 prefill: bf16 963.6 us; fp8 widened to bf16 1270.3, to fp16 1102.0 (m256 / 8 warps, 32-key or
    # 2-stage variants all slower). Masking only the edge blocks: 1100.8 -> 981.1 us (128 x 128 / 8 warps 1050.9,
    # 128 x 64 / 8 warps 1225.1), 4.5 % over bf16: the widening sits in a compute-bound loop.
    fp8_prefill_config = KernelConfig(block_m=128, block_n=64, num_warps=4, num_stages=3, mask_edges_only=True)

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(device, dtype)
        on_gpu = self.device.type == "cuda"
        self.num_sms = torch.cuda.get_device_properties(self.device).multi_processor_count if on_gpu else 4
        # Why: fewer keys per split and the reduce pass costs more than the parallelism wins. H100, Qwen3-8B shape,
        # batch 1, 1k context: 128 -> 8.5 us, 256 -> 11.2 us, 512 -> 16.1 us; no change at batch >= 32.
        self.min_split_tokens = 128
        self.max_splits = 64
        self.decode_config = KernelConfig(block_m=16, block_n=64, num_warps=4, num_stages=3)
        # H100, 8 x 2048-token prefill: 4 warps 968 us (284 TFLOP/s) vs 8 warps 1050 us; decode: 4 warps ~= 2 warps.
        # Masking only the edge blocks + longest tiles first: 938.6 us; the other shapes stay slower with it
        # (benchmarks/prefill_attn_sweep.py: 128 x 128 keys / 8 warps 1007-1036, 256 rows / 8 warps 945.5, 64 rows
        # 1005-1379, 128 x 64 / 8 warps 964-996; ptxas: 128 rows x 64 keys / 4 warps spills ~0.2 KB, 8 warps none).
        self.prefill_config = KernelConfig(block_m=128, block_n=64, num_warps=4, num_stages=3, mask_edges_only=True)
        self.use_index_copy = False   # write the cache with torch's index_copy_ instead of the Triton kernel

    # -- cache write -------------------------------------------------------------------------------------------
    def write_kv(self, kv_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor,
                 k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None) -> None:
        """Scatter k/v [T, Hkv, D] into `kv_cache` at `slot_mapping` (a negative slot marks a padding token).
        An fp8 cache needs the layer's k_scale / v_scale (fp32 scalars on the cache's device)."""
        t, hkv, d = k.shape
        if t == 0:
            return
        fp8 = is_fp8(kv_cache.dtype)
        if fp8 and (k_scale is None or v_scale is None):
            raise ValueError("writing an fp8 KV cache needs k_scale and v_scale")
        if self.use_index_copy:
            flat = kv_cache.view(2, -1, hkv, d)
            if fp8:
                flat = flat.view(torch.uint8)   # why: index_copy_ has no float8 kernel on CPU
                k, v = quantize_kv(k, k_scale).view(torch.uint8), quantize_kv(v, v_scale).view(torch.uint8)
            flat[0].index_copy_(0, slot_mapping, k.to(flat.dtype))
            flat[1].index_copy_(0, slot_mapping, v.to(flat.dtype))
            return
        k, v = _last_dim_contiguous(k), _last_dim_contiguous(v)
        kernels.write_kv_kernel[(t, hkv)](
            k, v, kv_cache, slot_mapping, k_scale if fp8 else kv_cache, v_scale if fp8 else kv_cache,
            k.stride(0), k.stride(1), v.stride(0), v.stride(1), kv_cache[0].numel(),
            HKV=hkv, D=d, D_PAD=_pow2(d), FP8=fp8, EXACT_FP8_ROUNDING=fp8 and kv_cache.device.type == "cpu",
            num_warps=1)

    # -- attention ---------------------------------------------------------------------------------------------
    def forward(self, layer: AttentionLayerSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                kv_cache: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        hq, hkv, d = layer.num_heads, layer.num_kv_heads, layer.head_dim
        _check_supported(q, kv_cache, hq, hkv, d)
        fp8 = is_fp8(kv_cache.dtype)
        # Unused pointers of a non-fp8 cache still have to be device tensors: the cache stands in for them.
        k_scale, v_scale = (layer.k_scale, layer.v_scale) if fp8 else (kv_cache, kv_cache)
        if fp8 and k_scale.device != kv_cache.device:
            raise ValueError(f"layer {layer.layer_idx}: k_scale / v_scale live on {k_scale.device}, the fp8 KV cache "
                             f"on {kv_cache.device}: call Attention.kv_scales_to_(device) (the ModelRunner does)")
        self.write_kv(kv_cache, k, v, meta.slot_mapping, k_scale, v_scale)
        if sdpa_prefill.eligible(layer, q, fp8, meta):      # fresh prompts: SDPA over their own k/v
            return sdpa_prefill.attend(layer, q, k, v, meta)
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        if q.shape[0] == 0:
            return out
        q = _last_dim_contiguous(q)
        group = hq // hkv
        decode = meta.max_query_len == 1
        if fp8:
            cfg = self.fp8_decode_config if decode else self.fp8_prefill_config
        else:
            cfg = self.decode_config if decode else self.prefill_config
        if d > 128:   # why: a [128, 256] fp32 accumulator spills (ptxas -v, sm_90): halve the tiles
            cfg = replace(cfg, block_m=max(16, cfg.block_m // 2), block_n=max(16, cfg.block_n // 2),
                          num_warps=min(cfg.num_warps, 4), num_stages=2)
        f16_dot = fp8 and cfg.fp8_as_f16 and q.dtype != torch.float32
        group_pad = max(16, _pow2(group)) if decode else _pow2(group)
        block_q = max(1, cfg.block_m // group_pad)
        if group_pad < 16 and block_q * group_pad < 16:   # tl.dot needs 16 rows
            block_q = _cdiv(16, group_pad)
        tiles = _cdiv(meta.max_query_len, block_q)
        splits = self._num_splits(meta, layer.sliding_window, block_q, programs=meta.num_seqs * tiles * hkv,
                                  per_sm=cfg.programs_per_sm)

        t = q.shape[0]
        if splits > 1:
            part_acc = torch.empty(t, hq, splits, d, dtype=torch.float32, device=q.device)
            part_m = torch.empty(t, hq, splits, dtype=torch.float32, device=q.device)
            part_l = torch.empty_like(part_m)
        else:
            part_acc = part_m = part_l = out   # unused by the kernel when NUM_SPLITS == 1
        d_pad = max(16, _pow2(d))
        kernels.paged_attention_kernel[(meta.num_seqs, tiles, hkv * splits)](
            q, kv_cache, out, part_acc, part_m, part_l,
            meta.block_tables, meta.seq_lens, meta.query_start_loc, k_scale, v_scale,
            q.stride(0), q.stride(1), out.stride(0), out.stride(1), meta.block_tables.stride(0), kv_cache[0].numel(),
            layer.scale, layer.logits_soft_cap or 0.0, layer.sliding_window or 0, splits,
            HQ=hq, HKV=hkv, GROUP=group, GROUP_PAD=group_pad, D=d, D_PAD=d_pad, PAGE=kv_cache.shape[2],
            BLOCK_Q=block_q, BLOCK_N=cfg.block_n,
            USE_SOFT_CAP=layer.logits_soft_cap is not None, USE_WINDOW=layer.sliding_window is not None,
            FP32_DOT=_fp32_dot(q) and not f16_dot, KV_FP8=fp8, F16_DOT=f16_dot,
            MASK_EDGES_ONLY=cfg.mask_edges_only,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        if splits > 1:
            kernels.reduce_splits_kernel[(t, hq)](
                part_acc, part_m, part_l, out, out.stride(0), out.stride(1), splits,
                HQ=hq, D=d, D_PAD=d_pad, SPLITS_PAD=_pow2(splits), num_warps=4)
        return out

    def _num_splits(self, meta: AttentionMetadata, window: int | None, block_q: int, programs: int,
                    per_sm: int) -> int:
        """Enough key splits to give every SM about `per_sm` programs, never under min_split_tokens keys per split.

        Decided from the host lists alone (no device sync). Under CUDA-graph capture `meta.seq_len_bound` fixes the
        count per batch bucket; the kernel derives each split's key span from the device seq_lens at replay."""
        bound = getattr(meta, "seq_len_bound", None)   # (test doubles of the metadata may lack the field)
        longest = bound if bound is not None else meta.max_seq_len
        keys = longest if window is None else min(longest, window + block_q - 1)
        want = _cdiv(per_sm * self.num_sms, max(programs, 1))
        return max(1, min(want, _cdiv(keys, self.min_split_tokens), self.max_splits))


def _fp32_dot(q: torch.Tensor) -> bool:
    """fp32 inputs get exact fp32 dots (not tf32). On CPU tensors (TRITON_INTERPRET=1) bf16 is upcast too:
    the interpreter's bf16 tl.dot returns garbage (triton 3.9)."""
    return q.dtype == torch.float32 or (q.device.type == "cpu" and q.dtype == torch.bfloat16)


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _check_supported(q: torch.Tensor, kv_cache: torch.Tensor, hq: int, hkv: int, d: int) -> None:
    if d > MAX_HEAD_DIM:
        raise ValueError(f"the triton attention backend supports head_dim <= {MAX_HEAD_DIM}, got {d}: "
                         "use the 'torch' attention backend for this model")
    if hq % hkv:
        raise ValueError(f"num_heads ({hq}) must be a multiple of num_kv_heads ({hkv})")
    if not kv_cache.is_contiguous():
        raise ValueError("the triton attention backend needs a contiguous kv_cache [2, blocks, block_size, Hkv, D]")
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"the triton attention backend supports fp16/bf16/fp32 queries, got {q.dtype}")
