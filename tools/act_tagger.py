"""textvae-act-tagger: train a dialog act tagger on a corpus' gold acts, to score the acts of generated responses.

The tagger (a logistic regression over word unigrams and bigrams, textvae.act_tagger) labels text with
the corpus' dialog acts; textvae-eval --act-tagger DIR then reports how often generated responses carry
the reference's act and, for kgCVAE, the act they were decoded for. --test scores it on held-out gold
turns, the accuracy to read those figures against. With stderr a terminal, a training that takes more than
a few seconds shows that it is running; Ctrl-C stops with "interrupted" and exit code 130.

Examples:
  textvae-act-tagger --data data/dailydialog-lite/train.jsonl --test data/dailydialog-lite/test.jsonl --out runs/dailydialog_lite_act_tagger
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from textvae.act_tagger import save_act_tagger, tagged_turns, train_act_tagger
from textvae.data.datasets import load_records
from textvae.data.records import DataError, detect_kind
from tools._cli import MAX_EPOCHS, Progress, add_seed_argument, count, parser_from_doc, run, span

PROG = "textvae-act-tagger"
MAX_MIN_COUNT = 1_000_000_000  # above the turns of any corpus: no n-gram kept, the tagger says the majority act


def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--data", required=True, type=Path, metavar="FILE",
                        help="prepared dialogue JSONL split whose turns have acts (the training split)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to save the tagger to")
    parser.add_argument("--test", type=Path, metavar="FILE", help="prepared dialogue JSONL split to score it on")
    parser.add_argument("--epochs", type=count(1, MAX_EPOCHS), default=10, metavar="E",
                        help=f"passes over the data, {span(1, MAX_EPOCHS)} (default 10)")
    parser.add_argument("--min-count", type=count(1, MAX_MIN_COUNT), default=2, metavar="C",
                        help=f"keep n-grams seen in at least C turns, {span(1, MAX_MIN_COUNT)} (default 2)")
    add_seed_argument(parser, "the training order")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR",
                        help="dataset cache (default: .cache next to the data file)")
    return parser


def _turns(args: argparse.Namespace, path: Path) -> tuple[list[str], list[str]]:
    if detect_kind(path) != "dialogues":
        raise DataError(f"{path} holds sentences; the act tagger trains on dialogues with dialog acts")
    records = load_records(path, cache_dir=args.cache_dir, kind="dialogues")
    texts, acts = tagged_turns(records)
    if not texts:
        raise DataError(f"{path}: no turn has a dialog act; the act tagger needs a corpus with acts "
                        "(DailyDialog, Switchboard)")
    return texts, acts


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    texts, acts = _turns(args, args.data)
    start = time.perf_counter()
    with Progress(PROG, f"training on {len(texts):,} turns, {args.epochs} epochs"):
        tagger = train_act_tagger(texts, acts, min_count=args.min_count, epochs=args.epochs, seed=args.seed)
    seconds = time.perf_counter() - start
    info = {"data": str(args.data), "turns": len(texts), "epochs": args.epochs, "min_count": args.min_count,
            "train_accuracy": tagger.accuracy(texts, acts)}
    majority = Counter(acts).most_common(1)[0]
    print(f"trained on {len(texts):,} turns of {args.data} in {seconds:.1f} s: {len(tagger.acts)} acts "
          f"({', '.join(tagger.acts)}), {len(tagger.features):,} n-gram features")
    print(f"  train accuracy {info['train_accuracy']:.3f}")
    if args.test is not None:
        test_texts, test_acts = _turns(args, args.test)
        if unknown := sorted(set(test_acts) - set(tagger.acts)):
            raise DataError(f"{args.test}: act(s) {', '.join(unknown)} never occur in {args.data}; "
                            "train and test on splits of the same corpus")
        info["test"] = str(args.test)
        info["test_accuracy"] = tagger.accuracy(test_texts, test_acts)
        top, n = Counter(test_acts).most_common(1)[0]
        print(f"  test accuracy {info['test_accuracy']:.3f} on {len(test_texts):,} turns of {args.test} "
              f"(always {top!r}: {n / len(test_acts):.3f})")
    else:
        print(f"  (always {majority[0]!r} on the training turns: {majority[1] / len(acts):.3f})")
    save_act_tagger(args.out, tagger, info)
    print(f"saved {args.out}")


def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
