"""Registers ember's built-in architectures and zoo aliases through the same hooks third-party plugins use."""

from ember.plugins import hookimpl

ARCHITECTURES = {
    "LlamaForCausalLM": "ember.models.llama:LlamaForCausalLM",
    "MistralForCausalLM": "ember.models.mistral:MistralForCausalLM",
    "Qwen2ForCausalLM": "ember.models.qwen2:Qwen2ForCausalLM",
    "Qwen3ForCausalLM": "ember.models.qwen3:Qwen3ForCausalLM",
    "Qwen3MoeForCausalLM": "ember.models.qwen3_moe:Qwen3MoeForCausalLM",
    "MixtralForCausalLM": "ember.models.mixtral:MixtralForCausalLM",
    "Phi3ForCausalLM": "ember.models.phi3:Phi3ForCausalLM",
    "Gemma3ForCausalLM": "ember.models.gemma3:Gemma3ForCausalLM",
}


@hookimpl
def ember_register_models(register) -> None:
    for architecture, target in ARCHITECTURES.items():
        register(architecture, target)


@hookimpl
def ember_register_model_aliases(register) -> None:
    from ember.models.aliases import register_aliases  # cheap: no torch, no weights until an alias is resolved

    register_aliases(register)
