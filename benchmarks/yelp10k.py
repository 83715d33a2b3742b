"""yelp10k benchmark: a sentence VAE against the LM baseline trained with the same budget.

    textvae-corpus prepare yelp10k --source ../shared/corpora --out data/yelp10k
    textvae-train fit --config recipes/yelp10k_lstm_vae.yaml
    textvae-train fit --config recipes/yelp10k_lm.yaml
    python benchmarks/yelp10k.py --vae runs/yelp10k_lstm_vae/export --lm runs/yelp10k_lm/export

Measures, for each model, on the first ``--sentences`` test sentences: IW-NLL (K = ``--samples``;
exact NLL for the LM), PPL (total NLL over words + EOS), ELBO, KL, MI, active units, reconstruction
BLEU, and IW-NLL sentences/s; then training tokens/s and sentences/s (``--train-steps`` optimiser steps
of a fresh model of the same configuration, batch 32, after 10 warm-up steps) and greedy prior-sampling
sentences/s. ``--device cuda`` runs all of it on a GPU (timings synchronise the device). Prints a
Markdown table for BENCHMARKS.md and writes JSON.
"""

import argparse
import json
import time

import torch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True)
    parser.add_argument("--lm", help="the LM baseline's export (optional)")
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
    device = torch.device(args.device)
    records = load_records(args.test, cache_dir=args.cache_dir).select(range(args.sentences))
    results = {}
    for name, path in (("vae", args.vae), ("lm", args.lm)):
        if path is None:
            continue
        export = load_export(path)
        dataset = SentenceDataset(records, export.tokenizer, max_len=None)
        result = evaluate(export.model, dataset, samples=args.samples, seed=0, tokenizer=export.tokenizer,
                          batch_size=args.batch_size, device=device)
        print(result.table())
        row = result.to_dict()
        row |= training_throughput(export, args.train, args.cache_dir, args.train_steps, device)
        row["sample_sentences_per_s"] = sampling_throughput(export, device)
        results[name] = row
        print(name, {k: v for k, v in row.items() if k.endswith("_per_s")})
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "threads": torch.get_num_threads(), "device": device_name(device),
                   "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
