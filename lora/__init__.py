"""LoRA adapters: formats and multi-adapter batching."""
