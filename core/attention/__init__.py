"""Attention: the per-step batch metadata, the backend interface, and the backends ember ships."""

from ember.attention.backend import AttentionBackend, AttentionLayerSpec
from ember.attention.metadata import AttentionMetadata

__all__ = ["AttentionBackend", "AttentionLayerSpec", "AttentionMetadata"]
