"""Several seeds of one recipe for the benchmark scripts: the runs, their training when missing, and the mean ±
sample standard deviation of their figures.

Seed 0 is the committed recipe (its ``seed_everything`` is 0), run in ``runs/NAME``; seed S > 0 is the same recipe
with ``--seed_everything S``, run in ``runs/NAME_seedS``. NAME is the recipe's name unless a run needs more than
the recipe (``overrides``: e.g. another labelled file, run in ``runs/yelp10k_m2_500``). A run whose export exists
is reused, so an interrupted benchmark resumes where it stopped; a missing one is trained with the printed
``textvae-train`` command, in this process's environment (threads, CPU affinity).
"""

from __future__ import annotations

import math
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple


@dataclass(frozen=True)
class SeedRun:
    recipe: str  # recipes/RECIPE.yaml
    seed: int
    folder: Path  # textvae-train --run: logs, checkpoints and the export
    overrides: tuple[str, ...] = ()  # further textvae-train arguments, the same for every seed

    @property
    def export(self) -> Path:
        return self.folder / "export"

    def command(self) -> list[str]:
        return ["textvae-train", "fit", "--config", f"recipes/{self.recipe}.yaml", "--seed_everything", str(self.seed),
                "--run", str(self.folder), *self.overrides]


def seed_runs(recipe: str, seeds: int, *, runs: str | Path = "runs", name: str | None = None,
              overrides: Sequence[str] = ()) -> list[SeedRun]:
    """The runs of seeds 0 .. seeds - 1: ``runs/NAME`` for seed 0, ``runs/NAME_seedS`` after it (NAME: the recipe)."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    name = name or recipe
    return [SeedRun(recipe, seed, Path(runs) / (name if seed == 0 else f"{name}_seed{seed}"), tuple(overrides))
            for seed in range(seeds)]


def _train(command: list[str]) -> None:
    program = Path(sys.executable).with_name(command[0])  # this Python's textvae-train, its environment not activated
    code = subprocess.run([str(program) if program.exists() else command[0], *command[1:]]).returncode
    if code:  # its own error is printed above; the benchmark stops with one line, not a traceback
        raise SystemExit(f"error: {shlex.join(command)} exited with status {code}; the benchmark stops here")


def train_missing(runs: Sequence[SeedRun], train: Callable[[list[str]], None] | None = None) -> list[Path]:
    """Each run's export, training (one at a time, by ``train``: default the command in a subprocess) the runs that
    have none; the exports in seed order."""
    train = train or _train
    for run in runs:
        if (run.export / "config.json").exists():
            print(f"seed {run.seed}: {run.export} exists", flush=True)
            continue
        print(f"seed {run.seed}: training: {shlex.join(run.command())}", flush=True)
        train(run.command())
        if not (run.export / "config.json").exists():
            raise RuntimeError(f"{shlex.join(run.command())} wrote no export in {run.export}")
    return [run.export for run in runs]


class MeanSD(NamedTuple):
    mean: float
    sd: float | None  # sample standard deviation (n - 1 in the denominator); None for one value
    n: int


def mean_sd(values: Sequence[float]) -> MeanSD:
    if not values:
        raise ValueError("no values")
    return MeanSD(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def aggregate(rows: Sequence[Any]) -> Any:
    """One row of the same shape as the seeds' rows (nested dicts and lists of figures): each number the MeanSD of
    that number over the rows; a key that some rows lack is left out; a value that is None in every row stays None;
    any other value is kept where all rows agree, and None (not comparable) where they differ or mix numbers and
    None (e.g. an overflowed perplexity)."""
    first = rows[0]
    if all(isinstance(r, dict) for r in rows):
        keys = [k for k in first if all(k in r for r in rows)]
        return {k: aggregate([r[k] for r in rows]) for k in keys}
    if all(isinstance(r, list) for r in rows) and len({len(r) for r in rows}) == 1:
        return [aggregate([r[i] for r in rows]) for i in range(len(first))]
    if all(_number(r) for r in rows):
        return mean_sd([float(r) for r in rows])
    return first if all(r == first for r in rows) else None


def to_json(tree: Any) -> Any:
    """An aggregated row for JSON: each MeanSD as {"mean", "sd", "seeds"}."""
    if isinstance(tree, MeanSD):
        return {"mean": tree.mean, "sd": tree.sd, "seeds": tree.n}
    if isinstance(tree, dict):
        return {k: to_json(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [to_json(v) for v in tree]
    return tree


def cell(value: float | MeanSD, form: str = ".2f") -> str:
    """A table cell: ``41.59`` for one figure (or one seed), ``41.59 ± 0.12`` for the mean ± sd of several."""
    if isinstance(value, MeanSD):
        return format(value.mean, form) + ("" if value.sd is None else f" ± {format(value.sd, form)}")
    return format(value, form)
