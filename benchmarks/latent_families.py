"""The latent families side by side: each recipe's export evaluated the same way, beside its LM baseline.

    textvae-corpus prepare yelp10k --source ../shared/corpora --out data/yelp10k
    textvae-train fit --config recipes/yelp10k_lm.yaml          # and each family's recipe, e.g.
    textvae-train fit --config recipes/yelp10k_iaf_vae.yaml
    python benchmarks/latent_families.py --corpus yelp10k --runs yelp10k_lm yelp10k_gaussian_vae yelp10k_iaf_vae

For each run (its export in ``runs/NAME/export``), on the first ``--sentences`` test sentences of the
corpus (``data/CORPUS/test.jsonl``): IW-NLL with K = ``--samples`` (the exact NLL for a language
model), PPL (total NLL over words + EOS), -ELBO, KL (closed form or Monte Carlo, as the evaluation says),
MI (aggregate posterior over all the evaluated sentences), active units, reconstruction BLEU (greedy
from the posterior mean); on the first ``--svi-sentences`` of them, the ELBO after ``--svi-steps``
semi-amortised steps, Cremer et al.'s amortisation and approximation gaps, and the KL, MI and reconstruction
BLEU of the refined posteriors beside the amortised ones on the same sentences (in the JSON); then training sentences/s: ``--train-steps`` steps of the run's own
training procedure (its recipe's system: objective, aggressive inner loops, SVI steps) on a fresh model,
timed after 5 warm-up steps by a real Lightning trainer. Prints a Markdown table for BENCHMARKS.md
and writes JSON (``--json``, default ``benchmarks/latent_families_CORPUS.json``); runs already in that file
are kept (and shown), so runs can be evaluated as they finish. The fp32 matmul peak at each evaluation is
recorded beside it.

``--seeds N`` evaluates N runs of each recipe: seed 0 in ``runs/NAME``, seed S in ``runs/NAME_seedS``, each
trained first if its export is missing (benchmarks/seeds.py); the run's row in the JSON keeps every seed's
figures, and the table gives each as mean ± sample standard deviation over the seeds. The training speed does
not depend on the seed: it is measured once, on seed 0's model.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from seeds import MeanSD, aggregate, cell, seed_runs, to_json, train_missing  # benchmarks/seeds.py

from textvae.data.datasets import SentenceDataset, load_records
from textvae.evaluation import evaluate
from textvae.export import load_export
from textvae.lightning import TextDataModule, TextVAESystem
from textvae.schedules import KLSchedule


def matmul_peak_gflops(size: int = 2048, repeats: int = 10, *, device: str = "cpu",
                       dtype: torch.dtype = torch.float32) -> float:
    """This machine's matmul rate (GFLOP/s; fp32 unless ``dtype``) at the current thread count, or on a GPU
    ``device``: the yardstick printed beside absolute speeds (machines of one kind differ by up to 2x from day
    to day)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    if torch.device(device).type == "cuda":  # each product waited for, so the clock reads finished work
        return gflops(lambda: (a @ b, torch.cuda.synchronize(device)), 2 * size**3, repeats)
    return gflops(lambda: a @ b, 2 * size**3, repeats)


def gflops(fn, flops: int, repeats: int) -> float:
    """GFLOP/s of ``fn`` (``flops`` a call) over ``repeats`` calls after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return flops * repeats / (time.perf_counter() - start) / 1e9


class _Timer(pl.Callback):
    """Seconds and sentences of the training batches after the first ``warmup``."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.sentences = warmup, None, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()
        if batch_idx >= self.warmup:
            self.sentences += batch.index.shape[0]

    def on_train_end(self, trainer, module):
        self.seconds = time.perf_counter() - self.start


