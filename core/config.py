"""Engine configuration: small frozen dataclasses, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field

KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class KvCacheConfig:
    """How the paged KV cache is laid out and sized.

    On CUDA the cache takes `gpu_memory_utilization` of the GPU minus what the weights and a warm-up step use;
    on CPU it is `num_blocks`, or enough blocks for `max_num_seqs * max_model_len` tokens capped at
    `cpu_kv_cache_gb`. An explicit `num_blocks` always wins.
    """

    block_size: int = 16
    num_blocks: int | None = None
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = 0.9
    cpu_kv_cache_gb: float = 4.0

    def __post_init__(self) -> None:
        if not 8 <= self.block_size <= 128:
            raise ValueError(f"block_size must be in [8, 128], got {self.block_size}")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1 or None (size automatically), got {self.num_blocks}")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.cpu_kv_cache_gb <= 0:
            raise ValueError(f"cpu_kv_cache_gb must be > 0, got {self.cpu_kv_cache_gb}")


@dataclass(frozen=True)
class EngineConfig:
    """Scheduler limits and runtime choices; `max_model_len` is filled from the checkpoint when None."""

    max_num_seqs: int = 256
    max_num_tokens: int = 4096
    max_model_len: int | None = None
    kv_cache: KvCacheConfig = field(default_factory=KvCacheConfig)
    enable_chunked_prefill: bool = True
    attention_backend: str = "auto"      # a registered backend name; "auto": triton on CUDA, torch elsewhere
    seed: int = 0
    # Decode steps replay CUDA graphs captured per batch-size bucket (CUDA + a graph-safe attention backend only;
    # other devices and backends run eagerly whatever this says). False = eager everywhere (enforce_eager).
    cuda_graphs: bool = True
    cuda_graph_max_batch: int = 512      # largest captured bucket (capped at max_num_seqs); bigger batches run eager
    # KV-cache element type. "auto": what the checkpoint declares (e4m3 when hf_quant_config.json says
    # kv_cache_quant_algo FP8, as TensorRT-LLM reads it; vLLM instead waits for --kv-cache-dtype fp8), else the model
    # dtype. "fp8" / "fp8_e4m3": e4m3 with the checkpoint's per-layer k_scale / v_scale, or 1.0 where it has none
    # (uncalibrated, as vLLM does: |k| beyond 448 saturates). A float dtype name forces that dtype (opt out of fp8).
    kv_cache_dtype: str = "auto"
    # Launch decode step n+1 before step n's sampled ids reach the host, so the host work of one step hides behind
    # the GPU work of the next (see ember.engine.llm_engine). None: on for CUDA, off elsewhere.
    async_scheduling: bool | None = None

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_num_tokens < 1:
            raise ValueError(f"max_num_tokens must be >= 1, got {self.max_num_tokens}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"max_model_len must be >= 1 or None (use the checkpoint's), got {self.max_model_len}")
        if self.cuda_graph_max_batch < 1:
            raise ValueError(f"cuda_graph_max_batch must be >= 1, got {self.cuda_graph_max_batch}")
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ValueError(f"kv_cache_dtype must be one of {', '.join(KV_CACHE_DTYPES)}, got {self.kv_cache_dtype!r}")
        if not isinstance(self.kv_cache, KvCacheConfig):
            raise ValueError(f"kv_cache must be a KvCacheConfig, got {type(self.kv_cache).__name__}")
