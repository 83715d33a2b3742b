"""What the textvae tools share: one-line errors, checked argument types and their bounds, the flags several tools
take (--model, --seed, --device, --cache-dir, the decoding options) and the checks of their values, each written
once here, export loading, memory checks, progress on long work, safe output, the main loop. (The parser class
itself, :class:`tools.Parser`, needs no torch and lives in ``tools/__init__.py``.)

Every user mistake ends as one line ``textvae-X: error: ...`` with exit code 2, never a traceback;
counted data warnings print as ``textvae-X: warning: ...`` after a successful run; Ctrl-C ends a tool with
``textvae-X: interrupted`` and exit code 130, leaving no half-written output file.

Every numeric flag has its range checked when the command line is parsed, stated in its --help. The
bounds below are written once, here: generous for any real use, and small enough that no value can
overflow, allocate without end or run for days in silence. What only the model can tell (its vocabulary)
is checked once it is loaded, by :func:`check_memory`, before any work starts.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import torch

from textvae.data.datasets import check_label_key, label_under, load_records
from textvae.data.records import (
    DataError,
    DataWarning,
    Sentence,
    detect_kind,
    iter_stream_lines,
    iter_text_lines,
    parse_json_line,
    read_jsonl,
)
from textvae.decoding import MAX_TEMPERATURE, MIN_TEMPERATURE, Decoding, Method, decoding_bytes
from textvae.dialogue import default_method
from textvae.export import Export, check_device, load_export
from textvae.models import DialogueModel
from tools import Parser, print_warning, restore_interrupt

# --------------------------------------------------------------------------------------------- bounds

MAX_PRIOR_SCALE = 100.0  # --prior-scale (a z temperature); the frontier sweeps 0.25 to 2
MAX_SAMPLES = 1_000_000  # sentences one run generates: textvae-sample -n, textvae-eval --prior-samples
MAX_RESPONSES = 1_000  # responses per context or turn: textvae-respond -n, textvae-eval --responses
MAX_TOKENS = 1_000  # tokens of a generated text (--max-len) or of a turn read (--max-turn-len)
MAX_BEAM = 256  # beam width (the literature decodes with 5 to 10)
MAX_STEPS = 10_000  # homotopy points between the two ends
MAX_IMPORTANCE_SAMPLES = 100_000  # textvae-eval --samples, 200 times He et al.'s 500
MAX_MI_GROUP = 10_000  # sentences per aggregate posterior of the MI; its cost grows with the square
MAX_SVI_STEPS = 10_000  # semi-amortised refinement steps per batch
MAX_BATCH = 65_536  # contexts or sentences per batch
MAX_CONTEXT = 1_000  # context turns a dialogue model reads
MAX_EPOCHS = 10_000  # act tagger training passes
MAX_SEED = 2**63 - 1  # what torch's generators take (and numpy's, folded into 64 bits) without overflowing
CHUNK = 256  # sequences decoded together: textvae.latent.decode_texts' chunk, what memory holds at once


def _progress_delay() -> float:
    """``$TEXTVAE_PROGRESS_DELAY`` (seconds, default 2): how long work runs before its progress line shows."""
    try:
        return max(0.0, float(os.environ.get("TEXTVAE_PROGRESS_DELAY", "2")))
    except ValueError:
        return 2.0


PROGRESS_DELAY = _progress_delay()  # seconds of work before a progress line shows: shorter runs stay silent


def parser_from_doc(doc: str) -> Parser:
    """A parser named and described by a tool's module docstring (``textvae-X: what it does.``)."""
    summary, _, rest = doc.partition("\n")
    prog, _, what = summary.partition(": ")
    return Parser(prog=prog, description=what[:1].upper() + what[1:] + "\n" + rest,
                  formatter_class=argparse.RawDescriptionHelpFormatter)


def span(minimum: int, maximum: int | None) -> str:
    """A count's range as --help and the errors state it: "1 to 1,000", or "at least 1"."""
    return f"{minimum:,} to {maximum:,}" if maximum is not None else f"at least {minimum:,}"


