"""Yelp reviews as prepared by Yang et al. (2017) from Yelp15 (Tang et al. 2015): one review a line,
``_UNK`` for out-of-vocabulary words, 20k vocabulary (100k / 10k / 10k documents). Lines are usually
``LABEL<TAB>text`` with the rating as label; that is detected per file (every line must have it).

Source: the archive of He et al. (2019), jxhe/vae-lagging-encoder ``prepare_data.py`` (Google Drive),
holding ``yelp_data/yelp.{train,valid,test}.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corpora.common import SourceTree, convert, open_source, read_documents
from corpora.yahoo import SOURCES as _ARCHIVE
from textvae.data.records import Sentence

NAME = "yelp"
KIND = "sentences"
DESCRIPTION = "Yelp reviews (Yang et al. 2017), long documents with rating labels"

SOURCES = _ARCHIVE  # the same archive holds Yahoo and Yelp
SPLIT_FILES = {
    "train": ("yelp.train.txt", "train.txt"),
    "valid": ("yelp.valid.txt", "valid.txt", "val.txt"),
    "test": ("yelp.test.txt", "test.txt"),
}


def read(tree: SourceTree, name: str) -> list[Sentence]:
    return read_documents(tree, name)


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
            cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert the splits found in ``source`` (a folder or the archive), or download the archive."""
    tree = open_source(source, SOURCES, cache_dir=cache_dir, subdir="vae-lagging-encoder")
    return convert(Path(out), tree, SPLIT_FILES, read, name=NAME, kind=KIND)
