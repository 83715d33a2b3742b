"""SNLI 1.0 sentences (Bowman et al. 2015): the unique premise and hypothesis sentences of each split,
in order of first appearance, as a sentence corpus (the SNLI setting of Li et al. 2019 and DG-VAE).
Sentences are kept as written (not lower-cased or tokenised); ``dev`` becomes ``valid``.

Source: Stanford's ``snli_1.0.zip`` (or its extracted folder) with ``snli_1.0_{train,dev,test}.jsonl``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corpora.common import Source, SourceTree, convert, open_source
from textvae.data.records import DataError, Sentence, parse_json_line

NAME = "snli"
KIND = "sentences"
DESCRIPTION = "SNLI 1.0 premise and hypothesis sentences, unique per split"

# Not pinned: we hold no copy of the archive, so trust on first use.
SOURCES = (Source("https://nlp.stanford.edu/projects/snli/snli_1.0.zip", None, "snli_1.0.zip"),)
SPLIT_FILES = {
    "train": ("snli_1.0_train.jsonl",),
    "valid": ("snli_1.0_dev.jsonl",),
    "test": ("snli_1.0_test.jsonl",),
}


def read(tree: SourceTree, name: str) -> list[Sentence]:
    seen: dict[str, None] = {}  # insertion-ordered set
    for number, line in tree.lines(name):
        pair = parse_json_line(line, tree.where(name), number, what="one SNLI pair object")
        for field in ("sentence1", "sentence2"):
            text = pair.get(field) if isinstance(pair, dict) else None
            if not isinstance(text, str):
                raise DataError(f'{tree.where(name)}:{number}: missing string field "{field}"; is this an SNLI '
                                "jsonl file?")
            text = text.strip()
            if text:
                seen.setdefault(text)
    return [Sentence(text=text) for text in seen]


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
            cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert the splits found in ``source`` (the zip or its folder), or download the zip."""
    tree = open_source(source, SOURCES, cache_dir=cache_dir, subdir=NAME)
    return convert(Path(out), tree, SPLIT_FILES, read, name=NAME, kind=KIND)
