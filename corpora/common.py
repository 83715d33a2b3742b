"""Glue shared by the corpus modules: find the input files (in a folder, a .zip or a .tar.gz),
read their lines with clear errors, download the canonical files, and write a prepared corpus.

A prepared corpus is a folder of ``{split}.jsonl`` plus ``corpus.json`` (see
:mod:`textvae.data.records`); :func:`write_corpus` writes both and returns the ``corpus.json`` dict.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from corpora.download import default_cache_dir, fetch
from textvae.data.records import (
    DataError,
    DataWarning,
    Dialogue,
    Sentence,
    iter_stream_lines,
    iter_text_lines,
    write_jsonl,
)

SPLITS = ("train", "valid", "test")
_SEARCH_DEPTH = 3  # how deep below --source a file is looked for (e.g. datasets/yahoo_data/yahoo.train.txt)


class Source(NamedTuple):
    """One canonical file: where to download it, its pinned sha256 (None: trust on first use), its name."""

    url: str
    sha256: str | None
    filename: str


class SourceTree:
    """The files a corpus is converted from: a folder, a .zip or .tar(.gz) archive, or a list of files.

    Files are looked up by name (``find("ptb.train.txt")``) or by a name with its folder
    (``find("train/dialogues_train.txt")``), wherever they sit in the first few levels.
    """

    def __init__(self, path: str | os.PathLike, *, files: Sequence[Path] | None = None, origin: str | None = None):
        self.path = Path(path)
        self.origin = origin or str(self.path)  # what corpus.json records as "source"
        self._files: dict[str, Path] = {}
        if files is not None:
            self._kind = "files"
            self._files = {f.name: Path(f) for f in files}
            names = list(self._files)
        elif self.path.is_dir():
            self._kind = "dir"
            names = _walk(self.path)
        elif zipfile.is_zipfile(self.path):
            self._kind = "zip"
            with zipfile.ZipFile(self.path) as z:
                names = [i.filename for i in z.infolist() if not i.is_dir()]
        elif self.path.is_file() and _is_tar(self.path):
            self._kind = "tar"
            with tarfile.open(self.path) as t:
                names = [m.name for m in t.getmembers() if m.isfile()]
        elif self.path.is_file():  # a single text file
            self._kind = "files"
            self._files = {self.path.name: self.path}
            names = [self.path.name]
        else:
            raise DataError(f"{self.path}: no such file or folder; --source must be a folder or an archive "
                            "holding the corpus files")
        self.names = sorted(n for n in (n.removeprefix("./") for n in names) if not _is_junk(n))

    def find(self, *candidates: str) -> str | None:
        """The first candidate present (the shallowest match); ``None`` if none is."""
        for candidate in candidates:
            matches = [n for n in self.names if n == candidate or n.endswith("/" + candidate)]
            if not matches:
                continue
            depth = min(n.count("/") for n in matches)
            shallowest = [n for n in matches if n.count("/") == depth]
            if len(shallowest) > 1:
                raise DataError(f"{self.path}: {candidate} is ambiguous ({', '.join(shallowest[:3])}); point "
                                "--source at the folder of the corpus you mean")
            return shallowest[0]
        return None

    def where(self, name: str) -> str:
        """A readable location for messages: a path, or ``archive/member``."""
        if self._kind == "files":
            return str(self._files[name])
        return str(self.path / name)

    def lines(self, name: str) -> Iterator[tuple[int, str]]:
        """``(line_number, text)`` of each non-empty line, UTF-8 checked (as :func:`iter_text_lines`)."""
        if self._kind == "files":
            yield from iter_text_lines(self._files[name])
        elif self._kind == "dir":
            yield from iter_text_lines(self.path / name)
        elif self._kind == "zip":
            with zipfile.ZipFile(self.path) as z, z.open(name) as f:
                yield from iter_stream_lines(f, self.where(name))
        else:
            with tarfile.open(self.path) as t:
                f = t.extractfile(name)
                assert f is not None
                yield from iter_stream_lines(f, self.where(name))


def _walk(root: Path) -> list[str]:
    names = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        if len(rel.parts) >= _SEARCH_DEPTH:
            dirs[:] = []
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        names.extend((rel / f).as_posix() for f in files)
    return names


def _is_junk(name: str) -> bool:
    # macOS adds __MACOSX/ and ._NAME resource forks to zips; editors leave hidden files
    return name.startswith("__MACOSX/") or any(part.startswith(".") for part in name.split("/"))


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def open_source(source: str | os.PathLike | None, sources: Sequence[Source], *, cache_dir: str | os.PathLike | None,
                subdir: str) -> SourceTree:
    """The user's ``--source`` if given; else the canonical ``sources``, downloaded to ``cache_dir/subdir``."""
    if source is not None:
        return SourceTree(Path(source).expanduser())
    dest = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    paths = [fetch(s.url, dest / subdir, sha256=s.sha256, filename=s.filename) for s in sources]
    origin = " ".join(s.url for s in sources)
    if len(paths) == 1 and (zipfile.is_zipfile(paths[0]) or _is_tar(paths[0])):
        return SourceTree(paths[0], origin=origin)
    return SourceTree(dest / subdir, files=paths, origin=origin)


def find_splits(tree: SourceTree, files: Mapping[str, Sequence[str]], *, corpus: str,
                require_all: bool = False) -> dict[str, str]:
    """``{split: file name in tree}`` for each split whose file is present (all of them if ``require_all``)."""
    found = {}
    for split, candidates in files.items():
        name = tree.find(*candidates)
        if name is not None:
            found[split] = name
        elif require_all:
            raise DataError(f"{tree.path}: missing the {split} file of {corpus} (looked for "
                            f"{' or '.join(candidates)})")
    if not found:
        expected = ", ".join(c[0] for c in files.values())
        raise DataError(f"{tree.path}: none of the {corpus} files found (expected e.g. {expected}); "
                        "point --source at the folder or archive that holds them")
    return found


