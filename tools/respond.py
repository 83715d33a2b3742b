"""textvae-respond: sample responses from a dialogue model, in a terminal chat or for a file of contexts.

Interactive (no --input): type a turn and get N numbered responses; the first becomes the system's turn in
the dialogue history ([PICK k] makes it response k instead). [DONE] starts a new dialogue, [EXIT] or end of
input (Ctrl-D) quits, as in ParlAI. [HISTORY] shows the dialogue so far; with a kgCVAE, [ACT name]
conditions the next responses on a dialog act and [ACT] lets the model predict it again. Ctrl-C while the
responses are generated cancels that turn (it leaves the history) and returns to the prompt; Ctrl-C at the
prompt quits. Control characters in a response (an ANSI escape) are shown escaped (\x1b).

Batch: --input contexts.jsonl --output responses.jsonl, one context a line, either
{"turns": [{"speaker": "A", "text": "..."}, ...]} or a plain list of strings (speakers alternate), with an
optional "act" (kgCVAE: the act to respond with), "topic" (a CVAE/kgCVAE trained with topics: the
dialogue's topic, as in a prepared corpus), "callers" (a CVAE/kgCVAE trained with speaker profiles,
e.g. on Switchboard: {"A": {"age": 47, "education": 2, "sex": "MALE"}, "B": {...}}, the two speakers'
metadata; without it the callers are unknown) and "response" (a reference response, which
--z-source posterior needs). Each output line is {"responses": [...]}, plus "acts" for a kgCVAE and the
input's "id" when it has one. A bad line is an error naming the file and line. --input may also be a
stream such as /dev/stdin (/dev/null: no contexts, an error). The output is written whole or not at all:
an error or Ctrl-C (exit code 130) leaves no file, and no FILE.tmp beside it. With stderr a terminal, a
long run shows its progress there.

The responder is whoever did not speak the last turn. Turns longer than --max-turn-len tokens are cut,
with a warning saying how many tokens were dropped. Decoding: latent models (VHRED, CVAE, kgCVAE) decode
each sampled z greedily, HRED samples its words at temperature 1; --decode, --beam, --temperature,
--top-k and --top-p change that, and --prior-scale S draws a latent model's z with the prior network's
standard deviation times S. Responses never contain <unk> unless --allow-unk.

Examples:
  textvae-respond --model runs/synthetic_dialogue_quickstart/export -n 5
  textvae-respond --model runs/synthetic_dialogue_quickstart/export --act request --temperature 0.8
  textvae-respond --model runs/dailydialog_lite_hred/export --input contexts.jsonl --output responses.jsonl -n 10
  textvae-respond --model runs/dailydialog_lite_kgcvae_frontier/export --prior-scale 0.5 --temperature 0.5 -n 10
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple, TextIO

import torch

from textvae.data.batching import DialogueExample, batch_to, collate_dialogues
from textvae.data.datasets import DEFAULT_MAX_CONTEXT
from textvae.data.profiles import caller_profiles, example_profile
from textvae.data.records import DataError, DataWarning, atomic_output, parse_json_line
from textvae.data.tokenizers import UNK_ID
from textvae.decoding import Decoding
from textvae.dialogue import (
    describe_method,
    generate_responses,
    responder_floor,
)
from textvae.export import Export
from tools._cli import (
    MAX_BATCH,
    MAX_CONTEXT,
    MAX_RESPONSES,
    MAX_TOKENS,
    Progress,
    add_device_argument,
    add_model_argument,
    add_response_decoding_arguments,
    add_seed_argument,
    check_decoding_memory,
    count,
    load_dialogue_model,
    name_to_id,
    output_file,
    parser_from_doc,
    printable,
    response_decoding,
    run,
    span,
    text_lines,
    text_source,
)

PROG = "textvae-respond"
SENTENCE_MESSAGE = "textvae-respond answers with dialogue models; sample sentences with textvae-sample"
DEFAULT_TURN_LIMIT = 100  # tokens per turn when the export does not say how long its turns may be
COMMAND = re.compile(r"^\[([A-Z]+)(?:\s+(.*?))?\s*\]$")
COMMANDS = "[DONE] [EXIT] [HISTORY] [PICK k]"
ACT_COMMAND = "[ACT name]"  # kgCVAE only


def _parser() -> argparse.ArgumentParser:
    parser = parser_from_doc(__doc__)
    add_model_argument(parser, "dialogue model")
    parser.add_argument("-n", "--num-samples", type=count(1, MAX_RESPONSES), default=5, metavar="N",
                        help=f"responses per turn or context, {span(1, MAX_RESPONSES)} (default 5)")
    parser.add_argument("--act", metavar="NAME",
                        help="kgCVAE: respond with this dialog act (a name from the export; default: predicted)")
    parser.add_argument("--topic", metavar="NAME",
                        help="CVAE/kgCVAE trained with topics: the dialogue's topic (a name from the export; "
                             "default: none, read as an unknown topic)")
    parser.add_argument("--z-source", choices=("prior", "posterior"), default="prior",
                        help="draw z from the prior network (default) or the recognition network, which needs "
                             'the reference "response" of each --input line')
    parser.add_argument("--input", type=Path, metavar="FILE", help="batch mode: contexts, one JSON a line")
    parser.add_argument("--output", type=Path, metavar="FILE", help="batch mode: where to write the responses")
    parser.add_argument("--batch-size", type=count(1, MAX_BATCH), default=32, metavar="B",
                        help=f"batch mode: contexts per batch, {span(1, MAX_BATCH)}; N x B responses are decoded "
                             "together (default 32)")
    parser.add_argument("--max-context", type=count(1, MAX_CONTEXT), metavar="U",
                        help=f"context turns the model reads, {span(1, MAX_CONTEXT)} (default: the export's, else "
                             f"{DEFAULT_MAX_CONTEXT})")
    parser.add_argument("--max-turn-len", type=count(1, MAX_TOKENS), metavar="L",
                        help=f"longest turn in tokens, {span(1, MAX_TOKENS)}; longer ones are cut with a warning "
                             f"(default: the export's limit, else {DEFAULT_TURN_LIMIT})")
    add_seed_argument(parser, "the latents and sampling")
    add_device_argument(parser)
    add_response_decoding_arguments(parser)
    return parser


class Context(NamedTuple):
    turns: list[list[int]]  # token ids per turn, oldest first
    floor: list[int]  # 1 where the responder spoke
    response: list[int] | None  # reference response ids (for --z-source posterior)
    act: int | None  # forced act id (kgCVAE)
    topic: int | None  # topic id (models trained with topics), None: unknown
    profile: list[float] | None = None  # speaker profile features (models trained with them), None: unknown


@dataclass
class Responder:
    """The model and every option fixed for the session: contexts in, N (text, act name) responses out."""

    export: Export
    num_samples: int
    decoding: Decoding
    max_context: int
    max_turn_len: int
    z_source: str
    generator: torch.Generator
    device: str
    batch_size: int = 32

    @property
    def act_names(self) -> list[str]:
        names = self.export.acts
        return names if len(names) == self.export.model.num_acts else [str(i) for i in range(self.export.model.num_acts)]

    def act_id(self, name: str) -> int:
        """The id of act ``name``; ValueError with the known names otherwise (or if the model has no acts)."""
        model = self.export.model
        if not model.num_acts:
            raise ValueError(f"{type(model).__name__} is not conditioned on dialog acts (that is a kgCVAE); drop the act")
        if name not in self.act_names:
            raise ValueError(f"unknown act {name!r}; this model knows {', '.join(self.act_names)}")
        return self.act_names.index(name)

    @property
    def reads_topics(self) -> bool:
        return self.export.model.num_topics > 0

    @property
    def reads_profiles(self) -> bool:
        return self.export.model.profile_dim > 0

    def topic_id(self, name: str) -> int:
        """The id of topic ``name``; ValueError with the known names otherwise (or if the model reads none)."""
        if not self.reads_topics:
            raise ValueError(f"{type(self.export.model).__name__} was trained without topics; drop the topic")
        names = self.export.topics
        if name not in names:
            raise ValueError(f"unknown topic {name!r}; this model knows {', '.join(names)}")
        return names.index(name)

    def encode(self, text: str) -> tuple[list[int], int, int]:
        """Token ids of a turn cut to ``max_turn_len``, the number of tokens cut, and of unknown tokens kept."""
        ids = self.export.tokenizer.encode(text)
        cut = max(0, len(ids) - self.max_turn_len)
        ids = ids[: self.max_turn_len]
        return ids, cut, ids.count(UNK_ID)

    def respond(self, contexts: Sequence[Context], progress: Callable[[int], None] | None = None,
                ) -> list[list[tuple[str, str | None]]]:
        """N (text, act name or None) responses per context, in order; contexts with a forced act and those
        without go in separate batches, as the model takes one ``acts`` tensor per batch. ``progress`` is
        called after each batch with the number of contexts answered."""
        out: list[list[tuple[str, str | None]]] = [[] for _ in contexts]
        forced = [i for i, c in enumerate(contexts) if c.act is not None]
        free = [i for i, c in enumerate(contexts) if c.act is None]
        done = 0
        for group in (forced, free):
            for start in range(0, len(group), self.batch_size):
                indices = group[start:start + self.batch_size]
                for i, responses in zip(indices, self._batch([contexts[i] for i in indices]), strict=True):
                    out[i] = responses
                done += len(indices)
                if progress is not None:
                    progress(done)
        return out

    def _batch(self, contexts: Sequence[Context]) -> list[list[tuple[str, str | None]]]:
        examples = [DialogueExample(context=c.turns[-self.max_context:], context_floor=c.floor[-self.max_context:],
                                    response=c.response or [], act=c.act, emotion=None, topic=c.topic, index=i,
                                    profile=c.profile)
                    for i, c in enumerate(contexts)]
        batch = batch_to(collate_dialogues(examples), self.device)
        acts = batch.acts if contexts[0].act is not None else None
        result = generate_responses(self.export.model, batch, num_samples=self.num_samples, decoding=self.decoding,
                                    z_source=self.z_source, acts=acts, generator=self.generator)
        names = self.act_names
        return [[(self.export.tokenizer.decode(ids), names[result.acts[b][s]] if result.acts is not None else None)
                 for s, ids in enumerate(result.ids[b])] for b in range(len(contexts))]


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _numbered(responses: list[tuple[str, str | None]]) -> str:
    return "\n".join(f"  {k}. " + (f"[{act}] " if act is not None else "") + (printable(text) or "(empty response)")
                     for k, (text, act) in enumerate(responses, start=1))


def chat(responder: Responder, stdin: BinaryIO, stdout: TextIO, *, act: int | None, topic: int | None,
         prompt: bool) -> None:
    """The interactive session: read turns from ``stdin`` (bytes, so invalid UTF-8 is a message, not a crash)."""
    model = responder.export.model
    tokenizer = responder.export.tokenizer
    described = type(model).__name__ + (f", z {model.latent_dim}" if model.latent_dim else "")
    described += f", {model.num_acts} acts" if model.num_acts else ""
    described += f" (responding with act {responder.act_names[act]})" if act is not None else ""
    commands = f"{COMMANDS} {ACT_COMMAND}" if model.num_acts else COMMANDS
    n = responder.num_samples
    print(f"{described}: {n} response{'s' if n != 1 else ''} a turn, {describe_method(model, responder.decoding)}. "
          f"Type a turn; {commands}.", file=stdout, flush=True)
    history: list[tuple[list[int], int]] = []  # (ids, 1 if the system said it)
    last: list[list[int]] = []  # ids of the last responses, for [PICK k]
    while True:
        if prompt:
            stdout.write("you> ")
            stdout.flush()
        try:
            raw = stdin.readline()
        except KeyboardInterrupt:
            raw = b""
        if not raw:  # end of input: quit cleanly
            if prompt:
                stdout.write("\n")
            break
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            _say(f"that turn is not valid UTF-8 (byte {err.start}); type it again")
            continue
        command = COMMAND.match(text)
        if command:
            name, value = command.group(1), command.group(2)
            if name == "EXIT" and value is None:
                break
            if name == "DONE" and value is None:
                history, last = [], []
                print("-- new dialogue --", file=stdout, flush=True)
            elif name == "HISTORY" and value is None:
                lines = [f"  {'system' if floor else 'you'}: {printable(tokenizer.decode(ids))}"
                         for ids, floor in history]
                print("\n".join(lines) if lines else "  (empty: type a turn)", file=stdout, flush=True)
            elif name == "PICK":
                if not last:
                    _say("no responses to pick from yet; type a turn first")
                elif value is None or not value.isdigit() or not 1 <= int(value) <= len(last):
                    _say(f"[PICK k] takes a response number from 1 to {len(last)}")
                else:
                    history[-1] = (last[int(value) - 1], 1)
                    print(f"-- response {value} is the system's turn --", file=stdout, flush=True)
            elif name == "ACT":
                if value is None:
                    act = None
                    print("-- acts: predicted by the model --", file=stdout, flush=True)
                else:
                    try:
                        act = responder.act_id(value)
                        print(f"-- act: {value} --", file=stdout, flush=True)
                    except ValueError as err:
                        _say(str(err))
            else:
                _say(f"unknown command {text}; commands: {commands}")
            continue
        if not text:
            _say(f"empty turn: type some words ({commands})")
            continue
        ids, cut, unknown = responder.encode(text)
        if cut:
            _say(f"warning: the turn was cut to {responder.max_turn_len} tokens ({cut} tokens dropped)")
        if unknown:
            _say(f"note: {unknown} of {len(ids)} tokens are not in the model's vocabulary; read as <unk>")
        history.append((ids, 0))
        turns = history[-responder.max_context:]
        context = Context([t for t, _ in turns], [f for _, f in turns], None, act, topic)
        try:
            responses = responder.respond([context])[0]
        except KeyboardInterrupt:  # Ctrl-C while generating: cancel this turn, keep the dialogue
            history.pop()
            if prompt:
                stdout.write("\n")
            _say("interrupted: that turn was cancelled (it is not in the history); type a turn, or [EXIT]")
            continue
        print(_numbered(responses), file=stdout, flush=True)
        last = [tokenizer.encode(r)[: responder.max_turn_len] for r, _ in responses]
        history.append((last[0], 1))


# ----------------------------------------------------------------------------------------------- batch


class Line(NamedTuple):
    number: int
    id: object
    context: Context


def _turns(obj: object, where: str) -> tuple[list[str], list[str]]:
    """Texts and speakers of one input line's context."""
    if isinstance(obj, list):
        turns = obj
    elif isinstance(obj, dict) and isinstance(obj.get("turns"), list):
        turns = obj["turns"]
    else:
        raise DataError(f'{where}: expected {{"turns": [{{"speaker": ..., "text": ...}}, ...]}} or a list of strings')
    if not turns:
        raise DataError(f"{where}: the context has no turns")
    texts, speakers = [], []
    for i, turn in enumerate(turns):
        if isinstance(turn, str):
            text, speaker = turn, "AB"[(len(turns) - 1 - i) % 2]  # alternate, the last turn by A
        elif isinstance(turn, dict) and isinstance(turn.get("text"), str):
            text, speaker = turn["text"], turn.get("speaker")
            if not isinstance(speaker, str) or not speaker:
                raise DataError(f'{where}: turn {i} needs a non-empty string "speaker"')
        else:
            raise DataError(f'{where}: turn {i} must be a string or an object with a string "text"')
        if not text.strip():
            raise DataError(f"{where}: turn {i} is empty")
        texts.append(text)
        speakers.append(speaker)
    return texts, speakers


