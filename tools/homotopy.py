"""textvae-homotopy: sentences along a path between two points of the latent space (Bowman et al. 2016).

Encodes each end by its posterior mean (or draws it from the prior with --from-prior / --to-prior),
interpolates STEPS points strictly between them, decodes every point, and prints the numbered path:
STEPS + 2 lines, the two ends marked (a given sentence is printed as given; a prior end as decoded).
Control characters in a sentence (a newline, an ANSI escape) are printed escaped (\n, \x1b), so every point
stays one line; a given sentence longer than the model reads is cut, with a note saying so. With stderr a
terminal, long work shows a progress line there; Ctrl-C stops with "interrupted" and exit code 130.

Examples:
  textvae-homotopy --model runs/yelp/export --from "the food was great ." --to "the service was slow ." --steps 5
  textvae-homotopy --model runs/yelp/export --from-prior --to-prior --steps 8 --method slerp --seed 3
"""

from __future__ import annotations

import argparse
import sys

import torch

from textvae.latent import homotopy
from tools._cli import (
    CHUNK,
    MAX_STEPS,
    Progress,
    add_decoding_arguments,
    add_device_argument,
    add_model_argument,
    add_seed_argument,
    check_decoding_memory,
    count,
    load_sentence_model,
    nonempty_sentence,
    note_cut,
    note_unknown,
    parser_from_doc,
    printable,
    run,
    sentence_decoding,
    span,
)

DIALOGUE_MESSAGE = "homotopies interpolate between sentences; sample its responses with textvae-respond"
PROG = "textvae-homotopy"



def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    add_model_argument(parser)
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--from", dest="start", type=nonempty_sentence, metavar="SENTENCE", help="the first end")
    start.add_argument("--from-prior", action="store_true", help="draw the first end from the prior")
    end = parser.add_mutually_exclusive_group(required=True)
    end.add_argument("--to", dest="end", type=nonempty_sentence, metavar="SENTENCE", help="the last end")
    end.add_argument("--to-prior", action="store_true", help="draw the last end from the prior")
    parser.add_argument("--steps", type=count(1, MAX_STEPS), default=5, metavar="N",
                        help=f"points strictly between the ends, {span(1, MAX_STEPS)} (default 5)")
    parser.add_argument("--method", choices=("lerp", "slerp"), default="lerp",
                        help="straight line (Bowman et al.) or great circle (White 2016) (default lerp)")
    add_decoding_arguments(parser, default="greedy", help="decoding method (default greedy, as Bowman et al.)")
    add_seed_argument(parser, "prior ends and sampling")
    add_device_argument(parser)
    return parser


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    export = load_sentence_model(parser, args.model, args.device, dialogue_message=DIALOGUE_MESSAGE)
    model, tokenizer = export.model, export.tokenizer
    decoding = sentence_decoding(args, "greedy")
    check_decoding_memory(parser, min(args.steps + 2, CHUNK), decoding, tokenizer.vocab_size, args.device,
                          fix="lower --beam, --max-len or --steps, or use --decode greedy or sample")
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    with Progress(PROG, f"decoding {args.steps + 2:,} points"):
        path = homotopy(model, tokenizer, args.start, args.end, steps=args.steps, method=args.method,
                        decoding=decoding, generator=generator)
    note_unknown(PROG, path.tokens, path.unknown, " of the given sentences")
    limit = getattr(model, "max_words", None)
    if limit is not None:  # homotopy encodes what the model reads: at most max_words tokens of each end
        note_cut(PROG, sum(len(tokenizer.encode(text)) > limit for text in (args.start, args.end) if text is not None),
                 limit)
    last = len(path.points) - 1
    width = len(str(last))
    for i, point in enumerate(path.points):
        decoded = printable(point.decoded)
        if 0 < i < last:
            print(f"{i:>{width}}         {decoded}")
            continue
        mark = "[from]" if i == 0 else "[to]  "
        if point.given is None:
            print(f"{i:>{width}}  {mark} {decoded}  (prior draw)")
        else:
            print(f"{i:>{width}}  {mark} {printable(point.given)}")
            if point.decoded != point.given:
                print(f"{PROG}: note: the {'start' if i == 0 else 'end'} decodes as: {decoded}", file=sys.stderr)



def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
