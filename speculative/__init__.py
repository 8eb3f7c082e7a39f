"""Speculative decoding: draft methods and verification."""
