"""`ember bench`: latency and offline-throughput benchmarks of the engine (and a transformers baseline)."""
