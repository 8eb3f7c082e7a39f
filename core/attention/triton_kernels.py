"""Triton kernels behind the triton attention backend: KV-cache write, paged flash attention, split-KV reduce."""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)  # globals reach @jit code only as constexpr
FP8_MAX = tl.constexpr(448.0)             # largest finite e4m3 value


@triton.jit
def _fp8_range(x, scale, EXACT_ROUNDING: tl.constexpr):
    """x -> clamp(x / scale, -448, 448) in fp32, ready for the cast to e4m3."""
    x = x.to(tl.float32) / scale
    x = tl.minimum(tl.maximum(x, -FP8_MAX), FP8_MAX)
    if EXACT_ROUNDING:
        # why: the interpreter's fp32 -> e4m3 cast loses the rounding carry (31.4 -> 16, triton 3.9), so round to
        # the e4m3 grid here and the cast is exact. The step is 2**(exponent - 3), 2**-9 for e4m3 subnormals.
        e = tl.maximum(((x.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127, -6)
        step = ((e + 124) << 23).to(tl.float32, bitcast=True)
        magic = step * 12582912.0                                   # 1.5 * 2**23 steps: x + magic rounds to a step
        x = (x + magic) - magic
    return x


@triton.jit
def write_kv_kernel(k_ptr, v_ptr, cache_ptr, slot_ptr, k_scale_ptr, v_scale_ptr,
                    stride_kt, stride_kh, stride_vt, stride_vh, v_plane,
                    HKV: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr,
                    FP8: tl.constexpr, EXACT_FP8_ROUNDING: tl.constexpr):
    """Grid (T, Hkv): copy k[t, h] and v[t, h] into cache slot slot_mapping[t]; a negative slot is padding.
    FP8: the cache is e4m3 and gets clamp(k / k_scale), clamp(v / v_scale) (scales: fp32 device scalars)."""
    t = tl.program_id(0)
    h = tl.program_id(1)
    slot = tl.load(slot_ptr + t)
    if slot >= 0:
        offs_d = tl.arange(0, D_PAD)
        d_ok = offs_d < D
        dst = slot * (HKV * D) + h * D + offs_d                     # int64: caches pass 2**31 elements
        k = tl.load(k_ptr + t * stride_kt + h * stride_kh + offs_d, mask=d_ok)
        v = tl.load(v_ptr + t * stride_vt + h * stride_vh + offs_d, mask=d_ok)
        if FP8:   # round to nearest even, as torch's .to(float8_e4m3fn) that the torch backend uses
            k = _fp8_range(k, tl.load(k_scale_ptr), EXACT_FP8_ROUNDING).to(cache_ptr.dtype.element_ty,
                                                                             fp_downcast_rounding="rtne")
            v = _fp8_range(v, tl.load(v_scale_ptr), EXACT_FP8_ROUNDING).to(cache_ptr.dtype.element_ty,
                                                                             fp_downcast_rounding="rtne")
        tl.store(cache_ptr + dst, k.to(cache_ptr.dtype.element_ty), mask=d_ok)
        tl.store(cache_ptr + v_plane + dst, v.to(cache_ptr.dtype.element_ty), mask=d_ok)


@triton.jit
def _attend_keys(acc, m_i, l_i, q, q_pos, start, stop, cache_ptr, bt_row_ptr, v_plane, kv_head_off, s_hi,
                 score_scale, qk_scale, soft_cap, window, offs_d, d_ok,
                 HKV: tl.constexpr, D: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr,
                 USE_SOFT_CAP: tl.constexpr, USE_WINDOW: tl.constexpr, FP32_DOT: tl.constexpr):
    """Online softmax over the key blocks start, start + BLOCK_N, ... < stop, gathered token by token through the
    block table. MASKED: some keys may be invisible to some rows (causal diagonal, window edge, past s_hi);
    otherwise every key is visible to every row, so the masks and the empty-row guard are left out."""
    for blk_start in range(start, stop, BLOCK_N):
        offs_n = blk_start + tl.arange(0, BLOCK_N)
        if MASKED:
            n_ok = offs_n < s_hi
            blk = tl.load(bt_row_ptr + offs_n // PAGE, mask=n_ok, other=0)
        else:
            blk = tl.load(bt_row_ptr + offs_n // PAGE)
        kv_off = (blk.to(tl.int64) * PAGE + offs_n % PAGE) * (HKV * D) + kv_head_off     # [N]
        if MASKED:
            k = tl.load(cache_ptr + kv_off[None, :] + offs_d[:, None],
                        mask=n_ok[None, :] & d_ok[:, None], other=0.0).to(q.dtype)       # [D, N]
        else:
            k = tl.load(cache_ptr + kv_off[None, :] + offs_d[:, None], mask=d_ok[:, None], other=0.0).to(q.dtype)
        if FP32_DOT:
            s = tl.dot(q, k, input_precision="ieee")
        else:
            s = tl.dot(q, k)                                                             # [M, N] fp32
        if USE_SOFT_CAP:
            s = s * qk_scale / soft_cap
            s = soft_cap * (1.0 - 2.0 / (tl.exp(2.0 * s) + 1.0)) * LOG2E               # cap * tanh, log2 units
        if MASKED:
            # why scale-then-mask here: decode runs only this path, and this is the arithmetic its configs were tuned on
            s = s * score_scale
            visible = n_ok[None, :] & (offs_n[None, :] <= q_pos[:, None])
            if USE_WINDOW:
                visible = visible & ((q_pos[:, None] - offs_n[None, :]) < window)
            s = tl.where(visible, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)    # rows with nothing visible yet stay at 0
            p = tl.exp2(s - m_use[:, None])
        else:
            # why: scaling the max instead of the scores makes s * scale - m one fma per score (score_scale > 0)
            m_new = tl.maximum(m_i, tl.max(s, 1) * score_scale)
            m_use = m_new
            p = tl.exp2(s * score_scale - m_use[:, None])
        alpha = tl.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        if MASKED:
            v = tl.load(cache_ptr + v_plane + kv_off[:, None] + offs_d[None, :],
                        mask=n_ok[:, None] & d_ok[None, :], other=0.0).to(q.dtype)       # [N, D]
        else:
            v = tl.load(cache_ptr + v_plane + kv_off[:, None] + offs_d[None, :], mask=d_ok[None, :],
                        other=0.0).to(q.dtype)
        if FP32_DOT:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def paged_attention_kernel(
    q_ptr, cache_ptr, out_ptr, part_acc_ptr, part_m_ptr, part_l_ptr,
    block_tables_ptr, seq_lens_ptr, query_start_ptr, k_scale_ptr, v_scale_ptr,
    stride_qt, stride_qh, stride_ot, stride_oh, stride_bt, v_plane,
    scale, soft_cap, window, NUM_SPLITS,
    HQ: tl.constexpr, HKV: tl.constexpr, GROUP: tl.constexpr, GROUP_PAD: tl.constexpr,
    D: tl.constexpr, D_PAD: tl.constexpr, PAGE: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr,
    USE_SOFT_CAP: tl.constexpr, USE_WINDOW: tl.constexpr, FP32_DOT: tl.constexpr, KV_FP8: tl.constexpr,
    F16_DOT: tl.constexpr, MASK_EDGES_ONLY: tl.constexpr,
):
    """Grid (B, query tiles, Hkv * NUM_SPLITS). NUM_SPLITS is a run-time argument: it follows the context
    length, and a constexpr would compile a new kernel each time it changes.

    One program takes BLOCK_Q queries of one sequence times the GROUP query heads that share kv head `kvh`
    (rows = BLOCK_Q * GROUP_PAD), so each K/V tile is loaded once for the whole group, and walks its share of
    the visible keys, gathered token by token through the block table. With NUM_SPLITS == 1 it writes the
    normalised output; otherwise it writes an unnormalised partial (acc, running max m, sum l) for reduce.
    MASK_EDGES_ONLY: key blocks that every row sees whole skip the masks; only the blocks on the causal diagonal,
    the window edge and the end of the split are masked (else every block is).
    KV_FP8: the cache is e4m3; K and V tiles are widened to q's dtype as loaded, k_scale folds into the score
    scale and v_scale into the fp32 accumulator, so the tiles are never multiplied element by element.
    F16_DOT (with KV_FP8): q * scale is rounded to fp16 once, so the tiles widen to fp16 and P goes to fp16.
    """
    seq = tl.program_id(0)
    # why: the last query tiles see the most keys; launched first, they leave the short ones to fill the tail.
    # H100, 8 x 2048 prefill: 957.2 -> 938.6 us.
    tile = tl.num_programs(1) - 1 - tl.program_id(1)
    kvh = tl.program_id(2) // NUM_SPLITS
    split = tl.program_id(2) % NUM_SPLITS
    q_start = tl.load(query_start_ptr + seq)
    q_len = tl.load(query_start_ptr + seq + 1) - q_start
    if tile * BLOCK_Q >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + seq)
    ctx_len = seq_len - q_len                                        # position of this sequence's query 0

    BLOCK_M: tl.constexpr = BLOCK_Q * GROUP_PAD
    rows = tl.arange(0, BLOCK_M)
    qi = tile * BLOCK_Q + rows // GROUP_PAD                          # query index inside the sequence
    g = rows % GROUP_PAD
    row_ok = (qi < q_len) & (g < GROUP)
    q_pos = ctx_len + qi
    head = kvh * GROUP + g
    offs_d = tl.arange(0, D_PAD)
    d_ok = offs_d < D
    q_tok = (q_start + qi).to(tl.int64)
    q = tl.load(q_ptr + q_tok[:, None] * stride_qt + head[:, None] * stride_qh + offs_d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)    # [M, D]
    if FP32_DOT:
        q = q.to(tl.float32)                                         # K, V and P follow q's dtype below

    # Keys this tile can see: [lo, hi); this split takes an even, BLOCK_N-aligned share of them.
    q_first = ctx_len + tile * BLOCK_Q                               # position of the tile's first query
    hi = tl.minimum(q_first + BLOCK_Q, seq_len)
    lo = 0
    if USE_WINDOW:
        lo = tl.maximum(q_first - window + 1, 0)
    span = tl.cdiv(tl.cdiv(hi - lo, NUM_SPLITS), BLOCK_N) * BLOCK_N
    s_lo = lo + split * span
    s_hi = tl.minimum(s_lo + span, hi)

    qk_scale = scale
    if KV_FP8:
        qk_scale = scale * tl.load(k_scale_ptr)                      # q . (k8 * k_scale) = (q . k8) * k_scale
        if F16_DOT:
            # why: sm_89+ widens an e4m3 pair to f16x2 in one cvt; to bf16 takes two more (cvt.bf16.f16 each).
            # H100 decode b64 ctx4096, 128-key tiles: 263.3 us widened to bf16, 213.8 us to fp16; prefill 8 x 2048
            # 1270 -> 1102 us. q is pre-scaled (|q * scale| << 65504); fp16 keeps 3 more mantissa bits than bf16.
            q = (q.to(tl.float32) * scale).to(tl.float16)
            qk_scale = tl.load(k_scale_ptr)
    if USE_SOFT_CAP:
        score_scale = 1.0                                            # the cap's tanh already scaled to log2 units
    else:
        score_scale = qk_scale * LOG2E
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    bt_row_ptr = block_tables_ptr + seq * stride_bt
    kv_head_off = kvh * D
    if MASK_EDGES_ONLY:
        # Keys [full_lo, full_hi) are visible to every row of the tile; whole BLOCK_N blocks of them, counted from
        # s_lo, form [mid_lo, mid_hi) and go unmasked, the blocks either side masked.
        s_lo = tl.minimum(s_lo, s_hi)                                # a split past the end stays empty
        full_hi = tl.minimum(q_first + 1, s_hi)
        mid_lo = s_lo
        if USE_WINDOW:
            full_lo = hi - window                                    # the tile's last query sees keys from here
            mid_lo = s_lo + tl.cdiv(tl.maximum(full_lo - s_lo, 0), BLOCK_N) * BLOCK_N
            mid_lo = tl.minimum(mid_lo, s_hi)
            acc, m_i, l_i = _attend_keys(acc, m_i, l_i, q, q_pos, s_lo, mid_lo, cache_ptr, bt_row_ptr, v_plane,
                                         kv_head_off, s_hi, score_scale, qk_scale, soft_cap, window, offs_d, d_ok,
                                         HKV, D, PAGE, BLOCK_N, True, USE_SOFT_CAP, USE_WINDOW, FP32_DOT)
        mid_hi = tl.maximum(s_lo + tl.maximum(full_hi - s_lo, 0) // BLOCK_N * BLOCK_N, mid_lo)
        acc, m_i, l_i = _attend_keys(acc, m_i, l_i, q, q_pos, mid_lo, mid_hi, cache_ptr, bt_row_ptr, v_plane,
                                     kv_head_off, s_hi, score_scale, qk_scale, soft_cap, window, offs_d, d_ok,
                                     HKV, D, PAGE, BLOCK_N, False, USE_SOFT_CAP, USE_WINDOW, FP32_DOT)
        acc, m_i, l_i = _attend_keys(acc, m_i, l_i, q, q_pos, mid_hi, s_hi, cache_ptr, bt_row_ptr, v_plane,
                                     kv_head_off, s_hi, score_scale, qk_scale, soft_cap, window, offs_d, d_ok,
                                     HKV, D, PAGE, BLOCK_N, True, USE_SOFT_CAP, USE_WINDOW, FP32_DOT)
    else:
        acc, m_i, l_i = _attend_keys(acc, m_i, l_i, q, q_pos, s_lo, s_hi, cache_ptr, bt_row_ptr, v_plane,
                                     kv_head_off, s_hi, score_scale, qk_scale, soft_cap, window, offs_d, d_ok,
                                     HKV, D, PAGE, BLOCK_N, True, USE_SOFT_CAP, USE_WINDOW, FP32_DOT)

    if KV_FP8:
        acc = acc * tl.load(v_scale_ptr)                             # p @ (v8 * v_scale) = (p @ v8) * v_scale
    if NUM_SPLITS == 1:
        out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
        tl.store(out_ptr + q_tok[:, None] * stride_ot + head[:, None] * stride_oh + offs_d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    else:
        part = (q_tok * HQ + head) * NUM_SPLITS + split                                  # [M]
        tl.store(part_acc_ptr + part[:, None] * D + offs_d[None, :], acc, mask=row_ok[:, None] & d_ok[None, :])
        tl.store(part_m_ptr + part, m_i, mask=row_ok)
        tl.store(part_l_ptr + part, l_i, mask=row_ok)


@triton.jit
def reduce_splits_kernel(part_acc_ptr, part_m_ptr, part_l_ptr, out_ptr, stride_ot, stride_oh, NUM_SPLITS,
                         HQ: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr, SPLITS_PAD: tl.constexpr):
    """Grid (T, Hq): merge the NUM_SPLITS partial softmaxes of one (token, head) row into the output."""
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    offs_s = tl.arange(0, SPLITS_PAD)
    s_ok = offs_s < NUM_SPLITS
    offs_d = tl.arange(0, D_PAD)
    d_ok = offs_d < D
    base = (t * HQ + h) * NUM_SPLITS
    m = tl.load(part_m_ptr + base + offs_s, mask=s_ok, other=float("-inf"))
    l = tl.load(part_l_ptr + base + offs_s, mask=s_ok, other=0.0)
    m_max = tl.max(m, 0)
    m_max = tl.where(m_max == float("-inf"), 0.0, m_max)
    w = tl.exp2(m - m_max)                                            # empty splits (m = -inf) weigh 0
    acc = tl.load(part_acc_ptr + (base + offs_s)[:, None] * D + offs_d[None, :],
                  mask=s_ok[:, None] & d_ok[None, :], other=0.0)
    denom = tl.sum(l * w, 0)
    out = tl.sum(acc * w[:, None], 0) / tl.where(denom > 0.0, denom, 1.0)
    tl.store(out_ptr + t * stride_ot + h * stride_oh + offs_d, out.to(out_ptr.dtype.element_ty), mask=d_ok)
