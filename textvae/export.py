"""Model export folders: ``config.json`` + ``model.safetensors`` + the tokenizer. Never pickle.

Every tool loads a model with ``--model DIR`` through :func:`load_export`. The config names the model
class by import path (only classes inside the ``textvae`` package are accepted, so a config file can
never make us import arbitrary code) and its constructor arguments, which models keep in
``self.init_args``; beside them, what the model was trained on: :class:`Export`'s typed fields, checked
on loading. Exports of format version 1 (which kept those in a free-form ``info``) are upgraded in memory.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import reprlib
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from textvae.components import textvae_class
from textvae.data.records import DataError
from textvae.data.tokenizers import Tokenizer, load_tokenizer
from textvae.guards import all_finite
from textvae.models import DialogueModel

FORMAT = "textvae-export"
VERSION = 2  # 2: kind, max_context, max_len as fields of their own; SentenceVAE's posterior as a component
Kind = Literal["sentences", "dialogues"]
CATEGORIES = ("labels", "acts", "emotions", "topics")
SENTENCE_VAE = "textvae.models.sentence_vae.SentenceVAE"


@dataclass
class Export:
    """A loaded export: the model, its tokenizer, and what the model was trained on."""

    model: nn.Module
    tokenizer: Tokenizer
    kind: Kind  # what it reads: sentences, or dialogues (a response model)
    max_context: int | None = None  # dialogues: context turns it was trained to read (the tools' default)
    max_len: int | None = None  # dialogues: longest turn, in tokens, it was trained on (the tools' default)
    labels: list[str] = field(default_factory=list)  # sentence label names by id
    acts: list[str] = field(default_factory=list)  # dialog act names by id
    emotions: list[str] = field(default_factory=list)  # emotion names by id
    topics: list[str] = field(default_factory=list)  # topic names by id
    info: dict[str, Any] = field(default_factory=dict)  # provenance only (data paths): no tool reads it

    @property
    def categories(self) -> dict[str, list[str]]:
        """The four name lists by category: labels, acts, emotions, topics."""
        return {name: getattr(self, name) for name in CATEGORIES}


def _short(value: object) -> str:
    return reprlib.repr(value)


def _fields(config: Mapping[str, Any], *, infer_kind: bool = False) -> dict[str, Any]:
    """:class:`Export`'s typed fields from a config (version 2 layout), checked: ValueError naming the first
    wrong one. ``infer_kind``: a missing kind stays None (version 1: the caller infers it from the model)."""
    kind = config.get("kind")
    if not (kind in get_args(Kind) or (kind is None and infer_kind)):
        raise ValueError(f"kind must be 'sentences' or 'dialogues', got {_short(kind)}")
    fields: dict[str, Any] = {"kind": kind}
    for name in ("max_context", "max_len"):
        value = config.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1 (or null), got {_short(value)}")
        fields[name] = value
    categories = config.get("categories", {})
    if not isinstance(categories, dict):
        raise ValueError(f"categories must map {', '.join(CATEGORIES)} to lists of names, got {_short(categories)}")
    if unknown := sorted(set(categories) - set(CATEGORIES)):
        raise ValueError(f"unknown category {unknown[0]!r} (known: {', '.join(CATEGORIES)})")
    for name in CATEGORIES:
        names = categories.get(name, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"categories.{name} must be a list of strings, got {_short(names)}")
        fields[name] = list(names)
    info = config.get("info", {})
    if not isinstance(info, dict):
        raise ValueError(f"info must be an object, got {_short(info)}")
    fields["info"] = info
    return fields


def _kind_of(model: nn.Module) -> Kind:
    return "dialogues" if isinstance(model, DialogueModel) else "sentences"


class ExportBusyError(DataError):
    """Another process holds the export folder's lock: it is training or exporting into that folder."""


_held_locks: dict[Path, int] = {}  # export folders whose lock this process holds: their lock file descriptor


def _lock_path(directory: Path) -> Path:
    return directory.parent / f"{directory.name}.lock"