def count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argument type for a whole number in [minimum, maximum] (no maximum: unbounded, for counts that
    only ever cut work short, e.g. --max-sentences)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # "1e20", "2.5", "ten", or more digits than int() reads
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            shown = f"{value:,}" if value is not None and len(text) < 40 else repr(text[:40])
            raise argparse.ArgumentTypeError(f"must be a whole number, {span(minimum, maximum)}, got {shown}")
        return value
    return parse


def number(low: float, high: float, *, include_low: bool) -> Callable[[str], float]:
    """An argument type for a finite, normal (not subnormal) float in [low, high] or (low, high]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
        inside = (value >= low if include_low else value > low) and value <= high  # NaN is never inside
        if not inside or not math.isfinite(value) or (value != 0 and abs(value) < sys.float_info.min):
            raise argparse.ArgumentTypeError(f"must be in {'[' if include_low else '('}{low:g}, {high:g}], got {text[:40]}")
        return value
    return parse


def device(text: str) -> str:
    """An argument type for --device: a device this machine has, named in the error otherwise."""
    try:
        check_device(text, instead="--device cpu")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", type=device, default=default,
                        help=f"torch device: cpu, cuda or cuda:N (default here: {default}, as cuda when a GPU is "
                             "found, else cpu)")


def add_seed_argument(parser: argparse.ArgumentParser, what: str | None = None, *, help: str | None = None) -> None:
    """--seed S, 0 to 2**63-1 (default 0): the seed of ``what``, or with the whole ``help`` given."""
    parser.add_argument("--seed", type=count(0, MAX_SEED), default=0, metavar="S",
                        help=help or f"seed of {what}, 0 to 2**63-1 (default 0)")


def add_model_argument(parser: argparse.ArgumentParser, what: str = "model") -> None:
    """--model DIR, required: the export folder of ``what`` (e.g. "dialogue model")."""
    parser.add_argument("--model", required=True, type=Path, metavar="DIR", help=f"{what} export folder")


def add_cache_argument(parser: argparse.ArgumentParser) -> None:
    """--cache-dir DIR: where a prepared split is cached as Arrow files, as textvae-train caches it."""
    parser.add_argument("--cache-dir", type=Path, metavar="DIR",
                        help="dataset cache (default: .cache next to the data file, shared with textvae-train)")


def require_label_key(parser: argparse.ArgumentParser, key: str | None) -> None:
    """A one-line error, before any work, for a --label-key that names no sentence label: not ``label``, nor
    ``attributes.NAME``."""
    if key is None:
        return
    try:
        check_label_key(key)
    except DataError:
        parser.error(f"--label-key must be 'label' or 'attributes.NAME', got {key!r}")


def name_to_id(parser: argparse.ArgumentParser, flag: str, name: str | None, lookup: Callable[[str], int]) -> int | None:
    """The id ``lookup`` gives the NAME of ``flag`` (a label, a dialog act, a topic of the model; None when the flag
    is not given); its ValueError, an unknown name or a model without such names, as a one-line error."""
    if name is None:
        return None
    try:
        return lookup(name)
    except ValueError as err:
        parser.error(f"{flag}: {err}")


# --------------------------------------------------------------------------------------------- memory


def device_memory(device_name: str) -> int:
    """Bytes of memory the work on ``device_name`` can use at most: the GPU's, or this machine's RAM."""
    checked = torch.device(device_name)
    if checked.type == "cuda":
        return torch.cuda.get_device_properties(checked.index or 0).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): do not guess, do not refuse
        return 2**63


def _size(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB" if size >= 2**30 else f"{size / 2**20:,.1f} MiB"


def check_memory(parser: argparse.ArgumentParser, needed: int, device_name: str, *, what: str, fix: str) -> None:
    """A one-line error, before the work starts, when ``needed`` bytes (a generous estimate of its peak)
    exceed the memory of the device: otherwise the run would allocate until the machine swaps or kills it."""
    available = device_memory(device_name)
    if needed > available:
        where = "the GPU's" if torch.device(device_name).type == "cuda" else "this machine's"
        parser.error(f"{what} would need about {_size(needed)} of memory, more than {where} {_size(available)}; {fix}")


def check_decoding_memory(parser: argparse.ArgumentParser, rows: int, decoding: Decoding, vocab_size: int,
                          device_name: str, *, fix: str, extra: int = 0) -> None:
    """:func:`check_memory` for ``rows`` sequences decoded together (each beam a row), plus ``extra`` bytes."""
    needed = decoding_bytes(rows, decoding, vocab_size) + extra
    beam = f" with {decoding.beam_size} beams each" if decoding.method == "beam" else ""
    check_memory(parser, needed, device_name, fix=fix,
                 what=f"decoding {rows:,} sequences{beam} of up to {decoding.max_len:,} tokens at once over a "
                      f"vocabulary of {vocab_size:,}")


# ------------------------------------------------------------------------------------------- progress


class Progress:
    """A progress line on stderr for long work, e.g. ``textvae-eval: 3,200 of 10,000 sentences (32%), 41 s``.

    Shown only when stderr is a terminal and only once the work has taken PROGRESS_DELAY seconds, so short
    runs and redirected output stay as they were; redrawn in place (a background thread keeps the seconds
    going between updates) and erased when the work ends, however it ends. ``total`` None: no count, only
    the time spent. Call the object with the number of items done (and the total, where the work tells it as it
    goes: the object is a ``progress(done, total)`` callback of the library)."""

    def __init__(self, prog: str, what: str, total: int | None = None, *, stream: TextIO | None = None,
                 enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.prog, self.what, self.total = prog, what, total
        self.enabled = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.shown = False
        self._start = time.monotonic()
        self._last = -math.inf  # when the line was last drawn: never yet
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        with self._lock:
            if self.shown:
                self.stream.write("\r\x1b[K")  # erase the line: results and errors start on a clean one
                self.stream.flush()

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.done = done
        if self.enabled and time.monotonic() - self._last >= 0.2:
            self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw()

    def _draw(self) -> None:
        now = time.monotonic()
        elapsed = now - self._start
        if elapsed < PROGRESS_DELAY:
            return
        state, left = self.what, ""
        if self.total:
            state = f"{self.done:,} of {self.total:,} {self.what} ({self.done / self.total:.0%})"
            if 0 < self.done < self.total:
                left = f", about {elapsed * (self.total - self.done) / self.done:.0f} s left"
        with self._lock:
            if self._stop.is_set():
                return
            self.stream.write(f"\r\x1b[K{self.prog}: {state}, {elapsed:.0f} s{left} (Ctrl-C stops)")
            self.stream.flush()
            self.shown, self._last = True, now


# ---------------------------------------------------------------------------------------------- output


def printable(text: str) -> str:
    """``text`` safe for one line of a terminal: control and format characters (a newline, a tab, an ANSI
    escape that would recolour or move the cursor, a bidirectional override) and lone surrogates (an
    undecodable byte of a command line, which UTF-8 output cannot encode) written as Python escapes, e.g.
    ``\\n``, ``\\x1b``, ``\\u202e``, ``\\udcff``; everything else as it is."""
    if text.isprintable():
        return text
    return "".join(ch if ch == " " or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp")
                   else ascii(ch)[1:-1] for ch in text)


def note_cut(prog: str, cut: int, limit: int | None) -> None:
    """The note every tool prints when input sentences were cut to the model's longest input."""
    if cut:
        print(f"{prog}: note: {cut} sentence{' was' if cut == 1 else 's were'} cut to the model's longest input "
              f"({limit} tokens)", file=sys.stderr)


