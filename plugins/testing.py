"""Conformance kit for plugin authors: call these from your own tests (no pytest needed to import this module)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from ember.plugins.manager import PluginManager, get_plugin_manager
from ember.plugins.registry import Component, PluginError

__all__ = ["check_architecture", "check_plugin_registers", "check_distribution", "check_worker_process",
           "tiny_checkpoint", "write_tiny_tokenizer"]


# -- registration ----------------------------------------------------------------------------------------------
def check_plugin_registers(plugin: ModuleType | Any, expected: dict[str, list[str]] | None = None, *,
                           load_targets: bool = True, name: str = "plugin-under-test") -> list[Component]:
    """Run `plugin`'s hooks in a private manager: no failures, every target imports, `expected` names present.

    `expected` maps a kind to names, e.g. {"model": ["GraniteForCausalLM"]}. Returns the registered components.
    The process-wide registry is not touched, so this works whether or not the plugin is also installed.
    """
    manager = PluginManager()
    manager.add_plugin(plugin, name=name, distribution="under-test")
    if manager.failures:
        raise AssertionError("plugin failed to register: " + "; ".join(f.error for f in manager.failures))
    components = manager.registry.components()
    if not components:
        raise AssertionError(f"plugin {plugin!r} registered nothing: does it define @hookimpl functions "
                             "named after ember's hookspecs (ember_register_models, ...)?")
    for kind, names in (expected or {}).items():
        missing = sorted(set(names) - set(manager.registry.names(kind)))
        if missing:
            raise AssertionError(f"plugin did not register {kind} {missing}; it registered "
                                 f"{manager.registry.names(kind)}")
    if load_targets:
        for comp in components:
            if comp.metadata.get("kind") == "hub":  # model aliases that name a hub repo id, not "module:attr"
                continue
            try:
                comp.load()
            except PluginError as exc:
                raise AssertionError(str(exc)) from exc
    return components


def check_distribution(distribution: str, expected: dict[str, list[str]] | None = None) -> list[Component]:
    """The installed distribution loaded through its entry points without failures and registered `expected`."""
    manager = get_plugin_manager()
    failures = [f for f in manager.failures if f.distribution == distribution]
    if failures:
        raise AssertionError(f"{distribution} failed to load: " + "; ".join(f.error for f in failures))
    mine = [c for c in manager.registry.components() if c.distribution == distribution]
    if not mine:
        loaded = sorted({p.distribution for p in manager.plugins})
        raise AssertionError(f"{distribution} registered nothing; is it installed with an entry point in the "
                             f"'ember' group (and allowed by EMBER_PLUGINS)? loaded distributions: {loaded}")
    for kind, names in (expected or {}).items():
        missing = sorted(set(names) - {c.name for c in mine if c.kind == kind})
        if missing:
            raise AssertionError(f"{distribution} did not register {kind} {missing}")
    return mine


def registry_snapshot() -> dict:
    """What this process's plugin manager loaded: {"components": [(kind, name, distribution)], "failures": [...]}."""
    manager = get_plugin_manager()
    return {"components": [(c.kind, c.name, c.distribution) for c in manager.registry.components()],
            "failures": [(f.plugin, f.distribution, f.error) for f in manager.failures]}


def check_worker_process(expected: dict[str, list[str]]) -> dict:
    """A freshly spawned worker process loads plugins again and sees `expected` ({kind: [names]}).

    Engines run model code in spawned workers; a registry filled only in the parent would be empty there.
    """
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        snapshot = pool.apply(registry_snapshot)
    seen = {(kind, name) for kind, name, _ in snapshot["components"]}
    missing = [(k, n) for k, names in expected.items() for n in names if (k, n) not in seen]
    if missing:
        raise AssertionError(f"a spawned worker process does not see {missing}; its failures: {snapshot['failures']}")
    return snapshot


