"""GPU scale: LSTM-VAE training throughput against batch size, and IW-NLL at K = 500, on a GPU and on the CPU.

    python benchmarks/gpu_scale.py --device cuda --json OUT.json         # the whole run: a few minutes on one GPU
    python benchmarks/gpu_scale.py --device cpu --batch-sizes 32 128 --steps 5 --iw-sentences 64 --json OUT.json
    python benchmarks/gpu_scale.py --device cpu --dry-run --json OUT.json  # every part at tiny sizes, seconds

Models (SentenceVAE, LSTM encoder and decoder, z 32): ``ptb-h256`` and ``ptb-h1024`` (embedding 256, LSTM
256 or 1024, PTB's 10,000 words) and ``yahoo`` (embedding 512, LSTM 1024, 20,000 words: He et al. 2019's
Yahoo model). All three are fed the length-bucketed training batches of ptb-lite (``--data``; the ids of its
smaller vocabulary index the larger output layers), as textvae-train's data module makes them.

Measured, each written to ``--json`` as soon as it is taken (a run cut short keeps what it had):
- ``train``: optimiser steps of the training system (TextVAESystem's objective at beta 1, backward, clipping at
  its grad_clip_norm, its optimiser from configure_optimizers), each on a batch copied to the device, for
  every model x precision (fp32 as torch defaults it: cuDNN may use TF32, matmuls do not; tf32: TF32 matmuls
  too, on a GPU; bf16: autocast) x batch size; after ``--warmup`` steps,
  ``--steps`` timed. Tokens = target tokens (words + EOS).
- ``compiled``: the same step with the model under ``torch.compile`` (mode default; on a GPU also
  reduce-overhead, i.e. CUDA graphs) for ``--compile-models`` at ``--compile-batch-sizes``; compile time apart.
- ``lightning``: textvae-train's loop itself (Trainer.fit on TextDataModule; logging, the non-finite guard)
  per model x precision x ``--num-workers`` at the largest batch size, timed from step ``--warmup`` to the end;
  ``--train-repeats`` lengthens its epochs (ptb-lite is two batches of 2048).
- ``iw_nll``: textvae.evaluation.evaluate (textvae-eval's function) at K = ``--samples`` over the first
  ``--iw-sentences`` test sentences (default all 3,761 of ptb-lite) with the untrained ``--iw-models``
  (default ptb-h256), fp32 and bf16, at ``--iw-chunks`` samples per decoder pass: its timed IW seconds and the
  call's wall time.

On the lent GPU machine (the `run` tool; its Python lacks `datasets` and the data folder is not tracked),
after, here, ``python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl
datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0 jsonargparse==4.53.0 docstring_parser==0.18.0
typeshed_client==2.15.0`` and ``textvae-corpus prepare ptb-lite --source
../shared/corpora --out data/ptb-lite``::

    run(carry=[".whl", "data/ptb-lite"], timeout_s=540, command=
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
         .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 || exit; set -o pipefail;
         python3 benchmarks/gpu_scale.py --device cuda --time-budget 420 --json $OUT/gpu_scale.json 2>&1
         | tee $OUT/gpu_scale.log")

(one line in the call; BENCHMARKS.md "GPU scale" has the figures of an H200, and ``benchmarks/gpu.sh scale OUT``
runs its two commands). The order is the acceptance figures first (IW-NLL, eager training), then Lightning's
loop, then the compiled variants; what would start after ``--time-budget`` seconds is skipped and recorded so.
If ``import datasets`` fails there on an older pyarrow or fsspec, carry those wheels too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch

from textvae.data.batching import batch_to
from textvae.data.records import write_jsonl
from textvae.data.synthetic import generate_sentences
from textvae.evaluation import device_name, evaluate, synchronize
from textvae.lightning import TextDataModule, TextVAESystem
from textvae.models import SentenceVAE

PRECISIONS = {"fp32": None, "tf32": None, "bf16": torch.bfloat16}  # autocast dtype


@dataclass(frozen=True)
class ModelSize:
    embed_dim: int
    hidden_dim: int
    latent_dim: int
    vocab_size: int  # at least; the data's vocabulary when larger


MODELS = {
    "ptb-h256": ModelSize(256, 256, 32, 10_000),
    "ptb-h1024": ModelSize(256, 1024, 32, 10_000),
    "yahoo": ModelSize(512, 1024, 32, 20_000),
}
DRY_MODELS = {"ptb-h256": ModelSize(16, 16, 4, 0), "ptb-h1024": ModelSize(16, 32, 4, 0), "yahoo": ModelSize(24, 32, 4, 0)}


def output_vocab(size: ModelSize, data_vocab: int) -> int:
    return max(size.vocab_size, data_vocab)


def build_model(size: ModelSize, data_vocab: int) -> SentenceVAE:
    return SentenceVAE(vocab_size=output_vocab(size, data_vocab), architecture="lstm", embed_dim=size.embed_dim,
                       hidden_dim=size.hidden_dim, latent_dim=size.latent_dim)


@contextlib.contextmanager
def precision(name: str, device: torch.device):
    """fp32 as torch defaults it; tf32: TF32 matmuls (GPU); bf16: autocast to bfloat16."""
    matmul = torch.get_float32_matmul_precision()
    if name == "tf32":
        torch.set_float32_matmul_precision("high")
    dtype = PRECISIONS[name]
    try:
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            yield
    finally:
        torch.set_float32_matmul_precision(matmul)


def training_batches(data: Path, batch_size: int, cache_dir: str) -> tuple[list, int]:
    """One epoch of textvae-train's training batches (length-bucketed, shuffled) and the data's vocabulary."""
    datamodule = TextDataModule(train=str(data / "train.jsonl"), batch_size=batch_size, cache_dir=cache_dir)
    return list(datamodule.train_dataloader()), datamodule.vocab_size


def train_rate(model: torch.nn.Module, batches: list, device: torch.device, precision_name: str, *, warmup: int,
               steps: int, compile_mode: str | None = None) -> dict:
    """Steps of the training system's optimisation on ``batches`` (cycled): tokens/s and sentences/s."""
    model = model.to(device).train()
    system = TextVAESystem(model)
    optimizer = system.configure_optimizers()
    forward = model
    if compile_mode:
        # full batches only: B stays static and T alone dynamic (a symbolic B fails in the posterior's torch.randn)
        batches = [b for b in batches if b.tokens.shape[0] == max(b.tokens.shape[0] for b in batches)]
        forward = torch.compile(model, mode=compile_mode)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if compile_mode:  # the frames after graph breaks compile again for a second length, then for all: warm past it
        warmup = max(warmup, 5)
    sentences = tokens = 0
    start = first = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        batch = batches[step % len(batches)]
        if step >= warmup:  # counted on the CPU batch: no device sync
            sentences, tokens = sentences + batch.tokens.shape[0], tokens + batch.num_targets
        batch = batch_to(batch, device)
        if compile_mode:  # compiled once for every sentence length, not first for one and then again
            torch._dynamo.maybe_mark_dynamic(batch.tokens, 1)
        with precision(precision_name, device):
            loss = system.objective(forward, batch, beta=1.0).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), system.grad_clip_norm)
        optimizer.step()
    synchronize(device)
    seconds = time.perf_counter() - start
    row = {"steps": steps, "seconds": seconds, "tokens_per_s": tokens / seconds, "sentences_per_s": sentences / seconds,
           "ms_per_step": 1000 * seconds / steps, "warmup_seconds": start - first, "loss": float(loss),
           "adam_fused": bool(optimizer.defaults.get("fused"))}
    if device.type == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


