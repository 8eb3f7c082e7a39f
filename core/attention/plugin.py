"""Registers ember's built-in attention backends through the same hook third-party backends use."""

from ember.plugins import hookimpl


@hookimpl
def ember_register_attention_backends(register) -> None:
    register("torch", "ember.attention.torch_backend:TorchAttentionBackend",
             description="reference paged attention in plain PyTorch (CPU and GPU)")
    register("triton", "ember.attention.triton_backend:TritonAttentionBackend",
             description="paged flash / flash-decoding attention in Triton (CUDA; CPU only under TRITON_INTERPRET=1)")
