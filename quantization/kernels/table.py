"""The quantized-kernel dispatch table measured on an H100 (benchmarks/quant_bench.py): best config per shape and M.

(kind, N, K, M bucket) -> dispatch.Config fields. Measured 2026-11-24 on an H100 80GB HBM3, torch 2.11, triton 3.6,
Qwen3-8B shapes, random weights, each config checked against the fp64 dequant-matmul reference; the comment is
the kernel's time and bf16 F.linear's in the same run (CUDA graph of back-to-back calls, HBM-resident weights).
The best kernel is listed even where bf16 was faster: a quantized module has no bf16 weight to fall back to.
W4A8_AWQ runs its staged FP8 weight and reads the "fp8" rows (dispatch.lookup). The session-5 rows (the packed
half2 GEMV of w4_gemv.py, "h2") name the K-major GEMV it replaced and tinygemm (which serves INT4 in bf16 first);
INT4 at M = 4 keeps tl.dot, which beat h2 there. The session-6 rows: h2 with double-buffered loads (num_stages 2)
and INT4 steps inside one group (block_k 128), each against the session-5 row in the same run; 4-bit at M = 256
dequantizes to a dense weight for cuBLAS ("dq", dequant.py), timed against the best tl.dot config in one run.
The session-7 rows: INT4 h2 steps over whole groups (block_k 256: two scales a row a step), against the session-6
row (M = 1) or the table's tl.dot (M = 2) in one run; bf16 INT4 runs tinygemm at these M, so these rows serve fp16
models and EMBER_INT4_TINYGEMM=0. The session-8 rows: the 4-bit tl.dot kernels with TMA tile loads (and INT4 with exact
integer weights; w4a16.py), M = 4 (INT4) or 8 (NVFP4) to 256, each against bf16 and, in the same run, tinygemm (INT4
M = 4), the half2 GEMV (NVFP4 M = 8, which tl.dot now beats) and the dense-weight path (M >= 128: INT4 tl.dot now
beats it at 128 and 256, NVFP4 at 128 and on two of four shapes at 256). The session-9 rows: FP8 and FP8RowWise at
M = 1-8 (the FP8-weight half2 GEMV "h2", w8_gemv.py, against w8.py's GEMV and act-quant + cuBLAS "mm" in the same
run) and FP8RowWise at M = 16-256 (its new rowwise-scaled cuBLAS path "mm", against w8.py's tl.dot). The session-10
rows: FP8 at M = 1-2 re-measured with candidates that keep a whole 2048-element K slice of a row in flight a step.
"""

