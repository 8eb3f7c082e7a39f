"""Quantization recipes, calibration data, checkpoint export and quantized linear kernels (see the quantization issue)."""
