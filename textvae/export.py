"""Model export folders: ``config.json`` + ``model.safetensors`` + the tokenizer. Never pickle.

Every tool loads a model with ``--model DIR`` through :func:`load_export`. The config names the model
class by import path (only classes inside the ``textvae`` package are accepted, so a config file can
never make us import arbitrary code) and its constructor arguments, which models keep in
``self.init_args``.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from textvae.data.records import DataError
from textvae.data.tokenizers import Tokenizer, load_tokenizer

FORMAT = "textvae-export"
VERSION = 1


@dataclass
class Export:
    model: nn.Module
    tokenizer: Tokenizer
    categories: dict[str, list[str]] = field(default_factory=dict)  # label/act/emotion/topic names by id
    info: dict[str, Any] = field(default_factory=dict)  # free-form: data paths, training config, metrics


def save_export(directory: str | os.PathLike, model: nn.Module, tokenizer: Tokenizer, *,
                categories: dict[str, list[str]] | None = None, info: dict[str, Any] | None = None) -> Path:
    from safetensors.torch import save_model

    init_args = getattr(model, "init_args", None)
    if not isinstance(init_args, dict):
        raise TypeError(f"{type(model).__name__} must keep its constructor arguments in self.init_args to be exported")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cls = type(model)
    config = {
        "format": FORMAT, "version": VERSION,
        "model": {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args},
        "categories": categories or {}, "info": info or {},
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    save_model(model, str(directory / "model.safetensors"))  # handles tied (shared) weights
    tokenizer.save(directory)
    return directory


def _model_class(class_path: str, source: Path) -> type[nn.Module]:
    module_name, _, name = class_path.rpartition(".")
    if not module_name.startswith("textvae."):
        raise DataError(f"{source}: model class {class_path!r} is not a textvae model; refusing to import it")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise DataError(f"{source}: unknown model class {class_path!r}; was it exported by a newer textvae?") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise DataError(f"{source}: {class_path!r} is not a model class")
    return cls


def load_export(directory: str | os.PathLike, *, device: str = "cpu") -> Export:
    """Rebuild the model from ``config.json``, load its safetensors weights, and load the tokenizer."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise DataError(f"{directory}: not a textvae model export (no config.json); export one with textvae-train")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{config_path}: corrupt config ({err}); re-export the model") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DataError(f"{config_path}: not a textvae export config (format should be {FORMAT!r})")
    model_config = config.get("model") or {}
    cls = _model_class(str(model_config.get("class_path")), config_path)
    try:
        model = cls(**model_config.get("init_args", {}))
    except TypeError as err:
        raise DataError(f"{config_path}: model arguments do not fit {cls.__name__}: {err}") from None
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise DataError(f"{weights}: missing model weights")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise DataError(f"{weights}: unreadable or mismatched weights ({err}); re-export the model") from None
    if missing or unexpected:
        raise DataError(f"{weights}: weights do not match the config (missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]}); re-export the model")
    model.to(device).eval()
    return Export(model=model, tokenizer=load_tokenizer(directory), categories=config.get("categories", {}),
                  info=config.get("info", {}))
