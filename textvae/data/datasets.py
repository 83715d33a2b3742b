"""Prepared corpora → Hugging Face ``datasets`` (offline, cached where the caller says) → encoded examples.

``load_records`` validates a prepared JSONL file line by line (clear errors, counted warnings) and
stores it as an Arrow dataset in ``cache_dir``. The cache key includes the file's content hash, so an
edited file is never answered from a stale cache. ``SentenceDataset`` and ``DialogueDataset`` then
encode the text with a tokenizer into the examples that ``textvae.data.batching`` collates.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from textvae.data.batching import DialogueExample, SentenceExample
from textvae.data.profiles import callers_of, example_profile
from textvae.data.records import DataError, DataWarning, Kind, detect_kind, read_jsonl
from textvae.data.tokenizers import Tokenizer

SENTENCE_FEATURES = {"text": "string", "label": "string", "attributes": "string"}
TURN_FEATURES = {"speaker": "string", "text": "string", "act": "string", "emotion": "string"}


def _features(kind: Kind):
    import datasets

    if kind == "sentences":
        return datasets.Features({k: datasets.Value(v) for k, v in SENTENCE_FEATURES.items()})
    turn = {k: datasets.Value(v) for k, v in TURN_FEATURES.items()}
    return datasets.Features({"id": datasets.Value("string"), "turns": [turn],
                              "topic": datasets.Value("string"), "meta": datasets.Value("string")})


def _rows(path: str, kind: Kind, content_hash: str) -> Iterator[dict[str, Any]]:
    # content_hash is unused here: it is part of gen_kwargs so that it is part of the cache key.
    empty = True
    for record in read_jsonl(path, kind):
        empty = False
        if kind == "sentences":
            yield {"text": record.text, "label": None if record.label is None else str(record.label),
                   "attributes": json.dumps(record.attributes) if record.attributes else None}
        else:
            yield {"id": record.id, "turns": [t.to_json() | {"act": t.act, "emotion": t.emotion} for t in record.turns],
                   "topic": record.topic, "meta": json.dumps(record.meta) if record.meta else None}
    if empty:  # before `datasets` says 'Instruction "train" corresponds to no data!'
        if kind == "sentences":
            raise DataError(f"{path}: no sentences (every sentence is empty); give a file with at least one sentence")
        raise DataError(f"{path}: no dialogues (every turn is empty); give a file with at least one dialogue "
                        "with text")


def file_hash(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet_datasets():
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def load_records(path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, kind: Kind | None = None):
    """Load a prepared JSONL file as a ``datasets.Dataset`` cached under ``cache_dir`` (default: ``.cache``
    next to the file, where ``textvae-train`` keeps it too).

    Sentence rows: ``text``, ``label`` (string or None), ``attributes`` (JSON string or None).
    Dialogue rows: ``id``, ``turns`` (speaker/text/act/emotion), ``topic``, ``meta`` (JSON string).
    """
    import datasets

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; name one split file, e.g. {path / 'train.jsonl'}")
    if not path.is_file():
        raise DataError(f"{path}: no such file; prepare the corpus first (textvae-corpus prepare NAME --out DIR)")
    kind = kind or detect_kind(path)
    try:
        with _quiet_datasets():
            return datasets.Dataset.from_generator(
                _rows, gen_kwargs={"path": str(path.resolve()), "kind": kind, "content_hash": file_hash(path)},
                features=_features(kind), cache_dir=str(cache_dir or path.resolve().parent / ".cache"),
            )
    except datasets.exceptions.DatasetGenerationError as err:
        if isinstance(err.__cause__, DataError):
            raise err.__cause__ from None
        raise


class Vocab:
    """A closed set of category names (labels, dialog acts, emotions, topics) ↔ ids, in sorted order."""

    def __init__(self, names: Iterable[str]):
        self.names = list(names)
        if len(set(self.names)) != len(self.names):
            raise ValueError("category names must be unique")
        self.index = {name: i for i, name in enumerate(self.names)}

    @classmethod
    def build(cls, values: Iterable[str | None]) -> Vocab:
        return cls(sorted({v for v in values if v is not None}, key=_natural_key))

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self.index


def category_id(vocab: Vocab, name: str | None, what: str, source: str) -> int | None:
    """The id of ``name`` (None stays None); an unknown name raises DataError listing the known ones."""
    if name is None:
        return None
    if name not in vocab:
        known = ", ".join(vocab.names) if vocab.names else "none"
        raise DataError(f"{source}: {what} {name!r} is not among the model's {what}s ({known})")
    return vocab.index[name]


def _natural_key(name: str) -> tuple:
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def _truncate(ids: list[int], max_len: int | None) -> tuple[list[int], bool]:
    if max_len is not None and len(ids) > max_len:
        return ids[:max_len], True
    return ids, False


def _warn_truncated(source: str, what: str, count: int, total: int, max_len: int | None) -> None:
    if count:
        warnings.warn(f"{source}: truncated {count} of {total} {what} longer than max_len={max_len} tokens",
                      DataWarning, stacklevel=3)


def check_label_key(key: str) -> None:
    """A DataError unless ``key`` is ``label`` or ``attributes.NAME``."""
    if key != "label" and (not key.startswith("attributes.") or key == "attributes."):
        raise DataError(f"label key {key!r}: use 'label' or 'attributes.NAME' (e.g. attributes.topic)")


def label_under(key: str, label: Any, attributes: dict | None) -> str | None:
    """A sentence's label under ``key`` (``label`` or ``attributes.NAME``) as a string; None where it has none."""
    value = label if key == "label" else (attributes or {}).get(key.removeprefix("attributes."))
    return None if value is None else str(value)