def read_contexts(path: Path, responder: Responder, *, act: int | None, topic: int | None) -> list[Line]:
    """Every line of ``path`` parsed and encoded; a bad line raises DataError naming file and line. Cut
    turns, unknown tokens and acts a non-kgCVAE ignores are counted and reported once."""
    lines: list[Line] = []
    model = responder.export.model
    cut_turns = cut_tokens = tokens = unknown = long_contexts = 0
    ignored = Counter()  # lines whose "act", "topic" or "callers" the model does not read
    first_cut = None
    for number, text in text_lines(path):
        where = f"{path}:{number}"
        obj = parse_json_line(text, path, number, what="one context")
        texts, speakers = _turns(obj, where)
        fields = obj if isinstance(obj, dict) else {}
        line_act, ignored_act = _line_name(fields, "act", act, responder.act_id if model.num_acts else None, where)
        line_topic, ignored_topic = _line_name(fields, "topic", topic,
                                               responder.topic_id if responder.reads_topics else None, where)
        ignored["act"] += ignored_act
        ignored["topic"] += ignored_topic
        line_profile = None
        if fields.get("callers") is not None:
            if responder.reads_profiles:
                line_profile = _profile(fields["callers"], speakers, where)
            else:
                ignored["callers"] += 1
        response = fields.get("response")
        if response is not None and (not isinstance(response, str) or not response.strip()):
            raise DataError(f'{where}: "response" must be a non-empty string')
        if responder.z_source == "posterior" and response is None:
            raise DataError(f'{where}: --z-source posterior needs a reference "response" on every line')
        encoded = []
        for t in texts + ([response] if response is not None else []):
            ids, cut, unknown_here = responder.encode(t)
            encoded.append(ids)
            tokens += len(ids)
            unknown += unknown_here
            if cut:
                cut_turns += 1
                cut_tokens += cut
                first_cut = first_cut or number
        long_contexts += len(texts) > responder.max_context
        context = Context(encoded[: len(texts)], responder_floor(speakers),
                          encoded[-1] if response is not None else None, line_act, line_topic, line_profile)
        lines.append(Line(number, fields.get("id"), context))
    if not lines:
        raise DataError(f"{path}: no contexts in the file")
    if cut_turns:
        warnings.warn(f"{path}: cut {cut_turns} turn{'s' if cut_turns != 1 else ''} to {responder.max_turn_len} "
                      f"tokens ({cut_tokens} tokens dropped; the first on line {first_cut})", DataWarning, stacklevel=2)
    if unknown:
        warnings.warn(f"{path}: {unknown} of {tokens} tokens are not in the model's vocabulary; read as <unk>",
                      DataWarning, stacklevel=2)
    if long_contexts:
        warnings.warn(f"{path}: {long_contexts} context{'s have' if long_contexts != 1 else ' has'} more than "
                      f"{responder.max_context} turns; the model reads the last {responder.max_context} (--max-context)",
                      DataWarning, stacklevel=2)
    for field, why in (("act", "is not conditioned on dialog acts"), ("topic", "was trained without topics"),
                       ("callers", "was trained without speaker profiles")):
        if ignored[field]:
            warnings.warn(f'{path}: ignored the "{field}" of {ignored[field]} line{"s" if ignored[field] != 1 else ""}: '
                          f"{type(model).__name__} {why}", DataWarning, stacklevel=2)
    return lines