@contextmanager
def export_lock(directory: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive lock of an export folder: ``DIR.lock`` beside it, ``flock``-ed and naming our pid.

    ``textvae-train`` takes it before training and keeps it until the export is written, so a second run
    exporting to the same folder fails at its start (:class:`ExportBusyError`, naming the holder) instead
    of silently overwriting the first run's model. Re-entrant within a process (:func:`save_export` takes it
    too). The file is removed on release; after a kill it stays behind, unlocked, and the next run takes it."""
    directory = Path(directory).absolute()
    if directory in _held_locks:
        yield
        return
    path = _lock_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ExportBusyError(f"{directory}: another process (pid {holder}) is training or exporting into this "
                                  f"folder (it holds {path}); wait for it, or export somewhere else") from None
        try:  # the holder before us may have removed the file after we opened it: lock the file now there
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held_locks[directory] = fd
    try:
        yield
    finally:
        del _held_locks[directory]
        path.unlink(missing_ok=True)  # before unlocking: a waiter then finds the file gone and retries
        os.close(fd)


EXPORT_FILES = frozenset({"config.json", "model.safetensors", "tokenizer.json", "tokenizer.model"})


def check_export_target(directory: str | os.PathLike) -> None:
    """DataError unless ``directory`` can take an export: new, empty, or an earlier export (which the new one
    replaces as a whole), never a file or a folder holding anything else (a run folder's logs and checkpoints
    would go with it)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"{directory}: is a file, not an export folder; remove it or export somewhere else")
    if directory.is_dir():
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in EXPORT_FILES)
        if foreign:
            raise DataError(f"{directory}: holds {foreign[0]!r}, which is not part of a model export; an export "
                            "replaces its folder as a whole, so export into a new or empty folder (or an earlier export)")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # an old kernel, or a file system without it
        return False
    raise OSError(error, os.strerror(error), str(b))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_folder(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder with ``write(folder)`` and put it in place of ``target`` all at once.

    The files go into ``TARGET.tmp-PID`` beside it, get the permissions the umask gives (safetensors
    writes 0600) and are synced to disk; then the complete folder is swapped in with one atomic rename (an
    existing target: ``renameat2`` exchange, or where the file system lacks it, two renames a few
    microseconds apart during which the target is missing) and the previous one is deleted. A reader sees the
    old export or the new one, never a mix; a kill leaves the old one in place and a ``TARGET.tmp-PID``
    (or ``TARGET.old-PID``) folder that the next export into ``target`` removes. The caller holds
    :func:`export_lock`, so no other process is writing those."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    leftover = re.compile(rf"{re.escape(target.name)}\.(tmp|old)-[0-9]+")
    for stale in parent.iterdir():
        if leftover.fullmatch(stale.name):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed export into this target
    staging = parent / f"{target.name}.tmp-{os.getpid()}"
    staging.mkdir()  # mode 0777 less the umask
    try:
        write(staging)
        file_mode = staging.stat().st_mode & 0o666
        for folder, _, files in os.walk(staging):
            for name in files:
                os.chmod(os.path.join(folder, name), file_mode)
                _fsync(Path(folder) / name)
        _fsync(staging)
        if not target.exists():
            os.rename(staging, target)
        elif not _exchange(staging, target):
            old = parent / f"{target.name}.old-{os.getpid()}"
            os.rename(target, old)
            try:
                os.rename(staging, target)
            except OSError:
                os.rename(old, target)
                raise
            os.rename(old, staging)
        _fsync(parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the previous export, or an incomplete new one


def save_export(directory: str | os.PathLike, model: nn.Module, tokenizer: Tokenizer, *, kind: Kind | None = None,
                max_context: int | None = None, max_len: int | None = None, labels: Sequence[str] = (),
                acts: Sequence[str] = (), emotions: Sequence[str] = (), topics: Sequence[str] = (),
                info: dict[str, Any] | None = None, categories: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Write ``model`` (class path, ``init_args``, weights), ``tokenizer`` and :class:`Export`'s fields
    (``kind`` None: "dialogues" for a :class:`~textvae.models.DialogueModel`, else "sentences"); a wrong field
    is a ValueError. ``categories``: the name lists as one mapping, as version 1 took them (for its callers).

    The folder is replaced as a whole (:func:`_replace_folder`): a reader never sees a mix of two exports, and
    a folder another process is exporting to is an :class:`ExportBusyError` (:func:`export_lock`)."""
    from safetensors.torch import save_model

    init_args = getattr(model, "init_args", None)
    if not isinstance(init_args, dict):
        raise TypeError(f"{type(model).__name__} must keep its constructor arguments in self.init_args to be exported")
    names = {"labels": labels, "acts": acts, "emotions": emotions, "topics": topics}
    for name, given in (categories or {}).items():
        if names.get(name):
            raise ValueError(f"the {name} are given twice: as {name}= and in categories")
        names[name] = given
    names = {name: list(given) if isinstance(given, (list, tuple)) else given for name, given in names.items()}
    fields = _fields({"kind": kind or _kind_of(model), "max_context": max_context, "max_len": max_len,
                      "categories": names, "info": info or {}})
    cls = type(model)
    config = {
        "format": FORMAT, "version": VERSION,
        "model": {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args},
        "kind": fields["kind"], "max_context": max_context, "max_len": max_len,
        "categories": {name: fields[name] for name in CATEGORIES}, "info": fields["info"],
    }

    def write(folder: Path) -> None:
        if hasattr(model, "save_assets"):  # e.g. a pretrained backbone's configuration and tokenizer
            arguments, assets = model.save_assets(folder)
            config["model"] = {**config["model"], "init_args": {**init_args, **arguments}}
            if assets:
                config["assets"] = assets
        (folder / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
        save_model(model, str(folder / "model.safetensors"))  # handles tied (shared) weights
        tokenizer.save(folder)

    directory = Path(directory)
    check_export_target(directory)
    with export_lock(directory):  # all or nothing, and never into a folder another run is exporting to
        check_export_target(directory)  # as it is now that no other writer can change it
        _replace_folder(directory.absolute(), write)
    return directory


def _upgrade_v1(config: dict[str, Any]) -> dict[str, Any]:
    """A version-1 config as version 2 writes it: ``kind``, ``max_context`` and ``max_len`` out of ``info``
    into fields of their own (a value also at the top level is kept for the checks of the fields; two that
    differ are a ValueError), and SentenceVAE's ``mu_batchnorm: g`` (BN-VAE) as the posterior component
    it became: ``BatchNormGaussian`` with gamma g, or no argument for g = 0 (no batch norm)."""
    info = config.get("info", {})
    if not isinstance(info, dict):
        return config  # the checks of the fields name it
    info = dict(info)
    upgraded = {**config, "version": 2, "info": info}
    for name in ("kind", "max_context", "max_len"):
        # version 1 wrote these in info only; one also at the top (a hand edit) must not be dropped unchecked
        inner, outer = info.pop(name, None), config.get(name)
        if inner is not None and outer is not None and inner != outer:
            raise ValueError(f"{name} is given twice, as {_short(outer)} and as info.{name} {_short(inner)}; keep one")
        upgraded[name] = inner if inner is not None else outer
    model = config.get("model")
    if isinstance(model, dict) and model.get("class_path") in (SENTENCE_VAE, "textvae.models.SentenceVAE") \
            and isinstance(model.get("init_args"), dict) and "mu_batchnorm" in model["init_args"]:
        init_args = dict(model["init_args"])
        gamma = init_args["mu_batchnorm"]
        if isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and gamma >= 0:
            del init_args["mu_batchnorm"]  # anything else stays, for the constructor to refuse
            if gamma > 0:
                init_args["posterior"] = {"class_path": "textvae.posteriors.BatchNormGaussian",
                                          "init_args": {"gamma": gamma}}
        upgraded["model"] = {**model, "init_args": init_args}
    return upgraded


def _model_class(class_path: str, source: Path) -> type[nn.Module]:
    try:
        return textvae_class(class_path, nn.Module)
    except ValueError as err:
        raise DataError(f"{source}: model {err}") from None


def check_device(device: str | torch.device, *, instead: str = "cpu") -> torch.device:
    """``device`` as a torch device this machine has; a ValueError that names it otherwise (``instead``: what to
    suggest, e.g. "--device cpu"), rather than torch's error deep inside the weights' loading."""
    try:
        checked = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}; use cpu, cuda or cuda:N") from None
    if checked.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"CUDA is not available on this machine; use {instead}")
        if checked.index is not None and checked.index >= torch.cuda.device_count():
            raise ValueError(f"no GPU {checked.index}: this machine has {torch.cuda.device_count()} "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif checked.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"MPS is not available on this machine; use {instead}")
    elif checked.type != "cpu":
        raise ValueError(f"unsupported device {str(device)!r}; use cpu, cuda or cuda:N")
    return checked


def _read_config(config_path: Path) -> dict[str, Any]:
    """``config.json`` parsed and of a format version this code reads, upgraded to the current layout."""
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{config_path}: corrupt config ({err}); re-export the model") from None
    except RecursionError:
        raise DataError(f"{config_path}: corrupt config (JSON nested too deeply); re-export the model") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise DataError(f"{config_path}: not a textvae export config (format should be {FORMAT!r})")
    version = config.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DataError(f"{config_path}: unknown export format version {_short(version)}; re-export the model")
    if version > VERSION:
        raise DataError(f"{config_path}: export format version {version} is newer than this textvae reads "
                        f"(version {VERSION}); upgrade textvae")
    return config


def _weight_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, read from its header (no tensor is loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise DataError(f"{weights}: unreadable weights ({err}); re-export the model") from None


def _check_shapes(cls: type[nn.Module], init_args: dict[str, Any], weights: Path) -> None:
    """Build the config's model on the meta device (no memory) and compare its tensor shapes with the
    weights file's, so a config that asks for another model than the weights hold (or an absurd one:
    vocab_size 10**10) is an error before anything is allocated."""
    try:
        with torch.device("meta"):
            skeleton = cls(**init_args)
        expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    except (TypeError, ValueError):
        return  # the real construction reports the arguments that do not fit
    except Exception:  # noqa: BLE001 - a constructor that cannot run on the meta device: the real load checks
        return
    for name, shape in _weight_shapes(weights).items():
        if name in expected and expected[name] != shape:
            raise DataError(f"{weights}: tensor {name!r} has shape {list(shape)} but the config's {cls.__name__} "
                            f"needs {list(expected[name])}; the config and the weights do not belong together: "
                            "re-export the model")


def _check_finite(model: nn.Module, weights: Path) -> None:
    """Refuse weights with NaN or infinite values: such a model (a training that diverged) only generates
    empty or random text and evaluates to NaN, which no tool should report as a result."""
    floating = {name: t for name, t in model.state_dict().items() if t.is_floating_point()}
    if all_finite(list(floating.values())):
        return
    for name, tensor in floating.items():
        if not bool(torch.isfinite(tensor).all()):
            raise DataError(f"{weights}: tensor {name!r} holds NaN or infinite values (the training diverged, e.g. "
                            "with too high a learning rate); retrain the model, or export an earlier checkpoint")


def _load_tokenizer(directory: Path, vocab_size: object) -> Tokenizer:
    """The export's tokenizer; a corrupt one, or one whose vocabulary is not the model's (``vocab_size``, when
    the model's arguments name it), is a DataError: mismatched ids decode to the wrong words or out of range."""
    path = directory / "tokenizer.json"
    try:
        tokenizer = load_tokenizer(directory)
    except DataError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise DataError(f"{path}: corrupt tokenizer ({type(err).__name__}: {err}); re-export the model") from None
    if isinstance(vocab_size, int) and tokenizer.vocab_size != vocab_size:
        raise DataError(f"{path}: the tokenizer has {tokenizer.vocab_size:,} tokens but the model's vocabulary has "
                        f"{vocab_size:,}; they do not belong together: re-export the model with its tokenizer")
    return tokenizer


def _with_assets(init_args: dict[str, Any], assets: object, directory: Path, config_path: Path) -> dict[str, Any]:
    """``init_args`` with each argument ``assets`` names (a folder inside the export: a pretrained backbone's
    configuration and tokenizer) made a path from ``directory``; a name or folder that is not that is a DataError."""
    if not isinstance(assets, list) or not all(isinstance(name, str) for name in assets):
        raise DataError(f'{config_path}: "assets" must be a list of argument names, got {_short(assets)}; re-export the model')
    resolved = dict(init_args)
    for name in assets:
        folder = init_args.get(name)
        if not isinstance(folder, str) or Path(folder).is_absolute() or ".." in Path(folder).parts \
                or not (directory / folder).is_dir():
            raise DataError(f"{config_path}: asset {name!r} must name a folder inside the export, got {_short(folder)}; "
                            "re-export the model")
        resolved[name] = str(directory / folder)
    return resolved


def load_export(directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> Export:
    """Rebuild the model from ``config.json``, load its safetensors weights, and load the tokenizer.

    Everything is checked before a tool can use it, each problem one :class:`DataError` naming the file and
    what to do: the config's fields (types and ranges), the device, the weights' shapes against the config
    (before allocating), non-finite weights, and the tokenizer's size against the model's vocabulary."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        device = check_device(device)
    except ValueError as err:
        raise DataError(str(err)) from None
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise DataError(f"{directory}: not a textvae model export (no config.json); export one with textvae-train")
    config = _read_config(config_path)
    version = config["version"]
    try:
        if version == 1:
            config = _upgrade_v1(config)
        fields = _fields(config, infer_kind=version == 1)
    except ValueError as err:
        raise DataError(f"{config_path}: {err}; re-export the model") from None
    model_config = config.get("model")
    if not isinstance(model_config, dict) or not isinstance(model_config.get("init_args", {}), dict):
        raise DataError(f'{config_path}: "model" must be an object with a class_path and an object of init_args, '
                        f"got {_short(model_config)}; re-export the model")
    init_args = _with_assets(model_config.get("init_args", {}), config.get("assets", []), directory, config_path)
    cls = _model_class(str(model_config.get("class_path")), config_path)
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise DataError(f"{weights}: missing model weights")
    _check_shapes(cls, init_args, weights)
    try:
        model = cls(**init_args)
    except (TypeError, ValueError) as err:
        raise DataError(f"{config_path}: model arguments do not fit {cls.__name__}: {err}") from None
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise DataError(f"{weights}: unreadable or mismatched weights ({err}); re-export the model") from None
    if missing or unexpected:
        raise DataError(f"{weights}: weights do not match the config (missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]}); re-export the model")
    _check_finite(model, weights)
    tokenizer = _load_tokenizer(directory, init_args.get("vocab_size"))
    model.to(device).eval()
    if fields["kind"] is None:  # a version-1 export that did not say
        fields["kind"] = _kind_of(model)
    return Export(model=model, tokenizer=tokenizer, **fields)
