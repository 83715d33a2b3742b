"""Switchboard dialogues as prepared for kgCVAE (Zhao et al. 2017): telephone conversations between two
callers on a given topic, every utterance with one of 42 dialog acts and 4 sentiment scores
(2,316 / 60 / 62 dialogues in the kgCVAE split).

One dialogue a line: ``{"A": {caller meta}, "B": {...}, "topic": str, "prompt": str,
"utts": [[caller, text, [dialog_act, [4 sentiment floats]]], ...]}``. Each turn's speaker is its
caller (``A``/``B``) and its act the dialog act; nothing else is dropped: the callers' metadata
(cleaned of stray spaces and quotes, ``" 2"`` -> ``2``), the prompt and the per-turn sentiment
(``meta["turn_sentiment"]``, aligned with the turns) go to the dialogue's ``meta``, as do any other
fields a line carries.

Source: snakeztc/NeuralDialog-CVAE ``data/json_data/{train,valid,test}.jsonl``.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

from corpora.common import Source, SourceTree, convert, open_source
from textvae.data.records import DataError, DataWarning, Dialogue, Turn, parse_json_line

NAME = "switchboard"
KIND = "dialogues"
DESCRIPTION = "Switchboard dialogues with dialog acts, topics and caller metadata (kgCVAE, Zhao et al. 2017)"

_REPO = "https://raw.githubusercontent.com/snakeztc/NeuralDialog-CVAE/"
SOURCES = (
    # Not pinned: we hold no copy of the training split, so trust on first use.
    Source(_REPO + "master/data/json_data/train.jsonl", None, "train.jsonl"),
    # Byte-for-byte the file in ../shared/corpora/swda/valid.jsonl, at the commit it was taken from.
    Source(_REPO + "a1a978638748dca9758dc239cd5f15e4e9b08fda/data/json_data/valid.jsonl",
           "8b4c482ebae50dd22358135502fe46015f278aa1640df004dcffbddd71b05bd3", "valid.jsonl"),
    Source(_REPO + "a1a978638748dca9758dc239cd5f15e4e9b08fda/data/json_data/test.jsonl", None, "test.jsonl"),
)
SPLIT_FILES = {"train": ("train.jsonl",), "valid": ("valid.jsonl",), "test": ("test.jsonl",)}

_INTEGER = re.compile(r"-?[0-9]+")
_KNOWN = {"A", "B", "topic", "prompt", "utts"}


def clean(value: Any, *, numbers: bool = True) -> Any:
    """Strip the stray spaces and quotes of the original metadata: ``' "MALE"'`` -> ``'MALE'``, ``' 2'`` -> 2."""
    if not isinstance(value, str):
        return value
    value = value.strip().strip('"').strip()
    return int(value) if numbers and _INTEGER.fullmatch(value) else value


def parse(obj: Any, where: str, number: int, dialogue_id: str) -> tuple[Dialogue, int]:
    """One kgCVAE dialogue object -> (Dialogue, number of empty turns dropped)."""

    def fail(message: str) -> DataError:
        return DataError(f"{where}:{number}: {message}")

    if not isinstance(obj, dict) or not isinstance(obj.get("utts"), list):
        raise fail('expected a kgCVAE dialogue object with a list "utts" of [caller, text, [act, sentiment]]')
    turns, sentiment, extra_features, empty = [], [], [], 0
    for i, utt in enumerate(obj["utts"]):
        if not isinstance(utt, list) or len(utt) < 2 or not isinstance(utt[0], str) or not isinstance(utt[1], str):
            raise fail(f"utterance {i} must be [caller, text, [dialog_act, [4 sentiment floats]]]")
        caller, text = utt[0].strip(), utt[1].strip()
        features = utt[2] if len(utt) > 2 else []
        if not caller:
            raise fail(f"utterance {i} has an empty caller")
        if not isinstance(features, list) or (features and not isinstance(features[0], (str, type(None)))):
            raise fail(f"utterance {i}: features must be [dialog_act, [4 sentiment floats]]")
        if not text:  # dropped with its features, and counted
            empty += 1
            continue
        turns.append(Turn(speaker=caller, text=text, act=features[0] if features else None))
        sentiment.append(features[1] if len(features) > 1 else None)
        extra_features.append(features[2:])
    if not turns:
        raise fail("dialogue has no utterance with text")

    meta: dict[str, Any] = {}
    for caller in ("A", "B"):
        if isinstance(obj.get(caller), dict):
            meta.setdefault("callers", {})[caller] = {k: clean(v) for k, v in obj[caller].items()}
        elif caller in obj:
            meta.setdefault("callers", {})[caller] = obj[caller]
    if "prompt" in obj:
        meta["prompt"] = clean(obj["prompt"], numbers=False)
    meta["turn_sentiment"] = sentiment
    if any(extra_features):
        meta["turn_features"] = extra_features  # features after [act, sentiment], if a file has any
    for key in obj.keys() - _KNOWN:
        meta[key] = obj[key]
    topic = clean(obj.get("topic"), numbers=False)
    return Dialogue(turns=tuple(turns), topic=str(topic) if topic is not None else None, meta=meta,
                    id=dialogue_id), empty


def read(tree: SourceTree, name: str) -> list[Dialogue]:
    where, file_name = tree.where(name), name.rpartition("/")[2]
    dialogues, empty = [], 0
    for number, line in tree.lines(name):
        obj = parse_json_line(line, where, number, what="one kgCVAE dialogue object")
        dialogue, dropped = parse(obj, where, number, f"{file_name}:{number}")
        dialogues.append(dialogue)
        empty += dropped
    if empty:
        warnings.warn(f"{where}: skipped {empty} empty utterance{'s' if empty != 1 else ''}", DataWarning,
                      stacklevel=2)
    return dialogues


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
            cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert the splits found in ``source`` (a folder of ``{split}.jsonl``), or download them."""
    tree = open_source(source, SOURCES, cache_dir=cache_dir, subdir=NAME)
    return convert(Path(out), tree, SPLIT_FILES, read, name=NAME, kind=KIND)
