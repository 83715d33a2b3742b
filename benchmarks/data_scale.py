"""How the data layer grows with the corpus: synthetic sentences at N = 100k, 1M, 10M (BENCHMARKS.md, "Data at scale").

For each N, as a user would run it:

1. ``textvae-corpus prepare synthetic-sentences --size N`` (train N, valid and test N // 10 each), timed;
2. ``textvae-train fit --config recipes/quickstart.yaml`` on it for ``--steps`` steps, on a cold cache (the first
   run builds the record, tokenizer and token-id caches) and again on the warm cache.

Each training run carries the :class:`Probe` callback, which records the seconds from the process's launch to the
first training step, the training sentences/s after ``--warmup`` steps, and the peak resident memory (VmHWM) of
the training process and of the largest of the worker processes it ran (the cache build's). The start-up
figures include Python's and torch's import (about 5 s here).

    python benchmarks/data_scale.py --sizes 100000 1000000 10000000 --work /tmp/data_scale \\
        --json benchmarks/data_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]
PROBE_OUT = "TEXTVAE_PROBE_OUT"  # where the Probe writes its figures (JSON)
PROBE_LAUNCH = "TEXTVAE_PROBE_LAUNCH"  # time.time() just before the training process was launched
PROBE_WARMUP = "TEXTVAE_PROBE_WARMUP"


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of the largest of its finished child processes, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


class Probe(pl.Callback):
    """Start-up time, training speed and peak memory of a training run (see the module doc)."""

    def __init__(self):
        self.launch = float(os.environ.get(PROBE_LAUNCH, time.time()))
        self.warmup = int(os.environ.get(PROBE_WARMUP, 10))
        self.first_step = None
        self.times: list[float] = []
        self.sentences: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.time()
        if self.first_step is None:
            self.first_step = now - self.launch
        self.times.append(now)
        self.sentences.append(int(batch.index.shape[0]))

    def on_train_end(self, trainer, pl_module):
        steps = len(self.times) - 1 - self.warmup  # timed steps: from the warmup-th batch start to the last one's
        rate = sum(self.sentences[self.warmup:-1]) / (self.times[-1] - self.times[self.warmup]) if steps > 0 else None
        own, children = peak_rss_mb()
        figures = {"first_step_s": self.first_step, "train_sentences_per_s": rate, "timed_steps": max(steps, 0),
                   "peak_rss_mb": own, "peak_rss_workers_mb": children}
        out = os.environ.get(PROBE_OUT)
        if out:
            Path(out).write_text(json.dumps(figures), encoding="utf-8")
        print("probe:", json.dumps(figures))


def _run(command: list[str], env: dict | None = None) -> float:
    start = time.time()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.time() - start


def train_once(folder: Path, steps: int, warmup: int, run: Path) -> dict:
    """One ``textvae-train fit`` of the quickstart recipe on ``folder`` for ``steps`` steps; the Probe's figures."""
    out = run / "probe.json"
    env = os.environ | {PROBE_OUT: str(out), PROBE_WARMUP: str(warmup),
                        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "tools.train", "fit", "--config", "recipes/quickstart.yaml",
               "--data.train", str(folder / "train.jsonl"), "--data.valid", str(folder / "valid.jsonl"),
               "--data.test", str(folder / "test.jsonl"), "--trainer.max_steps", str(steps),
               "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
               "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
               "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(run),
               "--trainer.callbacks+=benchmarks.data_scale.Probe", "--export", str(run / "export")]
    env[PROBE_LAUNCH] = str(time.time())
    _run(command, env)
    return json.loads(out.read_text(encoding="utf-8"))


def measure(size: int, work: Path, steps: int, warmup: int) -> dict:
    folder = work / f"synthetic-{size}"
    shutil.rmtree(folder, ignore_errors=True)
    prepare_s = _run([sys.executable, "-m", "tools.corpus", "prepare", "synthetic-sentences", "--size", str(size),
                      "--out", str(folder)])
    file_mb = sum(f.stat().st_size for f in folder.glob("*.jsonl")) / 2**20
    cold = train_once(folder, steps, warmup, work / f"run-{size}-cold")
    warm = train_once(folder, steps, warmup, work / f"run-{size}-warm")
    cache_mb = sum(f.stat().st_size for f in (folder / ".cache").rglob("*") if f.is_file()) / 2**20
    shutil.rmtree(folder, ignore_errors=True)  # 10M sentences take ~5 GB with their cache
    return {"size": size, "prepare_s": prepare_s, "files_mb": file_mb, "cache_mb": cache_mb, "cold": cold, "warm": warm}


def table(rows: list[dict]) -> str:
    lines = ["| train sentences | prepare (s) | files (MB) | first step, cold cache (s) | prepare + cold (s) | "
             "cache (MB) | first step, warm cache (s) | peak RSS, training process cold / warm (MB) | "
             "peak RSS, workers (MB) | training sentences/s (warm) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cold, warm = r["cold"], r["warm"]
        lines.append(f"| {r['size']:,} | {r['prepare_s']:.0f} | {r['files_mb']:,.0f} | {cold['first_step_s']:.1f} | "
                     f"{r['prepare_s'] + cold['first_step_s']:.0f} | {r['cache_mb']:,.0f} | {warm['first_step_s']:.1f} | "
                     f"{cold['peak_rss_mb']:,.0f} / {warm['peak_rss_mb']:,.0f} | {cold['peak_rss_workers_mb']:,.0f} | "
                     f"{warm['train_sentences_per_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/textvae_data_scale"),
                        help="scratch folder for the corpora and runs (removed size by size)")
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="steps before the timed ones")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        rows.append(measure(size, args.work, args.steps, args.warmup))
        print(json.dumps(rows[-1]), flush=True)
    print(f"cpus: {len(os.sched_getaffinity(0))}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"cpus": len(os.sched_getaffinity(0)), "steps": args.steps,
                                         "warmup": args.warmup, "rows": rows}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
