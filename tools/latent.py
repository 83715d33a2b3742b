"""textvae-latent: latent arithmetic: attribute vectors and analogies (Bowman et al. 2016's sentence space).

attribute: the attribute vector v is the mean posterior mean of the --data sentences labelled --to-label minus
that of those labelled --from-label (Larsen et al. 2016; Li et al. 2020, Optimus). Each given sentence is
encoded by its posterior mean z, and z + s * v is decoded for each --scale s: a numbered table per sentence,
the input first (s = 0 decodes z itself). One line on stderr says how many sentences of each label built v,
its norm, and the average norm of a code, so that you can see how big a step is.

analogy: a : b :: c : d by vector offset (Mikolov et al. 2013): z_d = z_c + scale * (z_b - z_a), decoded;
with --data, also the --data sentence nearest to z_d by cosine (a, b and c left out).

Control characters in a sentence (a newline, an ANSI escape) are printed escaped (\\n, \\x1b). With stderr a
terminal, long work shows a progress line there; Ctrl-C stops with "interrupted" and exit code 130.

Examples:
  textvae-latent attribute --model runs/quickstart/export --data data/synthetic-sentences/test.jsonl \\
      --label-key attributes.form --from-label statement --to-label question "she cooked the soup ."
  textvae-latent attribute --model runs/yelp10k_lstm_vae/export --data data/yelp10k/test.jsonl \\
      --from-label 0 --to-label 1 --scale 0 1 2 3 --input sentences.txt
  textvae-latent analogy --model runs/quickstart/export --a "she cooked the soup ." \\
      --b "did she cook the soup ?" --c "we will visit the museum ." --data data/synthetic-sentences/test.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from textvae.data.records import DataError, Sentence
from textvae.latent import add_attribute, analogy, attribute_vector, encode_texts, nearest, require_latent
from tools._cli import (
    CHUNK,
    Progress,
    add_decoding_arguments,
    add_device_argument,
    add_model_argument,
    add_seed_argument,
    check_decoding_memory,
    load_sentence_model,
    nonempty_sentence,
    note_cut,
    note_unknown,
    number,
    parser_from_doc,
    printable,
    read_sentences,
    require_label_key,
    run,
    sentence_decoding,
    sentence_labels,
    text_source,
)

DIALOGUE_MESSAGE = "latent arithmetic works on sentences; sample its responses with textvae-respond"
PROG = "textvae-latent"
MAX_SCALE = 1_000.0  # |s|: far past any useful step (a code's norm is a few units), and z stays finite
FIX = "lower --beam or --max-len, give fewer --scale values, or use --decode greedy or sample"


def _scale() -> Callable[[str], float]:
    parse = number(-MAX_SCALE, MAX_SCALE, include_low=True)

    def scale(text: str) -> float:
        try:
            return parse(text)
        except argparse.ArgumentTypeError as err:
            if str(err).startswith("expected a number"):  # a sentence after --scale 0 1 2: it took it
                raise argparse.ArgumentTypeError(f"{err} (give the sentences before --scale, or after --)") from None
            raise
    return scale


def _common(command: argparse.ArgumentParser) -> None:
    add_model_argument(command)
    add_decoding_arguments(command, default="greedy", help="decoding method (default greedy, as Bowman et al.)")
    add_seed_argument(command, "sampling")
    add_device_argument(command)


def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{attribute,analogy}")
    attribute = commands.add_parser(
        "attribute", help="move sentences along the vector from one label to another",
        description="Move each sentence along v = mean code of the --data sentences labelled --to-label minus "
                    "that of those labelled --from-label: z + s * v decoded for each --scale s.")
    _common(attribute)
    attribute.add_argument("sentences", nargs="*", type=nonempty_sentence, metavar="SENTENCE", help="sentences to move")
    attribute.add_argument("--input", type=Path, metavar="FILE",
                           help="or the sentences of FILE (one a line, or a prepared JSONL)")
    attribute.add_argument("--data", required=True, type=Path, metavar="FILE",
                           help="labelled sentences the vector is built from (a prepared JSONL)")
    attribute.add_argument("--label-key", default="label", metavar="KEY",
                           help="'label' or 'attributes.NAME', e.g. attributes.form (default label)")
    attribute.add_argument("--from-label", required=True, metavar="A", help="the label to move away from")
    attribute.add_argument("--to-label", required=True, metavar="B", help="the label to move towards")
    attribute.add_argument("--scale", nargs="+", type=_scale(), default=[0.0, 0.5, 1.0, 1.5, 2.0], metavar="S",
                           help=f"steps along the vector, each in [-{MAX_SCALE:g}, {MAX_SCALE:g}] "
                                "(default 0 0.5 1 1.5 2; 0 decodes the sentence's own code)")
    attribute.set_defaults(body=_attribute)
    analogy_command = commands.add_parser(
        "analogy", help="a : b :: c : ?, by vector offset",
        description="a : b :: c : d with z_d = z_c + scale * (z_b - z_a), decoded; with --data, also the "
                    "--data sentence nearest to z_d by cosine, a, b and c left out.")
    _common(analogy_command)
    for name in ("a", "b", "c"):
        analogy_command.add_argument(f"--{name}", required=True, type=nonempty_sentence, metavar="SENTENCE",
                                     help=f"sentence {name}")
    analogy_command.add_argument("--scale", type=_scale(), default=1.0, metavar="S",
                                 help=f"step along z_b - z_a, in [-{MAX_SCALE:g}, {MAX_SCALE:g}] (default 1)")
    analogy_command.add_argument("--data", type=Path, metavar="FILE",
                                 help="also print the sentence of FILE (one a line, or a prepared JSONL) nearest "
                                      "to z_d")
    analogy_command.set_defaults(body=_analogy)
    return parser


def _labels(parser: argparse.ArgumentParser, args: argparse.Namespace, sentences: list[Sentence]) -> list[str | None]:
    """The --label-key value of each --data sentence; a missing key or label is a one-line error."""
    labels = sentence_labels(parser, sentences, args.label_key, args.data)
    present = sorted({label for label in labels if label is not None})
    for flag, label in (("--from-label", args.from_label), ("--to-label", args.to_label)):
        if label not in present:
            parser.error(f"{flag} {label!r}: no sentence of {args.data} has {args.label_key} {label!r}; "
                         f"present: {', '.join(repr(p) for p in present)}")
    if args.from_label == args.to_label:
        parser.error(f"--from-label and --to-label are both {args.from_label!r}; give two different labels")
    return labels


def _attribute(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if bool(args.sentences) == (args.input is not None):
        parser.error("give the sentences to move, either as arguments or with --input FILE (not both)")
    text_source(parser, "--data", args.data)
    text_source(parser, "--input", args.input)
    require_label_key(parser, args.label_key)
    export = load_sentence_model(parser, args.model, args.device, dialogue_message=DIALOGUE_MESSAGE)
    model, tokenizer = export.model, export.tokenizer
    require_latent(model, "latent arithmetic")
    decoding = sentence_decoding(args, "greedy")
    scales = args.scale
    texts = args.sentences or [s.text for s in read_sentences(args.input)]
    check_decoding_memory(parser, min(len(texts) * len(scales), CHUNK), decoding, tokenizer.vocab_size, args.device,
                          fix=FIX)
    data = read_sentences(args.data)
    labels = _labels(parser, args, data)

    with Progress(PROG, "encoding the --data sentences"):
        built = attribute_vector(model, tokenizer, [s.text for s in data], labels, args.from_label, args.to_label)
    print(f"{PROG}: v = mean of {built.target:,} {args.to_label!r} codes - mean of {built.source:,} "
          f"{args.from_label!r} codes ({args.label_key}); |v| = {float(built.vector.norm()):.3g}, "
          f"a code's average norm {built.code_norm:.3g}", file=sys.stderr)

    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    marks = ["[input]"] + [f"z{s:+g}v" for s in scales]
    mark_width = max(len(mark) for mark in marks)
    width = len(str(len(scales)))
    per_chunk = max(1, CHUNK // len(scales))  # sentences whose points are decoded together
    tokens = unknown = truncated = 0
    with Progress(PROG, "sentences", len(texts), enabled=not sys.stdout.isatty()) as progress:
        for start in range(0, len(texts), per_chunk):
            batch = texts[start:start + per_chunk]
            edit = add_attribute(model, tokenizer, batch, built.vector, scales, decoding=decoding, chunk=CHUNK,
                                 generator=generator)
            tokens, unknown, truncated = tokens + edit.tokens, unknown + edit.unknown, truncated + edit.truncated
            for i, (text, decoded) in enumerate(zip(batch, edit.decoded, strict=True), start=start):
                if i:
                    print()
                for j, (mark, line) in enumerate(zip(marks, [text, *decoded], strict=True)):
                    print(f"{j:>{width}}  {mark:<{mark_width}}  {printable(line)}")
            sys.stdout.flush()
            progress(start + len(batch))
    note_unknown(PROG, tokens, unknown, " of the given sentences")
    note_cut(PROG, truncated, model.max_words)


def _analogy(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    text_source(parser, "--data", args.data)
    export = load_sentence_model(parser, args.model, args.device, dialogue_message=DIALOGUE_MESSAGE)
    model, tokenizer = export.model, export.tokenizer
    require_latent(model, "latent arithmetic")
    decoding = sentence_decoding(args, "greedy")
    check_decoding_memory(parser, 1, decoding, tokenizer.vocab_size, args.device, fix=FIX)
    data = read_sentences(args.data) if args.data is not None else None
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    answer = analogy(model, tokenizer, args.a, args.b, args.c, scale=args.scale, decoding=decoding,
                     generator=generator)
    rows = [("a", args.a), ("b", args.b), ("c", args.c), ("d", answer.decoded)]
    if data is not None:
        given = {args.a, args.b, args.c}
        with Progress(PROG, "encoding the --data sentences"):
            codes = encode_texts(model, tokenizer, [s.text for s in data]).mu  # (N, Z)
        exclude = [i for i, s in enumerate(data) if s.text in given]
        if len(exclude) == len(data):
            raise DataError(f"{args.data}: holds only the sentences a, b and c; give other sentences to search")
        found = nearest(codes, answer.z, exclude=exclude)
        rows.append(("nearest", f"{data[found.index].text}  (cosine {found.cosine:.3f})"))
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {printable(text)}")
    note_unknown(PROG, answer.tokens, answer.unknown, " of a, b and c")
    note_cut(PROG, answer.truncated, model.max_words)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    args.body(parser, args)


def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