class StepClock(pl.Callback):
    """Times Trainer.fit from the start of step ``warmup`` to the end of the last step; counts what it trained."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.start = self.end = 0.0
        self.sentences = self.tokens = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            synchronize(pl_module.device)
            self.start = time.perf_counter()
        if trainer.global_step >= self.warmup:
            self.sentences += batch.tokens.shape[0]
            self.tokens += batch.num_targets

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == trainer.max_steps:
            synchronize(pl_module.device)
            self.end = time.perf_counter()


def lightning_rate(size: ModelSize, data: Path, batch_size: int, device: torch.device, precision_name: str, *,
                   warmup: int, steps: int, cache_dir: str, root: str, num_workers: int = 0,
                   train_repeats: int = 1) -> dict:
    """textvae-train's loop: Trainer.fit of TextVAESystem on TextDataModule, as the recipes configure it
    (``num_workers``, ``train_repeats``: its data options of those names)."""
    datamodule = TextDataModule(train=str(data / "train.jsonl"), batch_size=batch_size, cache_dir=cache_dir,
                                num_workers=num_workers, train_repeats=train_repeats)
    system = TextVAESystem(build_model(size, datamodule.vocab_size))
    clock = StepClock(warmup)
    matmul = torch.get_float32_matmul_precision()
    if precision_name == "tf32":
        torch.set_float32_matmul_precision("high")
    try:
        trainer = pl.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                             precision="bf16-mixed" if precision_name == "bf16" else "32-true",
                             max_steps=warmup + steps, logger=False, callbacks=[clock], default_root_dir=root,
                             use_distributed_sampler=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(system, datamodule=datamodule)
    finally:
        torch.set_float32_matmul_precision(matmul)
    seconds = clock.end - clock.start
    return {"steps": steps, "seconds": seconds, "tokens_per_s": clock.tokens / seconds,
            "sentences_per_s": clock.sentences / seconds, "ms_per_step": 1000 * seconds / steps}


def iw_rate(size: ModelSize, data: Path, device: torch.device, precision_name: str, *, samples: int, sentences: int,
            batch_size: int, chunk: int | None, cache_dir: str, work: Path) -> dict:
    """IW-NLL at K = ``samples`` over the first ``sentences`` test sentences, with textvae-eval's function;
    ``chunk``: importance samples per decoder pass (None: textvae-eval's default, under its logits budget)."""
    lines = (data / "test.jsonl").read_text(encoding="utf-8").splitlines()
    test = work / f"test{sentences}.jsonl"
    test.write_text("\n".join(lines[:sentences]) + "\n", encoding="utf-8")
    datamodule = TextDataModule(train=str(data / "train.jsonl"), test=str(test), cache_dir=cache_dir)
    torch.manual_seed(0)
    model = build_model(size, datamodule.vocab_size)
    dataset = datamodule.dataset("test")
    synchronize(device)
    start = time.perf_counter()
    with precision(precision_name, device):
        result = evaluate(model, dataset, samples=samples, batch_size=batch_size, bleu=False, device=device,
                          chunk=chunk)
    synchronize(device)
    wall = time.perf_counter() - start
    return {"sentences": result.sentences, "tokens": result.tokens, "vocab_size": output_vocab(size, datamodule.vocab_size),
            "samples": samples, "batch_size": batch_size,
            "iw_nll": result.iw_nll, "iw_seconds": result.seconds, "wall_seconds": wall,
            "sentences_per_s": result.sentences_per_second, "tokens_per_s": result.tokens / result.seconds}


def prepare(data: Path, source: str | None, dry_run: bool) -> Path:
    """ptb-lite as textvae-corpus prepares it; in a dry run without it, synthetic sentences."""
    if (data / "train.jsonl").is_file() and (data / "test.jsonl").is_file():
        return data
    if source is not None:
        from corpora import prepare as prepare_corpus

        prepare_corpus("ptb-lite", str(data), source=source)
        return data
    if not dry_run:
        sys.exit(f"gpu_scale: no {data}/train.jsonl: prepare it (textvae-corpus prepare ptb-lite --source "
                 f"../shared/corpora --out {data}) or give --prepare-from")
    data.mkdir(parents=True, exist_ok=True)
    write_jsonl(data / "train.jsonl", generate_sentences(96, seed=1))
    write_jsonl(data / "test.jsonl", generate_sentences(32, seed=2))
    return data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", type=Path, default=Path("data/ptb-lite"), help="prepared ptb-lite folder")
    parser.add_argument("--prepare-from", metavar="SOURCE", help="prepare ptb-lite from this corpora folder if missing")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), help="default: fp32 tf32 bf16 on a "
                        "GPU, fp32 bf16 on the CPU")
    parser.add_argument("--batch-sizes", nargs="+", type=int, help="default: 32 to 2048 on a GPU, to 512 on the CPU")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    parser.add_argument("--compile-models", nargs="*", choices=list(MODELS), help="default: ptb-h256 on a GPU, "
                        "none on the CPU")
    parser.add_argument("--compile-batch-sizes", nargs="+", type=int, help="default: the largest")
    parser.add_argument("--no-lightning", action="store_true", help="skip textvae-train's own loop")
    parser.add_argument("--num-workers", type=int, nargs="+", default=[0], help="textvae-train's loop: data loader "
                        "worker processes (--data.num_workers), one run per value")
    parser.add_argument("--train-repeats", type=int, default=1, help="textvae-train's loop: each epoch reads the "
                        "training set this many times (--data.train_repeats; ptb-lite has 2 batches of 2048, so at "
                        "large batches the loop's per-epoch work dominates unless the epoch is longer)")
    parser.add_argument("--samples", type=int, default=500, help="K of the IW-NLL")
    parser.add_argument("--iw-sentences", type=int, default=3761)
    parser.add_argument("--iw-batch-size", type=int, help="default: 256 on a GPU, 32 on the CPU")
    parser.add_argument("--iw-models", nargs="*", choices=list(MODELS), default=["ptb-h256"], help="none: skip "
                        "the IW-NLL")
    parser.add_argument("--iw-chunks", nargs="+", type=int, help="importance samples per decoder pass, 0: "
                        "textvae-eval's default; default: 0 and 100 on a GPU, 0 on the CPU")
    parser.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--time-budget", type=float, metavar="S", help="skip what would start after S seconds")
    parser.add_argument("--dry-run", action="store_true", help="every part at tiny sizes (a check of the script)")
    parser.add_argument("--json", type=Path, help="write every figure here, as it is measured")
    args = parser.parse_args(argv)
    gpu = torch.device(args.device).type == "cuda"
    args.batch_sizes = args.batch_sizes or [32, 64, 128, 256, 512] + ([1024, 2048] if gpu else [])
    args.precisions = args.precisions or (["fp32", "tf32", "bf16"] if gpu else ["fp32", "bf16"])
    args.compile_models = args.compile_models if args.compile_models is not None else (["ptb-h256"] if gpu else [])
    args.compile_batch_sizes = args.compile_batch_sizes or [max(args.batch_sizes)]
    args.iw_batch_size = args.iw_batch_size or (256 if gpu else 32)
    args.iw_chunks = args.iw_chunks or ([0, 100] if gpu else [0])
    if args.dry_run:
        args.batch_sizes, args.compile_batch_sizes = [4, 8], [8]
        args.warmup, args.steps, args.samples, args.iw_sentences, args.iw_batch_size = 1, 2, 5, 8, 4
        args.iw_chunks = [0, 2]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = DRY_MODELS if args.dry_run else MODELS
    work = Path(tempfile.mkdtemp(prefix="gpu_scale-"))
    cache = str(work / "cache")
    data = prepare(args.data if not args.dry_run or args.data.exists() else work / "data", args.prepare_from,
                   args.dry_run)
    report = {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None, "dry_run": args.dry_run,
              "data": str(data), "models": {name: asdict(sizes[name]) for name in args.models},
              "train": [], "compiled": [], "lightning": [], "iw_nll": []}

    def record(section: str, row: dict) -> None:
        report[section].append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")

    def measure(section: str, key: dict, run) -> None:
        if args.time_budget and time.perf_counter() - started > args.time_budget:
            record(section, key | {"skipped": f"past the time budget of {args.time_budget} s"})
            return
        try:
            record(section, key | run())
        except Exception as err:  # one configuration that cannot run (memory, a compiler) must not end the sweep
            record(section, key | {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"})
            if device.type == "cuda":
                torch.cuda.empty_cache()

    for name in args.iw_models:
        for precision_name in [p for p in args.precisions if p != "tf32"]:
            for chunk in args.iw_chunks:
                measure("iw_nll", {"model": name, "precision": precision_name, "chunk": chunk or None}, partial(
                    iw_rate, sizes[name], data, device, precision_name, samples=args.samples,
                    sentences=args.iw_sentences, batch_size=args.iw_batch_size, chunk=chunk or None, cache_dir=cache,
                    work=work))
    batches = {}
    for batch_size in args.batch_sizes:  # one epoch of each batch size's training batches, and the vocabulary
        batches[batch_size], vocab = training_batches(data, batch_size, cache)
    for batch_size in args.batch_sizes:
        for name in args.models:
            for precision_name in args.precisions:
                torch.manual_seed(0)
                model = build_model(sizes[name], vocab)
                measure("train", {"model": name, "precision": precision_name, "batch_size": batch_size},
                        partial(train_rate, model, batches[batch_size], device, precision_name, warmup=args.warmup,
                                steps=args.steps))
    if not args.no_lightning:
        for name in args.models:
            for precision_name in args.precisions:
                for workers in args.num_workers:
                    key = {"model": name, "precision": precision_name, "batch_size": max(args.batch_sizes),
                           "num_workers": workers, "train_repeats": args.train_repeats}
                    measure("lightning", key, partial(
                        lightning_rate, sizes[name], data, max(args.batch_sizes), device, precision_name,
                        warmup=args.warmup, steps=args.steps, cache_dir=cache, root=str(work / "runs"),
                        num_workers=workers, train_repeats=args.train_repeats))
    # last: each compilation takes tens of seconds
    for mode in ["default"] + (["reduce-overhead"] if device.type == "cuda" else []):
        for name in args.compile_models:
            for precision_name in [p for p in args.precisions if p != "tf32"]:
                for batch_size in args.compile_batch_sizes:
                    if batch_size not in batches:
                        batches[batch_size], vocab = training_batches(data, batch_size, cache)
                    torch.manual_seed(0)
                    model = build_model(sizes[name], vocab)
                    key = {"model": name, "precision": precision_name, "batch_size": batch_size, "mode": mode}
                    measure("compiled", key, partial(train_rate, model, batches[batch_size], device, precision_name,
                                                     warmup=args.warmup, steps=args.steps, compile_mode=mode))
    print_tables(report)


def print_tables(report: dict) -> None:
    print(f"\n{report['device']}, torch {report['torch']}, {report['threads']} threads")
    print("\ntraining tokens/s (sentences/s) by batch size:")
    for section in ("train", "compiled", "lightning"):
        rows = report[section]
        if not rows:
            continue
        print(f"[{section}]")
        for row in rows:
            mode = row.get("mode", f"{row['num_workers']} workers" if "num_workers" in row else "")
            what = f"{row['model']:<10} {row['precision']:<5} {mode:<15} batch {row['batch_size']:>4}"
            if "error" in row or "skipped" in row:
                print(f"  {what}  {row.get('error') or row['skipped']}")
            else:
                print(f"  {what}  {row['tokens_per_s']:>12,.0f} tok/s  {row['sentences_per_s']:>10,.0f} sent/s"
                      f"  {row['ms_per_step']:8.2f} ms/step")
    if report["iw_nll"]:
        print("\nIW-NLL:")
        for row in report["iw_nll"]:
            if "error" in row or "skipped" in row:
                print(f"  {row['model']:<10} {row['precision']:<5} {row.get('error') or row['skipped']}")
            else:
                print(f"  {row['model']:<10} {row['precision']:<5} chunk {row['chunk'] or 'auto':<5} K={row['samples']} "
                      f"{row['sentences']} sentences: "
                      f"{row['iw_seconds']:.2f} s ({row['wall_seconds']:.2f} s wall), "
                      f"{row['sentences_per_s']:,.1f} sent/s, IW-NLL {row['iw_nll']:.3f}"
                      + ("" if math.isfinite(row["iw_nll"]) else " (not finite)"))


if __name__ == "__main__":
    main()
