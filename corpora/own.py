"""Your own data as a prepared corpus: ``text`` (sentences) and ``dialogues``.

``--source`` is one file, or a folder holding a file per split (``train``, ``valid`` or ``dev``, ``test``; each
``.txt`` or ``.jsonl``). Sentences: a plain text file, one sentence a line, or JSONL of
``{"text": ..., "label"?: ..., "attributes"?: {...}}``; the two are told apart by the file's first line.
Dialogues: JSONL in the documented format (:mod:`textvae.data.records`). Every line is validated as for
the named corpora (invalid UTF-8, malformed JSON, missing fields: one line naming the file and the line).

Where only a training file is given, ``--valid-fraction`` and ``--test-fraction`` (default 0.1 each) of its
records, drawn at random from ``--seed``, become the valid and test splits; the rest, in their order, is train.
The file is read twice (a count, then the split), one record at a time: memory stays flat in its size.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from corpora.common import SPLITS, Source, corpus_folder, split_order, write_summary
from textvae.data.records import (
    DataError,
    Dialogue,
    Kind,
    Sentence,
    atomic_output,
    iter_text_lines,
    parse_records,
)

SOURCES: tuple[Source, ...] = ()
SPLIT_NAMES = {"train": ("train",), "valid": ("valid", "dev", "validation"), "test": ("test",)}
SUFFIXES = (".jsonl", ".txt")
DEFAULT_FRACTION = 0.1


def _split_files(source: Path) -> dict[str, Path]:
    """``{split: file}`` from ``--source``: the file itself as train, or a folder's train/valid/test files."""
    if source.is_file():
        return {"train": source}
    if not source.is_dir():
        raise DataError(f"{source}: no such file or folder; give --source a text or JSONL file, or a folder of "
                        "train/valid/test files")
    found = {}
    for split, stems in SPLIT_NAMES.items():
        matches = [source / f"{stem}{suffix}" for stem in stems for suffix in SUFFIXES
                   if (source / f"{stem}{suffix}").is_file()]
        if len(matches) > 1:
            raise DataError(f"{source}: several {split} files ({', '.join(m.name for m in matches)}); keep one")
        if matches:
            found[split] = matches[0]
    if "train" not in found:
        raise DataError(f"{source}: no train file (train.txt or train.jsonl); name the training file so, or give "
                        "--source the file itself")
    return found


def _is_jsonl(path: Path) -> bool:
    """Whether a sentence file is JSONL (its first line a JSON object) rather than plain text."""
    for number, line in iter_text_lines(path):
        if not line.lstrip().startswith("{"):
            return False
        try:
            return isinstance(json.loads(line), dict)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{number}: starts like JSON but is not (each line must be one JSON object in a "
                            "JSONL file; a plain text file's lines must not start with '{')") from None
    raise DataError(f"{path}: file is empty; give a file with one sentence a line")


def _records(path: Path, kind: Kind) -> Iterator[Sentence | Dialogue]:
    if kind == "dialogues" or _is_jsonl(path):
        return parse_records(iter_text_lines(path), path, kind)
    return (Sentence(text=line.strip()) for _, line in iter_text_lines(path))


