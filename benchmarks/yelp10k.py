"""yelp10k benchmark: a sentence VAE against the LM baseline trained with the same budget.

    textvae-corpus prepare yelp10k --source ../shared/corpora --out data/yelp10k
    textvae-train fit --config recipes/yelp10k_lstm_vae.yaml
    textvae-train fit --config recipes/yelp10k_lm.yaml
    python benchmarks/yelp10k.py --vae runs/yelp10k_lstm_vae/export --lm runs/yelp10k_lm/export
    python benchmarks/yelp10k.py --seeds 3 --vae-recipe yelp10k_lstm_vae --lm-recipe yelp10k_lm

Measures, for each model, on the first ``--sentences`` test sentences: IW-NLL (K = ``--samples``;
exact NLL for the LM), PPL (total NLL over words + EOS), ELBO, KL, MI, active units, reconstruction
BLEU, and IW-NLL sentences/s; then training tokens/s and sentences/s (``--train-steps`` optimiser steps
of a fresh model of the same configuration, batch 32, after 10 warm-up steps) and greedy prior-sampling
sentences/s. ``--device cuda`` runs all of it on a GPU (timings synchronise the device). Writes JSON.

``--seeds N`` with ``--vae-recipe``/``--lm-recipe`` (instead of export paths) evaluates N runs of each recipe:
seed 0 in ``runs/RECIPE``, seed S in ``runs/RECIPE_seedS``, each trained first if its export is missing
(benchmarks/seeds.py); it prints Markdown tables for BENCHMARKS.md, each figure as mean ± sample standard
deviation over the seeds, and the VAE-LM IW-NLL margin of each seed. The JSON keeps every seed's figures. The
speeds do not depend on the seed: they are measured once, on seed 0's model (its configuration).
"""

import argparse
import json
import time

import torch
from seeds import aggregate, cell, mean_sd, seed_runs, to_json, train_missing  # benchmarks/seeds.py

from textvae.data.batching import BucketBatchSampler, batch_to, collate_sentences
from textvae.data.datasets import SentenceDataset, load_records
from textvae.decoding import greedy
from textvae.evaluation import device_name, evaluate, synchronize
from textvae.export import load_export
from textvae.lightning import TextVAESystem


def training_throughput(export, train_file: str, cache_dir: str, steps: int,
                        device: torch.device) -> dict[str, float]:
    """Optimiser steps/s of a fresh model with the export's configuration (the training system's loss)."""
    model = type(export.model)(**export.model.init_args).to(device).train()
    system = TextVAESystem(model)
    optimizer = system.configure_optimizers()
    dataset = SentenceDataset(load_records(train_file, cache_dir=cache_dir), export.tokenizer, max_len=100)
    batches = [collate_sentences([dataset[i] for i in b]) for b in BucketBatchSampler(dataset.lengths, 32, seed=0)]
    sentences = tokens = 0
    for step, batch in enumerate(batches[: steps + 10]):
        if step == 10:
            synchronize(device)
            start = time.perf_counter()
        batch = batch_to(batch, device)
        loss = system.objective(model, batch, beta=1.0).loss  # the training system's objective, at beta 1
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if step >= 10:
            sentences += batch.tokens.shape[0]
            tokens += batch.num_targets
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"train_sentences_per_s": sentences / seconds, "train_tokens_per_s": tokens / seconds}