def _line_name(fields: dict, key: str, default: int | None, lookup: Callable[[str], int] | None,
               where: str) -> tuple[int | None, bool]:
    """The id of a line's "act" or "topic" name (``default`` where the line gives none) and whether it was
    ignored: ``lookup`` None, a model that does not read it. A name that is not a string, or that the model does
    not know, is an error naming the line."""
    name = fields.get(key)
    if name is None:
        return default, False
    if not isinstance(name, str):
        raise DataError(f'{where}: "{key}" must be a string')
    if lookup is None:
        return default, True
    try:
        return lookup(name), False
    except ValueError as err:
        raise DataError(f"{where}: {err}") from None


def _profile(callers: object, speakers: list[str], where: str) -> list[float]:
    """A line's "callers" ({speaker: {"age": .., "education": .., "sex": ..}}, the two speakers) -> the
    responder's and the other caller's profile features."""
    example = '{"A": {"age": 47, "education": 2, "sex": "MALE"}, "B": {...}}'
    if not isinstance(callers, dict) or not all(isinstance(v, dict) for v in callers.values()):
        raise DataError(f'{where}: "callers" must map each speaker to its metadata, e.g. {example}')
    last = speakers[-1]
    others = [speaker for speaker in callers if speaker != last]
    if last not in callers or len(others) != 1:
        raise DataError(f'{where}: "callers" must name the two speakers: the last turn\'s ({last}) and the '
                        f"responder, e.g. {example}")
    return example_profile(caller_profiles(callers), others[0])


