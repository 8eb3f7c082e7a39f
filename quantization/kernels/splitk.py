"""Serial split-K: the K splits of one output tile write fp32 partials; the last split to finish adds them in order
and stores the tile. One launch, deterministic, no zero-fill or cast kernels (why: under CUDA graphs those two extra
launches per linear cost more than the split-K saves at decode sizes).

The last split is found with a per-tile arrival counter (an int32 that the last split resets to 0, so the counters
are all zero between launches). Kernels run one after another on one stream, so every kernel shares one workspace
and one counter array per device (`workspace`), allocated on first use (before CUDA-graph capture: the engine warms
up eagerly first). The ordering is CUTLASS's semaphore pattern: all threads' partial stores, a CTA barrier, then one
acq_rel atomic at GPU scope; the last split reads the partials through L2 (".cg"), never a stale L1 line.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

WORKSPACE_FLOATS = 1 << 22      # 16 MiB of fp32 partials per device
MAX_TILES = 1 << 16             # arrival counters
_BUFFERS: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def workspace(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 partials [WORKSPACE_FLOATS], int32 counters [MAX_TILES], all zero) for `device`."""
    if device not in _BUFFERS:
        _BUFFERS[device] = (torch.empty(WORKSPACE_FLOATS, dtype=torch.float32, device=device),
                            torch.zeros(MAX_TILES, dtype=torch.int32, device=device))
    return _BUFFERS[device]


def max_split(tiles: int, tile_elems: int, wanted: int) -> int:
    """The largest split <= wanted whose partials and counters fit the workspace (1: no workspace needed)."""
    split = wanted
    while split > 1 and (tiles * tile_elems * split > WORKSPACE_FLOATS or tiles > MAX_TILES):
        split //= 2
    return max(split, 1)


@triton.jit
def store_tile(acc, extra, y_ptrs, mask, ws_ptr, cnt_ptr, tile, pid_k, SPLIT: tl.constexpr,
               S0: tl.constexpr, S1: tl.constexpr):
    """y = sum over the SPLIT partials `acc` [S0, S1] fp32 of output tile `tile` (this program's is split pid_k),
    plus `extra` (bias; broadcast to [S0, S1]), stored to y_ptrs[mask] in y's dtype by whichever split is last."""
    if SPLIT == 1:
        tl.store(y_ptrs, (acc + extra).to(y_ptrs.dtype.element_ty), mask=mask)
    else:
        offs = tl.arange(0, S0)[:, None] * S1 + tl.arange(0, S1)[None, :]
        base = ws_ptr + tile.to(tl.int64) * (SPLIT * S0 * S1)
        tl.store(base + pid_k * (S0 * S1) + offs, acc)
        tl.debug_barrier()
        arrived = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT - 1:
            total = tl.load(base + offs, cache_modifier=".cg")
            for s in range(1, SPLIT):        # in split order: the sum does not depend on who finished last
                total += tl.load(base + s * (S0 * S1) + offs, cache_modifier=".cg")
            tl.store(y_ptrs, (total + extra).to(y_ptrs.dtype.element_ty), mask=mask)
            tl.atomic_xchg(cnt_ptr + tile, 0)