def note_unknown(prog: str, tokens: int, unknown: int, where: str = "") -> None:
    """The note every tool prints when input tokens are not in the model's vocabulary."""
    if unknown:
        print(f"{prog}: note: {unknown} of {tokens} tokens{where} are not in the model's vocabulary; read as <unk>",
              file=sys.stderr)


def output_file(parser: argparse.ArgumentParser, flag: str, path: Path | None, example: str) -> None:
    """A one-line error, before any work, when an output path names a folder (a file is written there)."""
    if path is not None and path.is_dir():
        parser.error(f"{flag} {path} is a folder; give a file name, e.g. {path / example}")


def text_source(parser: argparse.ArgumentParser, flag: str, path: Path | None) -> None:
    """A one-line error for an input path that cannot be a text file: missing, or a folder (None: not given)."""
    if path is None:
        return
    if path.is_dir():
        parser.error(f"{flag} {path} is a folder; give a file")
    if not path.exists():
        parser.error(f"{flag} {path}: no such file; check the path")


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """:func:`~textvae.data.records.iter_text_lines` that also reads what is not a regular file but can be read
    once, as a stream: /dev/null (no lines), /dev/stdin, a named pipe."""
    if path.is_file() or not path.exists() or path.is_dir():
        yield from iter_text_lines(path)  # its errors name what is wrong
        return
    with path.open("rb") as f:
        yield from iter_stream_lines(f, str(path))


