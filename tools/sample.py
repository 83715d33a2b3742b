"""textvae-sample: prior samples, reconstructions and latent plots from an exported model.

Prints N sentences decoded from prior draws z ~ N(0, I) (a language model: its own samples), one a line;
with --reconstruct, "input<TAB>reconstruction" for each sentence of FILE, decoded from its posterior mean;
with --plot, a 2-D PCA of the posterior means of --data coloured by a label, saved as PNG.

Examples:
  textvae-sample --model runs/yelp/export -n 10 --decode sample --top-p 0.9 --seed 1
  textvae-sample --model runs/yelp/export --reconstruct sentences.txt
  textvae-sample --model runs/synth/export --plot latent.png --data data/synth/test.jsonl --label-key attributes.topic
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from textvae.data.records import DataError, Sentence, detect_kind, iter_text_lines, read_jsonl
from textvae.latent import decode_texts, encode_texts, plot_projection, project_2d, require_latent
from tools._cli import (
    add_decoding_arguments,
    count,
    load_sentence_model,
    parser_from_doc,
    run,
    sentence_decoding,
)

DIALOGUE_MESSAGE = "sample its responses with textvae-respond"
PROG = "textvae-sample"





def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--model", required=True, type=Path, metavar="DIR", help="model export folder")
    parser.add_argument("-n", type=count(1), metavar="N",
                        help="prior samples to print (default 10); with --reconstruct or --plot: use the first N sentences")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--reconstruct", type=Path, metavar="FILE",
                      help="reconstruct each sentence of FILE (one a line, or a prepared JSONL) from its posterior mean")
    mode.add_argument("--plot", type=Path, metavar="OUT.png", help="plot a 2-D projection of the posterior means of --data")
    parser.add_argument("--data", type=Path, metavar="FILE", help="with --plot: the sentences (prepared JSONL, or one a line)")
    parser.add_argument("--label-key", default="label", metavar="KEY",
                        help="with --plot: colour by 'label' or 'attributes.NAME', e.g. attributes.topic (default label)")
    add_decoding_arguments(parser, default=None, help="decoding method (default: sample for prior samples, greedy for reconstructions)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the prior draws and sampling (default 0)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda if available, else cpu)")
    return parser



def _is_jsonl(path: Path) -> bool:
    """A prepared JSONL file (its first line a JSON object with "text" or "turns"), not plain sentences."""
    for _, line in iter_text_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            return False
        return isinstance(obj, dict) and ("text" in obj or "turns" in obj)
    return False


def read_sentences(path: Path) -> list[Sentence]:
    """Sentences from a prepared JSONL file, or from a text file with one sentence a line."""
    if _is_jsonl(path):
        if detect_kind(path) != "sentences":
            raise DataError(f"{path}: holds dialogues; give sentences (one a line, or a prepared sentence JSONL)")
        sentences = list(read_jsonl(path, "sentences"))
    else:
        sentences = [Sentence(text) for _, text in iter_text_lines(path, what="line")]
    if not sentences:
        raise DataError(f"{path}: no sentences in the file")
    return sentences


def _label(sentence: Sentence, key: str) -> str | None:
    if key == "label":
        value = sentence.label
    else:
        value = sentence.attributes.get(key.removeprefix("attributes."))
    return None if value is None else str(value)


def _note_unknown(tokens: int, unknown: int, truncated: int) -> None:
    if unknown:
        print(f"{PROG}: note: {unknown} of {tokens} tokens are not in the model's vocabulary; read as <unk>",
              file=sys.stderr)
    if truncated:
        print(f"{PROG}: note: {truncated} sentences were cut to the model's longest input", file=sys.stderr)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.data is not None and args.plot is None:
        parser.error("--data goes with --plot (for reconstructions, give the file to --reconstruct)")
    if args.plot is not None and args.data is None:
        parser.error("--plot needs --data FILE: the sentences whose posterior means to plot")
    if args.label_key != "label" and not (args.label_key.startswith("attributes.") and len(args.label_key) > 11):
        parser.error(f"--label-key must be 'label' or 'attributes.NAME', got {args.label_key!r}")
    export = load_sentence_model(parser, args.model, args.device, dialogue_message=DIALOGUE_MESSAGE)
    model, tokenizer = export.model, export.tokenizer
    generator = torch.Generator(device=args.device).manual_seed(args.seed)

    if args.reconstruct is None and args.plot is None:  # prior samples
        n = args.n or 10
        z = model.sample_prior(n, generator=generator) if model.latent_dim > 0 else None  # (n, Z)
        for text in decode_texts(model, tokenizer, z, sentence_decoding(args, "sample"), count=n, generator=generator):
            print(text)
        return

    require_latent(model, "--reconstruct" if args.reconstruct is not None else "--plot")
    sentences = read_sentences(args.reconstruct or args.data)[: args.n]
    encoded = encode_texts(model, tokenizer, [s.text for s in sentences])
    if args.reconstruct is not None:
        _note_unknown(encoded.tokens, encoded.unknown, encoded.truncated)
        decoded = decode_texts(model, tokenizer, encoded.mu, sentence_decoding(args, "greedy"), generator=generator)
        for sentence, text in zip(sentences, decoded, strict=True):
            print(f"{sentence.text}\t{text}")
        return

    labels = [_label(s, args.label_key) for s in sentences]
    if all(label is None for label in labels):
        keys = sorted(({"label"} if any(s.label is not None for s in sentences) else set())
                      | {f"attributes.{k}" for s in sentences for k in s.attributes})
        parser.error(f"no sentence of {args.data} has {args.label_key}; available: {', '.join(keys) or 'none'}")
    labels = [label if label is not None else "(none)" for label in labels]
    projection = project_2d(encoded.mu)
    title = (f"{type(model).__name__} posterior means, PCA\n{args.data.name}: {len(sentences):,} sentences "
             f"by {args.label_key}")
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot_projection(projection, labels, args.plot, title=title)
    print(f"wrote {args.plot} ({len(sentences):,} sentences, {len(set(labels))} {args.label_key} values)")



def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
