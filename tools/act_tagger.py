"""textvae-act-tagger: train a dialog act tagger on a corpus' gold acts, to score the acts of generated responses.

The tagger is textvae-classifier's classifier (a logistic regression over word unigrams and bigrams,
textvae.classifier) trained on the dialog acts of the turns: the same as textvae-classifier --label-key act,
with this tool's flags. textvae-eval --act-tagger DIR then reports how often generated responses carry the
reference's act and, for kgCVAE, the act they were decoded for. --test scores it on held-out gold turns,
the accuracy to read those figures against. With stderr a terminal, a training that takes more than a few
seconds shows that it is running; Ctrl-C stops with "interrupted" and exit code 130.

Examples:
  textvae-act-tagger --data data/dailydialog-lite/train.jsonl --test data/dailydialog-lite/test.jsonl --out runs/dailydialog_lite_act_tagger
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from textvae.act_tagger import ACT_L2
from textvae.classifier import MAX_STEPS
from textvae.data.records import DataError, detect_kind
from tools._cli import MAX_EPOCHS, add_cache_argument, add_seed_argument, count, parser_from_doc, run, span
from tools.classifier import MAX_MIN_COUNT, Split, fit_and_save, read_split

PROG = "textvae-act-tagger"


def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--data", required=True, type=Path, metavar="FILE",
                        help="prepared dialogue JSONL split whose turns have acts (the training split)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to save the tagger to")
    parser.add_argument("--test", type=Path, metavar="FILE", help="prepared dialogue JSONL split to score it on")
    parser.add_argument("--epochs", type=count(1, MAX_EPOCHS), default=MAX_STEPS, metavar="E",
                        help=f"L-BFGS iterations at most, each a pass over the turns, {span(1, MAX_EPOCHS)} "
                             f"(default {MAX_STEPS:,}; it stops once converged)")
    parser.add_argument("--min-count", type=count(1, MAX_MIN_COUNT), default=2, metavar="C",
                        help=f"keep n-grams seen in at least C turns, {span(1, MAX_MIN_COUNT)} (default 2)")
    add_seed_argument(parser, help="0 to 2**63-1, accepted for older command lines and unused: the full-batch fit "
                                   "draws nothing, the same data give the same tagger")
    add_cache_argument(parser)
    return parser


def _turns(args: argparse.Namespace, path: Path) -> Split:
    if detect_kind(path) != "dialogues":
        raise DataError(f"{path} holds sentences; the act tagger trains on dialogues with dialog acts")
    return read_split(path, "act", args.cache_dir, prog=PROG,
                      hint="the act tagger needs a corpus with acts (DailyDialog, Switchboard)")


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    train = _turns(args, args.data)
    test = None if args.test is None else _turns(args, args.test)
    fit_and_save(parser, train, args.out, test=test, l2=ACT_L2, min_count=args.min_count, steps=args.epochs)


def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