def _check_fraction(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise DataError(f"--{name.replace('_', '-')} must be at least 0 and below 1, got {value}")


def prepare_own(out: str | os.PathLike, source: str | os.PathLike | None, *, kind: Kind, name: str,
                valid_fraction: float | None = None, test_fraction: float | None = None, seed: int = 0,
                progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Write ``source`` as a prepared corpus of ``kind`` into ``out`` (see the module doc); ``progress(done,
    total)`` hears of the training file's records as they are written."""
    if source is None:
        raise DataError(f"{name} is your own data: give it with --source FILE_OR_FOLDER")
    files = _split_files(Path(source).expanduser())
    split_here = set(SPLITS) - set(files)  # drawn from train
    given = {"valid_fraction": valid_fraction, "test_fraction": test_fraction}
    for option, value in given.items():
        if value is not None and option.split("_")[0] not in split_here:
            raise DataError(f"--{option.replace('_', '-')} draws a split from the training file, but --source "
                            f"gives a {option.split('_')[0]} file; leave the option out")
        if value is not None:
            _check_fraction(option, value)
    fractions = {split: (given[f"{split}_fraction"] if given[f"{split}_fraction"] is not None else DEFAULT_FRACTION)
                 for split in sorted(split_here)}
    if sum(fractions.values()) >= 1:
        raise DataError(f"--valid-fraction and --test-fraction add up to {sum(fractions.values())}; leave some for train")
    train = files["train"]
    with warnings.catch_warnings():  # the count: what it skips is reported once, by the pass that writes
        warnings.simplefilter("ignore")
        total = sum(1 for _ in _records(train, kind))
    if total == 0:
        raise DataError(f"{train}: no {kind} (every line is empty)")
    # which records of the training file go to valid and test: exact counts, drawn at random from the seed
    counts = {split: max(1, round(total * f)) if f > 0 else 0 for split, f in fractions.items()}
    if sum(counts.values()) >= total:
        raise DataError(f"{train}: {total} {kind} cannot give {counts} to the other splits and keep some for train; "
                        "give more or lower the fractions")
    drawn = random.Random(seed).sample(range(total), sum(counts.values()))
    assignment, start = {}, 0
    for split, count in counts.items():
        assignment.update(dict.fromkeys(drawn[start:start + count], split))
        start += count

    out = corpus_folder(out, split_order(SPLITS))
    written = {split: 0 for split in SPLITS}
    labels, acts, emotions = set(), set(), set()
    targets = {split: out / f"{split}.jsonl" for split in SPLITS}

    def note(record: Sentence | Dialogue) -> None:
        if isinstance(record, Sentence):
            if record.label is not None:
                labels.add(record.label)
        else:
            acts.update(t.act for t in record.turns if t.act is not None)
            emotions.update(t.emotion for t in record.turns if t.emotion is not None)

    with contextlib.ExitStack() as stack:  # each file moved into place only if every split is written
        streams = {split: stack.enter_context(stack.enter_context(atomic_output(target)).open("w", encoding="utf-8"))
                   for split, target in targets.items()}

        def put(split: str, record: Sentence | Dialogue) -> None:
            streams[split].write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            written[split] += 1
            note(record)

        for i, record in enumerate(_records(train, kind)):
            put(assignment.get(i, "train"), record)
            if progress is not None and i % 10_000 == 9_999:
                progress(i + 1, total)
        for split, path in files.items():
            if split != "train":
                for record in _records(path, kind):
                    put(split, record)
        for split, count in written.items():
            if count == 0:
                raise DataError(f"{files.get(split, train)}: the {split} split got no {kind}; give it some")
    summary: dict[str, Any] = {"name": name, "kind": kind, "splits": written, "source": str(Path(source).resolve()),
                               "files": {split: str(path) for split, path in files.items()}}
    if fractions:
        summary["drawn_from_train"] = {"fractions": fractions, "seed": seed}
    if kind == "sentences" and labels:
        summary["labels"] = sorted(labels, key=lambda v: (isinstance(v, str), v))
    if kind == "dialogues":
        summary["acts"], summary["emotions"] = sorted(acts), sorted(emotions)
    write_summary(out, summary)
    return summary


def prepare_text(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
                 valid_fraction: float | None = None, test_fraction: float | None = None, seed: int = 0,
                 progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Your sentences (plain text or JSONL) as a prepared sentence corpus."""
    return prepare_own(out, source, kind="sentences", name="text", valid_fraction=valid_fraction,
                       test_fraction=test_fraction, seed=seed, progress=progress)


def prepare_dialogues(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
                      valid_fraction: float | None = None, test_fraction: float | None = None, seed: int = 0,
                      progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Your dialogues (JSONL) as a prepared dialogue corpus."""
    return prepare_own(out, source, kind="dialogues", name="dialogues", valid_fraction=valid_fraction,
                       test_fraction=test_fraction, seed=seed, progress=progress)
