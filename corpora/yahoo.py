"""Yahoo Answers as prepared by Yang et al. (2017): one document a line, about 79 words, ``_UNK`` for
out-of-vocabulary words, 20k vocabulary (100k / 10k / 10k documents). Some copies prefix each line
with a topic label and a tab; that is detected per file (every line must have it).

Source: the archive of He et al. (2019), jxhe/vae-lagging-encoder ``prepare_data.py`` (Google Drive),
holding ``yahoo_data/yahoo.{train,valid,test}.txt``. The valid and test files are also in
fangleai/Implicit-LVM ``lang_model_yahoo/data/{val,test}.txt`` (the ``yahoo-lite`` corpus uses those).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corpora.common import Source, SourceTree, convert, open_source, read_documents
from textvae.data.records import Sentence

NAME = "yahoo"
KIND = "sentences"
DESCRIPTION = "Yahoo Answers documents (Yang et al. 2017), about 79 words each"

_DRIVE_ID = "1yH3Ufj20R06OX1prPMPS6E3fKSG_2MqN"
# A Google Drive file: not pinned (we hold no copy of the archive), so trust on first use.
SOURCES = (Source(f"https://drive.usercontent.google.com/download?id={_DRIVE_ID}&export=download&confirm=t",
                  None, "vae-lagging-encoder-datasets.tar.gz"),)
SPLIT_FILES = {
    "train": ("yahoo.train.txt", "train.txt"),
    "valid": ("yahoo.valid.txt", "valid.txt", "val.txt"),
    "test": ("yahoo.test.txt", "test.txt"),
}


def read(tree: SourceTree, name: str) -> list[Sentence]:
    return read_documents(tree, name)


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
            cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert the splits found in ``source`` (a folder or the archive), or download the archive."""
    tree = open_source(source, SOURCES, cache_dir=cache_dir, subdir="vae-lagging-encoder")
    return convert(Path(out), tree, SPLIT_FILES, read, name=NAME, kind=KIND)
