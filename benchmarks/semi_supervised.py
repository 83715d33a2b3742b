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
"""

from __future__ import annotations

import argparse
import json

import torch

from textvae.classifier import tune_classifier
from textvae.data.batching import SentenceExample, collate_sentences
from textvae.data.records import read_jsonl
from textvae.export import load_export
from textvae.latent import encode_texts


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
    parser.add_argument("--m2", required=True, help="M2 export path, {n} for the number of labels")
    parser.add_argument("--supervised", required=True, help="supervised-baseline export path, {n} for the labels")
    parser.add_argument("--vae", required=True, help="an unsupervised sentence VAE export (for the probe)")
    parser.add_argument("--json", default="benchmarks/semi_supervised.json")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    test_texts, test_gold = split(f"{args.data}/test.jsonl")
    valid_texts, valid_gold = split(f"{args.data}/valid.jsonl")
    valid_texts, valid_gold = valid_texts[:1000], valid_gold[:1000]
    vae = load_export(args.vae)
    test_codes = encode_texts(vae.model, vae.tokenizer, test_texts).mu.clone()  # not inference tensors: fitted on
    valid_codes = encode_texts(vae.model, vae.tokenizer, valid_texts).mu.clone()
    rows = {}
    print(f"test: {len(test_texts):,} sentences of {args.data}/test.jsonl")
    print("| labels | M2 | supervised (same classifier) | VAE probe | bag of n-grams |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        texts, gold = split(f"{args.data}/train.{n}.jsonl")
        with torch.enable_grad():
            codes = encode_texts(vae.model, vae.tokenizer, texts).mu.clone()
            probe = tune_classifier(codes, gold, valid_codes, valid_gold)
            ngrams = tune_classifier(texts, gold, valid_texts, valid_gold, min_count=1)
        row = {"m2": model_accuracy(load_export(args.m2.format(n=n)), test_texts, test_gold),
               "supervised": model_accuracy(load_export(args.supervised.format(n=n)), test_texts, test_gold),
               "vae_probe": probe.classifier.accuracy(test_codes, test_gold), "vae_probe_l2": probe.l2,
               "ngrams": ngrams.classifier.accuracy(test_texts, test_gold), "ngrams_l2": ngrams.l2}
        rows[n] = row
        print(f"| {n:,} | {row['m2']:.3f} | {row['supervised']:.3f} | {row['vae_probe']:.3f} | {row['ngrams']:.3f} |")
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "test_sentences": len(test_texts), "results": rows}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
