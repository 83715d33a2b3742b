"""Controlled generation: does a model conditioned on a label write sentences of that label?

    python benchmarks/label_control.py --model runs/yelp10k_cvae/export --classifier runs/yelp10k_sentiment_classifier \
        --lm runs/yelp10k_lm/export --unconditioned runs/yelp10k_lstm_vae/export --test data/yelp10k/test.jsonl

For each label y of the model, ``-n`` sentences are sampled with z ~ p(z | y) and decoded for y (sampling at
temperature 1, as ``textvae-sample``); a text classifier trained on the corpus' gold labels (``textvae-classifier``;
its accuracy on ``--test`` is printed beside) says which label each sample carries, and the control
accuracy is the fraction of samples it assigns to the label asked for. An unconditioned model's prior
samples (``--unconditioned``) give the reference: the share of each label the classifier finds in them.
Fluency: the NLL of the samples under a language model trained on the same corpus (``--lm``, exact
-log p(x) per sentence and per word + EOS, the papers' perplexity definition), beside the LM's NLL of the
test sentences. Writes ``--json`` with every figure.

``--recipes NAME ...`` names the conditioned models by recipe instead (``runs/NAME/export``); with ``--seeds N``
each recipe's N runs are evaluated (seed S > 0 in ``runs/NAME_seedS``, trained first if its export is missing:
benchmarks/seeds.py), and each control accuracy is also given as mean ± sample standard deviation over them. The
classifier, the LM and the unconditioned reference are the instruments: one of each, whatever the seeds.

    python benchmarks/label_control.py --recipes yelp10k_cvae --seeds 3 --classifier runs/yelp10k_sentiment_classifier \
        --lm runs/yelp10k_lm/export --test data/yelp10k/test.jsonl
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from seeds import aggregate, cell, seed_runs, to_json, train_missing  # benchmarks/seeds.py

from textvae.classifier import load_classifier
from textvae.data.batching import SentenceExample, collate_sentences
from textvae.data.records import read_jsonl
from textvae.decoding import Decoding
from textvae.export import load_export
from textvae.latent import decode_texts, prior_draws

SAMPLING = Decoding("sample", max_len=40)


@torch.inference_mode()
def lm_nll(export, texts: list[str], batch_size: int = 256) -> tuple[float, float]:
    """Mean -log p(x) per sentence and per word (+ EOS) of ``texts`` under a language-model export."""
    model, tokenizer = export.model.eval(), export.tokenizer
    total = words = 0.0
    for start in range(0, len(texts), batch_size):
        ids = [tokenizer.encode(t) for t in texts[start:start + batch_size]]
        batch = collate_sentences([SentenceExample(x, None, i) for i, x in enumerate(ids)])
        total += float(model(batch).reconstruction.sum())
        words += batch.num_targets
    return total / len(texts), total / words


@torch.inference_mode()
def samples_for(export, label: int | None, n: int, seed: int) -> list[str]:
    """n prior samples, for ``label`` when the model is conditioned on labels."""
    model = export.model.eval()
    generator = torch.Generator().manual_seed(seed)
    z, labels = prior_draws(model, n, generator=generator, label=label)
    return decode_texts(model, export.tokenizer, z, SAMPLING, generator=generator, labels=labels)


def without_examples(row):
    return {k: v for k, v in row.items() if k != "examples"} if isinstance(row, dict) else row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument("--model", nargs="+", help="exports conditioned on labels (CVAE, M2)")
    models.add_argument("--recipes", nargs="+", help="recipes of models conditioned on labels: runs/NAME/export")
    parser.add_argument("--seeds", type=int, default=1,
                        help="runs of each recipe (runs/NAME_seedS after seed 0), trained where missing; mean ± sd")
    parser.add_argument("--classifier", required=True, help="a textvae-classifier folder trained on the gold labels")
    parser.add_argument("--lm", required=True, help="a language-model export trained on the same corpus")
    parser.add_argument("--unconditioned", default=None, help="an unconditioned sentence VAE export (reference)")
    parser.add_argument("--test", required=True, help="the labelled test split (prepared JSONL)")
    parser.add_argument("-n", type=int, default=500, help="samples per label")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="benchmarks/label_control.json")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.seeds > 1 and args.model:
        parser.error("--seeds N > 1 trains and reads runs of recipes: name the models with --recipes")
    # each model's exports, one a seed
    exports = ({path: [path] for path in args.model} if args.model else
               {f"runs/{name}/export": [f"runs/{name}/export"] for name in args.recipes} if args.seeds == 1 else
               {name: train_missing(seed_runs(name, args.seeds)) for name in args.recipes})
    torch.set_grad_enabled(False)

    classifier = load_classifier(args.classifier)
    test = list(read_jsonl(args.test, "sentences"))
    gold = [str(s.label) for s in test]
    predicted = classifier.classify([s.text for s in test]).labels
    accuracy = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(test)
    lm = load_export(args.lm)
    test_nll, test_word_nll = lm_nll(lm, [s.text for s in test])
    print(f"classifier accuracy on {args.test}: {accuracy:.3f} ({len(test):,} sentences); "
          f"LM NLL of the test sentences: {test_nll:.2f} per sentence, {test_word_nll:.3f} per word")
    results = {"classifier_accuracy": accuracy, "test_sentences": len(test), "lm_test_nll": test_nll,
               "lm_test_word_nll": test_word_nll, "samples_per_label": args.n, "models": {}}

    def report(name: str, texts: list[str], asked: str | None) -> dict:
        verdicts = classifier.classify(texts).labels
        shares = {label: verdicts.count(label) / len(texts) for label in classifier.labels}
        nll, word_nll = lm_nll(lm, texts)
        row = {"asked": asked, "shares": shares, "control": shares.get(asked) if asked is not None else None,
               "lm_nll": nll, "lm_word_nll": word_nll, "lm_word_ppl": math.exp(word_nll), "examples": texts[:5]}
        share_text = ", ".join(f"{label} {share:.3f}" for label, share in shares.items())
        control = f"control {row['control']:.3f}" if asked is not None else "unconditioned"
        print(f"{name:<40} {control:<16} classifier says: {share_text}; LM NLL {nll:.2f} ({word_nll:.3f}/word)")
        return row

    for model, paths in exports.items():
        seed_rows = []
        for path in paths:
            export = load_export(path)
            rows = {}
            for label_id, label in enumerate(export.labels):
                texts = samples_for(export, label_id, args.n, args.seed + label_id)
                rows[label] = report(f"{path} y={label}", texts, label)
            rows["mean_control"] = sum(r["control"] for r in rows.values()) / len(export.labels)
            print(f"{path}: mean control accuracy {rows['mean_control']:.3f}")
            seed_rows.append(rows)
        if len(paths) == 1:
            results["models"][model] = seed_rows[0]
            continue
        figures = aggregate([{label: without_examples(r) for label, r in rows.items()} for rows in seed_rows])
        per_label = ", ".join(f"{label} {cell(r['control'], '.3f')}" for label, r in figures.items()
                              if label != "mean_control")
        print(f"{model}, {len(paths)} seeds: mean control accuracy {cell(figures['mean_control'], '.3f')} "
              f"({per_label}; mean ± sd)")
        results["models"][model] = {"exports": [str(p) for p in paths], "seeds": seed_rows,
                                    "mean_sd": to_json(figures)}
    if args.unconditioned:
        export = load_export(args.unconditioned)
        results["unconditioned"] = {args.unconditioned: report(args.unconditioned,
                                                               samples_for(export, None, 2 * args.n, args.seed), None)}
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
