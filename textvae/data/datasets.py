"""Prepared corpora → Hugging Face ``datasets`` (offline, cached where the caller says) → encoded examples.

``load_records`` validates a prepared JSONL file line by line (clear errors, counted warnings) and
stores it as an Arrow dataset in ``cache_dir`` (a large file is parsed in shards, side by side). The cache key
includes the file's content hash, so an edited file is never answered from a stale cache. ``encode_records``
tokenises the records once, by a batched map in worker processes, into token-id columns cached beside them
(keyed on the records and the tokenizer). Both take a ``progress(done, total)`` callback that hears how far a first
build has come (a tool draws it on a terminal: at 10M sentences the build takes minutes). ``SentenceDataset`` and ``DialogueDataset`` read a batch's rows from
those memory-mapped columns into the examples that ``textvae.data.batching`` collates: no process holds the
corpus in memory, only 4 to 12 bytes an example for bucketing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from textvae.data.batching import DialogueExample, SentenceExample
from textvae.data.profiles import callers_of, example_profile
from textvae.data.records import (
    DataError,
    DataWarning,
    Kind,
    LineShard,
    detect_kind,
    line_shards,
    read_jsonl_shard,
)
from textvae.data.tokenizers import Tokenizer

ProgressCallback = Callable[[int, int], None]  # progress(done, total), done rising to total

SENTENCE_FEATURES = {"text": "string", "label": "string", "attributes": "string"}
TURN_FEATURES = {"speaker": "string", "text": "string", "act": "string", "emotion": "string"}


def _features(kind: Kind):
    import datasets

    if kind == "sentences":
        return datasets.Features({k: datasets.Value(v) for k, v in SENTENCE_FEATURES.items()})
    turn = {k: datasets.Value(v) for k, v in TURN_FEATURES.items()}
    return datasets.Features({"id": datasets.Value("string"), "turns": [turn],
                              "topic": datasets.Value("string"), "meta": datasets.Value("string")})


SHARD_BYTES = 64 << 20  # a file is read in shards of about this size, side by side when it has several
# Rows per record batch of the cache files. Opening a memory-mapped Arrow file reads every batch's header, and
# each read maps in the page-cache folio around it (up to ~1 MB on recent kernels): with datasets' 1,000-row
# batches that is ~1 GB a million rows; with 200,000-row batches, ~5 MB. A dialogue is about ten sentences' worth.
BATCH_ROWS = {"sentences": 200_000, "dialogues": 20_000}


def _write_shard(path: str, kind: Kind, shard: tuple[int, int, int], out: str) -> int:
    """Parse one shard of a JSONL file (:func:`line_shards`) into the Arrow stream file ``out``, in record batches
    of :data:`BATCH_ROWS` rows built column by column (Arrow's own conversion: no per-row encoding); return the rows."""
    import pyarrow as pa

    schema = _features(kind).arrow_schema
    columns: dict[str, list] = {name: [] for name in schema.names}
    rows = 0
    with pa.OSFile(out, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        def flush():
            writer.write_table(pa.table(columns, schema=schema))
            for values in columns.values():
                values.clear()

        for record in read_jsonl_shard(path, kind, LineShard(*shard)):
            if kind == "sentences":
                columns["text"].append(record.text)
                columns["label"].append(None if record.label is None else str(record.label))
                columns["attributes"].append(json.dumps(record.attributes) if record.attributes else None)
            else:
                columns["id"].append(record.id)
                columns["turns"].append([t.to_json() | {"act": t.act, "emotion": t.emotion} for t in record.turns])
                columns["topic"].append(record.topic)
                columns["meta"].append(json.dumps(record.meta) if record.meta else None)
            rows += 1
            if len(columns[schema.names[0]]) >= BATCH_ROWS[kind]:
                flush()
        if len(columns[schema.names[0]]) or not rows:
            flush()
    return rows


def _no_records(path: str, kind: Kind) -> DataError:
    if kind == "sentences":
        return DataError(f"{path}: no sentences (every sentence is empty); give a file with at least one sentence")
    return DataError(f"{path}: no dialogues (every turn is empty); give a file with at least one dialogue with text")


def worker_processes(items: int, *, per_process: int) -> int | None:
    """How many processes work over ``items`` items (shards to parse, records to tokenise): one per ``per_process``, at
    most one per CPU this process may use; None (in this process) below two."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    procs = min(cpus, items // per_process)
    return procs if procs > 1 else None


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


def load_records(path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, kind: Kind | None = None,
                 num_proc: int | None = None, progress: ProgressCallback | None = None):
    """Load a prepared JSONL file as a ``datasets.Dataset`` cached under ``cache_dir`` (default: ``.cache``
    next to the file, where ``textvae-train`` keeps it too). The cache is keyed on the file's content, and the
    dataset is memory-mapped from it: a corpus larger than memory loads.

    A file of several :data:`SHARD_BYTES` shards is parsed by ``num_proc`` processes side by side (default: one
    per shard, at most one per CPU), each writing the Arrow file of its shard; an error names the file's line.
    ``progress(done, total)`` hears the bytes of the file parsed: after each shard as it is written, ending at
    the file's size (a file already cached: once, at its size).

    Sentence rows: ``text``, ``label`` (string or None), ``attributes`` (JSON string or None).
    Dialogue rows: ``id``, ``turns`` (speaker/text/act/emotion), ``topic``, ``meta`` (JSON string).
    """
    import datasets
    from filelock import FileLock

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; name one split file, e.g. {path / 'train.jsonl'}")
    if not path.is_file():
        raise DataError(f"{path}: no such file; prepare the corpus first (textvae-corpus prepare NAME --out DIR)")
    kind = kind or detect_kind(path)
    content_hash, shards = line_shards(path, SHARD_BYTES)
    key = _cache_key(content_hash, kind, "records-2")
    folder = Path(cache_dir or path.resolve().parent / ".cache") / f"records-{key}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if not folder.is_dir():
            _build_records(str(path.resolve()), kind, shards, folder, num_proc, progress)
        elif progress is not None:
            progress(shards[-1].end, shards[-1].end)
    files = sorted(str(f) for f in folder.glob("records-*.arrow"))
    parts = [datasets.Dataset.from_file(f) for f in files]
    records = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    records._fingerprint = key  # the content's: what the caches built from these records are keyed on
    if len(records) == 0:
        raise _no_records(str(path), kind)
    return records


def _build_records(path: str, kind: Kind, shards: list[LineShard], folder: Path, num_proc: int | None,
                   progress: ProgressCallback | None = None) -> None:
    """Write each shard's Arrow file into ``folder`` (in processes side by side when there are several), through
    a temporary folder moved into place once every shard is written: an interrupted build leaves nothing.
    ``progress(done, total)``: the bytes of the shards written, after each."""
    partial = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    total, done = shards[-1].end, 0

    def written(shard: LineShard) -> None:
        nonlocal done
        done += shard.end - shard.start
        if progress is not None:
            progress(done, total)

    try:
        jobs = [(path, kind, tuple(shard), str(partial / f"records-{k:05d}.arrow")) for k, shard in enumerate(shards)]
        procs = num_proc if num_proc is not None else worker_processes(len(shards), per_process=1)
        if procs is None or procs < 2:
            for job, shard in zip(jobs, shards, strict=True):
                _write_shard(*job)
                written(shard)
        else:
            with ProcessPoolExecutor(min(procs, len(jobs))) as pool:
                futures = {pool.submit(_write_shard, *job): shard for job, shard in zip(jobs, shards, strict=True)}
                for future in as_completed(futures):  # in the order they finish
                    if future.exception() is None:
                        written(futures[future])
                for future in futures:
                    future.result()  # the earliest shard's error first
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def drop_mapped_pages(files: Iterable[str]) -> None:
    """Give back the pages of ``files`` that this process has memory-mapped and touched (Linux; elsewhere nothing).

    Reading rows of a memory-mapped Arrow file maps the file's pages into the process, and on recent kernels a
    touch maps a whole page-cache folio (up to ~1 MB): over a long epoch on a corpus larger than memory the
    resident set would grow towards the corpus. The pages are clean copies of the file, so dropping them
    (``madvise(MADV_DONTNEED)``) costs nothing but a later minor fault; they stay in the OS page cache.
    """
    files = {os.path.realpath(f) for f in files}
    if not files or not os.path.isfile("/proc/self/maps"):
        return
    libc = _libc()
    if libc is None:
        return
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].rstrip("\n") in files:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4)  # MADV_DONTNEED


@functools.cache
def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


def cache_files(dataset) -> list[str]:
    """The files a dataset is memory-mapped from."""
    return [f["filename"] for f in dataset.cache_files]


def as_records(records, kind: Kind):
    """``records`` as a ``datasets.Dataset`` without an indices mapping (a ``select`` is written out): a loaded
    split (:func:`load_records`), or for small in-memory data a dict of columns or a list of row dicts."""
    import datasets

    features = _features(kind)
    if isinstance(records, dict):  # a column the dict lacks holds None
        size = len(next(iter(records.values()), []))
        records = datasets.Dataset.from_dict({k: records.get(k, [None] * size) for k in features}, features=features)
    elif isinstance(records, list):
        records = datasets.Dataset.from_list([{k: row.get(k) for k in features} for row in records], features=features)
    if records._indices is not None:
        records = records.flatten_indices()
    return records


# ----------------------------------------------------------------------------- token ids, cached beside the records

ENCODE_PER_PROCESS = 200_000  # a map over fewer examples than twice this runs in the calling process


def _cache_key(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def _encode_sentences(texts: list[str], tokenizer: Tokenizer) -> dict[str, list]:
    ids = [tokenizer.encode(text) for text in texts]
    return {"ids": ids, "length": [len(x) for x in ids]}


def _encode_dialogues(dialogues: list[list[dict]], tokenizer: Tokenizer) -> dict[str, list]:
    ids = [[tokenizer.encode(turn["text"]) for turn in turns] for turns in dialogues]
    return {"turn_ids": ids, "turn_lengths": [[len(x) for x in turns] for turns in ids]}


def encode_records(records, tokenizer: Tokenizer, kind: Kind, *, num_proc: int | None = None,
                   progress: ProgressCallback | None = None):
    """The token ids of loaded records (without BOS/EOS, untruncated), as a ``datasets.Dataset`` row for row:
    sentences ``ids`` and ``length``; dialogues ``turn_ids`` and ``turn_lengths`` (per turn).

    Tokenised once by a batched ``datasets.map`` (``num_proc`` processes; default one per
    :data:`ENCODE_PER_PROCESS` examples, at most one per CPU) into a cache file beside the records' own, keyed on
    the records' content and the tokenizer's (``tokenizer.fingerprint``): a later call with the same file and
    tokenizer memory-maps it, and a changed file or tokenizer encodes anew. ``progress(done, total)`` hears the
    records tokenised, after each batch of :data:`BATCH_ROWS` (from the worker processes too), ending at
    ``len(records)`` (records already encoded: once, at that).
    """
    import datasets

    sentences = kind == "sentences"
    features = datasets.Features(
        {"ids": datasets.Sequence(datasets.Value("int32")), "length": datasets.Value("int32")} if sentences else
        {"turn_ids": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
         "turn_lengths": datasets.Sequence(datasets.Value("int32"))})
    fingerprint = getattr(tokenizer, "fingerprint", None)
    if num_proc is None:
        num_proc = worker_processes(len(records), per_process=ENCODE_PER_PROCESS)
    counter = _MapProgress(progress, len(records))
    with _quiet_datasets(), counter.counting():
        encoded = records.map(
            _encode_sentences if sentences else _encode_dialogues, fn_kwargs={"tokenizer": tokenizer}, batched=True,
            batch_size=BATCH_ROWS[kind], input_columns=["text" if sentences else "turns"],  # a batch: a record batch
            remove_columns=records.column_names, features=features, num_proc=num_proc, writer_batch_size=BATCH_ROWS[kind],
            new_fingerprint=_cache_key(records._fingerprint, fingerprint, kind, "ids-1") if fingerprint else None,
        )
    counter.finish()
    return encoded


class _MapProgress:
    """The rows a ``datasets.map`` has processed, for a ``progress(done, total)`` callback.

    ``map`` tells them (its worker processes' too) only to its progress bar, ``datasets.arrow_dataset.hf_tqdm``;
    while :meth:`counting`, that name is this counter, which passes them on and draws nothing. A ``datasets``
    without that name: :meth:`finish` alone reports, at the end. (Not for maps run side by side in threads.)"""

    def __init__(self, progress: ProgressCallback | None, total: int):
        self.progress, self.total, self.done, self.told = progress, total, 0, -1

    @contextlib.contextmanager
    def counting(self):
        import datasets.arrow_dataset as arrow_dataset

        if self.progress is None or not hasattr(arrow_dataset, "hf_tqdm"):
            yield
            return
        bar = arrow_dataset.hf_tqdm
        arrow_dataset.hf_tqdm = self._bar
        try:
            yield
        finally:
            arrow_dataset.hf_tqdm = bar

    def _bar(self, *args, initial: int = 0, **kwargs) -> _MapProgress:  # called as hf_tqdm(unit=, initial=, ...)
        self.done = initial
        self._tell()
        return self

    def __enter__(self) -> _MapProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, rows: int = 1) -> None:
        self.done += rows
        self._tell()

    def _tell(self) -> None:
        done = min(self.done, self.total)
        if self.progress is not None and done > self.told:
            self.told = done
            self.progress(done, self.total)

    def finish(self) -> None:
        self.done = self.total
        self._tell()


def _label_under_key(labels: list[str | None], attributes: list[str | None], key: str) -> dict[str, list]:
    if key == "label":
        return {"label": labels}
    return {"label": [label_under(key, None, json.loads(raw) if raw else None) for raw in attributes]}


def label_column(records, key: str = "label", *, num_proc: int | None = None):
    """Each sentence's label under ``key`` (:func:`label_values`) as the column ``label`` of a dataset row for row
    with ``records``, read once by a cached batched map into a file of its own (a few bytes a row: a pass over it
    reads none of the texts)."""
    import datasets

    check_label_key(key)
    if num_proc is None:
        num_proc = worker_processes(len(records), per_process=ENCODE_PER_PROCESS)
    with _quiet_datasets():
        return records.map(_label_under_key, fn_kwargs={"key": key}, batched=True, batch_size=BATCH_ROWS["sentences"],
                           input_columns=["label", "attributes"], remove_columns=records.column_names,
                           num_proc=num_proc, features=datasets.Features({"label": datasets.Value("string")}),
                           writer_batch_size=BATCH_ROWS["sentences"],
                           new_fingerprint=_cache_key(records._fingerprint, key, "label-1"))


def column_chunks(dataset, name: str, *, batch_rows: int = 10_000) -> Iterator[Any]:
    """One column of a dataset as Arrow arrays of up to ``batch_rows`` rows, in order.

    A dataset held in its cache files (as :func:`load_records` and :func:`encode_records` leave it) is read from
    them as a stream, batch by batch into memory that is freed after: a pass over a corpus larger than memory
    leaves the process's resident memory as it was, where reading the memory-mapped table would keep every page
    it touched resident. Other datasets (in memory, or with an indices mapping) are read from their table.
    """
    import pyarrow as pa

    files = _whole_files(dataset)
    if files is None:
        for chunk in dataset.data.column(name).chunks:
            yield from _slices(chunk, batch_rows)
        return
    rows = 0
    for filename in files:
        with pa.OSFile(filename, memory_pool=_releasing_pool()) as source:
            for batch in pa.ipc.open_stream(source):
                rows += batch.num_rows
                yield from _slices(batch.column(name), batch_rows)
    if rows != len(dataset):  # never guess: _whole_files says when the files hold the dataset's rows
        raise RuntimeError(f"the cache files of a dataset hold {rows} rows, the dataset {len(dataset)}")


# transforms of a memory-mapped table that keep its rows as the file holds them
_ROW_PRESERVING = {"select", "drop", "remove_column", "replace_schema_metadata"}


def _whole_files(dataset) -> list[str] | None:
    """The Arrow files whose rows, in order, are the dataset's rows (columns may be fewer); None unless so (an
    indices mapping, a slice, rows in memory)."""
    from datasets.table import ConcatenationTable, MemoryMappedTable

    table = dataset.data
    blocks = [[table]] if isinstance(table, MemoryMappedTable) else getattr(table, "blocks", None)
    if dataset._indices is not None or not isinstance(table, (MemoryMappedTable, ConcatenationTable)) or not blocks:
        return None
    files = []
    for row in blocks:
        if len(row) != 1 or not isinstance(row[0], MemoryMappedTable):
            return None
        if any(op not in _ROW_PRESERVING for op, _, _ in row[0].replays or []):
            return None
        files.append(row[0].path)
    return files


def _releasing_pool():
    """The memory pool whole-file reads allocate from: the system allocator, which hands a freed batch (megabytes)
    back to the OS at once, where Arrow's default pool keeps it for reuse and a pass over a large file would
    leave the process holding its largest batches."""
    import pyarrow as pa

    return pa.system_memory_pool()


def _slices(array, rows: int):
    for start in range(0, len(array), rows):
        yield array.slice(start, rows)


def column_array(dataset, name: str) -> np.ndarray:
    """A numeric column of a dataset as one NumPy array, read as :func:`column_chunks` does."""
    # each chunk copied at once: a view would keep its whole record batch alive
    chunks = [chunk.to_numpy().copy() for chunk in column_chunks(dataset, name, batch_rows=1 << 20)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)


def distinct(values) -> list:
    """The distinct non-null values of Arrow arrays (one, or an iterable of chunks), in order of first appearance."""
    import pyarrow as pa
    import pyarrow.compute as pc

    seen: dict = {}
    for chunk in ([values] if isinstance(values, (pa.Array, pa.ChunkedArray)) else values):
        seen.update(dict.fromkeys(v for v in pc.unique(chunk).to_pylist() if v is not None))
    return list(seen)


def sentence_labels(records, key: str = "label") -> list[str]:
    """The distinct labels under ``key`` of loaded sentence records, in order of first appearance."""
    return distinct(column_chunks(label_column(records, key), "label"))


def dialogue_categories(records) -> dict[str, list[str]]:
    """The distinct dialog acts, emotions and topics of loaded dialogue records: ``{"act", "emotion", "topic"}``."""
    import pyarrow.compute as pc

    turns = pc.list_flatten(records.data.column("turns"))
    return {"act": distinct(pc.struct_field(turns, "act")), "emotion": distinct(pc.struct_field(turns, "emotion")),
            "topic": distinct(records.data.column("topic"))}


def names_callers(records) -> bool:
    """Whether any loaded dialogue's meta names its callers (speaker profiles, :mod:`textvae.data.profiles`)."""
    return any(callers_of(meta) is not None for meta in records.data.column("meta").drop_null().to_pylist())


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


def _truncate_counts(counts: np.ndarray, max_len: int | None, source: str, what: str) -> np.ndarray:
    """Token counts cut at ``max_len``, with one warning counting the cut ones."""
    if max_len is None:
        return counts
    _warn_truncated(source, what, int((counts > max_len).sum()), len(counts), max_len)
    return np.minimum(counts, max_len)


class ListRows:
    """Rows of a ``list<int32>`` column (token ids) of a dataset, read from its cache files with ``os.pread``.

    Reading rows of a memory-mapped file maps its pages into the process (on recent kernels a whole page-cache
    folio of up to ~1 MB a touch), so a long epoch over a corpus larger than memory would grow the resident set
    towards the corpus. ``pread`` copies just a row's bytes: the file stays in the OS page cache, the process
    holds nothing of it. Opening reads each file once as a stream to find where each record batch's offsets and
    values lie. A dataset not held whole in uncompressed cache files (in memory, sliced) is read from its table.
    """

    def __init__(self, dataset, name: str):
        self._dataset, self._name = dataset, name
        self._files = _whole_files(dataset) if hasattr(os, "pread") else None  # pread: POSIX
        self._fds: dict[int, list[int]] = {}
        if self._files is not None:
            layout = [row for f, filename in enumerate(self._files) for row in _list_layout(filename, name, f)]
            if any(row is None for row in layout):
                self._files = None
            else:
                table = np.array(layout, dtype=np.int64).reshape(-1, 6)
                self._first_row = np.concatenate([[0], np.cumsum(table[:, 5])])
                self._layout = table
        if self._files is not None and self._first_row[-1] != len(dataset):
            raise RuntimeError(f"the cache files of a dataset hold {self._first_row[-1]} rows, the dataset {len(dataset)}")

    def __getstate__(self):  # a DataLoader worker opens the files anew
        return self.__dict__ | {"_fds": {}}

    def _fd(self, file: int) -> int:
        fds = self._fds.get(os.getpid())
        if fds is None:
            fds = self._fds[os.getpid()] = [os.open(f, os.O_RDONLY) for f in self._files]
        return fds[file]

    def __getitem__(self, rows: Sequence[int]) -> list[list[int]]:
        if self._files is None:
            return self._dataset[list(rows)][self._name]
        rows = np.asarray(rows, dtype=np.int64)
        batch = np.searchsorted(self._first_row, rows, side="right") - 1
        out = []
        for row, b in zip((rows - self._first_row[batch]).tolist(), batch.tolist(), strict=True):
            file, offsets_at, values_at, offset, values_offset, _ = self._layout[b].tolist()
            fd = self._fd(file)
            start, end = np.frombuffer(os.pread(fd, 8, offsets_at + 4 * (offset + row)), dtype="<i4").tolist()
            data = os.pread(fd, 4 * (end - start), values_at + 4 * (values_offset + start))
            out.append(np.frombuffer(data, dtype="<i4").tolist())
        return out

    def __del__(self):
        for fds in self._fds.values():
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _list_layout(filename: str, name: str, file: int) -> Iterator[tuple | None]:
    """Per record batch of an Arrow stream file: (file, byte offset of the column's offsets buffer, of its values
    buffer, the array's offset, the values' offset, rows); None for a batch whose buffers are not stored as they
    are read (compressed) or that holds null rows."""
    import pyarrow as pa

    with pa.OSFile(filename, memory_pool=_releasing_pool()) as source:
        reader = pa.ipc.MessageReader.open_stream(source)
        schema = pa.ipc.read_schema(reader.read_next_message())
        column = schema.get_field_index(name)
        while True:
            try:
                message = reader.read_next_message()
            except StopIteration:
                return
            body, body_at = message.body, source.tell() - message.body.size
            array = pa.ipc.read_record_batch(message, schema).column(column)
            where = [_file_offset(buffer, body, body_at) for buffer in array.buffers()[1::2]]  # offsets, values
            if array.null_count or None in where:
                yield None
                continue
            yield file, *where, array.offset, array.values.offset, len(array)


def _file_offset(buffer, body, body_at: int) -> int | None:
    """Where in the file a buffer read from a message body at ``body_at`` lies; None if it is not the body's."""
    if buffer is None or not body.address <= buffer.address < body.address + body.size:
        return None
    return body_at + buffer.address - body.address


def compact(values: np.ndarray) -> np.ndarray:
    """Integers in the smallest NumPy type that holds them (lengths, label ids: held for every example)."""
    if not len(values):
        return values.astype(np.int32)
    return values.astype(np.result_type(np.min_scalar_type(values.min()), np.min_scalar_type(values.max())))


def label_ids(label_rows, labels: Vocab) -> np.ndarray:
    """Each row's label id under ``labels`` (-1 where it has none), read as :func:`column_chunks` does: 4 bytes a
    sentence, so a batch needs no read of the labels."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = pa.array(labels.names, type=pa.string())
    chunks = [pc.index_in(chunk.cast(pa.string()), value_set=names).fill_null(-1).to_numpy().astype(np.int32)
              for chunk in column_chunks(label_rows, "label", batch_rows=1 << 20)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)


class _Sentences(NamedTuple):
    """One encoded sentence file: its records, token ids (rows alike) and label ids (None: unlabelled)."""
    records: Any
    ids: ListRows
    labels: np.ndarray | None


class SentenceDataset(torch.utils.data.Dataset):
    """Encoded sentences: ``SentenceExample(ids, label, index)``; ``lengths`` (a NumPy array, with BOS/EOS) for
    bucketing. ``label_key``: where a sentence's label is read (:func:`label_values`); ``unlabelled=True`` reads
    none (the unlabelled part of semi-supervised training).

    The token ids stay in the cache :func:`encode_records` writes; a batch reads its own rows (``__getitems__``,
    :class:`ListRows`), so a corpus larger than memory trains. Held in memory: the lengths and the label ids,
    4 bytes a sentence each.
    """

    def __init__(self, records, tokenizer: Tokenizer, *, max_len: int | None = None,
                 labels: Vocab | None = None, source: str = "sentences", label_key: str = "label",
                 unlabelled: bool = False, num_proc: int | None = None, progress: ProgressCallback | None = None):
        records = as_records(records, "sentences")
        encoded = encode_records(records, tokenizer, "sentences", num_proc=num_proc, progress=progress)
        label_rows = None if unlabelled else label_column(records, label_key, num_proc=num_proc)
        present = [] if label_rows is None else distinct(column_chunks(label_rows, "label"))
        self.labels = labels if labels is not None else Vocab.build(present)
        for value in present:
            category_id(self.labels, value, "label", source)
        self.max_len = max_len
        counts = _truncate_counts(column_array(encoded, "length"), max_len, source, "sentences")
        self.lengths = compact(counts + 2)
        self._parts = [_Sentences(records, ListRows(encoded, "ids"),
                                  None if label_rows is None else compact(label_ids(label_rows, self.labels)))]
        self._starts = np.zeros(1, dtype=np.int64)
        drop_mapped_pages(cache_files(records) + cache_files(encoded))

    def extend(self, other: SentenceDataset) -> None:
        """Append the sentences of ``other`` (encoded with the same tokenizer and label names) after these."""
        if other.labels.names != self.labels.names:
            raise ValueError("only datasets with the same label names can be joined")
        self._starts = np.concatenate([self._starts, other._starts + len(self)])
        self._parts += other._parts
        self.lengths = np.concatenate([self.lengths, other.lengths])

    def repeat(self, times: int) -> None:
        """Hold every sentence ``times`` times (an epoch then reads each that often)."""
        size = len(self)
        self._starts = np.concatenate([self._starts + k * size for k in range(times)])
        self._parts = self._parts * times
        self.lengths = np.tile(self.lengths, times)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> SentenceExample:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[SentenceExample]:
        """The examples at ``indices``, each part's rows read together (the DataLoader calls this per batch)."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} sentences")
        indices = indices % max(len(self), 1)
        part_of = np.searchsorted(self._starts, indices, side="right") - 1
        out: list[SentenceExample | None] = [None] * len(indices)
        for p in np.unique(part_of):
            at = np.flatnonzero(part_of == p)
            part = self._parts[p]
            rows = indices[at] - self._starts[p]
            ids = part.ids[rows]
            labels = part.labels[rows].tolist() if part.labels is not None else [-1] * len(rows)
            for j, i, row_ids, label in zip(at.tolist(), indices[at].tolist(), ids, labels, strict=True):
                if self.max_len is not None:
                    row_ids = row_ids[: self.max_len]
                out[j] = SentenceExample(ids=row_ids, label=None if label < 0 else label, index=i)
        return out

    @property
    def texts(self) -> list[str]:
        """Every sentence's text, in order (a list in memory: for small data and tests)."""
        return [text for k in range(len(self._parts)) for text in self._parts[k].records["text"]]

    @property
    def label_ids(self) -> list[int | None]:
        """Every sentence's label id, in order (a list in memory: for small data and tests)."""
        return [e.label for e in self.__getitems__(range(len(self)))]

    @property
    def num_targets(self) -> int:
        """Words + EOS over the dataset: the per-word perplexity denominator."""
        return int((self.lengths.astype(np.int64) - 1).sum())


DEFAULT_MAX_CONTEXT = 10  # context turns per example, as Zhao et al. (2017); exports record the one trained with


class DialogueDataset(torch.utils.data.Dataset):
    """One example per turn that has at least one turn before it: (context of up to ``max_context``
    previous turns, response, response act/emotion, dialogue topic, and the speaker profile when the
    dialogues carry caller metadata, :mod:`textvae.data.profiles`).

    As :class:`SentenceDataset`, the token ids stay in the memory-mapped cache and a batch reads the dialogues
    its examples come from; held in memory are 12 bytes an example (its dialogue, turn and length).
    """

    def __init__(self, records, tokenizer: Tokenizer, *, max_context: int = DEFAULT_MAX_CONTEXT, max_len: int | None = None,
                 acts: Vocab | None = None, emotions: Vocab | None = None, topics: Vocab | None = None,
                 source: str = "dialogues", num_proc: int | None = None, progress: ProgressCallback | None = None):
        import pyarrow.compute as pc

        if max_context < 1:
            raise ValueError(f"max_context must be >= 1, got {max_context}")
        self.records = as_records(records, "dialogues")
        self.max_context, self.max_len = max_context, max_len
        present = dialogue_categories(self.records)
        given = {"act": acts, "emotion": emotions, "topic": topics}
        vocabs = {what: given[what] if given[what] is not None else Vocab.build(values)
                  for what, values in present.items()}
        for what, values in present.items():
            for value in values:
                category_id(vocabs[what], value, what, source)
        self.acts, self.emotions, self.topics = vocabs["act"], vocabs["emotion"], vocabs["topic"]
        self.encoded = encode_records(self.records, tokenizer, "dialogues", num_proc=num_proc, progress=progress)
        turn_counts = pc.list_value_length(self.encoded.data.column("turn_lengths")).to_numpy()
        first_turn = np.concatenate([[0], np.cumsum(turn_counts)])  # of each dialogue, among all turns
        # the examples: every turn but each dialogue's first
        per_dialogue = np.maximum(turn_counts - 1, 0)
        self._dialogue = np.repeat(np.arange(len(turn_counts), dtype=np.int32), per_dialogue)
        first_example = np.concatenate([[0], np.cumsum(per_dialogue)[:-1]])  # of each dialogue
        self._turn = (np.arange(len(self._dialogue)) - first_example[self._dialogue] + 1).astype(np.int32)
        counts = _truncate_counts(pc.list_flatten(self.encoded.data.column("turn_lengths")).to_numpy(), max_len,
                                  source, "turns")
        self.lengths = compact(counts[first_turn[self._dialogue] + self._turn] + 2)
        self.has_profiles = names_callers(self.records)
        self.examples = _Pairs(self._dialogue, self._turn)
        self.speakers = _Speakers(self.records)
        self._reads = 0
        drop_mapped_pages(cache_files(self.records) + cache_files(self.encoded))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> DialogueExample:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[DialogueExample]:
        """The examples at ``indices``; the dialogues they come from are read in one gather."""
        indices = [int(i) % max(len(self), 1) if -len(self) <= int(i) < len(self) else _out_of_range(i, len(self))
                   for i in indices]
        self._reads += 1
        if self._reads % 64 == 0:  # the pages its reads mapped (see drop_mapped_pages)
            drop_mapped_pages(cache_files(self.records) + cache_files(self.encoded))
        wanted = sorted({int(self._dialogue[i]) for i in indices})
        rows = self.records[wanted]
        ids = self.encoded[wanted]["turn_ids"]
        dialogues = {d: (turns, topic, meta, turn_ids) for d, turns, topic, meta, turn_ids
                     in zip(wanted, rows["turns"], rows["topic"], rows["meta"], ids, strict=True)}
        examples = []
        for i in indices:
            turns, topic, meta, turn_ids = dialogues[int(self._dialogue[i])]
            n = int(self._turn[i])
            if self.max_len is not None:
                turn_ids = [t[: self.max_len] for t in turn_ids]
            start = max(0, n - self.max_context)
            responder = turns[n]["speaker"]
            examples.append(DialogueExample(
                context=turn_ids[start:n], context_floor=[int(t["speaker"] == responder) for t in turns[start:n]],
                response=turn_ids[n], act=_id(self.acts, turns[n]["act"]), emotion=_id(self.emotions, turns[n]["emotion"]),
                topic=_id(self.topics, topic), index=i,
                profile=example_profile(callers_of(meta), responder) if self.has_profiles else None,
            ))
        return examples

    @property
    def num_targets(self) -> int:
        return int((self.lengths.astype(np.int64) - 1).sum())


def _id(vocab: Vocab, name: str | None) -> int | None:
    return None if name is None else vocab.index[name]


def _out_of_range(i: int, size: int):
    raise IndexError(f"index {i} out of range for {size} examples")


class _Pairs(Sequence):
    """``(dialogue, turn)`` of each example of a :class:`DialogueDataset`, read from its arrays."""

    def __init__(self, dialogue: np.ndarray, turn: np.ndarray):
        self._dialogue, self._turn = dialogue, turn

    def __len__(self) -> int:
        return len(self._dialogue)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(zip(self._dialogue[i].tolist(), self._turn[i].tolist(), strict=True))
        return int(self._dialogue[i]), int(self._turn[i])


class _Speakers(Sequence):
    """The speakers of each dialogue's turns (``speakers[d][n]``), read from the records when asked."""

    def __init__(self, records):
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, d: int) -> list[str]:
        return [turn["speaker"] for turn in self._records[int(d)]["turns"]]


def texts_of(records, kind: Kind, *, batch_rows: int = 10_000) -> Iterator[str]:
    """All texts of a loaded split (sentences, or every dialogue turn), streamed from the Arrow table a batch of
    rows at a time: what a tokenizer trains on."""
    import pyarrow.compute as pc

    records = as_records(records, kind)
    for chunk in column_chunks(records, "text" if kind == "sentences" else "turns", batch_rows=batch_rows):
        yield from (chunk if kind == "sentences" else pc.struct_field(pc.list_flatten(chunk), "text")).to_pylist()
