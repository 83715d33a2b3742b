"""What the textvae tools share: one-line errors, checked argument types, export loading, the main loop.

Every user mistake ends as one line ``textvae-X: error: ...`` with exit code 2, never a traceback;
counted data warnings print as ``textvae-X: warning: ...`` after a successful run.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from textvae.data.records import DataError, DataWarning
from textvae.decoding import Decoding, Method
from textvae.dialogue import default_method
from textvae.export import Export, load_export
from textvae.models import DialogueModel


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")  # one line, never a traceback


def parser_from_doc(doc: str) -> Parser:
    """A parser named and described by a tool's module docstring (``textvae-X: what it does.``)."""
    summary, _, rest = doc.partition("\n")
    prog, _, what = summary.partition(": ")
    return Parser(prog=prog, description=what[:1].upper() + what[1:] + "\n" + rest,
                  formatter_class=argparse.RawDescriptionHelpFormatter)


def count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def number(low: float, high: float, *, include_low: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not ((value >= low if include_low else value > low) and value <= high):
            raise argparse.ArgumentTypeError(f"must be in {'[' if include_low else '('}{low}, {high}], got {text}")
        return value
    return parse


def load_model(parser: argparse.ArgumentParser, directory: Path, device: str) -> Export:
    """Load an export; a missing, corrupt or mismatched one is a one-line error."""
    try:
        return load_export(directory, device=device)
    except DataError as err:
        parser.error(str(err))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        parser.error(f"{directory}: cannot load the model export ({type(err).__name__}: {err}); re-export it")


def is_dialogue(export: Export) -> bool:
    """A dialogue response model, as its export says (a version-1 export that did not say: as its model is)."""
    return export.kind == "dialogues"


def load_sentence_model(parser: argparse.ArgumentParser, directory: Path, device: str, *,
                        dialogue_message: str) -> Export:
    """Load an export for a sentence tool; a dialogue model gets ``dialogue_message``."""
    export = load_model(parser, directory, device)
    if is_dialogue(export):
        parser.error(f"{directory} is a dialogue model: {dialogue_message}")
    return export


def load_dialogue_model(parser: argparse.ArgumentParser, directory: Path, device: str, *,
                        sentence_message: str) -> Export:
    """Load an export for a dialogue tool; a sentence model gets ``sentence_message``."""
    export = load_model(parser, directory, device)
    if not is_dialogue(export):
        parser.error(f"{directory} is a sentence model: {sentence_message}")
    require_dialogue_contract(parser, directory, export)
    return export


def require_dialogue_contract(parser: argparse.ArgumentParser, directory: Path, export: Export) -> None:
    """A model exported as a dialogue model must implement :class:`~textvae.models.DialogueModel`."""
    if not isinstance(export.model, DialogueModel):
        parser.error(f"{directory}: its {type(export.model).__name__} does not offer response_condition and "
                     "num_acts (the DialogueModel contract); re-export it with this textvae")


def run(parser: argparse.ArgumentParser, body: Callable[[argparse.ArgumentParser, argparse.Namespace], None],
        argv: list[str] | None) -> int:
    """Parse ``argv`` and run ``body``; user mistakes become one-line errors, data warnings are reported after."""
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            body(parser, args)
        except (DataError, ValueError) as err:  # the error says what to fix; its warnings would only repeat it
            parser.error(str(err))
        except OSError as err:  # a missing or unreadable file, a folder we may not write
            where = f"{err.filename}: " if err.filename else ""
            parser.error(f"{where}{err.strerror or err}")
    for w in caught:
        if issubclass(w.category, DataWarning):
            print(f"{parser.prog}: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return 0


def add_decoding_arguments(parser: argparse.ArgumentParser, *, default: str | None, help: str) -> None:
    """The decoding options of the sampling tools: method, temperature, top-k, top-p, beam, length; their
    defaults are :class:`~textvae.decoding.Decoding`'s."""
    decoding = parser.add_argument_group("decoding")
    decoding.add_argument("--decode", choices=("greedy", "beam", "sample"), default=default, help=help)
    decoding.add_argument("--temperature", type=number(0.0, float("inf"), include_low=False),
                          default=Decoding.temperature, metavar="T",
                          help=f"sampling temperature, > 0 (default {Decoding.temperature:g})")
    decoding.add_argument("--top-k", type=count(0), default=Decoding.top_k, metavar="K",
                          help="sample among the K most likely (0: all)")
    decoding.add_argument("--top-p", type=number(0.0, 1.0, include_low=False), default=Decoding.top_p, metavar="P",
                          help="nucleus sampling: the smallest set of tokens holding probability P, in (0, 1] "
                               f"(default {Decoding.top_p:g})")
    decoding.add_argument("--beam", type=count(1), default=Decoding.beam_size, metavar="B",
                          help=f"beam size (default {Decoding.beam_size})")
    decoding.add_argument("--max-len", type=count(1), default=Decoding.max_len, metavar="L",
                          help=f"longest output in tokens, EOS included (default {Decoding.max_len})")


def sentence_decoding(args: argparse.Namespace, default: Method) -> Decoding:
    """The :class:`~textvae.decoding.Decoding` that :func:`add_decoding_arguments`' flags ask for (``--decode``
    unset: ``default``). Sentence models may say <unk>, as their data does."""
    return Decoding(args.decode or default, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    beam_size=args.beam, max_len=args.max_len, allow_unk=True)


def add_response_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """The decoding options of the dialogue tools. Unset, the model's default decoding applies
    (:func:`textvae.dialogue.default_method`); ``--beam`` implies beam search and a sampling option sampling.
    Their defaults are :class:`~textvae.decoding.Decoding`'s."""
    decoding = parser.add_argument_group("decoding of responses (default: greedy per sampled z for latent models, "
                                         "sampling at temperature 1 for HRED)")
    decoding.add_argument("--decode", choices=("greedy", "beam", "sample"),
                          help="decoding method (default: implied by the options below, else the model's default)")
    decoding.add_argument("--temperature", type=number(0.0, float("inf"), include_low=False), metavar="T",
                          help=f"sampling temperature, > 0 (default {Decoding.temperature:g}; implies --decode sample)")
    decoding.add_argument("--top-k", type=count(0), metavar="K",
                          help="sample among the K most likely (0: all; implies --decode sample)")
    decoding.add_argument("--top-p", type=number(0.0, 1.0, include_low=False), metavar="P",
                          help=f"nucleus sampling with mass P in (0, 1] (default {Decoding.top_p:g}; "
                               "implies --decode sample)")
    decoding.add_argument("--beam", type=count(1), metavar="B",
                          help=f"beam size (implies --decode beam; default {Decoding.beam_size})")
    decoding.add_argument("--max-len", type=count(1), default=Decoding.max_len, metavar="L",
                          help=f"longest response in tokens, EOS included (default {Decoding.max_len})")
    decoding.add_argument("--allow-unk", action="store_true",
                          help="let responses contain <unk> (default: never generated)")


def response_decoding(parser: argparse.ArgumentParser, args: argparse.Namespace, model: DialogueModel) -> Decoding:
    """The :class:`~textvae.decoding.Decoding` for :func:`textvae.dialogue.generate_responses` that the flags
    of :func:`add_response_decoding_arguments` ask for; flags that belong to different methods are an error."""
    sampling = {name: value for name, value in (("temperature", args.temperature), ("top_k", args.top_k),
                                                ("top_p", args.top_p)) if value is not None}
    flags = [f"--{name.replace('_', '-')}" for name in sampling]
    method = args.decode
    if method is None:
        if args.beam is not None and sampling:
            parser.error(f"--beam and {flags[0]} belong to different decoding methods (beam search, sampling): "
                         "give one")
        method = "beam" if args.beam is not None else "sample" if sampling else default_method(model)
    elif sampling and method != "sample":
        parser.error(f"{flags[0]} applies to sampling, not to --decode {method}")
    elif args.beam is not None and method != "beam":
        parser.error(f"--beam applies to beam search, not to --decode {method}")
    beam = {"beam_size": args.beam} if args.beam is not None else {}
    return Decoding(method, max_len=args.max_len, allow_unk=args.allow_unk, **sampling, **beam)
