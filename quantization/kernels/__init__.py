"""GPU kernels for quantized linears (Triton, torch._scaled_mm / _int_mm) and their dispatch."""
