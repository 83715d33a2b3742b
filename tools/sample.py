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
import warnings
from pathlib import Path

import torch

from textvae.data.records import DataError, DataWarning, Sentence, detect_kind, iter_text_lines, read_jsonl
from textvae.export import Export, load_export
from textvae.latent import decode_latents, encode_texts, plot_projection, project_2d, require_latent

PROG = "textvae-sample"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message}\n")  # one line, never a traceback


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def _number(low: float, high: float, *, include_low: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not ((value >= low if include_low else value > low) and value <= high):
            raise argparse.ArgumentTypeError(f"must be in {'[' if include_low else '('}{low}, {high}], got {text}")
        return value
    return parse


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _parser() -> argparse.ArgumentParser:
    summary, _, rest = (__doc__ or f"{PROG}: sample\n").partition("\n")
    parser = _Parser(prog=PROG, description=_capitalized(summary.partition(": ")[2]) + "\n" + rest,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, metavar="DIR", help="model export folder")
    parser.add_argument("-n", type=_count(1), metavar="N",
                        help="prior samples to print (default 10); with --reconstruct or --plot: use the first N sentences")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--reconstruct", type=Path, metavar="FILE",
                      help="reconstruct each sentence of FILE (one a line, or a prepared JSONL) from its posterior mean")
    mode.add_argument("--plot", type=Path, metavar="OUT.png", help="plot a 2-D projection of the posterior means of --data")
    parser.add_argument("--data", type=Path, metavar="FILE", help="with --plot: the sentences (prepared JSONL, or one a line)")
    parser.add_argument("--label-key", default="label", metavar="KEY",
                        help="with --plot: colour by 'label' or 'attributes.NAME', e.g. attributes.topic (default label)")
    decoding = parser.add_argument_group("decoding")
    decoding.add_argument("--decode", choices=("greedy", "beam", "sample"), default=None,
                          help="decoding method (default: sample for prior samples, greedy for reconstructions)")
    decoding.add_argument("--temperature", type=_number(0.0, float("inf"), include_low=False), default=1.0, metavar="T",
                          help="sampling temperature, > 0 (default 1)")
    decoding.add_argument("--top-k", type=_count(0), default=0, metavar="K", help="sample among the K most likely (0: all)")
    decoding.add_argument("--top-p", type=_number(0.0, 1.0, include_low=False), default=1.0, metavar="P",
                          help="nucleus sampling: the smallest set of tokens holding probability P, in (0, 1] (default 1)")
    decoding.add_argument("--beam", type=_count(1), default=5, metavar="B", help="beam size (default 5)")
    decoding.add_argument("--max-len", type=_count(1), default=50, metavar="L",
                          help="longest output in tokens, EOS included (default 50)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the prior draws and sampling (default 0)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda if available, else cpu)")
    return parser


def _load(parser: argparse.ArgumentParser, directory: Path, device: str) -> Export:
    try:
        export = load_export(directory, device=device)
    except DataError as err:
        parser.error(str(err))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        parser.error(f"{directory}: cannot load the model export ({type(err).__name__}: {err}); re-export it")
    if export.info.get("kind") == "dialogues":
        parser.error(f"{directory} is a dialogue model: its sampler is textvae-respond, which arrives with the "
                     "dialogue issue")
    return export


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


def _options(args: argparse.Namespace, generator: torch.Generator) -> dict:
    return {"max_len": args.max_len, "beam_size": args.beam, "temperature": args.temperature, "top_k": args.top_k,
            "top_p": args.top_p, "generator": generator}


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.data is not None and args.plot is None:
        parser.error("--data goes with --plot (for reconstructions, give the file to --reconstruct)")
    if args.plot is not None and args.data is None:
        parser.error("--plot needs --data FILE: the sentences whose posterior means to plot")
    if args.label_key != "label" and not (args.label_key.startswith("attributes.") and len(args.label_key) > 11):
        parser.error(f"--label-key must be 'label' or 'attributes.NAME', got {args.label_key!r}")
    export = _load(parser, args.model, args.device)
    model, tokenizer = export.model, export.tokenizer
    generator = torch.Generator(device=args.device).manual_seed(args.seed)

    if args.reconstruct is None and args.plot is None:  # prior samples
        n = args.n or 10
        z = model.sample_prior(n, generator=generator) if model.latent_dim > 0 else None  # (n, Z)
        for text in decode_latents(model, tokenizer, z, args.decode or "sample", count=n, **_options(args, generator)):
            print(text)
        return

    require_latent(model, "--reconstruct" if args.reconstruct is not None else "--plot")
    sentences = read_sentences(args.reconstruct or args.data)[: args.n]
    encoded = encode_texts(model, tokenizer, [s.text for s in sentences])
    if args.reconstruct is not None:
        _note_unknown(encoded.tokens, encoded.unknown, encoded.truncated)
        decoded = decode_latents(model, tokenizer, encoded.mu, args.decode or "greedy", **_options(args, generator))
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


def _report(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        if issubclass(w.category, DataWarning):
            print(f"{PROG}: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            _run(parser, args)
        except (DataError, ValueError) as err:  # the error says what to fix; its warnings would only repeat it
            parser.error(str(err))
        except OSError as err:  # a missing or unreadable file, a folder we may not write
            where = f"{err.filename}: " if err.filename else ""
            parser.error(f"{where}{err.strerror or err}")
    _report(caught)
    return 0


if __name__ == "__main__":
    sys.exit(main())
