"""Synthetic sentences from :func:`textvae.data.synthetic.generate_sentences`: a corpus with known
structure, generated offline, for smoke tests and sanity checks of the models.

``--size`` sentences for train and ``size // 10`` each for valid and test, every split from its own
seed derived from ``--seed``, so the splits differ and the same arguments give the same corpus.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corpora.common import Source, write_corpus
from textvae.data.records import DataError

NAME = "synthetic-sentences"
KIND = "sentences"
DESCRIPTION = "generated sentences with known structure (no download), for smoke tests"
SOURCES: tuple[Source, ...] = ()
DEFAULT_SIZE = 10_000


def split_sizes_and_seeds(size: int, seed: int) -> dict[str, tuple[int, int]]:
    """``{split: (n, seed)}``: train ``size``, valid and test ``size // 10``; distinct seeds for every split and --seed."""
    if size < 10:
        raise DataError(f"--size must be at least 10 (valid and test get size // 10 each), got {size}")
    if seed < 0:
        raise DataError(f"--seed must be 0 or more, got {seed}")
    return {"train": (size, 3 * seed), "valid": (size // 10, 3 * seed + 1), "test": (size // 10, 3 * seed + 2)}


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None, *, size: int = DEFAULT_SIZE,
            seed: int = 0) -> dict[str, Any]:
    """Generate the corpus into ``out`` (``source`` must be None: nothing is read)."""
    if source is not None:
        raise DataError(f"{NAME} is generated, it reads no --source")
    plan = split_sizes_and_seeds(size, seed)
    from textvae.data.synthetic import generate_sentences  # lazily: only this corpus needs it

    splits = {split: generate_sentences(n, s) for split, (n, s) in plan.items()}
    return write_corpus(Path(out), name=NAME, kind=KIND, splits=splits,
                        source="textvae.data.synthetic.generate_sentences", size=size, seed=seed,
                        seeds={split: s for split, (_, s) in plan.items()})
