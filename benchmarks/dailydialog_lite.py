"""dailydialog-lite benchmark: HRED, VHRED, CVAE and kgCVAE trained with the same budget, side by side.

    textvae-corpus prepare dailydialog-lite --source ../shared/corpora --out data/dailydialog-lite
    textvae-train fit --config recipes/dailydialog_lite_{hred,vhred,cvae,kgcvae}.yaml     # each of the four
    textvae-act-tagger --data data/dailydialog-lite/train.jsonl --test data/dailydialog-lite/test.jsonl \
        --out runs/dailydialog_lite_act_tagger
    python benchmarks/dailydialog_lite.py --contexts 1000 --hred-temperatures 1.0 0.7 0.4

For each model, on the first ``--contexts`` (context, response) pairs of the test split (default: all):
textvae-eval's dialogue metrics at ``--responses`` samples per context with the model's documented
decoding (greedy per sampled z for the latent models, sampling at temperature 1 for HRED; <unk> never
generated unless ``--allow-unk``): PPL (exact
for HRED, the -ELBO bound otherwise), KL, BLEU-1..4 recall/precision/F1, distinct-1/2, kgCVAE's act
accuracy, and with the act tagger the act match of the generated text and kgCVAE's act control. Then the
sampler's responses/s (``--responses`` per context, ``--speed-contexts`` contexts in batches of 32, as
textvae-respond --input decodes them) and training tokens/s (``--train-steps`` optimiser steps of a fresh
model of the same configuration, batch 32, after 10 warm-up steps). ``--hred-temperatures`` adds HRED
rows sampled at those temperatures (HRED's diversity/precision trade-off, next to the latent models');
``--prior-scales`` adds rows for each latent model whose responses decode z drawn with the prior network's
standard deviation multiplied by each scale (a "z temperature"; PPL and KL still use the model's own prior);
``--models`` takes the four names or ``NAME=EXPORT_DIR`` for a variant. ``--device cuda`` runs it on a GPU
(timings synchronise the device); ``--speed-only`` measures only the two throughputs. Prints a Markdown
table for BENCHMARKS.md and writes JSON.

``--seeds N`` evaluates N runs of each model's recipe ``recipes/dailydialog_lite_NAME.yaml``: seed 0 in
``runs/dailydialog_lite_NAME``, seed S in ``runs/dailydialog_lite_NAME_seedS``, each trained first if its export
is missing (benchmarks/seeds.py). Every row (temperatures and prior scales too) is then evaluated for each seed;
the table gives each figure as mean ± sample standard deviation over the seeds and the JSON keeps every seed's
figures. The two speeds do not depend on the seed: they are measured once, on seed 0's model.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from seeds import aggregate, cell, seed_runs, to_json, train_missing  # benchmarks/seeds.py

from textvae.act_tagger import load_act_tagger
from textvae.data.batching import BucketBatchSampler, batch_to, collate_dialogues
from textvae.data.datasets import DialogueDataset, Vocab, load_records
from textvae.decoding import Decoding
from textvae.dialogue import default_method, generate_responses
from textvae.dialogue_eval import evaluate_dialogues
from textvae.evaluation import device_name, synchronize
from textvae.export import load_export
from textvae.lightning import TextVAESystem

MODELS = ("hred", "vhred", "cvae", "kgcvae")


def dataset_for(export, records) -> DialogueDataset:
    return DialogueDataset(records, export.tokenizer, max_context=export.max_context, max_len=export.max_len,
                           acts=Vocab(export.acts), emotions=Vocab(export.emotions), topics=Vocab(export.topics),
                           source="benchmark")


def training_throughput(export, dataset: DialogueDataset, steps: int, device: torch.device) -> dict[str, float]:
    """Optimiser steps of a fresh model with the export's configuration: the training loss at beta = 1."""
    torch.manual_seed(0)
    model = type(export.model)(**export.model.init_args).to(device).train()
    system = TextVAESystem(model)
    optimizer = system.configure_optimizers()
    batches = BucketBatchSampler(dataset.lengths, 32, seed=0)
    responses = tokens = 0
    for step, indices in enumerate(list(batches)[: steps + 10]):
        if step == 10:
            synchronize(device)
            start = time.perf_counter()
        batch = batch_to(collate_dialogues([dataset[i] for i in indices]), device)
        loss = system.objective(model, batch, beta=1.0).loss  # the training system's objective, at beta 1
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if step >= 10:
            responses += len(indices)
            tokens += batch.num_targets
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"train_responses_per_s": responses / seconds, "train_tokens_per_s": tokens / seconds}