def system_arguments(recipe: dict) -> dict:
    """The recipe's training-system arguments (everything under ``model`` but the model), instantiated."""
    args = {k: v for k, v in recipe["model"].items() if k != "model"}
    if "kl_schedule" in args:
        args["kl_schedule"] = KLSchedule(**args["kl_schedule"])
    if "objective" in args:
        spec = args["objective"]
        module, _, name = spec["class_path"].rpartition(".")
        args["objective"] = getattr(importlib.import_module(module), name)(**(spec.get("init_args") or {}))
    return args


def training_speed(run: str, export, steps: int, warmup: int = 5) -> float:
    """Sentences/s of the run's own training procedure (its recipe's objective, aggressive inner loops, SVI
    steps) on a fresh model of the export's configuration, timed by a real Lightning trainer."""
    recipe = yaml.safe_load(Path(f"recipes/{run}.yaml").read_text())  # a run is named after its recipe
    torch.manual_seed(0)
    model = type(export.model)(**json.loads(json.dumps(export.model.init_args)))
    system = TextVAESystem(model, **system_arguments(recipe))
    data = recipe["data"]
    module = TextDataModule(train=data["train"], tokenizer_dir=f"runs/{run}/export",
                            batch_size=data.get("batch_size", 32), max_len=data.get("max_len", 100))
    timer = _Timer(warmup)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=warmup + steps, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[timer])
    trainer.fit(system, module)
    return timer.sentences / timer.seconds


def measure(name: str, export, records, args: argparse.Namespace, row: dict | None = None) -> dict:
    """One export's figures (``row``: those measured before, for --gaps-only) and its SVI gaps. Gaps measured
    on every sentence come from the same evaluation as the figures (one pass, not two)."""
    with_gaps = bool(export.model.latent_dim and args.svi_steps)
    one_pass = row is None and with_gaps and args.svi_sentences >= len(records)
    if row is None:
        dataset = SentenceDataset(records, export.tokenizer, max_len=None)
        result = evaluate(export.model, dataset, samples=args.samples, seed=0, tokenizer=export.tokenizer,
                          batch_size=args.batch_size, svi_steps=args.svi_steps if one_pass else 0, svi_lr=args.svi_lr)
        print(f"== {name}\n{result.table()}")
        row = result.to_dict()
    if with_gaps:
        if one_pass:
            gaps = result
        else:
            subset = SentenceDataset(records.select(range(min(args.svi_sentences, len(records)))), export.tokenizer,
                                     max_len=None)
            gaps = evaluate(export.model, subset, samples=args.samples, seed=0, tokenizer=export.tokenizer,
                            batch_size=args.batch_size, svi_steps=args.svi_steps, svi_lr=args.svi_lr)
            print(f"-- {name}, the first {gaps.sentences} sentences\n{gaps.table()}")
        row["svi"] = {k: getattr(gaps, k) for k in ("sentences", "svi_steps", "svi_lr", "iw_nll", "elbo", "elbo_svi",
                                                    "iw_nll_svi", "amortization_gap", "approximation_gap", "kl",
                                                    "mi", "recon_bleu", "kl_svi", "mi_svi", "recon_bleu_svi")}
    return row