# -- tiny checkpoints ------------------------------------------------------------------------------------------
def write_tiny_tokenizer(path: str | Path, vocab_size: int) -> None:
    """A word-level tokenizer whose tokens are "w0" .. "w{vocab_size-1}" (w0 unk, w1 bos, w2 eos)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0", bos_token="w1", eos_token="w2")
    fast.save_pretrained(str(path))


def _config_for(architecture: str, hf_config_kwargs: dict | None, model_cls: type) -> Any:
    """A transformers config for `architecture`: the kwargs given, else the model class's `tiny_config`."""
    from transformers import AutoConfig, PretrainedConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    kwargs = hf_config_kwargs
    if kwargs is None:
        tiny = getattr(model_cls, "tiny_config", None)
        if tiny is None:
            raise AssertionError(f"{architecture} has no `tiny_config`; pass hf_config_kwargs=dict(...) with a "
                                 "small hidden_size / num_hidden_layers / vocab_size")
        kwargs = tiny() if callable(tiny) else tiny
    if isinstance(kwargs, PretrainedConfig):
        config = kwargs
    else:
        kwargs = dict(kwargs)
        model_type = kwargs.pop("model_type", None) or next(
            (t for t, cls in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items() if cls == architecture), None)
        if model_type is None:
            raise AssertionError(f"transformers has no causal LM named {architecture}; pass model_type in "
                                 "hf_config_kwargs")
        config = AutoConfig.for_model(model_type, **kwargs)
    config.architectures = [architecture]
    return config


def tiny_checkpoint(architecture: str, path: str | Path, hf_config_kwargs: dict | None = None, seed: int = 0,
                    initializer_range: float = 0.3):
    """Save a randomly initialised transformers model (fp32) + tiny tokenizer to `path`; returns the HF model.

    `initializer_range` 0.3 (HF's default is 0.02) gives peaky logits: varied greedy text and no near-ties that
    rounding could flip.
    """
    import torch
    import transformers

    from ember.plugins import get_registry

    model_cls = get_registry().load("model", architecture)
    config = _config_for(architecture, hf_config_kwargs, model_cls)
    config.initializer_range = initializer_range
    hf_cls = getattr(transformers, architecture, None)
    if hf_cls is None:
        raise AssertionError(f"transformers {transformers.__version__} has no {architecture} to compare with")
    torch.manual_seed(seed)
    hf_model = hf_cls(config).to(torch.float32).eval()
    hf_model.save_pretrained(str(path))
    write_tiny_tokenizer(path, config.vocab_size)
    return hf_model


# -- numerical conformance ------------------------------------------------------------------------------------
def _step(model, backend, caches, block_size, tokens: list[list[int]], starts: list[int], tables):
    """One engine-like step: sequence i feeds `tokens[i]` at positions starts[i]...; returns logits [T, V]."""
    import torch

    from ember.attention.metadata import build_metadata

    q_lens = [len(t) for t in tokens]
    seq_lens = [s + q for s, q in zip(starts, q_lens)]
    meta = build_metadata(backend, caches, block_size, q_lens, seq_lens, tables, "cpu")
    ids = torch.tensor([t for seq in tokens for t in seq], dtype=torch.long)
    pos = torch.tensor([p for s, q in zip(starts, q_lens) for p in range(s, s + q)], dtype=torch.long)
    with torch.no_grad():
        return model.compute_logits(model(ids, pos, meta)).float()


def _compare(name: str, got, want, atol: float, rtol: float) -> None:
    import torch

    if got.shape != want.shape:
        raise AssertionError(f"{name}: ember logits have shape {tuple(got.shape)}, transformers {tuple(want.shape)}")
    if not torch.allclose(got, want, atol=atol, rtol=rtol):
        err = (got - want).abs().max().item()
        raise AssertionError(f"{name}: ember logits differ from transformers by up to {err:.3g} "
                             f"(atol={atol}, rtol={rtol})")


