"""Synthetic sentences from :func:`textvae.data.synthetic.generate_sentences`: a corpus with known
structure, generated offline, for smoke tests, sanity checks of the models, and corpora of any size.

``--size`` sentences for train and ``size // 10`` each for valid and test, every split from its own
seed derived from ``--seed``, so the splits differ and the same arguments give the same corpus.

A split is generated in blocks of :data:`BLOCK` sentences, side by side in worker processes (one per CPU), and
streamed to its file: memory stays flat in ``--size``. Block 0 of a split is drawn from the split's seed, so a
split of up to :data:`BLOCK` sentences is ``generate_sentences(n, seed)``; block b > 0 from the seed
``"synthetic-sentences/SEED/b"``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from corpora.common import Source, corpus_folder, split_order, write_summary
from textvae.data.records import DataError, atomic_output

NAME = "synthetic-sentences"
KIND = "sentences"
DESCRIPTION = "generated sentences with known structure (no download), for smoke tests"
SOURCES: tuple[Source, ...] = ()
DEFAULT_SIZE = 10_000
BLOCK = 1_000_000  # sentences a worker generates and writes at a time


def split_sizes_and_seeds(size: int, seed: int) -> dict[str, tuple[int, int]]:
    """``{split: (n, seed)}``: train ``size``, valid and test ``size // 10``; distinct seeds for every split and --seed."""
    if size < 10:
        raise DataError(f"--size must be at least 10 (valid and test get size // 10 each), got {size}")
    if seed < 0:
        raise DataError(f"--seed must be 0 or more, got {seed}")
    return {"train": (size, 3 * seed), "valid": (size // 10, 3 * seed + 1), "test": (size // 10, 3 * seed + 2)}


def block_seed(seed: int, block: int) -> int | str:
    """The seed of block ``block`` of a split whose seed is ``seed`` (see the module doc)."""
    return seed if block == 0 else f"{NAME}/{seed}/{block}"


def _write_block(path: str, n: int, seed: int | str) -> list[str]:
    """Generate ``n`` sentences from ``seed`` into ``path`` (JSONL); return the labels they hold."""
    from textvae.data.synthetic import iter_sentences  # lazily: only this corpus needs it

    labels = set()
    with open(path, "w", encoding="utf-8") as f:
        for sentence in iter_sentences(n, seed):
            f.write(json.dumps(sentence.to_json(), ensure_ascii=False) + "\n")
            labels.add(sentence.label)
    return sorted(labels)


def prepare(out: str | os.PathLike, source: str | os.PathLike | None = None, *, size: int = DEFAULT_SIZE,
            seed: int = 0, workers: int | None = None,
            progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Generate the corpus into ``out`` (``source`` must be None: nothing is read) with ``workers`` processes
    (default one per CPU this process may use); ``progress(done, total)`` hears of each block written."""
    if source is not None:
        raise DataError(f"{NAME} is generated, it reads no --source")
    plan = split_sizes_and_seeds(size, seed)
    out = corpus_folder(out, split_order(plan))
    parts = {split: [(out / f".{split}.block{b}.jsonl.tmp", min(BLOCK, n - start), block_seed(s, b))
                     for b, start in enumerate(range(0, n, BLOCK))] for split, (n, s) in plan.items()}
    jobs = [job for blocks in parts.values() for job in blocks]
    workers = workers or len(os.sched_getaffinity(0))
    labels: set[str] = set()
    total, done = sum(n for _, n, _ in jobs), 0
    try:
        if len(jobs) == 1 or workers == 1:
            for path, n, block in jobs:
                labels.update(_write_block(str(path), n, block))
                done += n
                if progress is not None:
                    progress(done, total)
        else:
            with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
                futures = {pool.submit(_write_block, str(path), n, block): n for path, n, block in jobs}
                for future in as_completed(futures):
                    labels.update(future.result())
                    done += futures[future]
                    if progress is not None:
                        progress(done, total)
        for split, blocks in parts.items():
            with atomic_output(out / f"{split}.jsonl") as tmp, tmp.open("wb") as f:
                for path, _, _ in blocks:
                    with path.open("rb") as part:
                        shutil.copyfileobj(part, f, 1 << 22)
    finally:
        for path, _, _ in jobs:
            path.unlink(missing_ok=True)
    summary = {"name": NAME, "kind": KIND, "splits": {split: n for split, (n, _) in plan.items()},
               "source": "textvae.data.synthetic.generate_sentences", "labels": sorted(labels),
               "size": size, "seed": seed, "seeds": {split: s for split, (_, s) in plan.items()}}
    write_summary(out, summary)
    return summary
