"""The diversity–relevance frontier of dialogue models: every model over a sweep of decoding settings.

    python benchmarks/frontier.py --data data/dailydialog-lite/test.jsonl \
        --models HRED=runs/dailydialog_lite_hred/export CVAE=runs/dailydialog_lite_cvae/export \
                 kgCVAE=runs/dailydialog_lite_kgcvae/export --contexts 1000 --plot benchmarks/frontier_dailydialog_lite.png

For each model, :func:`textvae.frontier.decoding_sweep` (HRED: greedy, beam, word sampling at temperatures
0.3 to 1.2 and top-p 0.9; latent models: greedy per z, sampling per z at the same temperatures and top-p
0.9, prior scales ``--prior-scales``, by default 0.5, 1.5 and 2, each greedy and with word sampling at
``--scaled-temperatures``, by default 0.3 to
1, and within ``--scaled-top-ps``, by default none; the full grid is ``--scaled-temperatures 0.3 0.5 0.7 0.9 1
1.2 --scaled-top-ps 0.9``) and, per setting,
Zhao et al. (2017)'s protocol at ``--responses`` per context on the first ``--contexts`` test pairs:
BLEU-1/2/4 F1, distinct-1/2 within a context's responses and overall. Prints a Markdown table, says which
HRED points no latent model's point dominates (BLEU-1 F1, distinct-2 within and overall all at least as
high), writes ``--json`` and the plot (BLEU-1 F1 against distinct-2, one curve per
model). ``--cache DIR`` keeps each model's points in DIR/NAME.json (with the export, split, contexts and
responses they were measured at) and reuses them, setting by setting, on a later run with the same inputs, so
models trained one after another are swept once each and a wider sweep measures only its new settings.

Several seeds of one model, ``NAME=DIR,DIR,...`` (seed 0's export first): each seed is swept (cached as
``NAME.json``, ``NAME_seed1.json``, ...), the model's curve is the per-setting mean over its seeds, the table
gives each figure as mean ± sample sd, and the covering is judged on those means; the JSON keeps every seed's
points and also says, seed by seed, which HRED points no latent point of the same seed dominates (among the
models that have that seed).

``--measured NAME=JSON`` takes model NAME's points (each seed's) from the ``--json`` of an earlier run instead of
sweeping its exports again, e.g. the HRED seeds of ``benchmarks/frontier_dailydialog_lite_seeds.json`` beside a
new latent model; they enter the table, the covering and the plot like a swept model's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import torch
from seeds import MeanSD, cell  # benchmarks/seeds.py

from textvae.data.datasets import DialogueDataset, Vocab, load_records
from textvae.data.records import atomic_output
from textvae.decoding import Decoding
from textvae.export import load_export
from textvae.frontier import (
    PRIOR_SCALES,
    SCALED_TEMPERATURES,
    FrontierPoint,
    covers,
    decoding_sweep,
    frontier,
    over_seeds,
    plot_frontier,
)


def sweep(name: str, path: str, args: argparse.Namespace, cache_name: str) -> list[FrontierPoint]:
    """One export's points over its decoding sweep; with ``--cache``, each setting measured there before on the
    same export, data, contexts and responses is read back and only the others are swept (every setting draws
    from the same seed, so a point does not depend on which other settings are swept beside it)."""
    export = load_export(path)
    settings = decoding_sweep(export.model, prior_scales=args.prior_scales,
                              scaled_temperatures=args.scaled_temperatures, scaled_top_ps=args.scaled_top_ps)
    key = {"export": os.path.abspath(path), "data": os.path.abspath(args.data), "contexts": args.contexts,
           "responses": args.responses}
    cached = os.path.join(args.cache, f"{cache_name}.json") if args.cache else None
    saved = {}
    if cached and os.path.exists(cached):
        try:
            with open(cached, encoding="utf-8") as f:
                previous = json.load(f)
            if {k: v for k, v in previous["key"].items() if k != "settings"} == key:  # older caches list settings
                for p in previous["points"]:
                    decoding = Decoding(**p["decoding"])
                    saved[decoding] = FrontierPoint(**p | {"decoding": decoding})
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise SystemExit(f"frontier.py: {cached} is not a cache this script wrote; delete it or give another "
                             "--cache") from None
    missing = [d for d in settings if d not in saved]
    if missing:
        dataset = DialogueDataset(load_records(args.data), export.tokenizer, max_context=export.max_context,
                                  max_len=export.max_len, acts=Vocab(export.acts), emotions=Vocab(export.emotions),
                                  topics=Vocab(export.topics))
        start = time.perf_counter()
        saved |= {p.decoding: p for p in frontier(export.model, dataset, export.tokenizer, missing,
                                                  responses=args.responses, max_contexts=args.contexts)}
        print(f"{name}: {len(missing)} points swept in {time.perf_counter() - start:.0f} s")
    if len(missing) < len(settings):
        print(f"{name}: {len(settings) - len(missing)} points from {cached}")
    if cached and missing:  # every point measured on this export, written whole or not at all
        with atomic_output(cached) as tmp, tmp.open("w", encoding="utf-8") as f:
            json.dump({"key": key, "points": [p._replace(decoding=dataclasses.asdict(p.decoding))._asdict()
                                              for p in saved.values()]}, f, indent=1)
    return [saved[d] for d in settings]


def measured(spec: str, parser: argparse.ArgumentParser) -> tuple[str, list[list[FrontierPoint]]]:
    """``NAME=JSON``: model NAME's curves, one per seed, as an earlier run of this script wrote them to its
    ``--json`` (each seed's points where it swept several), not swept again."""
    name, _, path = spec.partition("=")
    if not name or not path:
        parser.error(f"--measured takes NAME=JSON entries, got {spec!r}")
    try:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)["models"][name]
        runs = [[row["seeds"][i] for row in rows] for i in range(len(rows[0]["seeds"]))] if "seeds" in rows[0] \
            else [rows]
        return name, [[from_figures(row) for row in run] for run in runs]
    except OSError as error:
        parser.error(f"--measured {spec}: cannot read {path}: {error.strerror}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        parser.error(f"--measured {spec}: {path} is not JSON; give the --json an earlier run of this script wrote")
    except (KeyError, IndexError, TypeError):
        parser.error(f"--measured {spec}: {path} has no points of a model {name!r}; give the --json an earlier "
                     "run of this script wrote and a NAME of its --models")


def figures(p: FrontierPoint) -> dict:
    return {"setting": p.setting, "bleu_f1": p.bleu_f1, "distinct_1_within": p.distinct_1_within,
            "distinct_2_within": p.distinct_2_within, "distinct_1": p.distinct_1, "distinct_2": p.distinct_2}


def from_figures(row: dict) -> FrontierPoint:
    """The point a row of :func:`figures` describes (its setting's name, not its :class:`Decoding`)."""
    return FrontierPoint(row["setting"], None, list(row["bleu_f1"]), row["distinct_1_within"],
                         row["distinct_2_within"], row["distinct_1"], row["distinct_2"])


def table_row(name: str, p: FrontierPoint, sd: FrontierPoint, seeds: int) -> str:
    """A point's Markdown row: each figure, or its mean ± sd (``sd``'s) over several seeds."""
    def c(mean: float, spread: float) -> str:
        return cell(MeanSD(mean, spread, seeds) if seeds > 1 else mean, ".3f")
    return (f"| {name} | {p.setting} | {c(p.bleu_f1[0], sd.bleu_f1[0])} | {c(p.bleu_f1[1], sd.bleu_f1[1])} | "
            f"{c(p.bleu_f1[3], sd.bleu_f1[3])} | {c(p.distinct_1_within, sd.distinct_1_within)} / "
            f"{c(p.distinct_2_within, sd.distinct_2_within)} | {c(p.distinct_1, sd.distinct_1)} / "
            f"{c(p.distinct_2, sd.distinct_2)} |")


def baseline(name: str) -> bool:
    """An HRED (no latent): the curves the latent models are to cover."""
    return name.upper().startswith("HRED")


def uncovered_settings(curves: dict[str, list[FrontierPoint]]) -> dict[str, list[str]]:
    """For each HRED curve, the settings of its points that no latent model's point dominates."""
    latent = [p for n, points in curves.items() if not baseline(n) for p in points]
    return {n: [p.setting for p in covers(latent, points)] for n, points in curves.items() if baseline(n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a prepared dialogue split (JSONL)")
    parser.add_argument("--models", nargs="+", default=[],
                        help="NAME=EXPORT_DIR for each model; NAME=DIR,DIR,... for several seeds of one model")
    parser.add_argument("--contexts", type=int, default=None, help="the first N (context, response) pairs")
    parser.add_argument("--responses", type=int, default=10)
    parser.add_argument("--plot", default="benchmarks/frontier.png")
    parser.add_argument("--json", default="benchmarks/frontier.json")
    parser.add_argument("--cache", default=None, help="folder of per-model points to reuse (see the doc)")
    parser.add_argument("--prior-scales", type=float, nargs="*", default=list(PRIOR_SCALES),
                        help="a latent model's prior standard deviation times each (besides x1)")
    parser.add_argument("--scaled-temperatures", type=float, nargs="+", default=list(SCALED_TEMPERATURES),
                        help="word-sampling temperatures at each prior scale of a latent model")
    parser.add_argument("--scaled-top-ps", type=float, nargs="*", default=[],
                        help="nuclei sampled within (temperature 1) at each prior scale of a latent model")
    parser.add_argument("--measured", nargs="+", default=[], metavar="NAME=JSON",
                        help="model NAME's points (each seed's) from the --json of an earlier run, not swept again")
    args = parser.parse_args()
    try:  # the settings' own checks (Decoding's), before any model is loaded
        [Decoding("sample", temperature=t) for t in args.scaled_temperatures]
        [Decoding("sample", top_p=p) for p in args.scaled_top_ps]
        [Decoding("greedy", prior_scale=s) for s in args.prior_scales]
    except ValueError as error:
        parser.error(f"--prior-scales and --scaled-temperatures must be > 0 and --scaled-top-ps in (0, 1]: {error}")
    if not args.models and not args.measured:
        parser.error("give the models to compare: --models NAME=EXPORT_DIR ... and/or --measured NAME=JSON ...")
    models = {}
    for spec in args.models:
        name, _, paths = spec.partition("=")
        if not name or not paths or name in models:
            parser.error(f"--models takes distinct NAME=EXPORT_DIR[,EXPORT_DIR...] entries, got {spec!r}")
        models[name] = paths.split(",")
    torch.set_grad_enabled(False)
    seeds = {name: [sweep(name if len(paths) == 1 else f"{name} (seed {i})", path, args,
                          name if i == 0 else f"{name}_seed{i}") for i, path in enumerate(paths)]
             for name, paths in models.items()}
    for spec in args.measured:
        name, runs = measured(spec, parser)
        if name in seeds:
            parser.error(f"{name} is given twice (--models and --measured); name each model once")
        seeds[name] = runs
        print(f"{name}: {len(runs[0])} points of {len(runs)} seed{'s' if len(runs) > 1 else ''} from "
              f"{spec.partition('=')[2]}")
    curves, spreads = {}, {}
    for name, runs in seeds.items():
        try:
            curves[name], spreads[name] = over_seeds(runs)
        except ValueError as error:  # seeds of different kinds of model
            parser.error(f"{name}: {error}")
    several = any(len(runs) > 1 for runs in seeds.values())
    print("| model | decoding | BLEU-1 F1 | BLEU-2 F1 | BLEU-4 F1 | distinct-1 / -2 within | distinct-1 / -2 |")
    print("|---|---|---|---|---|---|---|")
    for name, points in curves.items():
        for p, sd in zip(points, spreads[name], strict=True):
            print(table_row(name, p, sd, len(seeds[name])))
    uncovered = uncovered_settings(curves)
    for name, settings in uncovered.items():
        print(f"{name} points no latent model's point dominates{' (seed means)' if several else ''}: "
              f"{', '.join(settings) or 'none'}")
    per_seed = {}  # seed i of the HREDs against seed i of the latent models, the models that have a seed i
    for i in range(max(len(runs) for runs in seeds.values()) if several else 0):
        curves_i = {name: runs[i] for name, runs in seeds.items() if len(runs) > i}
        if any(map(baseline, curves_i)) and not all(map(baseline, curves_i)):  # an HRED and a latent model
            per_seed[i] = uncovered_settings(curves_i)
            for name, settings in per_seed[i].items():
                print(f"seed {i}: {name} points no latent point of seed {i} dominates: {', '.join(settings) or 'none'}")
    plot_frontier(curves, args.plot, title=f"{args.data}: {args.responses} responses per context"
                  + ("\nmeans over seeds" if several else ""))
    rows = {}  # per model, each point's figures; over several seeds their means, with the sds and each seed's
    for name, points in curves.items():
        rows[name] = [figures(p) for p in points]
        if len(seeds[name]) > 1:
            for j, (row, sd) in enumerate(zip(rows[name], spreads[name], strict=True)):
                row |= {"sd": figures(sd), "seeds": [figures(run[j]) for run in seeds[name]]}
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "models": rows, "uncovered": uncovered,
                   "uncovered_per_seed": per_seed}, f, indent=2)
        f.write("\n")
    print(f"wrote {args.plot} and {args.json}")


if __name__ == "__main__":
    main()
