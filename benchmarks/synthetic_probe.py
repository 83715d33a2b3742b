"""How much of the synthetic grammar's known attributes a trained sentence VAE puts in z.

    python benchmarks/synthetic_probe.py --model runs/quickstart/export --data data/synthetic-sentences/test.jsonl

Encodes every sentence to its posterior mean and fits a linear probe (multinomial logistic
regression, 80/20 split) per attribute; prints accuracy against the majority-class chance level.
"""

import argparse
import json

import torch

from textvae.data.batching import SentenceExample, collate_sentences
from textvae.data.records import read_jsonl
from textvae.export import load_export
from textvae.metrics import linear_probe


def posterior_means(model, tokenizer, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    means = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            batch = collate_sentences([SentenceExample(tokenizer.encode(t), None, i) for i, t in enumerate(chunk)])
            means.append(model.encode(batch.tokens, batch.lengths)[0])
    return torch.cat(means)  # (N, Z)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    export = load_export(args.model)
    sentences = list(read_jsonl(args.data, "sentences"))
    mu = posterior_means(export.model, export.tokenizer, [s.text for s in sentences])
    results = {}
    print(f"{len(sentences)} sentences, z of {mu.shape[1]} dimensions")
    print(f"{'attribute':<10} {'values':>6} {'probe acc':>9} {'chance':>7}")
    for name in sentences[0].attributes:
        labels = [str(s.attributes[name]) for s in sentences]
        accuracy, chance = linear_probe(mu, labels)
        results[name] = {"values": len(set(labels)), "accuracy": accuracy, "chance": chance}
        print(f"{name:<10} {len(set(labels)):>6} {accuracy:>9.3f} {chance:>7.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
