"""Synthetic dialogues from :func:`textvae.data.synthetic.generate_dialogues`: dialogues with known
structure, generated offline, for smoke tests and sanity checks of the dialogue models.

``--size`` dialogues for train and ``size // 10`` each for valid and test, every split from its own
seed derived from ``--seed`` (as in :mod:`corpora.synthetic_sentences`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corpora.common import Source, write_corpus
from corpora.synthetic_sentences import split_sizes_and_seeds
from textvae.data.records import DataError

NAME = "synthetic-dialogues"
KIND = "dialogues"
DESCRIPTION = "generated dialogues with known structure (no download), for smoke tests"
SOURCES: tuple[Source, ...] = ()
DEFAULT_SIZE = 2_000


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None, *, size: int = DEFAULT_SIZE,
            seed: int = 0) -> dict[str, Any]:
    """Generate the corpus into ``out`` (``source`` must be None: nothing is read)."""
    if source is not None:
        raise DataError(f"{NAME} is generated, it reads no --source")
    plan = split_sizes_and_seeds(size, seed)
    from textvae.data.synthetic import generate_dialogues  # lazily: only this corpus needs it

    splits = {split: generate_dialogues(n, s) for split, (n, s) in plan.items()}
    return write_corpus(Path(out), name=NAME, kind=KIND, splits=splits,
                        source="textvae.data.synthetic.generate_dialogues", size=size, seed=seed,
                        seeds={split: s for split, (_, s) in plan.items()})
