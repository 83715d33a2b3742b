"""textvae-sample: prior samples, reconstructions and latent plots from an exported model.

Prints N sentences decoded from prior draws z ~ N(0, I) (a language model: its own samples), one a line;
with --reconstruct, "input<TAB>reconstruction" for each sentence of FILE, decoded from its posterior mean;
with --plot, a 2-D PCA of the posterior means of --data coloured by a label, saved as PNG.

A model conditioned on labels (a CVAE or M2 SentenceVAE) generates for --label NAME (prior samples: for
that label; without it each draw takes a label at random). Its reconstructions encode each sentence at
its own label (from a prepared JSONL under --label-key, else the model's classifier q(y|x)) and decode it
at --label when given: the same z with another label, i.e. style transfer.

Lines are printed as they are decoded; with stdout redirected and stderr a terminal, a progress line shows
on stderr once the work takes more than a few seconds. Control characters in the text (a newline, an ANSI
escape) are printed escaped (\n, \x1b). Ctrl-C stops with "interrupted" and exit code 130, and never leaves
half a --plot file.

Examples:
  textvae-sample --model runs/yelp/export -n 10 --decode sample --top-p 0.9 --seed 1
  textvae-sample --model runs/yelp/export --reconstruct sentences.txt
  textvae-sample --model runs/synth/export --plot latent.png --data data/synth/test.jsonl --label-key attributes.topic
  textvae-sample --model runs/yelp10k_cvae/export -n 5 --label 1
  textvae-sample --model runs/yelp10k_cvae/export --reconstruct data/yelp10k/test.jsonl -n 5 --label 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from textvae.data.datasets import label_under
from textvae.data.records import atomic_output
from textvae.decoding import Decoding
from textvae.export import Export
from textvae.latent import (
    decode_texts,
    encode_texts,
    num_labels,
    plot_projection,
    prior_draws,
    project_2d,
    require_latent,
)
from tools._cli import (
    CHUNK,
    MAX_SAMPLES,
    Progress,
    add_decoding_arguments,
    add_device_argument,
    add_model_argument,
    add_seed_argument,
    check_decoding_memory,
    count,
    load_sentence_model,
    name_to_id,
    note_cut,
    note_unknown,
    output_file,
    parser_from_doc,
    printable,
    read_sentences,
    require_label_key,
    run,
    sentence_decoding,
    sentence_labels,
    span,
    text_source,
)

DIALOGUE_MESSAGE = "sample its responses with textvae-respond"
PROG = "textvae-sample"
FIX = "lower --beam, --max-len or -n, or use --decode greedy or sample"



def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    add_model_argument(parser)
    parser.add_argument("-n", type=count(1, MAX_SAMPLES), metavar="N",
                        help=f"prior samples to print, {span(1, MAX_SAMPLES)} (default 10); with --reconstruct or "
                             "--plot: use the first N sentences")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--reconstruct", type=Path, metavar="FILE",
                      help="reconstruct each sentence of FILE (one a line, or a prepared JSONL) from its posterior mean")
    mode.add_argument("--plot", type=Path, metavar="OUT.png", help="plot a 2-D projection of the posterior means of --data")
    parser.add_argument("--data", type=Path, metavar="FILE", help="with --plot: the sentences (prepared JSONL, or one a line)")
    parser.add_argument("--label-key", default="label", metavar="KEY",
                        help="with --plot: colour by 'label' or 'attributes.NAME', e.g. attributes.topic; with "
                             "--reconstruct on a labelled model: where a JSONL sentence's own label is (default label)")
    parser.add_argument("--label", metavar="NAME",
                        help="a model conditioned on labels: generate for this label (with --reconstruct: decode "
                             "each sentence's z with it, i.e. transfer it to this label)")
    add_decoding_arguments(parser, default=None, help="decoding method (default: sample for prior samples, greedy for reconstructions)")
    add_seed_argument(parser, "the prior draws and sampling")
    add_device_argument(parser)
    return parser


def _label_id(export: Export, name: str) -> int:
    """The id of label ``name`` in a labelled model; ValueError for any other model or an unknown name."""
    if not num_labels(export.model):
        raise ValueError(f"needs a model conditioned on labels (a CVAE or M2 SentenceVAE); "
                         f"{type(export.model).__name__} here generates without one")
    if name not in export.labels:
        raise ValueError(f"{name!r} is not one of the model's labels ({', '.join(export.labels)})")
    return export.labels.index(name)


def _print_decoded(export: Export, z: torch.Tensor | None, n: int, decoding: Decoding, generator: torch.Generator,
                   inputs: list[str] | None = None, labels: torch.Tensor | None = None) -> None:
    """Decode the n rows of ``z`` (a language model: n samples) CHUNK at a time and print each chunk at once,
    escaped, after its input when given ("input<TAB>decoded"); a progress line when stdout is not the terminal."""
    with Progress(PROG, "sentences", n, enabled=not sys.stdout.isatty()) as progress:
        for start in range(0, n, CHUNK):
            rows = z[start:start + CHUNK] if z is not None else None
            texts = decode_texts(export.model, export.tokenizer, rows, decoding, count=min(CHUNK, n - start),
                                 chunk=CHUNK, generator=generator,
                                 labels=labels[start:start + CHUNK] if labels is not None else None)
            for i, text in enumerate(texts, start=start):
                print(printable(text) if inputs is None else f"{printable(inputs[i])}\t{printable(text)}")
            sys.stdout.flush()
            progress(start + len(texts))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    output_file(parser, "--plot", args.plot, "latent.png")
    text_source(parser, "--reconstruct", args.reconstruct)
    text_source(parser, "--data", args.data)
    if args.data is not None and args.plot is None:
        parser.error("--data goes with --plot (for reconstructions, give the file to --reconstruct)")
    if args.plot is not None and args.data is None:
        parser.error("--plot needs --data FILE: the sentences whose posterior means to plot")
    require_label_key(parser, args.label_key)
    export = load_sentence_model(parser, args.model, args.device, dialogue_message=DIALOGUE_MESSAGE)
    model, tokenizer = export.model, export.tokenizer
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    label = name_to_id(parser, "--label", args.label, lambda name: _label_id(export, name))
    if label is not None and args.plot is not None:
        parser.error("--label goes with prior samples or --reconstruct, not --plot")

    if args.reconstruct is None and args.plot is None:  # prior samples
        n = args.n or 10
        decoding = sentence_decoding(args, "sample")
        check_decoding_memory(parser, min(n, CHUNK), decoding, tokenizer.vocab_size, args.device, fix=FIX,
                              extra=n * model.latent_dim * 4)  # and the n prior draws
        z, labels = prior_draws(model, n, generator=generator, label=label)  # (n, Z), (n,) or None
        _print_decoded(export, z, n, decoding, generator, labels=labels)
        return

    require_latent(model, "--reconstruct" if args.reconstruct is not None else "--plot")
    sentences = read_sentences(args.reconstruct or args.data)[: args.n]
    own = None
    if num_labels(model):  # each sentence's own label where the file gives one the model knows
        names = {name: i for i, name in enumerate(export.labels)}
        own = torch.tensor([names.get(label_under(args.label_key, s.label, s.attributes), -1) for s in sentences],
                           dtype=torch.long)
    with Progress(PROG, f"encoding {len(sentences):,} sentences"):
        encoded = encode_texts(model, tokenizer, [s.text for s in sentences], labels=own)
    if args.reconstruct is not None:
        note_unknown(PROG, encoded.tokens, encoded.unknown)
        note_cut(PROG, encoded.truncated, model.max_words)
        decoding = sentence_decoding(args, "greedy")
        check_decoding_memory(parser, min(len(sentences), CHUNK), decoding, tokenizer.vocab_size, args.device,
                              fix=FIX)
        labels = encoded.labels
        if label is not None:
            labels = torch.full_like(labels, label)
        _print_decoded(export, encoded.mu, len(sentences), decoding, generator, [s.text for s in sentences],
                       labels=labels)
        return

    labels = sentence_labels(parser, sentences, args.label_key, args.data)
    labels = [label if label is not None else "(none)" for label in labels]
    projection = project_2d(encoded.mu)
    title = (f"{type(model).__name__} posterior means, PCA\n{args.data.name}: {len(sentences):,} sentences "
             f"by {args.label_key}")
    with atomic_output(args.plot) as tmp:
        plot_projection(projection, labels, tmp, title=title)
    print(f"wrote {args.plot} ({len(sentences):,} sentences, {len(set(labels))} {args.label_key} values)")



def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
