"""textvae-corpus: list the known corpora and prepare one (split JSONL files plus corpus.json).

Examples:
  textvae-corpus list
  textvae-corpus prepare ptb-lite --out data/ptb-lite --source ../shared/corpora
  textvae-corpus prepare dailydialog --out data/dailydialog            # downloads the canonical files
  textvae-corpus prepare synthetic-sentences --out data/synth --size 2000 --seed 1
  textvae-corpus prepare text --source my_sentences.txt --out data/mine     # your own data; 10% valid, 10% test
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import corpora
from textvae.data.records import DataError
from tools import Parser, print_warning, restore_interrupt

PROG = "textvae-corpus"


def _parser() -> argparse.ArgumentParser:
    summary, _, examples = (__doc__ or f"{PROG}: prepare corpora\n").partition("\n")
    parser = Parser(prog=PROG, description=summary.partition(": ")[2], epilog=examples.strip(),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,prepare}")
    commands.add_parser("list", help="list the corpora: name, kind, description",
                        description="List the corpora that `prepare` knows: name, kind and a one-line description.")
    names = ", ".join(corpora.CORPORA)
    prepare = commands.add_parser(
        "prepare", help="prepare a corpus into a folder",
        description="Prepare a corpus into --out: {split}.jsonl for each split found plus corpus.json. "
                    "Reads the corpus' files from --source, or downloads them from their canonical source "
                    "(cached, resumable, checksum-verified).",
        epilog=f"corpora: {names}")
    prepare.add_argument("name", metavar="NAME", help="which corpus (see `textvae-corpus list`)")
    prepare.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write the corpus to")
    prepare.add_argument("--source", type=Path, metavar="PATH",
                         help="a folder (or archive) holding the corpus' files; default: download them")
    prepare.add_argument("--size", type=int, metavar="N",
                         help="synthetic corpora: train size (valid and test get N // 10 each)")
    prepare.add_argument("--seed", type=int, metavar="S",
                         help="synthetic corpora: random seed; text, dialogues: the seed of the drawn splits (default 0)")
    prepare.add_argument("--valid-fraction", type=float, metavar="F",
                         help="text, dialogues given one file: the share of it drawn as the valid split (default 0.1)")
    prepare.add_argument("--test-fraction", type=float, metavar="F",
                         help="text, dialogues given one file: the share of it drawn as the test split (default 0.1)")
    prepare.add_argument("--cache-dir", type=Path, metavar="DIR",
                         help="where downloads are kept (default $TEXTVAE_CACHE or ~/.cache/textvae)")
    return parser


def _list() -> None:
    width = max(len(name) for name in corpora.CORPORA)
    for corpus in corpora.CORPORA.values():
        print(f"{corpus.name:<{width}}  {corpus.kind:<9}  {corpus.description}")


def _prepare(args: argparse.Namespace) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            from tools._cli import Progress  # here: `textvae-corpus list` need not import torch

            with Progress(PROG, f"preparing {args.name}") as progress:  # the time it takes, until a count comes
                def report(done: int, total: int | None) -> None:
                    progress.what = "records written"
                    progress(done, total)

                summary = corpora.prepare(args.name, args.out, source=args.source, cache_dir=args.cache_dir,
                                          size=args.size, seed=args.seed, valid_fraction=args.valid_fraction,
                                          test_fraction=args.test_fraction, progress=report)
        finally:
            for w in caught:
                print_warning(PROG, w.message)
    print(f"prepared {summary['name']} ({summary['kind']}) in {args.out}")
    for split, count in summary["splits"].items():
        turns = f", {summary['turns'][split]:,} turns" if "turns" in summary else ""
        print(f"  {split}.jsonl  {count:,} {summary['kind']}{turns}")
    print("  corpus.json")


def main(argv: list[str] | None = None) -> int:
    restore_interrupt()
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            _list()
        else:
            _prepare(args)
    except KeyboardInterrupt:  # a download resumes from its partial file; a prepared file appears whole or not at all
        parser.exit(130, f"\n{PROG}: interrupted\n")
    except DataError as err:
        parser.exit(2, f"{PROG}: error: {err}\n")
    except OSError as err:  # a missing or unreadable file, a full disk, a folder we may not write
        where = f"{err.filename}: " if err.filename else ""
        parser.exit(2, f"{PROG}: error: {where}{err.strerror or err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