def load_split(prog: str, path: Path, *, cache_dir: Path | None = None, kind: str | None = None):
    """:func:`~textvae.data.datasets.load_records`, with a progress line while a first cache build parses the file
    (minutes at millions of records)."""
    with Progress(prog, f"MiB of {path.name} parsed into the cache") as progress:
        return load_records(path, cache_dir=cache_dir, kind=kind,
                            progress=lambda done, total: progress(done >> 20, total >> 20))


# ------------------------------------------------------------------------------------------------ models


def load_model(parser: argparse.ArgumentParser, directory: Path, device: str) -> Export:
    """Load an export; a missing, corrupt or mismatched one is a one-line error."""
    try:
        return load_export(directory, device=device)
    except DataError as err:
        parser.error(str(err))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError) as err:
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
    """Parse ``argv`` and run ``body``; user mistakes become one-line errors, data warnings are reported after,
    Ctrl-C ends the run with one line and exit code 130 (the shell's code for SIGINT), and a reader that
    stops reading our output (``| head``) ends it quietly with 141 (SIGPIPE's)."""
    restore_interrupt()
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            body(parser, args)
        except KeyboardInterrupt:
            sys.stdout.flush()
            parser.exit(130, f"\n{parser.prog}: interrupted\n" if getattr(sys.stderr, "isatty", lambda: False)()
                        else f"{parser.prog}: interrupted\n")  # on a terminal, off the ^C the shell echoed
        except BrokenPipeError:  # the reader of our output stopped early (| head): nothing left to say
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush cannot fail
            except (OSError, ValueError):  # a stdout without a file descriptor
                pass
            sys.exit(141)  # as the shell reports a writer killed by SIGPIPE
        except (DataError, ValueError) as err:  # the error says what to fix; its warnings would only repeat it
            parser.error(str(err))
        except OSError as err:  # a missing or unreadable file, a folder we may not write
            where = f"{err.filename}: " if err.filename else ""
            parser.error(f"{where}{err.strerror or err}")
    for w in caught:
        if issubclass(w.category, DataWarning):
            print_warning(parser.prog, w.message)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return 0


# -------------------------------------------------------------------------------------------- decoding

TEMPERATURE_HELP = f"in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}]"


