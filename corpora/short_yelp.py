"""Short Yelp (Shen et al. 2017 sentences, as used by Li et al. 2019 and DG-VAE): ``LABEL<TAB>sentence``,
LABEL the sentiment 0/1, tokenised and lower-cased, about 10 words a sentence (100k / 10k / 10k).

Source: the archive Li et al. (2019) share on Google Drive (the id in zhangjf-nlp/DG-VAEs
``prepare_data.py``), holding ``short_yelp_data/short_yelp.{train,valid,test}.txt`` and labelled
subsets ``short_yelp.train.{100,500,1000,2000,10000}.txt``. The subsets, valid and test files are
also in zhangjf-nlp/DG-VAEs ``datasets/short_yelp_data/`` (the ``yelp10k`` lite corpus uses those).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corpora.common import Source, SourceTree, convert, open_source, read_labelled
from textvae.data.records import Sentence

NAME = "short_yelp"
KIND = "sentences"
DESCRIPTION = "Short Yelp review sentences with 0/1 sentiment labels (Li et al. 2019, DG-VAE)"

_DRIVE_ID = "18h8UYr801qr-USCYRzZySi_DSbUkHW71"
# A Google Drive file: not pinned (we hold no copy of the archive), so trust on first use.
SOURCES = (Source(f"https://drive.usercontent.google.com/download?id={_DRIVE_ID}&export=download&confirm=t",
                  None, "short_yelp_data.tar.gz"),)
SPLIT_FILES = {
    "train": ("short_yelp.train.txt", "train.txt"),
    "valid": ("short_yelp.valid.txt", "valid.txt"),
    "test": ("short_yelp.test.txt", "test.txt"),
}


def read(tree: SourceTree, name: str) -> list[Sentence]:
    return read_labelled(tree, name)


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
            cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert the splits found in ``source`` (a folder or the archive), or download the archive."""
    tree = open_source(source, SOURCES, cache_dir=cache_dir, subdir=NAME)
    return convert(Path(out), tree, SPLIT_FILES, read, name=NAME, kind=KIND)
