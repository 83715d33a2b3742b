"""textvae-eval: importance-weighted NLL, perplexity, ELBO, KL, mutual information, active units and BLEU of an exported model.

Evaluates a sentence model (VAE or language-model baseline) on a prepared JSONL split and prints a table;
--json also writes the numbers. PPL = exp(total NLL / (words + EOS)), the papers' definition.

Examples:
  textvae-eval --model runs/yelp/export --data data/yelp/test.jsonl
  textvae-eval --model runs/yelp/export --data data/yelp/test.jsonl --samples 100 --json eval.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from textvae.data.datasets import SentenceDataset, Vocab, load_records
from textvae.data.records import detect_kind
from textvae.evaluation import evaluate, prior_sample_metrics
from textvae.latent import max_words
from tools._cli import count, load_sentence_model, parser_from_doc, run

DIALOGUE_MESSAGE = "dialogue evaluation arrives with the dialogue issue (this version evaluates sentence models)"
PROG = "textvae-eval"




def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--model", required=True, type=Path, metavar="DIR", help="model export folder")
    parser.add_argument("--data", required=True, type=Path, metavar="FILE", help="prepared JSONL split of sentences")
    parser.add_argument("--samples", type=count(1), default=500, metavar="K",
                        help="importance samples per sentence (default 500, as He et al. 2019)")
    parser.add_argument("--batch-size", type=count(1), default=32, metavar="N",
                        help="sentences per batch; K x N sequences are decoded together (default 32)")
    parser.add_argument("--max-sentences", type=count(1), metavar="N", help="evaluate only the first N sentences")
    parser.add_argument("--prior-samples", type=count(0), default=100, metavar="N",
                        help="sentences sampled from the prior for distinct-n and self-BLEU (default 100; 0: none)")
    parser.add_argument("--no-bleu", action="store_true", help="skip the reconstruction BLEU (greedy decoding)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of every random draw (default 0)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR",
                        help="dataset cache (default: .cache next to the data file, shared with textvae-train)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda if available, else cpu)")
    return parser



def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.prior_samples == 1:
        parser.error("argument --prior-samples: must be 0 (none) or >= 2 (self-BLEU compares samples)")
    export = load_sentence_model(parser, args.model, args.device, dialogue_message=DIALOGUE_MESSAGE)
    model, tokenizer = export.model, export.tokenizer
    if detect_kind(args.data) != "sentences":
        parser.error(f"{args.data} holds dialogues; dialogue evaluation arrives with the dialogue issue")
    cache_dir = args.cache_dir or args.data.resolve().parent / ".cache"
    records = load_records(args.data, cache_dir=cache_dir, kind="sentences")
    if args.max_sentences is not None and args.max_sentences < len(records):
        records = records.select(range(args.max_sentences))
    if len(records) == 0:
        parser.error(f"{args.data}: no sentences to evaluate")
    # Evaluation does not use labels; the model's label names are kept when the data's fit them, and a
    # label the model never saw must not stop the evaluation.
    names = export.categories.get("labels") or []
    data_labels = {v for v in records["label"] if v is not None}
    labels = Vocab(names) if names and data_labels <= set(names) else None
    dataset = SentenceDataset(records, tokenizer, max_len=max_words(model), labels=labels, source=str(args.data))
    result = evaluate(model, dataset, samples=args.samples, batch_size=args.batch_size, seed=args.seed,
                      bleu=not args.no_bleu, tokenizer=tokenizer, device=args.device)
    if args.prior_samples:
        generator = torch.Generator(device=args.device).manual_seed(args.seed)
        result.prior = prior_sample_metrics(model, tokenizer, args.prior_samples, generator=generator)
    print(f"{args.model} on {args.data}")
    print(result.table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(result.to_json() + "\n", encoding="utf-8")
        print(f"wrote {args.json}")



def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
