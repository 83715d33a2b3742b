"""Checks that stop a training run early, in one line, instead of a traceback or a silently broken model.

* :class:`NonFiniteError`: the first non-finite training loss or gradient stops the run (raised by
  :class:`~textvae.lightning.TextVAESystem`), so no NaN weights are ever exported.
* :func:`check_checkpoint`: ``--ckpt_path`` must be a local file that loads with ``weights_only=True``; a
  pickle that could run code is refused before anything unpickles it unsafely, and a URL is refused
  (Lightning loads remote checkpoints with ``weights_only=False``).
* :func:`check_writable_folder`: an output folder that cannot be written (read-only, immutable, or a file
  in its place) is found before training, not when the first log line or the export is written.
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

# what --ckpt_path may name besides a file: Lightning resolves these to checkpoints the run itself wrote
CHECKPOINT_KEYWORDS = ("last", "best", "hpc")


class SetupError(ValueError):
    """A setting the user must fix before training can run; the message is one line naming it and the fix."""


class NonFiniteError(ArithmeticError):
    """Training produced a non-finite loss or gradient; the message names the step and the term."""


def nonfinite_terms(values: Mapping[str, torch.Tensor | float]) -> list[str]:
    """``"name = value"`` for each non-finite value, e.g. ``["reconstruction = nan", "kl = inf"]``."""
    found = []
    for name, value in values.items():
        number = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(number):
            found.append(f"{name} = {number}")
    return found


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite, with one device-to-host copy for them all. Called on
    every gradient at every step, so it screens with one sum per tensor (a NaN or inf makes its sum
    non-finite; ~17x cheaper than ``isfinite`` on every element) and checks elementwise only when a sum is
    not finite, which finite values can also cause by overflowing."""
    if not tensors:
        return True
    sums = torch.stack([t.detach().sum(dtype=torch.float32) for t in tensors])
    if bool(torch.isfinite(sums).all()):
        return True
    return bool(torch.stack([torch.isfinite(t.detach()).all() for t in tensors]).all())


def is_url(path: str) -> bool:
    return "://" in path or path.startswith("registry:")


def check_checkpoint(path: str) -> None:
    """Refuse a ``--ckpt_path`` that is not a local file loading with ``weights_only=True`` (tensors and plain
    data only: unpickling anything else could run code). A URL is refused: Lightning would fetch and unpickle it
    with ``weights_only=False``."""
    if path in CHECKPOINT_KEYWORDS:
        return
    if is_url(path):
        raise SetupError(f"--ckpt_path {path}: only local checkpoint files are accepted (a remote one would be "
                         "unpickled unchecked); download it first and pass its path")
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "no such file"
        raise SetupError(f"--ckpt_path {path}: {what}; give a checkpoint file (.ckpt) written by textvae-train")
    try:
        # mmap: the tensors are not read, only the pickled structure is checked (zip checkpoints only)
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        raise SetupError(f"--ckpt_path {path}: refused: it holds pickled objects other than tensors and plain "
                         "data, which could run code when loaded; use a checkpoint written by textvae-train") from None
    except Exception as err:  # noqa: BLE001 - whatever torch.load raises, the file is no loadable checkpoint
        reason = " ".join(str(err).split())[:200]
        raise SetupError(f"--ckpt_path {path}: not a readable checkpoint ({type(err).__name__}: {reason})") from None


def check_writable_folder(path: str | os.PathLike, what: str, fix: str) -> None:
    """Make sure ``path`` is, or can be created as, a folder this process can write in; else a one-line
    :class:`SetupError` starting with ``what`` (which folder; the caller names the path) and ending with how to
    ``fix`` it. Creates nothing: it writes
    (and removes) a nameless temporary file in the nearest existing folder, the only check that also catches
    read-only mounts, immutable folders and ACLs."""
    path = Path(path).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SetupError(f"{what}: {existing} is a file, not a folder; {fix}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise SetupError(f"{what}: cannot write in {existing} ({err.strerror or err}); {fix}") from None
