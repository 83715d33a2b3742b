"""textvae-homotopy: sentences along a path between two points of the latent space (Bowman et al. 2016).

Encodes each end by its posterior mean (or draws it from the prior with --from-prior / --to-prior),
interpolates STEPS points strictly between them, decodes every point, and prints the numbered path:
STEPS + 2 lines, the two ends marked (a given sentence is printed as given; a prior end as decoded).

Examples:
  textvae-homotopy --model runs/yelp/export --from "the food was great ." --to "the service was slow ." --steps 5
  textvae-homotopy --model runs/yelp/export --from-prior --to-prior --steps 8 --method slerp --seed 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from textvae.latent import homotopy
from tools._cli import (
    add_decoding_arguments,
    count,
    load_sentence_model,
    parser_from_doc,
    run,
    sentence_decoding,
)

DIALOGUE_MESSAGE = "homotopies interpolate between sentences; sample its responses with textvae-respond"
PROG = "textvae-homotopy"




def _sentence(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty sentence")
    return text



def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--model", required=True, type=Path, metavar="DIR", help="model export folder")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--from", dest="start", type=_sentence, metavar="SENTENCE", help="the first end")
    start.add_argument("--from-prior", action="store_true", help="draw the first end from the prior")
    end = parser.add_mutually_exclusive_group(required=True)
    end.add_argument("--to", dest="end", type=_sentence, metavar="SENTENCE", help="the last end")
    end.add_argument("--to-prior", action="store_true", help="draw the last end from the prior")
    parser.add_argument("--steps", type=count(1), default=5, metavar="N",
                        help="points strictly between the ends (default 5)")
    parser.add_argument("--method", choices=("lerp", "slerp"), default="lerp",
                        help="straight line (Bowman et al.) or great circle (White 2016) (default lerp)")
    add_decoding_arguments(parser, default="greedy", help="decoding method (default greedy, as Bowman et al.)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of prior ends and sampling (default 0)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda if available, else cpu)")
    return parser



def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    export = load_sentence_model(parser, args.model, args.device, dialogue_message=DIALOGUE_MESSAGE)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    path = homotopy(export.model, export.tokenizer, args.start, args.end, steps=args.steps, method=args.method,
                    decoding=sentence_decoding(args, "greedy"), generator=generator)
    if path.unknown:
        print(f"{PROG}: note: {path.unknown} of {path.tokens} tokens of the given sentences are not in the "
              "model's vocabulary; read as <unk>", file=sys.stderr)
    last = len(path.points) - 1
    width = len(str(last))
    for i, point in enumerate(path.points):
        if 0 < i < last:
            print(f"{i:>{width}}         {point.decoded}")
            continue
        mark = "[from]" if i == 0 else "[to]  "
        if point.given is None:
            print(f"{i:>{width}}  {mark} {point.decoded}  (prior draw)")
        else:
            print(f"{i:>{width}}  {mark} {point.given}")
            if point.decoded != point.given:
                print(f"{PROG}: note: the {'start' if i == 0 else 'end'} decodes as: {point.decoded}",
                      file=sys.stderr)



def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
