"""Pretrained word vectors in the word2vec / GloVe text format, for the embedding metrics of dialogue evaluation.

One word a line followed by its D numbers, separated by spaces; word2vec files start with a ``COUNT D``
header line, GloVe files do not. Nothing is downloaded: the user names the file. A bad file raises one
:class:`~textvae.data.records.DataError` naming the file and line.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from textvae.data.records import DataError, iter_text_lines

BINARY_HINT = "word vectors must be in the word2vec/GloVe text format (a word2vec binary: save it with binary=False)"


class WordVectors(NamedTuple):
    index: dict[str, int]  # word -> row of ``vectors``
    vectors: Tensor  # (W, D)
    dim: int

    def lookup(self, words: Sequence[str]) -> Tensor:
        """The vectors of the words that have one, in order: (n, D) with n <= len(words)."""
        rows = [self.index[w] for w in words if w in self.index]
        return self.vectors[rows]


def load_word_vectors(path: str | os.PathLike, words: Collection[str] | None = None) -> WordVectors:
    """Read a word2vec/GloVe text file, keeping only ``words`` when given (an evaluation needs only its
    own vocabulary, and a GloVe file holds millions of words). Every line is checked for its field count;
    numbers are parsed for kept words. A word containing spaces (GloVe 840B has a few) is the fields
    before the last D."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; name the word-vector file")
    index: dict[str, int] = {}
    rows: list[list[float]] = []
    dim = None
    try:
        for number, line in iter_text_lines(path, what="line"):
            fields = line.rstrip().split(" ")
            if dim is None and len(fields) == 2 and all(f.isdigit() for f in fields):  # word2vec header
                dim = int(fields[1])
                if dim < 1:
                    raise DataError(f"{path}:{number}: header says {dim} dimensions")
                continue
            if dim is None:
                dim = len(fields) - 1
                if dim < 1:
                    raise DataError(f"{path}:{number}: expected a word and its numbers; {BINARY_HINT}")
            if len(fields) < dim + 1:
                raise DataError(f"{path}:{number}: {len(fields) - 1} numbers where the file has {dim} dimensions")
            word = " ".join(fields[:-dim])
            if (words is not None and word not in words) or word in index:
                continue  # a repeated word keeps its first vector, as gensim does
            try:
                rows.append([float(x) for x in fields[-dim:]])
            except ValueError:
                raise DataError(f"{path}:{number}: the vector of {word!r} is not all numbers; {BINARY_HINT}") from None
            index[word] = len(rows) - 1
    except DataError as err:
        if "not valid UTF-8" in str(err):
            raise DataError(f"{err}; {BINARY_HINT}") from None
        raise
    if dim is None:
        raise DataError(f"{path}: no word vectors in the file")
    vectors = torch.tensor(rows, dtype=torch.float32) if rows else torch.zeros(0, dim)
    return WordVectors(index=index, vectors=vectors, dim=dim)