def add_decoding_arguments(parser: argparse.ArgumentParser, *, default: str | None, help: str) -> None:
    """The decoding options of the sampling tools: method, temperature, top-k, top-p, beam, length; their
    defaults are :class:`~textvae.decoding.Decoding`'s."""
    decoding = parser.add_argument_group("decoding")
    decoding.add_argument("--decode", choices=("greedy", "beam", "sample"), default=default, help=help)
    decoding.add_argument("--temperature", type=number(MIN_TEMPERATURE, MAX_TEMPERATURE, include_low=True),
                          default=Decoding.temperature, metavar="T",
                          help=f"sampling temperature, {TEMPERATURE_HELP} (default {Decoding.temperature:g})")
    decoding.add_argument("--top-k", type=count(0), default=Decoding.top_k, metavar="K",
                          help="sample among the K most likely, at least 0 (0, or more than the vocabulary: all)")
    decoding.add_argument("--top-p", type=number(0.0, 1.0, include_low=False), default=Decoding.top_p, metavar="P",
                          help="nucleus sampling: the smallest set of tokens holding probability P, in (0, 1] "
                               f"(default {Decoding.top_p:g})")
    decoding.add_argument("--beam", type=count(1, MAX_BEAM), default=Decoding.beam_size, metavar="B",
                          help=f"beam size, {span(1, MAX_BEAM)} (default {Decoding.beam_size})")
    decoding.add_argument("--max-len", type=count(1, MAX_TOKENS), default=Decoding.max_len, metavar="L",
                          help=f"longest output in tokens, EOS included, {span(1, MAX_TOKENS)} "
                               f"(default {Decoding.max_len})")


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
    decoding.add_argument("--temperature", type=number(MIN_TEMPERATURE, MAX_TEMPERATURE, include_low=True),
                          metavar="T", help=f"sampling temperature, {TEMPERATURE_HELP} (default "
                                            f"{Decoding.temperature:g}; implies --decode sample)")
    decoding.add_argument("--top-k", type=count(0), metavar="K",
                          help="sample among the K most likely, at least 0 (0, or more than the vocabulary: all; "
                               "implies --decode sample)")
    decoding.add_argument("--top-p", type=number(0.0, 1.0, include_low=False), metavar="P",
                          help=f"nucleus sampling with mass P in (0, 1] (default {Decoding.top_p:g}; "
                               "implies --decode sample)")
    decoding.add_argument("--beam", type=count(1, MAX_BEAM), metavar="B",
                          help=f"beam size, {span(1, MAX_BEAM)} (implies --decode beam; default {Decoding.beam_size})")
    decoding.add_argument("--max-len", type=count(1, MAX_TOKENS), default=Decoding.max_len, metavar="L",
                          help=f"longest response in tokens, EOS included, {span(1, MAX_TOKENS)} "
                               f"(default {Decoding.max_len})")
    decoding.add_argument("--allow-unk", action="store_true",
                          help="let responses contain <unk> (default: never generated)")
    decoding.add_argument("--prior-scale", type=number(0.0, MAX_PRIOR_SCALE, include_low=False), metavar="S",
                          help="latent models: draw z with the prior network's standard deviation times S, in "
                               f"(0, {MAX_PRIOR_SCALE:g}] (a z temperature; default 1)")


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
    if args.prior_scale is not None and not model.latent_dim:
        parser.error(f"--prior-scale widens the prior z is drawn from; {type(model).__name__} has no z")
    beam = {"beam_size": args.beam} if args.beam is not None else {}
    scale = {"prior_scale": args.prior_scale} if args.prior_scale is not None else {}
    return Decoding(method, max_len=args.max_len, allow_unk=args.allow_unk, **sampling, **beam, **scale)


# ---------------------------------------------------------------------------------------------------
# Sentences given to the sentence tools


def nonempty_sentence(text: str) -> str:
    """An argparse type: a sentence given on the command line, refused when empty or blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty sentence")
    return text


def _is_jsonl(path: Path) -> bool:
    """A prepared JSONL file (its first line a JSON object with "text" or "turns"), not plain sentences."""
    for number, line in iter_text_lines(path):
        try:
            obj = parse_json_line(line, path, number)
        except DataError:  # not JSON (or JSON nested deeper than any record): plain text
            return False
        return isinstance(obj, dict) and ("text" in obj or "turns" in obj)
    return False


def read_sentences(path: Path) -> list[Sentence]:
    """Sentences from a prepared JSONL file, or from a text file with one sentence a line (what is not a
    regular file, e.g. /dev/stdin or a pipe, can be read only once: as one sentence a line)."""
    if path.exists() and not path.is_file() and not path.is_dir():
        sentences = [Sentence(text) for _, text in text_lines(path)]
    elif _is_jsonl(path):
        if detect_kind(path) != "sentences":
            raise DataError(f"{path}: holds dialogues; give sentences (one a line, or a prepared sentence JSONL)")
        sentences = list(read_jsonl(path, "sentences"))
    else:
        sentences = [Sentence(text) for _, text in iter_text_lines(path, what="line")]
    if not sentences:
        raise DataError(f"{path}: no sentences in the file")
    return sentences


def sentence_labels(parser: argparse.ArgumentParser, sentences: list[Sentence], key: str,
                    source: Path) -> list[str | None]:
    """Each sentence's label under ``key`` (``label`` or ``attributes.NAME``); when none has one, a one-line
    error that lists the keys the sentences do have."""
    labels = [label_under(key, s.label, s.attributes) for s in sentences]
    if all(label is None for label in labels):
        keys = sorted(({"label"} if any(s.label is not None for s in sentences) else set())
                      | {f"attributes.{k}" for s in sentences for k in s.attributes})
        parser.error(f"no sentence of {source} has {key}; available: {', '.join(keys) or 'none'}")
    return labels
