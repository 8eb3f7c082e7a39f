"""ember's built-in quantization recipes (registered in ember.quantization.plugin)."""
