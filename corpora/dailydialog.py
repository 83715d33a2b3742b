"""DailyDialog (Li et al. 2017): daily-life dialogues with a dialog act and an emotion on every turn
(11,118 / 1,000 / 1,000 dialogues; CC BY-NC-SA 4.0).

Two layouts are read:

* DialogWAE's (guxd/DialogWAE ``data/DailyDial/``): ``{split}.utts.txt`` with one dialogue a line,
  turns ended by ``__eou__``, and ``{split}.act.txt`` / ``{split}.emotion.txt`` with one integer a turn;
* the official ``ijcnlp_dailydialog`` one, with ``train/``, ``validation/``, ``test/`` folders holding
  ``dialogues_{split}.txt``, ``dialogues_act_{split}.txt``, ``dialogues_emotion_{split}.txt``
  (``dialogues_text.txt`` / ``dialogues_act.txt`` / ``dialogues_emotion.txt`` are accepted too).

Speakers alternate ``A``/``B``. Acts and emotions are stored by name; a line whose number of acts or
emotions differs from its number of turns is an error naming both counts.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from corpora.common import Source, SourceTree, open_source, write_corpus
from textvae.data.records import DataError, DataWarning, Dialogue, Turn

NAME = "dailydialog"
KIND = "dialogues"
DESCRIPTION = "DailyDialog dialogues with a dialog act and an emotion on every turn (Li et al. 2017)"

ACTS = {"1": "inform", "2": "question", "3": "directive", "4": "commissive"}
EMOTIONS = {"0": "none", "1": "anger", "2": "disgust", "3": "fear", "4": "happiness", "5": "sadness",
            "6": "surprise"}

_RAW = "https://raw.githubusercontent.com/guxd/DialogWAE/master/data/DailyDial/"
# Not pinned: we could not compare these files with a copy we hold, so trust on first use.
SOURCES = tuple(Source(_RAW + f"{split}.{part}.txt", None, f"{split}.{part}.txt")
                for split in ("train", "valid", "test") for part in ("utts", "act", "emotion"))


def layouts(prefix: str, folder: str) -> tuple[tuple[str, str, str], ...]:
    """Candidate (text, act, emotion) file names of one split, DialogWAE's layout first."""
    return (
        (f"{prefix}.utts.txt", f"{prefix}.act.txt", f"{prefix}.emotion.txt"),
        (f"{folder}/dialogues_{folder}.txt", f"{folder}/dialogues_act_{folder}.txt",
         f"{folder}/dialogues_emotion_{folder}.txt"),
        (f"{folder}/dialogues_text.txt", f"{folder}/dialogues_act.txt", f"{folder}/dialogues_emotion.txt"),
    )


SPLIT_FILES = {
    "train": layouts("train", "train"),
    "valid": layouts("valid", "validation"),
    "test": layouts("test", "test"),
}


def find(tree: SourceTree, candidates: tuple[tuple[str, str, str], ...]) -> tuple[str, str | None, str | None] | None:
    """The (text, act, emotion) files of the first layout whose text file is present."""
    for text_name, act_name, emotion_name in candidates:
        text = tree.find(text_name)
        if text is None:
            continue
        folder = text.rpartition("/")[0]
        siblings = [f"{folder}/{n.rpartition('/')[2]}" if folder else n.rpartition("/")[2]
                    for n in (act_name, emotion_name)]
        act, emotion = (s if s in tree.names else None for s in siblings)
        return text, act, emotion
    return None


def split_turns(line: str) -> list[str]:
    parts = line.split("__eou__")
    if len(parts) > 1 and not parts[-1].strip():
        parts = parts[:-1]  # the line ends with __eou__
    return [p.strip() for p in parts]


