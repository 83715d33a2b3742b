"""Semi-supervised sentiment classification on yelp10k with 100 / 500 / 1,000 / 2,000 labels (M2, Kingma et al. 2014).

    python benchmarks/semi_supervised.py --m2 runs/yelp10k_m2_{n}/export --supervised runs/yelp10k_m2_supervised_{n}/export \
        --vae runs/yelp10k_lstm_vae/export

For each labelled subset ``short_yelp/train.N.txt`` (prepared as ``data/yelp10k/train.N.jsonl``), the test
accuracy (``short_yelp/test.txt``, 10,000 sentences) of:

* **M2**: the classifier q(y | x) of a model trained on the N labelled sentences and the 10,000 of
  train.10000.txt without their labels (``recipes/yelp10k_m2.yaml``);
* **supervised**: the same model and classifier trained on the N labelled sentences alone
  (``recipes/yelp10k_m2_supervised.yaml``; selected by validation accuracy, its best case);
* **VAE probe**: multinomial logistic regression (``textvae.classifier``) on the posterior means of an
  unsupervised VAE trained on train.10000.txt, fitted on the N labelled sentences' means, its L2 penalty
  chosen on the first 1,000 validation sentences;
* **bag of n-grams**: the same logistic regression on the N labelled texts' unigrams and bigrams (a reference).

``{n}`` in a path is replaced by N. Writes ``--json``.

``--seeds N`` names the models by recipe instead of by path (``--m2-recipe``, ``--supervised-recipe``,
``--vae-recipe``): the run of a recipe on N labels is ``runs/RECIPE_N`` for seed 0 (``--data.train`` the N labelled
sentences, ``--data.train_repeats`` as the recipe's header gives it) and ``runs/RECIPE_N_seedS`` for seed S, the
VAE's ``runs/RECIPE`` and ``runs/RECIPE_seedS``; each is trained first if its export is missing
(benchmarks/seeds.py). Seed S's M2, supervised model and VAE probe are measured together; the table gives each
accuracy as mean ± sample standard deviation over the seeds, the JSON every seed's. The bag of n-grams does not
depend on a seed: measured once.

    python benchmarks/semi_supervised.py --seeds 3 --m2-recipe yelp10k_m2 --supervised-recipe yelp10k_m2_supervised \
        --vae-recipe yelp10k_lstm_vae
"""

from __future__ import annotations

import argparse
import json

import torch
from seeds import aggregate, cell, seed_runs, to_json, train_missing  # benchmarks/seeds.py

from textvae.classifier import tune_classifier
from textvae.data.batching import SentenceExample, collate_sentences
from textvae.data.records import read_jsonl
from textvae.export import load_export
from textvae.latent import encode_texts

# --data.train_repeats of each labelled subset, as the recipes' headers give them: each epoch reads about as many
# rows at every size
TRAIN_REPEATS = {"yelp10k_m2": {100: 20, 500: 4, 1000: 2, 2000: 1},
                 "yelp10k_m2_supervised": {100: 50, 500: 10, 1000: 5, 2000: 3}}