def convert(out: str | os.PathLike, tree: SourceTree, files: Mapping[str, Sequence[str]],
            read: Callable[[SourceTree, str], list], *, name: str, kind: str, require_all: bool = False,
            **extra: Any) -> dict[str, Any]:
    """Read one file per split with ``read(tree, file)`` and write the prepared corpus."""
    found = find_splits(tree, files, corpus=name, require_all=require_all)
    splits = {split: read(tree, member) for split, member in found.items()}
    return write_corpus(out, name=name, kind=kind, splits=splits, source=tree.origin,
                        files={split: tree.where(member) for split, member in found.items()}, **extra)


_LABELLED = re.compile(r"([0-9]{1,3})\t(.*)")


def read_labelled(tree: SourceTree, name: str) -> list[Sentence]:
    """``LABEL<TAB>text`` lines with an integer label; any other line is an error."""
    sentences, empty = [], 0
    for number, line in tree.lines(name):
        match = _LABELLED.fullmatch(line)
        if match is None:
            raise DataError(f"{tree.where(name)}:{number}: expected 'LABEL<TAB>sentence' with an integer label, "
                            f"got {line[:40]!r}")
        text = match.group(2).strip()
        if not text:
            empty += 1
            continue
        sentences.append(Sentence(text=text, label=int(match.group(1))))
    _warn_skipped(tree.where(name), empty, "line with a label but no text")
    return sentences


def read_documents(tree: SourceTree, name: str) -> list[Sentence]:
    """One document a line, labelled (``LABEL<TAB>text``) or plain, decided for the whole file.

    The file is read as labelled only when *every* line starts with an integer label and a tab, so
    text that merely contains a tab is never split.
    """
    lines = list(tree.lines(name))
    matches = [_LABELLED.fullmatch(line) for _, line in lines]
    labelled = sum(m is not None for m in matches)
    if labelled and labelled == len(lines):
        pairs = [(m.group(2).strip(), int(m.group(1))) for m in matches]
    else:
        if labelled:
            warnings.warn(f"{tree.where(name)}: {labelled} of {len(lines)} lines look like 'LABEL<TAB>text' but "
                          "not all; read every line as plain text", DataWarning, stacklevel=2)
        pairs = [(line.strip(), None) for _, line in lines]
    sentences = [Sentence(text=text, label=label) for text, label in pairs if text]
    _warn_skipped(tree.where(name), len(pairs) - len(sentences), "line with a label but no text")
    return sentences


def _warn_skipped(where: str, count: int, what: str) -> None:
    if count:
        warnings.warn(f"{where}: skipped {count} {what}{'s' if count != 1 else ''}", DataWarning, stacklevel=3)


def _inventory(values) -> list:
    present = {v for v in values if v is not None}
    return sorted(present, key=lambda v: (isinstance(v, str), v))


def write_corpus(out: str | os.PathLike, *, name: str, kind: str, splits: Mapping[str, Sequence[Sentence | Dialogue]],
                 source: str, **extra: Any) -> dict[str, Any]:
    """Write ``{split}.jsonl`` for each split and ``corpus.json``; return the ``corpus.json`` dict.

    The label (sentences) or act and emotion (dialogues) inventories are recorded unless ``extra``
    gives them. Split files left by an earlier preparation in the same folder are removed.
    """
    for split, records in splits.items():
        if not records:
            raise DataError(f"{name}: the {split} split has no {kind}; check its input file")
    order = split_order(splits)
    out = corpus_folder(out, order)

    summary: dict[str, Any] = {"name": name, "kind": kind, "splits": {}, "source": source}
    for split in order:
        summary["splits"][split] = write_jsonl(out / f"{split}.jsonl", splits[split])
    if kind == "dialogues":
        summary["turns"] = {split: sum(len(d.turns) for d in splits[split]) for split in order}
        every_turn = [t for split in order for d in splits[split] for t in d.turns]
        inventories = {"acts": _inventory(t.act for t in every_turn),
                       "emotions": _inventory(t.emotion for t in every_turn)}
    else:
        inventories = {"labels": _inventory(s.label for split in order for s in splits[split])}
    for key, values in inventories.items():
        if values and key not in extra:
            summary[key] = values
    summary.update(extra)
    write_summary(out, summary)
    return summary


def split_order(splits: Iterable[str]) -> list[str]:
    """train, valid, test first, then any other split names as given."""
    splits = list(splits)
    return [s for s in SPLITS if s in splits] + [s for s in splits if s not in SPLITS]


def corpus_folder(out: str | os.PathLike, splits: Iterable[str]) -> Path:
    """``out`` made ready for a corpus of ``splits``: created, and cleared of the split files of an earlier one."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_splits(out, keep=set(splits))
    return out


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """``corpus.json``, whole or not at all."""
    tmp = out / "corpus.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out / "corpus.json")


def _remove_stale_splits(out: Path, keep: set[str]) -> None:
    """Remove split files of an earlier corpus in ``out`` that this one does not rewrite."""
    meta = out / "corpus.json"
    if not meta.is_file():
        return
    try:
        previous = json.loads(meta.read_text(encoding="utf-8")).get("splits", {})
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return
    for split in previous:
        stale = out / f"{split}.jsonl"
        if split not in keep and isinstance(split, str) and "/" not in split and stale.is_file():
            stale.unlink()
