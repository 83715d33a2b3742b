"""Corpus preparation: turn each benchmark's own files into a prepared corpus (``{split}.jsonl`` plus
``corpus.json``, see :mod:`textvae.data.records`).

One module per corpus, each with ``NAME``, ``KIND``, ``DESCRIPTION``, ``SOURCES`` (the canonical
files: url, sha256 or None, file name) and ``prepare(out, source=None, **options) -> dict`` (the
``corpus.json`` written). ``CORPORA`` lists them, plus the lite-protocol corpora of :mod:`corpora.lite`::

    from corpora import prepare
    prepare("ptb-lite", "data/ptb-lite", source="../shared/corpora")
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corpora import (
    dailydialog,
    lite,
    own,
    ptb,
    short_yelp,
    snli,
    switchboard,
    synthetic_dialogues,
    synthetic_sentences,
    yahoo,
    yelp,
)
from corpora.common import Source
from textvae.data.records import DataError


@dataclass(frozen=True)
class Corpus:
    name: str
    kind: str  # "sentences" | "dialogues"
    description: str
    sources: tuple[Source, ...]
    prepare: Callable[..., dict[str, Any]]


def _of(module) -> Corpus:
    return Corpus(module.NAME, module.KIND, module.DESCRIPTION, module.SOURCES, module.prepare)


CORPORA: dict[str, Corpus] = {c.name: c for c in (
    _of(ptb),
    _of(yahoo),
    _of(yelp),
    _of(short_yelp),
    _of(snli),
    _of(dailydialog),
    _of(switchboard),
    _of(synthetic_sentences),
    _of(synthetic_dialogues),
    Corpus("yelp10k", "sentences", "lite: short_yelp train.10000 for train, its valid and test files",
           lite.YELP10K_SOURCES, lite.prepare_yelp10k),
    Corpus("ptb-lite", "sentences", "lite: PTB valid.txt for train, test.txt for valid and test",
           lite.PTB_LITE_SOURCES, lite.prepare_ptb_lite),
    Corpus("yahoo-lite", "sentences", "lite: Yahoo val.txt for train, test.txt for valid and test",
           lite.YAHOO_LITE_SOURCES, lite.prepare_yahoo_lite),
    Corpus("dailydialog-lite", "dialogues", "lite: DailyDialog valid for train, test for valid and test",
           lite.DAILYDIALOG_LITE_SOURCES, lite.prepare_dailydialog_lite),
    Corpus("swda-valid", "dialogues", "lite: the 60 Switchboard valid dialogues split 48/6/6",
           lite.SWDA_VALID_SOURCES, lite.prepare_swda_valid),
    Corpus("text", "sentences", "your own sentences: --source a text file (one a line) or JSONL, or a folder",
           own.SOURCES, own.prepare_text),
    Corpus("dialogues", "dialogues", "your own dialogues: --source a JSONL file or a folder of them",
           own.SOURCES, own.prepare_dialogues),
)}


def get(name: str) -> Corpus:
    """The corpus called ``name``; an unknown name is a :class:`DataError` listing every name."""
    try:
        return CORPORA[name]
    except KeyError:
        raise DataError(f"unknown corpus {name!r}; available: {', '.join(CORPORA)}") from None


_WHY_NOT = {
    "size": "only the synthetic corpora are generated to a size",
    "seed": "only the synthetic corpora and your own data (text, dialogues) take a seed",
    "cache_dir": "it downloads nothing",
    "valid_fraction": "only your own data (text, dialogues) is split by fractions",
    "test_fraction": "only your own data (text, dialogues) is split by fractions",
}


def prepare(name: str, out: str | os.PathLike, *, source: str | os.PathLike | None = None,
            cache_dir: str | os.PathLike | None = None, size: int | None = None,
            seed: int | None = None, valid_fraction: float | None = None,
            test_fraction: float | None = None,
            progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Prepare corpus ``name`` into the folder ``out``; returns what ``corpus.json`` holds.

    Options left as None take the corpus' defaults; an option the corpus does not use is an error
    rather than silently ignored. ``progress(done, total)`` hears of the records written by the corpora that
    take long at scale (the synthetic sentences, your own data); the others do not call it.
    """
    corpus = get(name)
    options = {k: v for k, v in {"size": size, "seed": seed, "cache_dir": cache_dir, "valid_fraction": valid_fraction,
                                 "test_fraction": test_fraction}.items() if v is not None}
    accepted = inspect.signature(corpus.prepare).parameters
    for key in options:
        if key not in accepted:
            raise DataError(f"{name} takes no --{key.replace('_', '-')}: {_WHY_NOT[key]}")
    if progress is not None and "progress" in accepted:
        options["progress"] = progress
    return corpus.prepare(out, source, **options)