def markdown(rows: dict[str, dict], samples: int) -> str:
    """The table for BENCHMARKS.md: a run of several seeds gives each figure as mean ± sd over them."""
    lines = [f"| run | IW-NLL (K={samples}) | PPL | -ELBO | KL | MI | AU | recon BLEU | amort. gap | approx. gap | "
             "train sent/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(value, digits=2):
        return "—" if value is None else cell(value, f".{digits}f")

    def minus(value):  # -ELBO, of one figure or of the seeds' (the sd keeps its sign)
        return None if value is None else value._replace(mean=-value.mean) if isinstance(value, MeanSD) else -value

    for run, row in rows.items():
        # the settings (K, the latent's size, the KL's estimate) are seed 0's; figures over the seeds: mean ± sd
        first, r = (row["seeds"][0], aggregate(row["seeds"])) if "seeds" in row else (row, row)
        nll = f(r["iw_nll"]) + (" (exact)" if first["samples"] is None else "")
        kl = "—" if r["kl"] is None else f(r["kl"]) + (" (MC)" if first["kl_estimate"] != "closed form" else "")
        units = r["active_units"]
        au = "—" if units is None else f"{f(units, 1 if isinstance(units, MeanSD) else 0)}/{first['latent_dim']}"
        svi = r.get("svi") or {}
        lines.append(f"| `{run}` | {nll} | {f(r['ppl'], 1)} | {f(minus(r['elbo']))} | {kl} | {f(r['mi'])} | {au} | "
                     f"{f(r['recon_bleu'], 1)} | {f(svi.get('amortization_gap'))} | "
                     f"{f(svi.get('approximation_gap'))} | {f(row['train_sentences_per_s'], 0)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="a prepared corpus folder under data/ (yelp10k, ptb-lite)")
    parser.add_argument("--runs", nargs="+", required=True, help="run names: exports in runs/NAME/export")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--svi-steps", type=int, default=20)
    parser.add_argument("--svi-sentences", type=int, default=200,
                        help="the gaps are measured on the first N of the sentences (refinement is slow)")
    parser.add_argument("--svi-lr", type=float, default=0.25)
    parser.add_argument("--train-steps", type=int, default=30,
                        help="training steps timed for sentences/s (needs recipes/RUN.yaml); 0: not measured")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per IW-NLL batch")
    parser.add_argument("--json", default=None)
    parser.add_argument("--gaps-only", action="store_true",
                        help="only measure the SVI gaps again for runs already in the JSON")
    parser.add_argument("--seeds", type=int, default=1,
                        help="runs of each recipe (runs/NAME, runs/NAME_seedS), trained where missing; mean ± sd")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.seeds > 1 and args.gaps_only:
        parser.error("--gaps-only measures again the gaps of one-seed rows")
    records = load_records(f"data/{args.corpus}/test.jsonl", cache_dir="data/.cache")
    records = records.select(range(min(args.sentences, len(records))))
    path = Path(args.json or f"benchmarks/latent_families_{args.corpus}.json")
    # runs evaluated earlier stay in the file: a table can grow one run at a time
    rows = json.loads(path.read_text(encoding="utf-8"))["results"] if path.exists() else {}
    for run in args.runs:
        # with several seeds, each seed's run (trained first where its export is missing)
        exports = [Path(f"runs/{run}/export")] if args.seeds == 1 else train_missing(seed_runs(run, args.seeds))
        peak = matmul_peak_gflops()
        print(f"fp32 matmul peak now: {peak:.0f} GFLOP/s ({torch.get_num_threads()} threads)")
        if args.seeds == 1:
            export = load_export(exports[0])
            row = measure(run, export, records, args, rows[run] if args.gaps_only else None)
        else:
            seed_rows = [measure(f"{run} (seed {seed})", load_export(p), records, args)
                         for seed, p in enumerate(exports)]
            row = {"exports": [str(p) for p in exports], "seeds": seed_rows, "mean_sd": to_json(aggregate(seed_rows))}
            export = load_export(exports[0])  # the training speed does not depend on the seed: seed 0's
        if not args.gaps_only:
            speed = training_speed(run, export, args.train_steps) if args.train_steps else None  # 0: not measured
            row |= {"train_sentences_per_s": speed, "threads": torch.get_num_threads(), "matmul_peak_gflops": peak,
                    "args": vars(args)}
        # merge into the file as it is now: another evaluation may have written other runs meanwhile
        rows = (json.loads(path.read_text(encoding="utf-8"))["results"] if path.exists() else {}) | {run: row}
        path.write_text(json.dumps({"results": rows}, indent=2) + "\n", encoding="utf-8")
    print("\n" + markdown(rows, args.samples))
    print(f"wrote {path}")  # the matmul peak at each run's evaluation is in it


if __name__ == "__main__":
    main()