def label_values(records, key: str = "label") -> list[str | None]:
    """Each sentence's label under ``key``: ``label``, or ``attributes.NAME`` for an attribute the corpus
    records (the synthetic corpus: topic, sentiment, tense, ...); None where a sentence has none."""
    check_label_key(key)
    if key == "label":
        return list(records["label"])
    return [label_under(key, None, json.loads(raw) if raw else None) for raw in records["attributes"]]


class SentenceDataset(torch.utils.data.Dataset):
    """Encoded sentences: ``SentenceExample(ids, label, index)``; ``lengths`` for bucketing (with BOS/EOS).
    ``label_key``: where a sentence's label is read (:func:`label_values`); ``unlabelled=True`` reads none
    (the unlabelled part of semi-supervised training)."""

    def __init__(self, records, tokenizer: Tokenizer, *, max_len: int | None = None,
                 labels: Vocab | None = None, source: str = "sentences", label_key: str = "label",
                 unlabelled: bool = False):
        texts = records["text"]
        self.texts = texts
        encoded = [tokenizer.encode(t) for t in texts]
        truncated = 0
        self.ids = []
        for ids in encoded:
            ids, cut = _truncate(ids, max_len)
            truncated += cut
            self.ids.append(ids)
        _warn_truncated(source, "sentences", truncated, len(texts), max_len)
        raw_labels = [None] * len(texts) if unlabelled else label_values(records, label_key)
        self.labels = labels if labels is not None else Vocab.build(raw_labels)
        self.label_ids = [category_id(self.labels, v, "label", source) for v in raw_labels]
        self.attributes = [json.loads(a) if a else {} for a in records["attributes"]]
        self.lengths = [len(ids) + 2 for ids in self.ids]

    def extend(self, other: SentenceDataset) -> None:
        """Append the sentences of ``other`` (encoded with the same tokenizer and label names) after these."""
        if other.labels.names != self.labels.names:
            raise ValueError("only datasets with the same label names can be joined")
        self.texts = list(self.texts) + list(other.texts)
        self.ids += other.ids
        self.label_ids += other.label_ids
        self.attributes += other.attributes
        self.lengths += other.lengths

    def repeat(self, times: int) -> None:
        """Hold every sentence ``times`` times (an epoch then reads each that often)."""
        self.texts, self.ids = list(self.texts) * times, self.ids * times
        self.label_ids, self.attributes, self.lengths = self.label_ids * times, self.attributes * times, self.lengths * times

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> SentenceExample:
        return SentenceExample(ids=self.ids[i], label=self.label_ids[i], index=i)

    @property
    def num_targets(self) -> int:
        """Words + EOS over the dataset: the per-word perplexity denominator."""
        return sum(len(ids) + 1 for ids in self.ids)


