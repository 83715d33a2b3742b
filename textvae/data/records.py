"""The prepared-corpus format: sentences and dialogues as JSONL, read and written with clear errors.

A prepared corpus is a folder of ``{split}.jsonl`` files (``train``, ``valid``, ``test``) plus a
``corpus.json`` describing it. One JSON object a line:

* sentences: ``{"text": str, "label"?: str | int, "attributes"?: {name: str | int}}``
* dialogues: ``{"id"?: str, "turns": [{"speaker": str, "text": str, "act"?: str, "emotion"?: str}],
  "topic"?: str, "meta"?: {...}}``

Bad input never passes silently: malformed lines raise :class:`DataError` naming the file, the line
and what to fix; skipped empty lines are counted and reported once per file as a :class:`DataWarning`.
Pathological lines are refused before they can exhaust memory or the stack: a line longer than
:data:`MAX_LINE_BYTES`, JSON nested deeper than :data:`MAX_JSON_DEPTH`, or a string holding a lone
UTF-16 surrogate escape (``"\\ud800"``, not text: it cannot be written as UTF-8).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

Label = str | int

# Limits on a line of a user's file: far above any sentence, dialogue or context (a DailyDialog line is
# under 10 KB, a record nests 4 levels), far below what would exhaust memory or Python's stack.
MAX_LINE_BYTES = 8 << 20  # 8 MiB
MAX_JSON_DEPTH = 100


class DataError(ValueError):
    """Input data the user must fix; the message is one line naming the file and the fix."""


class DataWarning(UserWarning):
    """Input data that was changed or skipped (and counted), e.g. empty lines or truncated sentences."""


@dataclass(frozen=True)
class Sentence:
    text: str
    label: Label | None = None
    attributes: dict[str, Label] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text}
        if self.label is not None:
            out["label"] = self.label
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str
    act: str | None = None
    emotion: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"speaker": self.speaker, "text": self.text}
        if self.act is not None:
            out["act"] = self.act
        if self.emotion is not None:
            out["emotion"] = self.emotion
        return out


@dataclass(frozen=True)
class Dialogue:
    turns: tuple[Turn, ...]
    topic: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        out["turns"] = [turn.to_json() for turn in self.turns]
        if self.topic is not None:
            out["topic"] = self.topic
        if self.meta:
            out["meta"] = self.meta
        return out


Kind = Literal["sentences", "dialogues"]


def iter_text_lines(path: str | os.PathLike, *, what: str = "line") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-empty line of a UTF-8 text file.

    A line that is not valid UTF-8 raises :class:`DataError` (with line number and byte offset);
    empty and whitespace-only lines are skipped, counted, and reported once at the end.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    with path.open("rb") as f:
        yield from iter_stream_lines(f, str(path), what=what)


def iter_stream_lines(f: IO[bytes], where: str, *, what: str = "line", first_number: int = 1,
                      end: int | None = None) -> Iterator[tuple[int, str]]:
    """:func:`iter_text_lines` for an open binary stream (e.g. an archive member) named ``where``; with ``end``,
    the lines that start before byte ``end`` from where the stream stands, numbered from ``first_number`` (a
    shard of a file, :func:`line_shards`)."""
    empty = 0
    number = first_number - 1
    left = -1 if end is None else end - f.tell()  # bytes of the shard still to read (-1: to the end)
    # readline with a limit: a file with no newline in gigabytes is refused, not read whole into memory
    while left and (raw := f.readline(MAX_LINE_BYTES + 2)):
        number += 1
        if left > 0:
            left = max(left - len(raw), 0)
        if len(raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
            raise DataError(f"{where}:{number}: line longer than {MAX_LINE_BYTES >> 20} MiB (the most a line may "
                            "hold); put one record a line")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                f"{where}:{number}: not valid UTF-8 (byte {err.start} of the line); "
                "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
            ) from None
        if number == 1:
            line = line.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not text
        line = line.rstrip("\r\n")
        if not line.strip():
            empty += 1
            continue
        yield number, line
    if empty:
        warnings.warn(f"{where}: skipped {empty} empty {what}{'s' if empty != 1 else ''}", DataWarning, stacklevel=3)


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def nests_deeper_than(text: str, depth: int) -> bool:
    """Whether the arrays and objects of a JSON text nest deeper than ``depth``, counted without recursion
    (brackets inside strings do not count); cheap for the usual line, which holds fewer brackets than that."""
    if text.count("[") + text.count("{") <= depth:
        return False
    brackets = _BRACKETS.findall(_JSON_STRING.sub("", text))
    return max(accumulate(1 if b in "[{" else -1 for b in brackets), default=0) > depth


def parse_json_line(line: str, path: str | os.PathLike, number: int, *, what: str = "one JSON object") -> Any:
    """``json.loads`` of line ``number`` of a user's file; anything that is not a sound JSON line raises a
    one-line :class:`DataError` naming the file and line: malformed JSON, nesting deeper than
    :data:`MAX_JSON_DEPTH` (which would exhaust the stack), a lone UTF-16 surrogate escape. ``what`` says
    what each line must be, for the message ("each line must be one JSON object")."""
    where = f"{path}:{number}"
    if nests_deeper_than(line, MAX_JSON_DEPTH):
        raise DataError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels; each line must be {what}")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: malformed JSON ({err.msg} at column {err.colno}); each line must be {what}") from None
    except RecursionError:  # nests_deeper_than bounds the nesting; this is a second guard, never a traceback
        raise DataError(f"{where}: JSON nested too deeply; each line must be {what}") from None
    if _SURROGATE_ESCAPE.search(line):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as err:
            raise DataError(f"{where}: a string holds a lone UTF-16 surrogate ({err.object[err.start]!r}), which is "
                            "not text; escape a character outside the BMP as a pair (\\ud83d\\ude00) or write it "
                            "as UTF-8") from None
    return obj


def _require(cond: bool, path: Path, number: int, message: str) -> None:
    if not cond:
        raise DataError(f"{path}:{number}: {message}")


def _is_label(value: Any) -> bool:
    return type(value) is str or type(value) is int or (isinstance(value, (str, int)) and not isinstance(value, bool))


def _label(value: Any, path: Path, number: int, name: str, prefix: str = "") -> Label:
    # the messages are formatted only on an error: this runs for every label of every line of a corpus
    if not _is_label(value):
        raise DataError(f'{path}:{number}: "{prefix}{name}" must be a string or an integer, got {type(value).__name__}')
    return value


def _optional_str(obj: dict, key: str, path: Path, number: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not _is_label(value):
        raise DataError(f'{path}:{number}: "{key}" must be a string, got {type(value).__name__}')
    return str(value)


def parse_sentence(obj: Any, path: Path, number: int) -> Sentence:
    _require(isinstance(obj, dict), path, number, 'expected a JSON object like {"text": "..."}')
    text = obj.get("text")
    _require(isinstance(text, str), path, number, 'missing string field "text"')
    label = obj.get("label")
    if label is not None:
        label = _label(label, path, number, "label")
    attributes = obj.get("attributes") or {}
    _require(isinstance(attributes, dict), path, number, '"attributes" must be an object of name: value')
    attributes = {str(k): _label(v, path, number, k, "attributes.") for k, v in attributes.items()}
    return Sentence(text=text, label=label, attributes=attributes)


def parse_dialogue(obj: Any, path: Path, number: int) -> Dialogue:
    _require(isinstance(obj, dict), path, number, 'expected a JSON object like {"turns": [...]}')
    turns = obj.get("turns")
    _require(isinstance(turns, list) and len(turns) > 0, path, number,
             'missing non-empty list field "turns"')
    parsed = []
    for i, turn in enumerate(turns):
        if not (isinstance(turn, dict) and isinstance(turn.get("text"), str)):
            raise DataError(f'{path}:{number}: turn {i} must be an object with a string "text"')
        speaker = turn.get("speaker")
        if not (isinstance(speaker, str) and speaker != ""):
            raise DataError(f'{path}:{number}: turn {i} needs a non-empty string "speaker"')
        parsed.append(Turn(speaker=speaker, text=turn["text"], act=_optional_str(turn, "act", path, number),
                           emotion=_optional_str(turn, "emotion", path, number)))
    meta = obj.get("meta") or {}
    _require(isinstance(meta, dict), path, number, '"meta" must be an object')
    return Dialogue(turns=tuple(parsed), topic=_optional_str(obj, "topic", path, number), meta=meta,
                    id=_optional_str(obj, "id", path, number))


def read_jsonl(path: str | os.PathLike, kind: Kind) -> Iterator[Sentence] | Iterator[Dialogue]:
    """Read a prepared JSONL file of sentences or dialogues, validating every line.

    Sentences with empty text and dialogue turns with empty text are skipped and counted (one
    warning per file); a dialogue left with no turns is skipped and counted too.
    """
    return parse_records(iter_text_lines(path, what="line"), path, kind)


def read_jsonl_shard(path: str | os.PathLike, kind: Kind, shard: LineShard) -> Iterator[Sentence] | Iterator[Dialogue]:
    """:func:`read_jsonl` of the lines of one shard of the file (:func:`line_shards`), numbered as in the file;
    skipped lines are counted and reported per shard."""
    path = Path(path)
    with path.open("rb") as f:
        f.seek(shard.start)
        yield from parse_records(iter_stream_lines(f, str(path), first_number=shard.first_line, end=shard.end),
                                 path, kind)


def parse_records(lines: Iterable[tuple[int, str]], path: str | os.PathLike,
                  kind: Kind) -> Iterator[Sentence] | Iterator[Dialogue]:
    """The records of numbered JSONL lines of ``path`` (:func:`read_jsonl`)."""
    if kind not in ("sentences", "dialogues"):
        raise ValueError(f"kind must be 'sentences' or 'dialogues', got {kind!r}")
    path = Path(path)
    skipped: Counter[str] = Counter()
    for number, line in lines:
        obj = parse_json_line(line, path, number)
        if kind == "sentences":
            sentence = parse_sentence(obj, path, number)
            if not sentence.text.strip():
                skipped["empty sentence"] += 1
                continue
            yield sentence
        else:
            dialogue = parse_dialogue(obj, path, number)
            turns = tuple(t for t in dialogue.turns if t.text.strip())
            skipped["empty turn"] += len(dialogue.turns) - len(turns)
            if not turns:
                skipped["dialogue with no text"] += 1
                continue
            if len(turns) != len(dialogue.turns):
                dialogue = Dialogue(turns=turns, topic=dialogue.topic, meta=dialogue.meta, id=dialogue.id)
            yield dialogue
    for what, count in skipped.items():
        if count:
            warnings.warn(f"{path}: skipped {count} {what}{'s' if count != 1 else ''}", DataWarning, stacklevel=2)


class LineShard(NamedTuple):
    start: int  # byte offset of the shard's first line
    end: int  # byte offset after its last line
    first_line: int  # the line number (from 1) of its first line


def line_shards(path: str | os.PathLike, shard_bytes: int) -> tuple[str, list[LineShard]]:
    """The SHA-256 of a file and its cut into shards of whole lines of about ``shard_bytes`` each (one read of
    the file): what several processes read side by side, each line numbered as in the whole file."""
    path = Path(path)
    size = path.stat().st_size
    starts = [0]
    with path.open("rb") as f:
        for cut in range(shard_bytes, size, shard_bytes):
            f.seek(cut - 1)  # from the byte before the cut: a cut just after a newline is a line start
            rest = f.readline(MAX_LINE_BYTES + 2)
            if not rest.endswith(b"\n") and f.tell() < size:
                raise DataError(f"{path}: the line around byte {cut} is longer than {MAX_LINE_BYTES >> 20} MiB (the "
                                "most a line may hold); put one record a line")
            if f.tell() < size and f.tell() > starts[-1]:
                starts.append(f.tell())
        digest, newlines, offset = hashlib.sha256(), 0, 0
        first_lines, pending = [1], starts[1:]
        f.seek(0)
        for block in iter(lambda: f.read(1 << 22), b""):
            while pending and pending[0] <= offset + len(block):
                first_lines.append(newlines + block[: pending.pop(0) - offset].count(b"\n") + 1)
            newlines += block.count(b"\n")
            digest.update(block)
            offset += len(block)
    ends = [*starts[1:], size]
    return digest.hexdigest(), [LineShard(*shard) for shard in zip(starts, ends, first_lines, strict=True)]


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Write ``path`` through ``PATH.tmp`` beside it, moved into place only once complete: an error or Ctrl-C
    leaves neither half a file under the final name nor the temporary one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(path: str | os.PathLike, records: Iterable[Sentence | Dialogue]) -> int:
    """Write records one JSON object a line (UTF-8, not ASCII-escaped); returns how many. The file appears
    whole or not at all (:func:`atomic_output`)."""
    count = 0
    with atomic_output(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


def detect_kind(path: str | os.PathLike) -> Kind:
    """Whether a prepared JSONL file holds sentences or dialogues, from its first record."""
    path = Path(path)
    for number, line in iter_text_lines(path):
        obj = parse_json_line(line, path, number)
        if isinstance(obj, dict) and "turns" in obj:
            return "dialogues"
        if isinstance(obj, dict) and "text" in obj:
            return "sentences"
        raise DataError(f'{path}:{number}: neither a sentence {{"text": ...}} nor a dialogue {{"turns": [...]}}')
    raise DataError(f"{path}: file is empty; prepare the corpus first (textvae-corpus prepare ...)")
