"""Built-in architecture plugins: one file per model family, Hugging Face parameter names throughout."""
