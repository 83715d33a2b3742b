"""The diversity–relevance frontier of dialogue models: every model over a sweep of decoding settings.

    python benchmarks/frontier.py --data data/dailydialog-lite/test.jsonl \
        --models HRED=runs/dailydialog_lite_hred/export CVAE=runs/dailydialog_lite_cvae/export \
                 kgCVAE=runs/dailydialog_lite_kgcvae/export --contexts 1000 --plot benchmarks/frontier_dailydialog_lite.png

For each model, :func:`textvae.frontier.decoding_sweep` (HRED: greedy, beam, word sampling at temperatures
0.3 to 1.2 and top-p 0.9; latent models: greedy per z, sampling per z at the same temperatures and top-p
0.9, prior scales 0.5 to 2, each greedy and with word sampling at temperatures 0.3 to 1) and, per setting,
Zhao et al. (2017)'s protocol at ``--responses`` per context on the first ``--contexts`` test pairs:
BLEU-1/2/4 F1, distinct-1/2 within a context's responses and overall. Prints a Markdown table, says which
HRED points no latent model's point dominates (BLEU-1 F1, distinct-2 within and overall all at least as
high), writes ``--json`` and the plot (BLEU-1 F1 against distinct-2, one curve per
model). ``--cache DIR`` keeps each model's points in DIR/NAME.json (with the export, split, contexts and
responses they were measured at) and reuses them on a later run with the same inputs, so models trained one
after another are swept once each.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import torch

from textvae.data.datasets import DialogueDataset, Vocab, load_records
from textvae.decoding import Decoding
from textvae.export import load_export
from textvae.frontier import FrontierPoint, covers, decoding_sweep, frontier, plot_frontier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a prepared dialogue split (JSONL)")
    parser.add_argument("--models", nargs="+", required=True, help="NAME=EXPORT_DIR for each model")
    parser.add_argument("--contexts", type=int, default=None, help="the first N (context, response) pairs")
    parser.add_argument("--responses", type=int, default=10)
    parser.add_argument("--plot", default="benchmarks/frontier.png")
    parser.add_argument("--json", default="benchmarks/frontier.json")
    parser.add_argument("--cache", default=None, help="folder of per-model points to reuse (see the doc)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    curves, rows = {}, {}
    for spec in args.models:
        name, _, path = spec.partition("=")
        export = load_export(path)
        settings = decoding_sweep(export.model)
        key = {"export": os.path.abspath(path), "data": os.path.abspath(args.data), "contexts": args.contexts,
               "responses": args.responses, "settings": [dataclasses.asdict(d) for d in settings]}
        cached = os.path.join(args.cache, f"{name}.json") if args.cache else None
        saved = json.load(open(cached, encoding="utf-8")) if cached and os.path.exists(cached) else None
        if saved is not None and saved["key"] == key:
            points = [FrontierPoint(**p | {"decoding": Decoding(**p["decoding"])}) for p in saved["points"]]
            print(f"{name}: {len(points)} points from {cached}")
        else:
            dataset = DialogueDataset(load_records(args.data), export.tokenizer, max_context=export.max_context,
                                      max_len=export.max_len, acts=Vocab(export.acts), emotions=Vocab(export.emotions),
                                      topics=Vocab(export.topics))
            start = time.perf_counter()
            points = frontier(export.model, dataset, export.tokenizer, settings, responses=args.responses,
                              max_contexts=args.contexts)
            print(f"{name}: {len(points)} points in {time.perf_counter() - start:.0f} s")
            if cached:
                os.makedirs(args.cache, exist_ok=True)
                with open(cached, "w", encoding="utf-8") as f:
                    json.dump({"key": key, "points": [p._replace(decoding=dataclasses.asdict(p.decoding))._asdict()
                                                      for p in points]}, f, indent=1)
        curves[name] = points
        rows[name] = [{"setting": p.setting, "bleu_f1": p.bleu_f1, "distinct_1_within": p.distinct_1_within,
                       "distinct_2_within": p.distinct_2_within, "distinct_1": p.distinct_1,
                       "distinct_2": p.distinct_2} for p in points]
    print("| model | decoding | BLEU-1 F1 | BLEU-2 F1 | BLEU-4 F1 | distinct-1 / -2 within | distinct-1 / -2 |")
    print("|---|---|---|---|---|---|---|")
    for name, points in curves.items():
        for p in points:
            print(f"| {name} | {p.setting} | {p.bleu_f1[0]:.3f} | {p.bleu_f1[1]:.3f} | {p.bleu_f1[3]:.3f} | "
                  f"{p.distinct_1_within:.3f} / {p.distinct_2_within:.3f} | {p.distinct_1:.3f} / {p.distinct_2:.3f} |")
    baselines = [n for n, points in curves.items() if n.upper().startswith("HRED")]
    latent = [p for n, points in curves.items() if n not in baselines for p in points]
    uncovered = {n: [p.setting for p in covers(latent, curves[n])] for n in baselines}
    for name, settings in uncovered.items():
        print(f"{name} points no latent model's point dominates: {', '.join(settings) or 'none'}")
    plot_frontier(curves, args.plot, title=f"{args.data}: {args.responses} responses per context")
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "models": rows, "uncovered": uncovered}, f, indent=2)
        f.write("\n")
    print(f"wrote {args.plot} and {args.json}")


if __name__ == "__main__":
    main()