def sampling_throughput(export, device: torch.device, n: int = 1000) -> float:
    model = export.model.to(device).eval()
    generator = torch.Generator(device).manual_seed(0)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(n // 100):
        z = model.sample_prior(100, generator=generator) if model.latent_dim else None
        greedy(model, z, 50, batch_size=100)
    synchronize(device)
    return n // 100 * 100 / (time.perf_counter() - start)


def markdown(results: dict[str, dict], recipes: dict[str, str], samples: int) -> str:
    """The figures' table (mean ± sd over the seeds) and the speeds' table (seed 0) for BENCHMARKS.md."""
    rows = [f"| model | IW-NLL (K={samples}) | PPL (words+EOS) | ELBO | KL | MI | AU | recon BLEU |",
            "|---|---|---|---|---|---|---|---|"]

    def f(value, form: str = ".2f") -> str:
        return "—" if value is None else cell(value, form)

    for name, result in results.items():
        r = aggregate(result["seeds"])
        exact = " (exact)" if r["samples"] is None else ""
        rows.append(f"| `{recipes[name]}` | {f(r['iw_nll'])}{exact} | {f(r['ppl'], '.1f')} | {f(r['elbo'])} | "
                    f"{f(r['kl'])} | {f(r['mi'])} | {f(r['active_units'], '.1f')} | {f(r['recon_bleu'], '.1f')} |")
    rows += ["", f"| model | training sentences/s | training tokens/s | IW-NLL sentences/s (K={samples}) | "
             "greedy prior samples/s |", "|---|---|---|---|---|"]
    for name, result in results.items():
        r = result["seeds"][0]
        rows.append(f"| `{recipes[name]}` | {r['train_sentences_per_s']:,.0f} | {r['train_tokens_per_s']:,.0f} | "
                    f"{r['sentences_per_second']:,.1f} | {r['sample_sentences_per_s']:,.0f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    vae = parser.add_mutually_exclusive_group(required=True)
    vae.add_argument("--vae", help="the VAE's export")
    vae.add_argument("--vae-recipe", help="the VAE's recipe (runs/RECIPE/export, runs/RECIPE_seedS/export)")
    lm = parser.add_mutually_exclusive_group()
    lm.add_argument("--lm", help="the LM baseline's export (optional)")
    lm.add_argument("--lm-recipe", help="the LM baseline's recipe (optional)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="runs of each recipe, trained where missing; figures as mean ± sd (needs the recipes)")
    parser.add_argument("--runs", default="runs", help="the folder of the recipes' runs")
    parser.add_argument("--train", default="data/yelp10k/train.jsonl")
    parser.add_argument("--test", default="data/yelp10k/test.jsonl")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--cache-dir", default="data/.cache")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per IW-NLL batch")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", default="benchmarks/yelp10k.json")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.seeds > 1 and (args.vae or args.lm):
        parser.error("--seeds N > 1 trains and reads runs of recipes: name them with --vae-recipe and --lm-recipe")
    device = torch.device(args.device)
    models = {}  # name -> (what it is, the exports of its seeds)
    for name, path, recipe in (("vae", args.vae, args.vae_recipe), ("lm", args.lm, args.lm_recipe)):
        if recipe is not None:
            models[name] = (recipe, train_missing(seed_runs(recipe, args.seeds, runs=args.runs)))
        elif path is not None:
            models[name] = (path, [path])
    records = load_records(args.test, cache_dir=args.cache_dir).select(range(args.sentences))
    results = {}
    for name, (_, paths) in models.items():
        rows = []
        for seed, path in enumerate(paths):
            export = load_export(path)
            dataset = SentenceDataset(records, export.tokenizer, max_len=None)
            result = evaluate(export.model, dataset, samples=args.samples, seed=0, tokenizer=export.tokenizer,
                              batch_size=args.batch_size, device=device)
            print(result.table() if args.seeds == 1 else f"== {path} (seed {seed})\n{result.table()}", flush=True)
            rows.append(result.to_dict())
        row, export = rows[0], load_export(paths[0])  # the speeds do not depend on the seed: seed 0's
        row |= training_throughput(export, args.train, args.cache_dir, args.train_steps, device)
        row["sample_sentences_per_s"] = sampling_throughput(export, device)
        print(name, {k: v for k, v in row.items() if k.endswith("_per_s")})
        results[name] = row if args.seeds == 1 else {"exports": [str(p) for p in paths], "seeds": rows,
                                                      "mean_sd": to_json(aggregate(rows))}
    report = {"args": vars(args), "threads": torch.get_num_threads(), "device": device_name(device),
              "results": results}
    if args.seeds > 1:
        print("\n" + markdown(results, {name: what for name, (what, _) in models.items()}, args.samples))
        if "lm" in results:
            margins = [v["iw_nll"] - m["iw_nll"] for v, m in zip(results["vae"]["seeds"], results["lm"]["seeds"],
                                                                  strict=True)]
            report["vae_minus_lm_iw_nll"] = {"per_seed": margins, **to_json(mean_sd(margins))}
            print(f"\nVAE - LM IW-NLL per seed: {', '.join(f'{m:+.2f}' for m in margins)}; "
                  f"{cell(mean_sd(margins))}")
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