@torch.inference_mode()
def model_accuracy(export, texts: list[str], gold: list[str], batch_size: int = 256) -> float:
    """Accuracy of a labelled SentenceVAE's classifier q(y | x) against the gold label names."""
    model, tokenizer = export.model.eval(), export.tokenizer
    limit = model.max_words
    predicted: list[str] = []
    for start in range(0, len(texts), batch_size):
        ids = [tokenizer.encode(t)[:limit] for t in texts[start:start + batch_size]]
        batch = collate_sentences([SentenceExample(x, None, i) for i, x in enumerate(ids)])
        predicted += [export.labels[i] for i in model.classify(batch.tokens, batch.lengths).argmax(-1).tolist()]
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def split(path: str) -> tuple[list[str], list[str]]:
    sentences = list(read_jsonl(path, "sentences"))
    return [s.text for s in sentences], [str(s.label) for s in sentences]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/yelp10k")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000, 2000])
    m2 = parser.add_mutually_exclusive_group(required=True)
    m2.add_argument("--m2", help="M2 export path, {n} for the number of labels")
    m2.add_argument("--m2-recipe", choices=sorted(TRAIN_REPEATS), help="M2's recipe: runs/RECIPE_{n}")
    supervised = parser.add_mutually_exclusive_group(required=True)
    supervised.add_argument("--supervised", help="supervised-baseline export path, {n} for the labels")
    supervised.add_argument("--supervised-recipe", choices=sorted(TRAIN_REPEATS),
                            help="the supervised baseline's recipe: runs/RECIPE_{n}")
    vae_model = parser.add_mutually_exclusive_group(required=True)
    vae_model.add_argument("--vae", help="an unsupervised sentence VAE export (for the probe)")
    vae_model.add_argument("--vae-recipe", help="an unsupervised sentence VAE's recipe: runs/RECIPE")
    parser.add_argument("--seeds", type=int, default=1,
                        help="runs of each recipe (runs/..._seedS after seed 0), trained where missing; mean ± sd")
    parser.add_argument("--json", default="benchmarks/semi_supervised.json")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.seeds > 1 and (args.m2 or args.supervised or args.vae):
        parser.error("--seeds N > 1 trains and reads runs of recipes: --m2-recipe, --supervised-recipe, --vae-recipe")

    def exports(path: str | None, recipe: str | None, n: int | None = None) -> list[str]:
        """A model's exports, one a seed: the path given (``{n}`` replaced), or the recipe's runs (on n labels)."""
        if path is not None:
            return [path.format(n=n)]
        if n is None:
            return train_missing(seed_runs(recipe, args.seeds))
        if n not in TRAIN_REPEATS[recipe]:
            parser.error(f"{recipe}: train_repeats known for {sorted(TRAIN_REPEATS[recipe])} labels, not {n}")
        overrides = ["--data.train", f"{args.data}/train.{n}.jsonl",
                     "--data.train_repeats", str(TRAIN_REPEATS[recipe][n])]
        return train_missing(seed_runs(recipe, args.seeds, name=f"{recipe}_{n}", overrides=overrides))

    # every run first (the ones missing trained), then the measures
    models = {n: list(zip(exports(args.m2, args.m2_recipe, n), exports(args.supervised, args.supervised_recipe, n),
                          strict=True)) for n in args.sizes}
    vaes = exports(args.vae, args.vae_recipe)
    torch.set_grad_enabled(False)
    test_texts, test_gold = split(f"{args.data}/test.jsonl")
    valid_texts, valid_gold = split(f"{args.data}/valid.jsonl")
    valid_texts, valid_gold = valid_texts[:1000], valid_gold[:1000]
    codes = []  # each VAE's posterior means of the test and validation sentences
    for path in vaes:
        vae = load_export(path)
        test_codes = encode_texts(vae.model, vae.tokenizer, test_texts).mu.clone()  # not inference tensors: fitted on
        valid_codes = encode_texts(vae.model, vae.tokenizer, valid_texts).mu.clone()
        codes.append((vae, test_codes, valid_codes))
    rows = {}
    print(f"test: {len(test_texts):,} sentences of {args.data}/test.jsonl")
    print("| labels | M2 | supervised (same classifier) | VAE probe | bag of n-grams |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        texts, gold = split(f"{args.data}/train.{n}.jsonl")
        with torch.enable_grad():
            ngrams = tune_classifier(texts, gold, valid_texts, valid_gold, min_count=1)
        seed_rows = []
        for (m2_path, supervised_path), (vae, test_codes, valid_codes) in zip(models[n], codes, strict=True):
            with torch.enable_grad():
                probe = tune_classifier(encode_texts(vae.model, vae.tokenizer, texts).mu.clone(), gold, valid_codes,
                                        valid_gold)
            seed_rows.append({"m2": model_accuracy(load_export(m2_path), test_texts, test_gold),
                              "supervised": model_accuracy(load_export(supervised_path), test_texts, test_gold),
                              "vae_probe": probe.classifier.accuracy(test_codes, test_gold), "vae_probe_l2": probe.l2})
        measured = {"ngrams": ngrams.classifier.accuracy(test_texts, test_gold), "ngrams_l2": ngrams.l2}
        if args.seeds == 1:
            row = rows[n] = seed_rows[0] | measured
        else:
            row = aggregate(seed_rows) | measured
            runs = [{"m2": str(m), "supervised": str(s), "vae": str(v)} for (m, s), v in zip(models[n], vaes, strict=True)]
            rows[n] = {"exports": runs, "seeds": seed_rows, "mean_sd": to_json(aggregate(seed_rows))} | measured
        print(f"| {n:,} | {cell(row['m2'], '.3f')} | {cell(row['supervised'], '.3f')} | {cell(row['vae_probe'], '.3f')} "
              f"| {cell(row['ngrams'], '.3f')} |")
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "test_sentences": len(test_texts), "results": rows}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