MEASURED: dict[tuple[str, int, int, int], tuple] = {
    ('fp8', 6144, 4096, 1): ('h2', 1, 8, 1024, 4, 1, 1),  # 11.0 us (ew 16.2, mm 14.3), bf16 F.linear 21.6 us (session 9)
    ('fp8', 6144, 4096, 2): ('h2', 2, 8, 512, 4, 2, 1),  # 11.8 us (session-9 row 12.0), bf16 F.linear 21.4 us (session 10)
    ('fp8', 6144, 4096, 4): ('h2', 4, 16, 512, 4, 2, 1),  # 13.7 us (ew 34.6, mm 14.7), bf16 F.linear 21.7 us (session 9)
    ('fp8', 6144, 4096, 8): ('mm', 0, 0, 0),  # 14.6 us (h2 18.5), bf16 F.linear 21.9 us (session 9)
    ('fp8', 6144, 4096, 16): ('mm', 0, 0, 0),  # 14.4 us, bf16 F.linear 21.3 us
    ('fp8', 6144, 4096, 64): ('mm', 0, 0, 0),  # 15.2 us, bf16 F.linear 21.2 us
    ('fp8', 6144, 4096, 256): ('mm', 0, 0, 0),  # 16.3 us, bf16 F.linear 24.0 us
    ('int8_wo', 6144, 4096, 1): ('ew', 1, 2, 1024, 4, 1),  # 16.4 us, bf16 F.linear 20.6 us
    ('int8_wo', 6144, 4096, 2): ('ew', 2, 4, 512, 4, 1),  # 19.5 us, bf16 F.linear 21.2 us
    ('int8_wo', 6144, 4096, 4): ('dot', 16, 32, 128, 4, 3),  # 28.8 us, bf16 F.linear 21.3 us
    ('int8_wo', 6144, 4096, 8): ('dot', 16, 32, 256, 4, 3),  # 20.1 us, bf16 F.linear 20.9 us
    ('int8_wo', 6144, 4096, 16): ('dot', 16, 32, 256, 4, 3),  # 18.5 us, bf16 F.linear 21.3 us
    ('int8_wo', 6144, 4096, 64): ('dot', 64, 64, 128, 4, 3),  # 21.5 us, bf16 F.linear 21.2 us
    ('int8_wo', 6144, 4096, 256): ('dot', 128, 128, 64, 8, 3),  # 42.2 us, bf16 F.linear 24.0 us
    ('int8_sq', 6144, 4096, 1): ('ew', 1, 2, 1024, 4, 1),  # 18.3 us, bf16 F.linear 20.6 us
    ('int8_sq', 6144, 4096, 2): ('ew', 2, 4, 512, 4, 1),  # 20.8 us, bf16 F.linear 21.2 us
    ('int8_sq', 6144, 4096, 4): ('dot', 16, 32, 128, 4, 3),  # 30.3 us, bf16 F.linear 21.3 us
    ('int8_sq', 6144, 4096, 8): ('dot', 16, 64, 128, 4, 3),  # 22.6 us, bf16 F.linear 20.9 us
    ('int8_sq', 6144, 4096, 16): ('dot', 16, 64, 128, 4, 3),  # 21.4 us, bf16 F.linear 21.3 us
    ('int8_sq', 6144, 4096, 64): ('mm', 0, 0, 0),  # 25.9 us, bf16 F.linear 21.2 us
    ('int8_sq', 6144, 4096, 256): ('mm', 0, 0, 0),  # 48.0 us, bf16 F.linear 24.0 us
    ('fp8', 4096, 4096, 1): ('h2', 1, 8, 2048, 8, 1, 1),  # 8.3 us (session-9 row 8.4), bf16 F.linear 16.7 us (session 10)
    ('fp8', 4096, 4096, 2): ('h2', 2, 8, 1024, 4, 2, 1),  # 9.3 us (session-9 row 9.6), bf16 F.linear 16.6 us (session 10)
    ('fp8', 4096, 4096, 4): ('mm', 0, 0, 0),  # 10.9 us (ew 27.7, h2 11.0), bf16 F.linear 16.7 us (session 9)
    ('fp8', 4096, 4096, 8): ('mm', 0, 0, 0),  # 10.8 us (h2 13.5), bf16 F.linear 16.7 us (session 9)
    ('fp8', 4096, 4096, 16): ('mm', 0, 0, 0),  # 11.1 us, bf16 F.linear 17.0 us
    ('fp8', 4096, 4096, 64): ('mm', 0, 0, 0),  # 12.2 us, bf16 F.linear 15.2 us
    ('fp8', 4096, 4096, 256): ('mm', 0, 0, 0),  # 14.4 us, bf16 F.linear 19.5 us
    ('int8_wo', 4096, 4096, 1): ('ew', 1, 4, 512, 4, 1),  # 11.4 us, bf16 F.linear 17.2 us
    ('int8_wo', 4096, 4096, 2): ('ew', 2, 4, 1024, 8, 1),  # 17.3 us, bf16 F.linear 16.8 us
    ('int8_wo', 4096, 4096, 4): ('ew', 4, 4, 256, 4, 1),  # 18.2 us, bf16 F.linear 16.7 us
    ('int8_wo', 4096, 4096, 8): ('dot', 16, 32, 256, 4, 3),  # 14.9 us, bf16 F.linear 16.7 us
    ('int8_wo', 4096, 4096, 16): ('dot', 16, 32, 256, 4, 3),  # 12.7 us, bf16 F.linear 17.0 us
    ('int8_wo', 4096, 4096, 64): ('dot', 64, 64, 128, 4, 3),  # 20.6 us, bf16 F.linear 15.2 us
    ('int8_wo', 4096, 4096, 256): ('dot', 64, 64, 128, 4, 3),  # 31.2 us, bf16 F.linear 19.5 us
    ('int8_sq', 4096, 4096, 1): ('ew', 1, 4, 512, 4, 1),  # 12.2 us, bf16 F.linear 17.2 us
    ('int8_sq', 4096, 4096, 2): ('ew', 2, 4, 512, 4, 1),  # 18.0 us, bf16 F.linear 16.8 us
    ('int8_sq', 4096, 4096, 4): ('dot', 16, 32, 128, 4, 3),  # 24.1 us, bf16 F.linear 16.7 us
    ('int8_sq', 4096, 4096, 8): ('dot', 16, 32, 256, 4, 3),  # 17.3 us, bf16 F.linear 16.7 us
    ('int8_sq', 4096, 4096, 16): ('dot', 16, 32, 256, 4, 3),  # 16.4 us, bf16 F.linear 17.0 us
    ('int8_sq', 4096, 4096, 64): ('mm', 0, 0, 0),  # 23.8 us, bf16 F.linear 15.2 us
    ('int8_sq', 4096, 4096, 256): ('mm', 0, 0, 0),  # 35.8 us, bf16 F.linear 19.5 us
    ('fp8', 24576, 4096, 1): ('h2', 1, 8, 1024, 4, 1, 1),  # 35.2 us (ew 46.1, mm 41.1), bf16 F.linear 73.0 us (session 9)
    ('fp8', 24576, 4096, 2): ('h2', 2, 32, 256, 4, 1, 1),  # 35.9 us (ew 79.6, mm 41.1), bf16 F.linear 73.1 us (session 9)
    ('fp8', 24576, 4096, 4): ('h2', 4, 32, 512, 4, 1, 1),  # 39.6 us (ew 121.1, mm 41.5), bf16 F.linear 73.5 us (session 9)
    ('fp8', 24576, 4096, 8): ('mm', 0, 0, 0),  # 41.3 us (h2 58.3), bf16 F.linear 73.8 us (session 9)
    ('fp8', 24576, 4096, 16): ('mm', 0, 0, 0),  # 41.5 us, bf16 F.linear 74.3 us
    ('fp8', 24576, 4096, 64): ('mm', 0, 0, 0),  # 43.4 us, bf16 F.linear 75.8 us
    ('fp8', 24576, 4096, 256): ('mm', 0, 0, 0),  # 52.4 us, bf16 F.linear 84.3 us
    ('int8_wo', 24576, 4096, 1): ('ew', 1, 4, 512, 4, 1),  # 52.4 us, bf16 F.linear 72.9 us
    ('int8_wo', 24576, 4096, 2): ('ew', 2, 4, 512, 4, 1),  # 66.3 us, bf16 F.linear 73.1 us
    ('int8_wo', 24576, 4096, 4): ('dot', 16, 32, 128, 4, 3),  # 68.0 us, bf16 F.linear 73.4 us
    ('int8_wo', 24576, 4096, 8): ('dot', 16, 64, 128, 4, 3),  # 44.5 us, bf16 F.linear 73.7 us
    ('int8_wo', 24576, 4096, 16): ('dot', 16, 64, 128, 4, 3),  # 40.8 us, bf16 F.linear 74.3 us
    ('int8_wo', 24576, 4096, 64): ('dot', 64, 64, 128, 4, 3),  # 47.4 us, bf16 F.linear 75.8 us
    ('int8_wo', 24576, 4096, 256): ('dot', 128, 128, 64, 8, 3),  # 120.6 us, bf16 F.linear 84.3 us
    ('int8_sq', 24576, 4096, 1): ('ew', 1, 4, 512, 4, 1),  # 56.4 us, bf16 F.linear 72.9 us
    ('int8_sq', 24576, 4096, 2): ('ew', 2, 4, 512, 4, 1),  # 73.3 us, bf16 F.linear 73.1 us
    ('int8_sq', 24576, 4096, 4): ('dot', 16, 32, 128, 4, 3),  # 72.1 us, bf16 F.linear 73.4 us
    ('int8_sq', 24576, 4096, 8): ('dot', 16, 64, 128, 4, 3),  # 48.3 us, bf16 F.linear 73.7 us
    ('int8_sq', 24576, 4096, 16): ('dot', 16, 64, 128, 4, 3),  # 44.3 us, bf16 F.linear 74.3 us
    ('int8_sq', 24576, 4096, 64): ('mm', 0, 0, 0),  # 66.8 us, bf16 F.linear 75.8 us
    ('int8_sq', 24576, 4096, 256): ('mm', 0, 0, 0),  # 130.2 us, bf16 F.linear 84.3 us
    ('fp8', 4096, 12288, 1): ('h2', 1, 8, 2048, 8, 1, 1),  # 19.7 us (session-9 row 20.5), bf16 F.linear 40.2 us (session 10)
    ('fp8', 4096, 12288, 2): ('h2', 2, 16, 2048, 8, 1, 1),  # 21.5 us (session-9 row 21.6), bf16 F.linear 40.1 us (session 10)
    ('fp8', 4096, 12288, 4): ('h2', 4, 32, 256, 4, 2, 4),  # 24.5 us (ew 74.3, mm 28.1), bf16 F.linear 39.7 us (session 9)
    ('fp8', 4096, 12288, 8): ('mm', 0, 0, 0),  # 28.2 us (h2 29.7), bf16 F.linear 40.2 us (session 9)
    ('fp8', 4096, 12288, 16): ('mm', 0, 0, 0),  # 28.2 us, bf16 F.linear 40.7 us
    ('fp8', 4096, 12288, 64): ('mm', 0, 0, 0),  # 27.0 us, bf16 F.linear 42.5 us
    ('fp8', 4096, 12288, 256): ('mm', 0, 0, 0),  # 34.1 us, bf16 F.linear 49.3 us
    ('int8_wo', 4096, 12288, 1): ('ew', 1, 2, 1024, 4, 1),  # 28.7 us, bf16 F.linear 39.1 us
    ('int8_wo', 4096, 12288, 2): ('ew', 2, 4, 1024, 8, 1),  # 41.8 us, bf16 F.linear 39.7 us
    ('int8_wo', 4096, 12288, 4): ('ew', 4, 4, 256, 4, 1),  # 53.1 us, bf16 F.linear 39.8 us
    ('int8_wo', 4096, 12288, 8): ('dot', 16, 32, 256, 4, 3),  # 36.7 us, bf16 F.linear 40.2 us
    ('int8_wo', 4096, 12288, 16): ('dot', 16, 32, 256, 4, 3),  # 32.9 us, bf16 F.linear 40.7 us
    ('int8_wo', 4096, 12288, 64): ('dot', 64, 64, 128, 4, 3),  # 58.8 us, bf16 F.linear 42.5 us
    ('int8_wo', 4096, 12288, 256): ('dot', 64, 64, 128, 4, 3),  # 86.2 us, bf16 F.linear 49.3 us
    ('int8_sq', 4096, 12288, 1): ('ew', 1, 4, 512, 4, 1),  # 31.7 us, bf16 F.linear 39.1 us
    ('int8_sq', 4096, 12288, 2): ('ew', 2, 4, 1024, 8, 1),  # 45.0 us, bf16 F.linear 39.7 us
    ('int8_sq', 4096, 12288, 4): ('dot', 16, 32, 128, 4, 3),  # 58.5 us, bf16 F.linear 39.8 us
    ('int8_sq', 4096, 12288, 8): ('dot', 16, 32, 256, 4, 3),  # 44.9 us, bf16 F.linear 40.2 us
    ('int8_sq', 4096, 12288, 16): ('dot', 16, 32, 256, 4, 3),  # 41.9 us, bf16 F.linear 40.7 us
    ('int8_sq', 4096, 12288, 64): ('mm', 0, 0, 0),  # 44.5 us, bf16 F.linear 42.5 us
    ('int8_sq', 4096, 12288, 256): ('mm', 0, 0, 0),  # 75.1 us, bf16 F.linear 49.3 us
    ('nvfp4', 6144, 4096, 1): ('h2', 1, 64, 256, 4, 2, 4),  # 10.3 us (session-5 row 10.7), bf16 F.linear 21.2 us (session 6)
    ('nvfp4', 4096, 4096, 1): ('h2', 1, 64, 512, 8, 1, 4),  # 8.6 us (K-major GEMV 14.4), bf16 F.linear 16.3 us (session 5)
    ('nvfp4', 24576, 4096, 1): ('h2', 1, 128, 256, 4, 1, 2),  # 28.7 us (K-major GEMV 57.6), bf16 F.linear 74.9 us (session 5)
    ('nvfp4', 4096, 12288, 1): ('h2', 1, 32, 512, 4, 2, 4),  # 16.1 us (session-5 row 17.6), bf16 F.linear 40.1 us (session 6)
    ('nvfp4', 6144, 4096, 4): ('h2', 4, 64, 256, 4, 1, 4),  # 14.1 us (K-major GEMV 25.5), bf16 F.linear 21.4 us (session 5)
    ('nvfp4', 4096, 4096, 4): ('h2', 4, 64, 256, 4, 2, 4),  # 11.3 us (session-5 row 12.2), bf16 F.linear 16.9 us (session 6)
    ('nvfp4', 24576, 4096, 4): ('h2', 4, 64, 256, 4, 1, 4),  # 43.7 us (K-major GEMV 82.5), bf16 F.linear 73.5 us (session 5)
    ('nvfp4', 4096, 12288, 4): ('h2', 4, 64, 256, 4, 2, 4),  # 23.0 us (session-5 row 26.6), bf16 F.linear 40.0 us (session 6)
    ('int4', 6144, 4096, 1): ('h2', 1, 32, 256, 4, 1, 4),  # 12.9 us (session-6 row 14.5, tinygemm 10.3), bf16 F.linear 21.1 us (session 7)
    ('int4', 4096, 4096, 1): ('h2', 1, 16, 256, 4, 1, 8),  # 10.3 us (session-6 row 10.6, tinygemm 7.1), bf16 F.linear 16.7 us (session 7)
    ('int4', 24576, 4096, 1): ('h2', 1, 32, 128, 4, 1, 2),  # 32.3 us (session-5 row 45.1, tinygemm 30.5), bf16 F.linear 72.6 us (session 6)
    ('int4', 4096, 12288, 1): ('h2', 1, 16, 256, 4, 1, 8),  # 18.4 us (session-6 row 20.3, tinygemm 16.6), bf16 F.linear 39.6 us (session 7)
    ('int4', 6144, 4096, 2): ('h2', 2, 32, 256, 4, 1, 4),  # 14.3 us (tl.dot 17.7, tinygemm 10.7), bf16 F.linear 21.3 us (session 7)
    ('int4', 4096, 4096, 2): ('h2', 2, 32, 256, 8, 2, 4),  # 11.9 us (tl.dot 13.4, tinygemm 7.5), bf16 F.linear 16.6 us (session 7)
    ('int4', 4096, 12288, 2): ('h2', 2, 32, 256, 8, 2, 4),  # 22.2 us (tl.dot 26.8, tinygemm 17.5), bf16 F.linear 39.9 us (session 7)
    ('int4', 6144, 4096, 4): ('dot', 16, 64, 128, 4, 3, 4),  # 17.3 us (tinygemm 14.2), bf16 F.linear 21.4 us (session 8)
    ('int4', 6144, 4096, 8): ('dot', 16, 64, 128, 4, 3, 4),  # 17.4 us, bf16 F.linear 21.3 us (session 8)
    ('int4', 6144, 4096, 16): ('dot', 16, 64, 128, 4, 3, 4),  # 16.9 us, bf16 F.linear 21.6 us (session 8)
    ('int4', 6144, 4096, 64): ('dot', 64, 64, 128, 4, 3, 4),  # 22.8 us, bf16 F.linear 21.2 us (session 8)
    ('int4', 6144, 4096, 128): ('dot', 64, 64, 128, 4, 3, 4),  # 32.3 us (dq 45.4), bf16 F.linear 21.7 us (session 8)
    ('int4', 6144, 4096, 256): ('dot', 64, 64, 128, 4, 3, 2),  # 49.2 us (dq 49.9), bf16 F.linear 24.0 us (session 8)
    ('int4', 4096, 4096, 4): ('dot', 16, 64, 128, 4, 3, 4),  # 12.7 us (tinygemm 9.2), bf16 F.linear 16.9 us (session 8)
    ('int4', 4096, 4096, 8): ('dot', 16, 64, 128, 4, 3, 4),  # 12.7 us, bf16 F.linear 16.9 us (session 8)
    ('int4', 4096, 4096, 16): ('dot', 16, 64, 128, 4, 3, 4),  # 12.8 us, bf16 F.linear 17.4 us (session 8)
    ('int4', 4096, 4096, 64): ('dot', 64, 64, 128, 4, 3, 4),  # 17.0 us, bf16 F.linear 15.5 us (session 8)
    ('int4', 4096, 4096, 128): ('dot', 64, 64, 128, 4, 3, 4),  # 22.6 us (dq 29.4), bf16 F.linear 16.0 us (session 8)
    ('int4', 4096, 4096, 256): ('dot', 64, 64, 128, 4, 3, 1),  # 32.4 us (dq 33.4), bf16 F.linear 20.0 us (session 8)
    ('int4', 24576, 4096, 4): ('dot', 16, 64, 128, 4, 3, 4),  # 38.9 us (tinygemm 42.9), bf16 F.linear 74.0 us (session 8)
    ('int4', 24576, 4096, 8): ('dot', 16, 64, 128, 4, 3, 2),  # 36.2 us, bf16 F.linear 73.0 us (session 8)
    ('int4', 24576, 4096, 16): ('dot', 16, 64, 128, 4, 3, 2),  # 36.3 us, bf16 F.linear 73.8 us (session 8)
    ('int4', 24576, 4096, 64): ('dot', 64, 64, 128, 4, 3, 8),  # 51.8 us, bf16 F.linear 75.5 us (session 8)
    ('int4', 24576, 4096, 128): ('dot', 64, 64, 128, 4, 3, 1),  # 77.2 us (dq 178.8), bf16 F.linear 77.7 us (session 8)
    ('int4', 24576, 4096, 256): ('dot', 64, 64, 128, 4, 3, 1),  # 145.8 us (dq 184.5), bf16 F.linear 83.3 us (session 8)
    ('int4', 4096, 12288, 4): ('dot', 16, 64, 128, 4, 3, 4),  # 25.0 us (tinygemm 22.7), bf16 F.linear 40.3 us (session 8)
    ('int4', 4096, 12288, 8): ('dot', 16, 64, 128, 4, 3, 4),  # 24.7 us, bf16 F.linear 40.7 us (session 8)
    ('int4', 4096, 12288, 16): ('dot', 16, 64, 128, 4, 3, 4),  # 24.8 us, bf16 F.linear 41.2 us (session 8)
    ('int4', 4096, 12288, 64): ('dot', 64, 64, 128, 4, 3, 8),  # 30.6 us, bf16 F.linear 42.7 us (session 8)
    ('int4', 4096, 12288, 128): ('dot', 64, 64, 128, 4, 3, 4),  # 47.5 us (dq 92.3), bf16 F.linear 40.8 us (session 8)
    ('int4', 4096, 12288, 256): ('dot', 64, 64, 128, 4, 3, 2),  # 84.6 us (dq 102.8), bf16 F.linear 53.8 us (session 8)
    ('nvfp4', 6144, 4096, 8): ('dot', 16, 64, 128, 4, 3, 4),  # 16.8 us (h2 19.4), bf16 F.linear 21.4 us (session 8)
    ('nvfp4', 6144, 4096, 16): ('dot', 16, 64, 128, 4, 3, 4),  # 16.7 us, bf16 F.linear 21.7 us (session 8)
    ('nvfp4', 6144, 4096, 64): ('dot', 64, 64, 128, 4, 3, 4),  # 22.4 us, bf16 F.linear 21.2 us (session 8)
    ('nvfp4', 6144, 4096, 128): ('dot', 128, 64, 128, 4, 3, 2),  # 36.1 us (dq 46.7), bf16 F.linear 21.9 us (session 8)
    ('nvfp4', 6144, 4096, 256): ('dq', 0, 0, 0),  # 51.6 us (tl.dot 63.1), bf16 F.linear 24.3 us (session 8)
    ('nvfp4', 4096, 4096, 8): ('dot', 16, 64, 256, 4, 3, 4),  # 12.9 us (h2 14.3), bf16 F.linear 16.5 us (session 8)
    ('nvfp4', 4096, 4096, 16): ('dot', 16, 64, 256, 4, 3, 4),  # 12.9 us, bf16 F.linear 16.9 us (session 8)
    ('nvfp4', 4096, 4096, 64): ('dot', 64, 64, 128, 4, 3, 4),  # 18.1 us, bf16 F.linear 15.3 us (session 8)
    ('nvfp4', 4096, 4096, 128): ('dot', 128, 64, 128, 4, 3, 2),  # 25.4 us (dq 29.9), bf16 F.linear 15.6 us (session 8)
    ('nvfp4', 4096, 4096, 256): ('dq', 0, 0, 0),  # 35.0 us (tl.dot 35.3), bf16 F.linear 18.6 us (session 8)
    ('nvfp4', 24576, 4096, 8): ('dot', 16, 64, 128, 4, 3, 1),  # 48.0 us (h2 67.5), bf16 F.linear 73.8 us (session 8)
    ('nvfp4', 24576, 4096, 16): ('dot', 16, 64, 128, 4, 3, 1),  # 48.1 us, bf16 F.linear 75.1 us (session 8)
    ('nvfp4', 24576, 4096, 64): ('dot', 64, 64, 128, 4, 3, 1),  # 65.7 us, bf16 F.linear 76.2 us (session 8)
    ('nvfp4', 24576, 4096, 128): ('dot', 128, 64, 128, 4, 3, 2),  # 114.1 us (dq 180.6), bf16 F.linear 78.6 us (session 8)
    ('nvfp4', 24576, 4096, 256): ('dot', 128, 64, 128, 4, 3, 2),  # 167.2 us (dq 186.2), bf16 F.linear 83.7 us (session 8)
    ('nvfp4', 4096, 12288, 8): ('dot', 16, 64, 256, 4, 3, 4),  # 29.7 us (h2 33.2), bf16 F.linear 40.5 us (session 8)
    ('nvfp4', 4096, 12288, 16): ('dot', 16, 64, 256, 4, 3, 4),  # 29.2 us, bf16 F.linear 40.8 us (session 8)
    ('nvfp4', 4096, 12288, 64): ('dot', 64, 64, 128, 4, 3, 4),  # 41.6 us, bf16 F.linear 42.6 us (session 8)
    ('nvfp4', 4096, 12288, 128): ('dot', 128, 64, 128, 4, 3, 2),  # 68.7 us (dq 100.6), bf16 F.linear 40.2 us (session 8)
    ('nvfp4', 4096, 12288, 256): ('dot', 128, 64, 128, 4, 3, 2),  # 94.7 us (dq 104.4), bf16 F.linear 49.7 us (session 8)
    ('fp8_rowwise', 6144, 4096, 1): ('h2', 1, 16, 1024, 4, 1, 1),  # 13.2 us (dot 45.0, ew 22.9), bf16 F.linear 21.6 us (session 9)
    ('fp8_rowwise', 6144, 4096, 2): ('h2', 2, 8, 1024, 4, 1, 1),  # 14.0 us (dot 40.4, ew 30.9), bf16 F.linear 21.9 us (session 9)
    ('fp8_rowwise', 6144, 4096, 4): ('h2', 4, 64, 256, 4, 1, 4),  # 15.2 us (dot 38.2, ew 41.2), bf16 F.linear 21.7 us (session 9)
    ('fp8_rowwise', 6144, 4096, 8): ('h2', 8, 64, 128, 4, 1, 4),  # 19.8 us (dot 32.2, ew 83.1, mm 22.7), bf16 F.linear 20.9 us (session 9)
    ('fp8_rowwise', 4096, 4096, 1): ('h2', 1, 8, 1024, 4, 1, 1),  # 9.9 us (dot 34.7, ew 14.8), bf16 F.linear 16.9 us (session 9)
    ('fp8_rowwise', 4096, 4096, 2): ('h2', 2, 8, 1024, 4, 1, 1),  # 11.3 us (dot 33.7, ew 22.3), bf16 F.linear 16.8 us (session 9)
    ('fp8_rowwise', 4096, 4096, 4): ('h2', 4, 64, 256, 4, 1, 4),  # 12.9 us (dot 31.2, ew 28.8), bf16 F.linear 16.7 us (session 9)
    ('fp8_rowwise', 4096, 4096, 8): ('h2', 8, 64, 128, 4, 1, 4),  # 15.9 us (dot 28.0, ew 56.5, mm 18.5), bf16 F.linear 16.6 us (session 9)
    ('fp8_rowwise', 24576, 4096, 1): ('h2', 1, 8, 1024, 4, 1, 1),  # 39.6 us (dot 89.9, ew 71.1), bf16 F.linear 73.0 us (session 9)
    ('fp8_rowwise', 24576, 4096, 2): ('h2', 2, 16, 1024, 4, 1, 1),  # 43.0 us (dot 85.8, ew 104.2), bf16 F.linear 73.1 us (session 9)
    ('fp8_rowwise', 24576, 4096, 4): ('h2', 4, 64, 256, 4, 1, 2),  # 46.1 us (dot 82.7, ew 150.0), bf16 F.linear 73.5 us (session 9)
    ('fp8_rowwise', 24576, 4096, 8): ('mm', 0, 0, 0),  # 50.1 us (dot 73.1, ew 340.7, h2 63.2), bf16 F.linear 73.8 us (session 9)
    ('fp8_rowwise', 4096, 12288, 1): ('h2', 1, 8, 1024, 4, 1, 1),  # 26.6 us (dot 91.2, ew 40.1), bf16 F.linear 39.7 us (session 9)
    ('fp8_rowwise', 4096, 12288, 2): ('h2', 2, 16, 256, 2, 1, 4),  # 28.5 us (dot 89.4, ew 64.0), bf16 F.linear 39.5 us (session 9)
    ('fp8_rowwise', 4096, 12288, 4): ('h2', 4, 32, 256, 4, 1, 4),  # 30.7 us (dot 87.8, ew 79.3), bf16 F.linear 39.7 us (session 9)
    ('fp8_rowwise', 4096, 12288, 8): ('h2', 8, 32, 512, 4, 1, 2),  # 43.4 us (dot 84.9, ew 165.9, mm 46.9), bf16 F.linear 40.3 us (session 9)
    ('fp8_rowwise', 6144, 4096, 16): ('mm', 0, 0, 0),  # 22.4 us (dot 25.9), bf16 F.linear 21.1 us (session 9)
    ('fp8_rowwise', 6144, 4096, 64): ('mm', 0, 0, 0),  # 20.2 us (dot 42.3), bf16 F.linear 21.1 us (session 9)
    ('fp8_rowwise', 6144, 4096, 256): ('mm', 0, 0, 0),  # 20.7 us (dot 94.8), bf16 F.linear 23.9 us (session 9)
    ('fp8_rowwise', 4096, 4096, 16): ('mm', 0, 0, 0),  # 18.6 us (dot 20.2), bf16 F.linear 16.8 us (session 9)
    ('fp8_rowwise', 4096, 4096, 64): ('mm', 0, 0, 0),  # 18.2 us (dot 31.3), bf16 F.linear 15.2 us (session 9)
    ('fp8_rowwise', 4096, 4096, 256): ('mm', 0, 0, 0),  # 18.5 us (dot 70.3), bf16 F.linear 18.3 us (session 9)
    ('fp8_rowwise', 24576, 4096, 16): ('mm', 0, 0, 0),  # 51.8 us (dot 54.7), bf16 F.linear 74.5 us (session 9)
    ('fp8_rowwise', 24576, 4096, 64): ('mm', 0, 0, 0),  # 49.9 us (dot 103.3), bf16 F.linear 75.9 us (session 9)
    ('fp8_rowwise', 24576, 4096, 256): ('mm', 0, 0, 0),  # 58.3 us (dot 282.0), bf16 F.linear 84.6 us (session 9)
    ('fp8_rowwise', 4096, 12288, 16): ('mm', 0, 0, 0),  # 46.5 us (dot 59.3), bf16 F.linear 40.6 us (session 9)
    ('fp8_rowwise', 4096, 12288, 64): ('mm', 0, 0, 0),  # 41.9 us (dot 99.0), bf16 F.linear 42.5 us (session 9)
    ('fp8_rowwise', 4096, 12288, 256): ('mm', 0, 0, 0),  # 42.0 us (dot 212.5), bf16 F.linear 49.9 us (session 9)
}