DEFAULT_MAX_CONTEXT = 10  # context turns per example, as Zhao et al. (2017); exports record the one trained with


class DialogueDataset(torch.utils.data.Dataset):
    """One example per turn that has at least one turn before it: (context of up to ``max_context``
    previous turns, response, response act/emotion, dialogue topic, and the speaker profile when the
    dialogues carry caller metadata, :mod:`textvae.data.profiles`)."""

    def __init__(self, records, tokenizer: Tokenizer, *, max_context: int = DEFAULT_MAX_CONTEXT, max_len: int | None = None,
                 acts: Vocab | None = None, emotions: Vocab | None = None, topics: Vocab | None = None,
                 source: str = "dialogues"):
        if max_context < 1:
            raise ValueError(f"max_context must be >= 1, got {max_context}")
        dialogues = list(records)
        self.max_context = max_context
        self.acts = acts if acts is not None else Vocab.build(t["act"] for d in dialogues for t in d["turns"])
        self.emotions = emotions if emotions is not None else Vocab.build(
            t["emotion"] for d in dialogues for t in d["turns"])
        self.topics = topics if topics is not None else Vocab.build(d["topic"] for d in dialogues)
        self.turn_ids: list[list[list[int]]] = []  # per dialogue, per turn
        self.speakers: list[list[str]] = []
        self.turn_acts: list[list[int | None]] = []
        self.turn_emotions: list[list[int | None]] = []
        self.topic_ids: list[int | None] = []
        self.callers: list[dict[str, list[float]] | None] = []  # per dialogue: each caller's profile features
        self.examples: list[tuple[int, int]] = []  # (dialogue, response turn)
        truncated = total = 0
        for d, dialogue in enumerate(dialogues):
            ids = []
            for turn in dialogue["turns"]:
                turn_ids, cut = _truncate(tokenizer.encode(turn["text"]), max_len)
                truncated += cut
                total += 1
                ids.append(turn_ids)
            self.turn_ids.append(ids)
            self.speakers.append([t["speaker"] for t in dialogue["turns"]])
            self.turn_acts.append([category_id(self.acts, t["act"], "act", source) for t in dialogue["turns"]])
            self.turn_emotions.append([category_id(self.emotions, t["emotion"], "emotion", source)
                                       for t in dialogue["turns"]])
            self.topic_ids.append(category_id(self.topics, dialogue["topic"], "topic", source))
            self.callers.append(callers_of(dialogue.get("meta")))
            self.examples.extend((d, n) for n in range(1, len(ids)))
        _warn_truncated(source, "turns", truncated, total, max_len)
        self.lengths = [len(self.turn_ids[d][n]) + 2 for d, n in self.examples]
        self.has_profiles = any(c is not None for c in self.callers)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> DialogueExample:
        d, n = self.examples[i]
        start = max(0, n - self.max_context)
        responder = self.speakers[d][n]
        return DialogueExample(
            context=self.turn_ids[d][start:n],
            context_floor=[int(s == responder) for s in self.speakers[d][start:n]],
            response=self.turn_ids[d][n], act=self.turn_acts[d][n], emotion=self.turn_emotions[d][n],
            topic=self.topic_ids[d], index=i,
            profile=example_profile(self.callers[d], responder) if self.has_profiles else None,
        )

    @property
    def num_targets(self) -> int:
        return sum(len(self.turn_ids[d][n]) + 1 for d, n in self.examples)


def texts_of(records, kind: Kind) -> Sequence[str] | Iterator[str]:
    """All texts of a loaded split (sentences, or every dialogue turn): what a tokenizer trains on."""
    if kind == "sentences":
        return records["text"]
    return (turn["text"] for dialogue in records for turn in dialogue["turns"])
