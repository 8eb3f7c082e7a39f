"""ember: a PyTorch-native LLM model zoo, quantization workbench and inference runtime."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ember.config import EngineConfig, KvCacheConfig
    from ember.llm import LLM
    from ember.outputs import CompletionOutput, RequestOutput
    from ember.sampling_params import SamplingParams

# Lazy so that `import ember` (e.g. by plugin discovery) does not import torch or transformers.
_EXPORTS = {
    "LLM": "ember.llm",
    "SamplingParams": "ember.sampling_params",
    "KvCacheConfig": "ember.config",
    "EngineConfig": "ember.config",
    "RequestOutput": "ember.outputs",
    "CompletionOutput": "ember.outputs",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ember' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(_EXPORTS[name]), name)