@torch.inference_mode()
def sampler_throughput(export, dataset: DialogueDataset, contexts: int, responses: int, device: torch.device,
                       temperature: float = 1.0, allow_unk: bool = False) -> float:
    """Responses/s of N sampled responses per context, 32 contexts a batch, the model's default decoding."""
    model = export.model.to(device).eval()
    decoding = Decoding(default_method(model), temperature=temperature, allow_unk=allow_unk)
    generator = torch.Generator(device).manual_seed(0)
    indices = list(range(min(contexts, len(dataset))))
    synchronize(device)
    start = time.perf_counter()
    for first in range(0, len(indices), 32):
        batch = batch_to(collate_dialogues([dataset[i] for i in indices[first:first + 32]]), device)
        generate_responses(model, batch, num_samples=responses, decoding=decoding, generator=generator)
    synchronize(device)
    return len(indices) * responses / (time.perf_counter() - start)


def _or_dash(value, form: str) -> str:
    return "–" if value is None else cell(value, form)


def markdown(results: dict) -> str:
    """One row per result: its figures (numbers, or each a seeds.MeanSD over the seeds) and speeds."""
    columns = ["model", "PPL", "KL", "BLEU-1 R / P / F1", "BLEU-2 F1", "BLEU-4 F1", "distinct-1 / -2 within",
               "distinct-1 / -2 overall", "act acc.", "act match R / P (tagger)",
               "act control: requested vs unconditioned (tagger)", "train tokens/s", "responses/s"]
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, r in results.items():
        tagged = r["tagged"] or {}
        control = tagged.get("control")
        cells = [
            name,
            cell(r["ppl"], ".1f") + (" (bound)" if r["nll_is_bound"] else ""),
            _or_dash(r["kl"], ".2f"),
            " / ".join(cell(v, ".3f") for v in (r["bleu_recall"][0], r["bleu_precision"][0], r["bleu_f1"][0])),
            cell(r["bleu_f1"][1], ".3f"),
            cell(r["bleu_f1"][3], ".3f"),
            f"{cell(r['distinct_1_within'], '.3f')} / {cell(r['distinct_2_within'], '.3f')}",
            f"{cell(r['distinct_1'], '.3f')} / {cell(r['distinct_2'], '.3f')}",
            _or_dash(r["act_accuracy"], ".3f"),
            f"{cell(tagged['match_recall'], '.3f')} / {cell(tagged['match_precision'], '.3f')}" if tagged else "–",
            f"{cell(control['conditioned'], '.3f')} vs {cell(control['unconditioned'], '.3f')}" if control else "–",
            _or_dash(r.get("train_tokens_per_s"), ",.0f"),
            _or_dash(r.get("responses_per_s"), ",.0f"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="folder holding dailydialog_lite_{model}/export")
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        help="hred, vhred, cvae, kgcvae (runs/dailydialog_lite_NAME/export) or NAME=EXPORT_DIR")
    parser.add_argument("--hred-temperatures", nargs="*", type=float, default=[],
                        help="also evaluate HRED sampling at these temperatures")
    parser.add_argument("--prior-scales", nargs="*", type=float, default=[],
                        help="also evaluate each latent model with its prior's standard deviation times these scales")
    parser.add_argument("--allow-unk", action="store_true", help="let responses contain <unk> (default: never)")
    parser.add_argument("--train", default="data/dailydialog-lite/train.jsonl")
    parser.add_argument("--test", default="data/dailydialog-lite/test.jsonl")
    parser.add_argument("--act-tagger", default="runs/dailydialog_lite_act_tagger")
    parser.add_argument("--contexts", type=int, help="the first N (context, response) pairs (default: all)")
    parser.add_argument("--responses", type=int, default=10)
    parser.add_argument("--speed-contexts", type=int, default=320)
    parser.add_argument("--train-steps", type=int, default=50)
    parser.add_argument("--cache-dir", default="data/.cache")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--speed-only", action="store_true", help="only training tokens/s and responses/s")
    parser.add_argument("--seeds", type=int, default=1,
                        help="runs of each model's recipe, trained where missing; figures as mean ± sd over them")
    parser.add_argument("--json", default="benchmarks/dailydialog_lite.json")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.seeds > 1 and any("=" in n for n in args.models):
        parser.error("--seeds N > 1 trains and reads runs of the recipes dailydialog_lite_NAME: no NAME=EXPORT_DIR")
    device = torch.device(args.device)
    tagger = None if args.speed_only else load_act_tagger(args.act_tagger)
    test = load_records(args.test, cache_dir=args.cache_dir, kind="dialogues")
    train = load_records(args.train, cache_dir=args.cache_dir, kind="dialogues")
    results, table = {}, {}
    def export_dir(name: str) -> Path:
        return Path(args.runs) / f"dailydialog_lite_{name}" / "export"

    if any(scale <= 0 for scale in args.prior_scales):
        parser.error("--prior-scales must be > 0")

    def exports_of(spec: str) -> list[Path]:
        """NAME=EXPORT_DIR, or NAME: runs/dailydialog_lite_NAME/export, with --seeds N every seed's export (trained
        first where missing)."""
        name, _, path = spec.partition("=")
        if path:
            return [Path(path)]
        if args.seeds == 1:
            return [export_dir(name)]
        return train_missing(seed_runs(f"dailydialog_lite_{name}", args.seeds, runs=args.runs))

    specs = args.models + (["hred"] if args.hred_temperatures else [])
    exports = {spec: exports_of(spec) for spec in dict.fromkeys(specs)}
    runs = [(spec.partition("=")[0], spec, None, None) for spec in args.models]
    runs += [(f"hred, T {t:g}", "hred", t, None) for t in args.hred_temperatures]
    runs += [(f"{spec.partition('=')[0]}, prior sd x{scale:g}", spec, None, scale)
             for spec in args.models for scale in ([] if args.speed_only else args.prior_scales)]
    for name, spec, temperature, scale in runs:
        paths = exports[spec][:1] if args.speed_only else exports[spec]  # the speeds: seed 0's model
        seed_rows = []
        for seed, path in enumerate(paths):
            export = load_export(path)
            if scale is not None and export.model.latent_dim == 0:
                break  # HRED: no prior to scale
            dataset = dataset_for(export, test)
            method = "sample" if temperature is not None else default_method(export.model)
            decoding = Decoding(method, temperature=temperature or 1.0, allow_unk=args.allow_unk,
                                prior_scale=scale or 1.0)
            row = {}
            if not args.speed_only:
                result = evaluate_dialogues(export.model, dataset, export.tokenizer, responses=args.responses, seed=0,
                                            decoding=decoding, max_contexts=args.contexts, act_tagger=tagger,
                                            act_tagger_source=args.act_tagger, device=device)
                seed_note = f" (seed {seed}: {path})" if args.seeds > 1 else ""
                print(f"== {name}{seed_note}\n{result.table()}", flush=True)
                row = result.to_dict()
            seed_rows.append(row)
        if not seed_rows:
            continue
        row = seed_rows[0]
        if scale is None:  # a prior-scaled row has the same model and decoder as its own row: the same speed
            if len(paths) > 1:
                export = load_export(paths[0])
                dataset = dataset_for(export, test)
            row["responses_per_s"] = sampler_throughput(export, dataset, args.speed_contexts, args.responses, device,
                                                        temperature or 1.0, args.allow_unk)
            if temperature is None:  # the same model as the hred row
                row |= training_throughput(export, dataset_for(export, train), args.train_steps, device)
            print(name, {k: round(v, 1) for k, v in row.items() if k.endswith("_per_s")}, flush=True)
        if args.seeds == 1:
            results[name] = table[name] = row
            continue
        figures = aggregate([{k: v for k, v in r.items() if k != "examples"} for r in seed_rows])
        results[name] = {"exports": [str(p) for p in paths], "seeds": seed_rows, "mean_sd": to_json(figures)}
        table[name] = figures | {k: v for k, v in row.items() if k.endswith("_per_s")}
    if not args.speed_only:
        print(markdown(table))
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "threads": torch.get_num_threads(), "device": device_name(device),
                   "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
