"""ember: a PyTorch-native LLM model zoo, quantization workbench and inference runtime."""