def write_responses(path: Path, lines: Sequence[Line], responses: Sequence[list[tuple[str, str | None]]]) -> None:
    """One JSON line per context, written whole or not at all (never half a file, nor PATH.tmp, left behind)."""
    with atomic_output(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for line, answer in zip(lines, responses, strict=True):
            record = {"id": line.id} if line.id is not None else {}
            record["responses"] = [text for text, _ in answer]
            if answer and answer[0][1] is not None:
                record["acts"] = [act for _, act in answer]
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------------ main


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.input is None) != (args.output is None):
        parser.error("batch mode needs both --input FILE and --output FILE")
    if args.input is None and args.z_source == "posterior":
        parser.error("--z-source posterior needs reference responses: give them in an --input file "
                     '(a "response" on each line)')
    if args.input is not None:
        text_source(parser, "--input", args.input)
        output_file(parser, "--output", args.output, "responses.jsonl")
    export = load_dialogue_model(parser, args.model, args.device, sentence_message=SENTENCE_MESSAGE)
    model = export.model
    decoding = response_decoding(parser, args, model)
    if args.z_source == "posterior" and not model.latent_dim:
        parser.error(f"--z-source posterior needs a latent model; {type(model).__name__} has no z")
    if args.z_source == "posterior" and args.prior_scale is not None:
        parser.error("--prior-scale widens the prior network's z; --z-source posterior draws z from the recognition "
                     "network: give one")
    responder = Responder(
        export=export, num_samples=args.num_samples, decoding=decoding,
        max_context=args.max_context or export.max_context or DEFAULT_MAX_CONTEXT,
        max_turn_len=args.max_turn_len or export.max_len or model.max_words or DEFAULT_TURN_LIMIT,
        z_source=args.z_source, generator=torch.Generator(device=args.device).manual_seed(args.seed),
        device=args.device, batch_size=args.batch_size)
    act = name_to_id(parser, "--act", args.act, responder.act_id)
    topic = name_to_id(parser, "--topic", args.topic, responder.topic_id)
    fix = "lower -n, --beam or --max-len" + (", or --batch-size" if args.input is not None else "")
    if args.input is None:
        check_decoding_memory(parser, args.num_samples, decoding, export.tokenizer.vocab_size, args.device, fix=fix)
        chat(responder, sys.stdin.buffer, sys.stdout, act=act, topic=topic, prompt=sys.stdin.isatty())
        return
    lines = read_contexts(args.input, responder, act=act, topic=topic)
    check_decoding_memory(parser, min(args.batch_size, len(lines)) * args.num_samples, decoding,
                          export.tokenizer.vocab_size, args.device, fix=fix)
    with Progress(PROG, "contexts", len(lines)) as progress:
        responses = responder.respond([line.context for line in lines], progress)
    write_responses(args.output, lines, responses)
    print(f"wrote {args.output} ({len(lines):,} context{'s' if len(lines) != 1 else ''}, {args.num_samples} "
          f"response{'s' if args.num_samples != 1 else ''} each, "
          f"{describe_method(model, decoding)})")


def main(argv: list[str] | None = None) -> int:
    return run(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