def _labels(tree: SourceTree, name: str | None, names: dict[str, str], what: str,
            dialogues: dict[int, list[str]], text_where: str) -> dict[int, list[str]] | None:
    """Per text line number, the turn labels (by name) from an act or emotion file."""
    if name is None:
        return None
    where = tree.where(name)
    labels = {}
    for number, line in tree.lines(name):
        turns = dialogues.get(number)
        if turns is None:
            raise DataError(f"{where}:{number}: {what} line with no dialogue on line {number} of {text_where}; "
                            "the files must have one line per dialogue, in the same order")
        ids = line.split()
        if len(ids) != len(turns):
            raise DataError(f"{where}:{number}: {len(ids)} {what}s for {len(turns)} turns on line {number} of "
                            f"{text_where}; each turn needs exactly one {what}")
        unknown = [i for i in ids if i not in names]
        if unknown:
            known = ", ".join(f"{k} {v}" for k, v in names.items())
            raise DataError(f"{where}:{number}: unknown {what} {unknown[0]!r}; expected one of {known}")
        labels[number] = [names[i] for i in ids]
    missing = sorted(set(dialogues) - set(labels))
    if missing:
        raise DataError(f"{where}: no {what}s for the dialogue on line {missing[0]} of {text_where} "
                        f"({len(missing)} dialogues without {what}s)")
    return labels


def read(tree: SourceTree, text: str, act: str | None, emotion: str | None) -> list[Dialogue]:
    text_where = tree.where(text)
    dialogues = {number: split_turns(line) for number, line in tree.lines(text)}
    acts = _labels(tree, act, ACTS, "act", dialogues, text_where)
    emotions = _labels(tree, emotion, EMOTIONS, "emotion", dialogues, text_where)
    file_name = text.rpartition("/")[2]
    records, empty = [], 0
    for number, texts in dialogues.items():
        turns = []
        for i, turn_text in enumerate(texts):
            if not turn_text:  # dropped with its act and emotion, and counted
                empty += 1
                continue
            turns.append(Turn(speaker="AB"[i % 2], text=turn_text,
                              act=acts[number][i] if acts else None,
                              emotion=emotions[number][i] if emotions else None))
        if turns:
            records.append(Dialogue(turns=tuple(turns), id=f"{file_name}:{number}"))
    if empty:
        warnings.warn(f"{text_where}: skipped {empty} empty turn{'s' if empty != 1 else ''}", DataWarning,
                      stacklevel=2)
    return records


def convert_splits(out: str | os.PathLike, tree: SourceTree, files: dict[str, tuple], *, name: str,
                   require_all: bool = False, **extra: Any) -> dict[str, Any]:
    """Read each split's (text, act, emotion) files from ``tree`` and write the prepared corpus."""
    found = {}
    for split, candidates in files.items():
        located = find(tree, candidates)
        if located is None:
            if require_all:
                raise DataError(f"{tree.path}: missing the {split} dialogues of {name} (looked for "
                                f"{' or '.join(c[0] for c in candidates)})")
            continue
        found[split] = located
        for part, file in zip(("act", "emotion"), located[1:], strict=True):
            if file is None:
                warnings.warn(f"{tree.where(located[0])}: no {part} file beside it; its turns have no {part}",
                              DataWarning, stacklevel=2)
    if not found:
        raise DataError(f"{tree.path}: no DailyDialog files found (expected e.g. valid.utts.txt, or "
                        "validation/dialogues_validation.txt from the official release with its train.zip, "
                        "validation.zip and test.zip extracted); point --source at the folder that holds them")
    splits = {split: read(tree, *located) for split, located in found.items()}
    if any(located[1] for located in found.values()):
        extra.setdefault("acts", list(ACTS.values()))  # the full inventory, in the corpus' id order
    if any(located[2] for located in found.values()):
        extra.setdefault("emotions", list(EMOTIONS.values()))
    return write_corpus(out, name=name, kind=KIND, splits=splits, source=tree.origin,
                        files={split: tree.where(located[0]) for split, located in found.items()}, **extra)


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
            cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert the splits found in ``source`` (either layout), or download DialogWAE's files."""
    tree = open_source(source, SOURCES, cache_dir=cache_dir, subdir=NAME)
    return convert_splits(Path(out), tree, SPLIT_FILES, name=NAME)