def check_architecture(architecture: str, hf_config_kwargs: dict | None = None, *, atol: float = 1e-4,
                       rtol: float = 1e-4, max_new_tokens: int = 8, check_generate: bool = True) -> None:
    """Ember's `architecture` matches transformers' on a tiny random checkpoint (fp32, CPU).

    Checks batched prefill logits of two sequences of different lengths, two decode steps, and (with
    `check_generate`) greedy `ember.LLM.generate` tokens against transformers' `generate`.
    Raises AssertionError saying what differs.
    """
    import torch

    from ember.loader.build import load_model
    from ember.plugins import get_registry

    with tempfile.TemporaryDirectory(prefix=f"ember-conformance-{architecture}-") as tmp:
        hf_model = tiny_checkpoint(architecture, tmp, hf_config_kwargs)
        vocab = hf_model.config.vocab_size
        model = load_model(tmp, dtype=torch.float32, device="cpu")
        model.eval()

        # A paged cache for every attention layer the model declares (any module with a layer_idx + head layout).
        from ember.layers.attention import Attention

        layers = sorted((m for m in model.modules() if isinstance(m, Attention)), key=lambda m: m.layer_idx)
        if not layers:
            raise AssertionError(f"{architecture}: the ember model has no ember.layers.attention.Attention modules")
        block_size, num_blocks = 16, 8
        caches = [torch.zeros(2, num_blocks, block_size, a.num_kv_heads, a.head_dim) for a in layers]
        backend = get_registry().load("attention_backend", "torch")(torch.device("cpu"), torch.float32)
        tables = [[0, 1, 2], [3, 4, 5]]

        gen = torch.Generator().manual_seed(1)
        seqs = [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in (19, 6)]  # 19: crosses a block
        logits = _step(model, backend, caches, block_size, seqs, [0, 0], tables)
        with torch.no_grad():
            for i, seq in enumerate(seqs):
                want = hf_model(torch.tensor([seq])).logits[0].float()
                start = sum(len(s) for s in seqs[:i])
                _compare(f"{architecture} prefill (sequence {i}, batched)", logits[start:start + len(seq)],
                         want, atol, rtol)
            ends = [sum(len(s) for s in seqs[:i + 1]) - 1 for i in range(len(seqs))]
            next_logits = logits[ends]                                                  # [B, V]
            for step in range(2):
                new = next_logits.argmax(-1).tolist()
                starts = [len(s) for s in seqs]
                seqs = [s + [t] for s, t in zip(seqs, new)]
                next_logits = _step(model, backend, caches, block_size, [[t] for t in new], starts, tables)
                for i, seq in enumerate(seqs):
                    want = hf_model(torch.tensor([seq])).logits[0, -1].float()
                    _compare(f"{architecture} decode step {step} (sequence {i})", next_logits[i], want, atol, rtol)

        if check_generate:
            _check_generate(architecture, tmp, hf_model, max_new_tokens)


def _check_generate(architecture: str, path: str, hf_model, max_new_tokens: int) -> None:
    import torch
    from transformers import GenerationConfig

    from ember import LLM, SamplingParams

    # Token-id prompts: transformers picks the tokenizer class from the model type, so text is not portable here.
    vocab = hf_model.config.vocab_size
    prompts = [[5, 9, 14, 3, 27], [8, 8, 8], [30, 4, 11, 19, 6, 7, 12, 13, 21]]
    prompts = [[t % vocab for t in p] for p in prompts]
    llm = LLM(path, dtype=torch.float32, device="cpu", max_num_seqs=4)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, ignore_eos=True)
    outputs = llm.generate(prompts, params)
    # eos_token_id=[]: never stop early, like ignore_eos (min_new_tokens would instead forbid EOS tokens).
    greedy = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=[], pad_token_id=0)
    for prompt, out in zip(prompts, outputs):
        ids = torch.tensor([out.prompt_token_ids])
        with torch.no_grad():
            want = hf_model.generate(ids, attention_mask=torch.ones_like(ids),
                                     generation_config=greedy)[0, ids.shape[1]:].tolist()
        got = list(out.outputs[0].token_ids)
        if got != want:
            raise AssertionError(f"{architecture}: greedy generate differs for prompt ids {prompt}: ember {got}, "
                                 f"transformers {want}")

