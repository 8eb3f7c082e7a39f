"""Pure-torch reference numerics of each weight format, bit-compatible with ModelOpt's unified HF export.

One file per format; each has `quantize(w) -> packed tensors and scales` and `dequantize(...) -> w_hat`.
"""
