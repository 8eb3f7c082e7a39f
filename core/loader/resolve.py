"""Turn what a user typed (local dir, .gguf file, zoo alias, hub repo id) into a local safetensors checkpoint dir."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from ember.plugins import get_registry
from ember.plugins.registry import unknown_message

ALIAS_KIND = "model_alias"
# What a checkpoint dir needs: configs, weights, tokenizer (sentencepiece / tiktoken / BPE files included).
HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "merges.txt", "vocab.txt"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelResolveError(ValueError):
    """The model name could not be turned into a local checkpoint; the message says what to do."""


def cache_root() -> Path:
    """`$EMBER_CACHE`, else `~/.cache/ember`."""
    return Path(os.environ.get("EMBER_CACHE") or Path.home() / ".cache" / "ember").expanduser()


def resolve_model(name: str, revision: str | None = None, trust_remote_code: bool = False) -> Path:
    """A local dir with config.json, *.safetensors and tokenizer files for `name`.

    `name` is tried as: a local directory; a local `.gguf` file (converted once, then cached); a zoo alias
    (`ember models` lists them); a Hugging Face repo id `org/name` (local HF cache first, then the hub).
    `trust_remote_code` is accepted for symmetry with `load_model`; resolving never executes checkpoint code.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return _checked_dir(path, name)
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return convert_gguf(path)
        raise ModelResolveError(f"{name} is a file but not a .gguf checkpoint; pass its directory, a .gguf file, "
                                "a zoo alias (see `ember models`) or a Hugging Face repo id")
    registry = get_registry()
    if (ALIAS_KIND, name) in registry:
        return _resolve_alias(name, revision)
    if _REPO_ID.match(name) and not name.startswith((".", "/", "~")):
        return _from_hub(name, revision)
    raise ModelResolveError(unknown_message(ALIAS_KIND, name, registry.names(ALIAS_KIND))
                            + "; a model is also a local directory, a .gguf file or a Hugging Face repo id (org/name)")


def _resolve_alias(name: str, revision: str | None) -> Path:
    comp = get_registry().get(ALIAS_KIND, name)
    kind = comp.metadata.get("kind", "hub")
    if kind == "hub":
        return _from_hub(comp.target, revision)
    if kind != "local":
        raise ModelResolveError(f"model alias {name!r} from {comp.distribution} has kind {kind!r}; "
                                "expected 'hub' (target is a repo id) or 'local' (target is 'module:function')")
    local = Path(comp.load()())
    if local.is_dir():
        return _checked_dir(local, name)
    if local.is_file() and local.suffix.lower() == ".gguf":
        return convert_gguf(local)
    raise ModelResolveError(f"model alias {name!r} ({comp.target}) returned {local}, which is neither a "
                            "checkpoint directory nor a .gguf file")


def _checked_dir(path: Path, name: str) -> Path:
    if not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return convert_gguf(ggufs[0])
        raise ModelResolveError(f"{name} has no config.json; pass a Hugging Face checkpoint directory "
                                "(config.json + *.safetensors + tokenizer files) or a .gguf file")
    if not any(path.glob("*.safetensors")):
        raise ModelResolveError(f"{name} has no *.safetensors weights; ember loads safetensors checkpoints only "
                                "(convert .bin weights with transformers' save_pretrained)")
    return path


# -- Hugging Face hub ------------------------------------------------------------------------------------------
def _from_hub(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors as hf_errors

    kwargs = dict(revision=revision, allow_patterns=HUB_PATTERNS)
    try:  # the local cache first: no network round trip for a model already downloaded
        cached = Path(snapshot_download(repo_id, local_files_only=True, **kwargs))
        if (cached / "config.json").is_file() and any(cached.glob("*.safetensors")):
            return cached
    except (hf_errors.LocalEntryNotFoundError, hf_errors.IncompleteSnapshotError, OSError):
        pass
    offline = ModelResolveError(
        f"{repo_id} is not in the local Hugging Face cache and the hub cannot be reached; download it on a "
        f"machine that is online with `huggingface-cli download {repo_id}"
        f"{f' --revision {revision}' if revision else ''}` (then copy the HF cache over) or pass a local directory")
    try:
        folder = Path(snapshot_download(repo_id, **kwargs))
    except (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError) as exc:
        raise ModelResolveError(f"{repo_id} was not found on the Hugging Face hub, or it is gated and needs "
                                f"`huggingface-cli login`: {exc}") from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise ModelResolveError(f"{repo_id} has no revision {revision!r}") from exc
    except (hf_errors.LocalEntryNotFoundError, hf_errors.IncompleteSnapshotError, OSError) as exc:
        raise offline from exc
    except Exception as exc:  # httpx connection errors and friends: the hub is unreachable
        if "connect" in type(exc).__name__.lower() or "timeout" in type(exc).__name__.lower():
            raise offline from exc
        raise
    return _checked_dir(folder, repo_id)


# -- GGUF -> safetensors -----------------------------------------------------------------------------------------
def converted_dir(gguf: Path) -> Path:
    """Where the conversion of `gguf` is cached: keyed by path, size, mtime and the transformers major version."""
    import transformers

    gguf = gguf.resolve()
    st = gguf.stat()
    major = transformers.__version__.split(".")[0]
    key = f"{gguf}|{st.st_size}|{st.st_mtime_ns}|transformers{major}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    stem = re.sub(r"[^\w.-]", "_", gguf.stem)
    return cache_root() / "converted" / f"{stem}-{digest}"


def convert_gguf(gguf: Path) -> Path:
    """A safetensors folder for `gguf`, converted once (~15 s for SmolLM2-135M) and then cached (~1 s to load)."""
    out = converted_dir(gguf)
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"ember: converting GGUF {gguf.name} to safetensors once, ~15 s (cached in {out})",
          file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _write_converted(gguf, tmp)
        try:
            os.rename(tmp, out)  # atomic: a reader sees nothing or a complete folder
        except OSError:
            if not (out / "config.json").is_file():  # not a concurrent conversion that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_converted(gguf: Path, dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # our one-line message says what is happening
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses GGUF-loaded models: rebuild a plain model from a config without
        # quantization_config, copy the dequantized weights over, save that.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        plain.generation_config = loaded.generation_config
        plain.save_pretrained(dest)
        tokenizer.save_pretrained(dest)
    except ImportError as exc:
        raise ModelResolveError(f"reading {gguf.name} needs the gguf package: pip install 'gguf>=0.10' "
                                f"({exc})") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
