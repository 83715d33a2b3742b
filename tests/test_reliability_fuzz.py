"""Property-based tests (hypothesis) of every entry point that reads a user's text (issue 13, "Reliability").

Arbitrary Unicode and arbitrary bytes (invalid UTF-8, NUL and control characters, UTF-8-encoded surrogates,
byte-order marks, lines of 100,000 "[", 8 MiB lines, near-records with fields of every JSON type) go
through the data readers, the tokenizers and the tools' ``main(argv)``; the property is the tools' contract:
exit 0, or exit 2 with ``textvae-X: error: ...`` as the last line of stderr and every line of stderr the
tool's own: never a traceback, never an exception other than SystemExit out of ``main``.

Profiles: "default" (100 examples an entry point, no deadline) and "thorough" (1,000), chosen with
``TEXTVAE_HYPOTHESIS_PROFILE=thorough``. Failing examples are remembered in .pytest_cache/hypothesis (ignored
by git) and replayed first on the next run.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
import warnings
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.database import DirectoryBasedExampleDatabase

from textvae.data.datasets import load_records
from textvae.data.records import (
    MAX_JSON_DEPTH,
    MAX_LINE_BYTES,
    DataError,
    DataWarning,
    Dialogue,
    Sentence,
    Turn,
    parse_json_line,
    write_jsonl,
)
from textvae.data.synthetic import DIALOGUE_ACTS, DIALOGUE_TOPICS, SPEAKERS
from textvae.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, SentencePieceTokenizer, WordTokenizer
from tools import act_tagger as act_tagger_tool
from tools import corpus as corpus_tool
from tools import eval as eval_tool
from tools import homotopy as homotopy_tool
from tools import respond as respond_tool
from tools import sample as sample_tool

_DATABASE = DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[1] / ".pytest_cache" / "hypothesis")
settings.register_profile("default", max_examples=100, deadline=None, database=_DATABASE, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.large_base_example])
settings.register_profile("thorough", settings.get_profile("default"), max_examples=1000)
# Applied test by test (not settings.load_profile), so that other test modules keep hypothesis' defaults.
fuzz = settings(settings.get_profile(os.environ.get("TEXTVAE_HYPOTHESIS_PROFILE", "default")))

pytestmark = pytest.mark.usefixtures("one_thread")

# --------------------------------------------------------------------------------------------- strategies

WORDS = ("i", "need", "a", "train", "to", "ely", ".", "?", "the", "hello", "which", "day", "<unk>", "</s>", "<pad>")
ACTS = (*DIALOGUE_ACTS[:3], "nonsense")
# Any code point, surrogates included: written with "surrogatepass" they are invalid UTF-8 bytes, and
# json.dumps(ensure_ascii=True) writes them as "\ud800" escapes.
# Surrogates, controls, separators and format characters are drawn as often as all the rest.
any_text = st.text(st.one_of(st.characters(exclude_categories=()),
                             st.characters(categories=["Cs", "Cc", "Cf", "Zs", "Zl", "Zp"])), max_size=30)
word_text = st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join)
texts = st.one_of(word_text, any_text)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(any_text, inner, max_size=3), max_leaves=6)
turns = st.fixed_dictionaries(
    {"speaker": st.one_of(st.sampled_from(SPEAKERS), json_values), "text": st.one_of(texts, json_values)},
    optional={"act": st.one_of(st.sampled_from(ACTS), json_values), "emotion": json_values})
sentence_objects = st.fixed_dictionaries({"text": st.one_of(texts, json_values)},
                                         optional={"label": json_values, "attributes": json_values})
dialogue_objects = st.fixed_dictionaries(
    {"turns": st.one_of(st.lists(turns, max_size=4), json_values)},
    optional={"id": json_values, "topic": json_values, "meta": json_values,
              # a context line of textvae-respond --input
              "act": st.one_of(st.sampled_from(ACTS), json_values), "response": st.one_of(texts, json_values),
              "callers": json_values})
records = st.one_of(sentence_objects, dialogue_objects, st.lists(texts, max_size=4), json_values)


def _dumps(obj, ascii: bool) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii).encode("utf-8", "surrogatepass")


json_lines = st.builds(_dumps, records, st.booleans())
depths = st.integers(MAX_JSON_DEPTH - 5, 100_000)
deep_lines = st.one_of(
    depths.map(lambda n: b"[" * n),  # the issue's line, at any depth
    depths.map(lambda n: b"[" * n + b"]" * n),  # deep but well-formed
    depths.map(lambda n: b'{"a": ' * n + b"1" + b"}" * n),
    depths.map(lambda n: b'{"text": "x", "meta": ' + b"[" * n + b"]" * n + b"}"),
    depths.map(lambda n: b'{"turns": [{"speaker": "A", "text": "hi"}], "meta": ' + b'{"a": ' * n + b"1" + b"}" * n
               + b"}"),
    depths.map(lambda n: b'{"text": "' + b"[" * n + b'"}'),  # brackets in a string nest nothing
)
huge_lines = st.sampled_from([
    b"a" * (MAX_LINE_BYTES + 1),
    b'{"text": "' + b"x " * (MAX_LINE_BYTES // 2) + b'"}',
    b'{"text": "' + b"the train " * 50_000 + b'"}',  # 100,000 words: long but allowed
    b'{"turns": [{"speaker": "user", "text": "hello ."}, {"speaker": "system", "text": "'
    + b"which day ? " * 30_000 + b'"}]}',
    b'["hello .", "' + b"i need a train " * 20_000 + b'"]',  # a context of textvae-respond
    b"hello . " * 20_000,
])
odd_bytes = st.sampled_from([b"\x00", b"\xef\xbb\xbf", b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\x80", b"\r", b"\x1b[2J",
                             b"\xe2\x80\xa8", b"\xc2\x85", b"\x0c", b'{"text": "\\ud800"}', b'{"text": "\\u0000"}'])
lines = st.one_of(
    json_lines,
    texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=60),
    st.lists(st.one_of(odd_bytes, json_lines, st.binary(max_size=8)), max_size=4).map(b"".join),
)
# Well-formed lines of each format, with any valid Unicode in their texts: mixed with the lines above,
# they make files that get through the readers to the models and the writers, not only files refused at
# their first line.
ok_words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join)
ok_text = st.one_of(ok_words, ok_words, st.text(st.characters(codec="utf-8"), min_size=1, max_size=30))
known_acts = st.sampled_from(DIALOGUE_ACTS)
ok_turns = st.lists(st.fixed_dictionaries({"speaker": st.sampled_from(SPEAKERS), "text": ok_text},
                                          optional={"act": known_acts}), min_size=2, max_size=4)
ok_sentence = st.fixed_dictionaries({"text": ok_text}, optional={
    "label": st.one_of(st.sampled_from(DIALOGUE_TOPICS), st.integers(-9, 9)),
    "attributes": st.dictionaries(st.sampled_from(["topic", "tense"]), st.sampled_from(DIALOGUE_TOPICS), max_size=2)})
ok_dialogue = st.fixed_dictionaries({"turns": ok_turns}, optional={"id": ok_text,
                                                                   "topic": st.sampled_from(DIALOGUE_TOPICS)})
ok_context = st.one_of(  # a line of textvae-respond --input
    st.fixed_dictionaries({"turns": ok_turns}, optional={"act": known_acts, "response": ok_text, "id": ok_text}),
    st.lists(ok_text, min_size=1, max_size=4))
ok_snli = st.fixed_dictionaries({"sentence1": ok_text, "sentence2": ok_text, "gold_label": ok_text})
ok_switchboard = st.fixed_dictionaries(
    {"utts": st.lists(st.tuples(st.sampled_from(["A", "B"]), ok_text,
                                st.tuples(st.sampled_from(["statement", "question"]),
                                          st.lists(st.floats(0, 1), min_size=4, max_size=4))), min_size=1, max_size=4)},
    optional={"A": st.fixed_dictionaries({"age": st.integers(18, 90), "sex": st.sampled_from(['"MALE"', "FEMALE"])}),
              "B": st.fixed_dictionaries({"age": st.integers(18, 90), "education": st.integers(0, 3)}),
              "topic": ok_text, "prompt": ok_text}).map(lambda d: json.loads(json.dumps(d)))  # tuples as lists


def _json_line(strategy) -> st.SearchStrategy[bytes]:
    return st.builds(_dumps, strategy, st.booleans())


def _text_line(strategy) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda t: t.encode("utf-8"))


OK_LINES = {
    "sentences": _json_line(ok_sentence),
    "dialogues": _json_line(ok_dialogue),
    "records": st.one_of(_json_line(ok_sentence), _json_line(ok_dialogue)),
    "contexts": _json_line(ok_context),
    "sentences or text": st.one_of(_json_line(ok_sentence), _text_line(ok_text)),  # textvae-sample --reconstruct
    "text": _text_line(ok_text),
    "labelled text": st.builds(lambda label, text: f"{label}\t{text}".encode(), st.integers(0, 12), ok_text),
    "eou text": st.lists(ok_text, min_size=1, max_size=4).map(lambda ts: (" __eou__ ".join(ts) + " __eou__").encode()),
    "snli": _json_line(ok_snli),
    "switchboard": _json_line(ok_switchboard),
}
_endings = st.sampled_from([b"", b"\n", b"\r\n"])


@functools.cache
def file_contents(fmt: str, kind: str) -> st.SearchStrategy[bytes]:
    """Files for a reader of format ``fmt``. "ordinary": well-formed lines of it, the same with one odd line
    among them (any bytes, any text, a near-record), or odd lines only; "pathological": well-formed lines
    around one line nested deep or too long. (Two kinds, so that a tool failing on one still has the other
    checked; well-formed lines, with any valid Unicode in their texts, take files through the readers to
    the models and the writers, not only to the refusal of their first line.)"""
    ok = st.lists(OK_LINES[fmt], max_size=3)
    odd = st.one_of(deep_lines, huge_lines) if kind == "pathological" else lines
    mixed = st.builds(lambda before, line, after: [*before, line, *after], ok, odd, ok)
    files = mixed if kind == "pathological" else st.one_of(
        st.lists(OK_LINES[fmt], min_size=1, max_size=5), mixed, st.lists(lines, max_size=5))
    return st.builds(lambda ls, end: b"\n".join(ls) + end, files, _endings)


CONTENTS = ("ordinary", "pathological")
# Command-line arguments: no NUL (a C string cannot hold one); undecodable bytes arrive as Python's
# surrogateescape makes them (U+DC80-U+DCFF).
argv_texts = st.one_of(
    word_text, st.text(st.characters(exclude_characters="\x00"), max_size=40),
    st.binary(max_size=30).map(lambda b: b.replace(b"\x00", b"").decode("utf-8", "surrogateescape")),
    depths.map(lambda n: "[" * n), st.text(max_size=3).map(lambda t: t * 20_000),
)

# ------------------------------------------------------------------------------------------------ helpers


def run_tool(main, argv: list[str], prog: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run a tool's ``main(argv)`` as a terminal would (UTF-8 stdout, strict as Python's own; stdin
    ``stdin``) and check the contract; returns (exit code, stdout, stderr)."""
    out, err = io.BytesIO(), io.BytesIO()
    streams = {"stdout": io.TextIOWrapper(out, encoding="utf-8"),
               "stderr": io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace"),
               "stdin": io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")}
    with mock.patch.multiple(sys, **streams), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library warnings on success are not the contract under test
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
        finally:
            streams["stdout"].flush()
            streams["stderr"].flush()
    stdout, stderr = out.getvalue().decode("utf-8"), err.getvalue().decode("utf-8")
    if currently_in_test_context():  # --hypothesis-show-statistics: how many got through, how many were refused
        event(f"exit {code or 0}")
    assert "Traceback" not in stderr, stderr
    assert code in (0, None, 2), (code, stderr)
    if code == 2:
        said = stderr.rstrip("\n").split("\n")
        assert said[-1].startswith(f"{prog}: error: "), stderr
        assert all(line.startswith((f"{prog}: ", "usage: ")) for line in said), stderr
    return code or 0, stdout, stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def sentence_exports(tmp_path_factory):
    from test_evaluation import build_exports

    return build_exports(tmp_path_factory.mktemp("fuzz_sentence_exports"))


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


# ------------------------------------------------------------------------------------------- data readers


FORMAT_OF_KIND = {"sentences": "sentences", "dialogues": "dialogues", None: "records"}


@pytest.mark.parametrize("contents", CONTENTS)
@pytest.mark.parametrize("kind", FORMAT_OF_KIND)
@fuzz
@given(data=st.data())
def test_load_records_gives_rows_or_one_data_error(kind, contents, data, work):
    content = data.draw(file_contents(FORMAT_OF_KIND[kind], contents), label="content")
    path = _write(work / "records.jsonl", content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        try:
            loaded = load_records(path, cache_dir=work / "cache", kind=kind)
        except DataError as err:
            event("DataError")
            assert "\n" not in str(err) and str(path.name) in str(err), str(err)
            return
    event("rows")
    assert len(loaded) >= 1
    assert all(isinstance(text, str) and text.strip() for text in
               (loaded["text"] if "text" in loaded.column_names else
                (t["text"] for d in loaded["turns"] for t in d)))


printable = st.text(st.characters(codec="utf-8"), max_size=30)  # what a JSONL file can hold
label_values = st.one_of(printable, st.integers(-10**6, 10**6))
labels = st.none() | label_values


def load_round_trip(path: Path, work: Path, kind: str, kept: list, empty_error: str):
    """``load_records`` of a file just written; None after checking the one-line error of a file whose every
    text is empty (``kept`` empty)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        if not kept:
            with pytest.raises(DataError, match=empty_error):
                load_records(path, cache_dir=work / "cache", kind=kind)
            return None
        return load_records(path, cache_dir=work / "cache", kind=kind)


@fuzz
@given(sentences=st.lists(st.builds(Sentence, printable, labels, st.dictionaries(printable, label_values, max_size=2)),
                          min_size=1, max_size=6))
def test_sentences_round_trip_through_write_and_load(sentences, work):
    path = work / "round_trip.jsonl"
    write_jsonl(path, sentences)
    kept = [s for s in sentences if s.text.strip()]
    loaded = load_round_trip(path, work, "sentences", kept, "no sentences .every sentence is empty.")
    if loaded is None:
        return
    assert loaded["text"] == [s.text for s in kept]
    assert loaded["label"] == [None if s.label is None else str(s.label) for s in kept]
    assert [json.loads(a) if a else {} for a in loaded["attributes"]] == [s.attributes for s in kept]


@fuzz
@given(dialogues=st.lists(st.builds(
    Dialogue, st.lists(st.builds(Turn, printable.filter(bool), printable, st.none() | printable), min_size=1,
                       max_size=4).map(tuple), st.none() | printable), min_size=1, max_size=4))
def test_dialogues_round_trip_through_write_and_load(dialogues, work):
    path = work / "round_trip_dialogues.jsonl"
    write_jsonl(path, dialogues)
    kept = [[t for t in d.turns if t.text.strip()] for d in dialogues]
    kept = [turns for turns in kept if turns]
    loaded = load_round_trip(path, work, "dialogues", kept, "no dialogues .every turn is empty.")
    if loaded is None:
        return
    assert [[(t["speaker"], t["text"], t["act"]) for t in d] for d in loaded["turns"]] == [
        [(t.speaker, t.text, t.act) for t in turns] for turns in kept]


@pytest.mark.parametrize(("line", "expected"), [
    ("[" * 100_000, "JSON nested deeper than 100 levels"),
    ('{"text": "a", "meta": ' + "[" * 101 + "]" * 101 + "}", "JSON nested deeper than 100 levels"),
    ('{"text": "\\ud800"}', "lone UTF-16 surrogate"),
    ('{"text": ', "malformed JSON"),
], ids=["100000_brackets", "deep_meta", "lone_surrogate", "malformed"])
def test_parse_json_line_refuses_pathological_lines_in_one_line(line, expected):
    with pytest.raises(DataError) as err:
        parse_json_line(line, "corpus.jsonl", 7)
    assert str(err.value).startswith("corpus.jsonl:7: ") and expected in str(err.value) and "\n" not in str(err.value)


def test_parse_json_line_accepts_depth_up_to_the_limit_and_brackets_in_strings():
    depth = MAX_JSON_DEPTH
    assert parse_json_line("[" * depth + "]" * depth, "f", 1) is not None
    assert parse_json_line(json.dumps({"text": "[" * 10_000 + '\\"{'}), "f", 1)["text"].startswith("[[[")
    assert parse_json_line('{"text": "\\ud83d\\ude00 \\\\ud800"}', "f", 1) == {"text": "\U0001F600 \\ud800"}


def test_a_line_over_the_limit_is_refused_without_reading_it_whole(work):
    path = _write(work / "long.jsonl", b'{"text": "a"}\n' + b"x" * (3 * MAX_LINE_BYTES) + b"\n")
    with pytest.raises(DataError, match=r"long\.jsonl:2: line longer than 8 MiB"):
        load_records(path, cache_dir=work / "cache")


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"text": ""}\n{"text": "   "}\n', "no sentences (every sentence is empty); give a file with at least one sentence"),
    (b'{"turns": [{"speaker": "A", "text": " "}]}\n', "no dialogues (every turn is empty)"),
], ids=["sentences", "dialogues"])
def test_a_file_of_empty_texts_says_so_not_that_train_has_no_data(content, expected, work):
    path = _write(work / "empty.jsonl", content)
    with pytest.raises(DataError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        load_records(path, cache_dir=work / "cache")
    assert expected in str(err.value) and "corresponds to no data" not in str(err.value)


# --------------------------------------------------------------------------------------------- tokenizers


@pytest.fixture(scope="module")
def tokenizers():
    corpus = [" ".join(WORDS[i % 12:] + WORDS[:i % 12]) + f" number{i} caf\u00e9 \u4e2d\u6587" for i in range(60)]
    return {"word": WordTokenizer.train(corpus), "word_lower": WordTokenizer.train(corpus, lowercase=True),
            "sentencepiece": SentencePieceTokenizer.train(corpus, vocab_size=60)}


@pytest.mark.parametrize("name", ["word", "word_lower", "sentencepiece"])
@fuzz
@given(text=st.one_of(any_text, word_text, st.text(max_size=3).map(lambda t: t * 3000), depths.map(lambda n: "[" * n)))
@example(text="a \udcff b </s> <s> <pad> <unk>")
def test_tokenizers_encode_any_text_to_ids_in_the_vocabulary(name, text, tokenizers):
    tokenizer = tokenizers[name]
    ids = tokenizer.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tokenizer.vocab_size for i in ids)
    assert not {PAD_ID, BOS_ID, EOS_ID} & set(ids)  # a text's words are never padding or a boundary
    decoded = tokenizer.decode(ids)
    assert isinstance(decoded, str)
    if name.startswith("word"):
        words = text.lower().split() if tokenizer.lowercase else text.split()
        assert decoded == " ".join(w if w in tokenizer.tokens[4:] else "<unk>" for w in words)


@pytest.mark.parametrize("name", ["word", "sentencepiece"])
@fuzz
@given(ids=st.lists(st.integers(-2**40, 2**40) | st.integers(0, 80), max_size=10))
def test_tokenizers_decode_ids_or_refuse_ids_outside_the_vocabulary(name, ids, tokenizers):
    tokenizer = tokenizers[name]
    shown = ids[:ids.index(EOS_ID)] if EOS_ID in ids else ids  # decoding stops at EOS
    if all(0 <= i < tokenizer.vocab_size for i in shown):
        assert isinstance(tokenizer.decode(ids), str)
    else:
        with pytest.raises(ValueError, match="outside the vocabulary"):
            tokenizer.decode(ids)


# ---------------------------------------------------------------------------------------------- the tools


@pytest.mark.parametrize("contents", CONTENTS)
@fuzz
@given(data=st.data())
def test_sample_reconstruct_any_file(contents, data, sentence_exports, work):
    content = data.draw(file_contents("sentences or text", contents), label="content")
    path = _write(work / "reconstruct.txt", content)
    run_tool(sample_tool.main, ["--model", str(sentence_exports.vae), "--reconstruct", str(path), "-n", "3",
                                "--max-len", "5", "--device", "cpu"], "textvae-sample")


@fuzz
@given(start=argv_texts, end=argv_texts)
def test_homotopy_between_any_two_texts(start, end, sentence_exports):
    code, stdout, _ = run_tool(homotopy_tool.main, ["--model", str(sentence_exports.vae), "--from", start, "--to", end,
                                                    "--steps", "1", "--max-len", "5", "--device", "cpu"],
                               "textvae-homotopy")
    if code == 0:
        assert len(stdout.splitlines()) >= 3


@pytest.mark.parametrize("contents", CONTENTS)
@fuzz
@given(data=st.data())
def test_eval_any_sentence_file(contents, data, sentence_exports, work):
    content = data.draw(file_contents("sentences", contents), label="content")
    path = _write(work / "eval_sentences.jsonl", content)
    run_tool(eval_tool.main, ["--model", str(sentence_exports.vae), "--data", str(path), "--samples", "1",
                              "--prior-samples", "0", "--no-bleu", "--max-sentences", "3", "--batch-size", "4",
                              "--cache-dir", str(work / "cache"), "--device", "cpu"], "textvae-eval")


@pytest.mark.parametrize("contents", CONTENTS)
@fuzz
@given(data=st.data())
def test_eval_any_dialogue_file(contents, data, dialogue_exports, work):
    content = data.draw(file_contents("dialogues", contents), label="content")
    path = _write(work / "eval_dialogues.jsonl", content)
    run_tool(eval_tool.main, ["--model", str(dialogue_exports.kgcvae), "--data", str(path), "--no-bleu",
                              "--max-sentences", "2", "--max-len", "4", "--cache-dir", str(work / "cache"),
                              "--device", "cpu"], "textvae-eval")


@pytest.mark.parametrize("contents", CONTENTS)
@fuzz
@given(data=st.data())
def test_respond_any_input_file(contents, data, dialogue_exports, work):
    content = data.draw(file_contents("contexts", contents), label="content")
    path = _write(work / "contexts.jsonl", content)
    run_tool(respond_tool.main, ["--model", str(dialogue_exports.kgcvae), "--input", str(path),
                                 "--output", str(work / "responses.jsonl"), "-n", "1", "--max-len", "4",
                                 "--device", "cpu"], "textvae-respond")


@fuzz
@given(typed=st.lists(st.one_of(lines, st.sampled_from([b"[HISTORY]", b"[PICK 1]", b"[PICK x]", b"[ACT inform]",
                                                        b"[ACT]", b"[DONE]", b"[EXIT]", b"[NOPE]"])), max_size=4))
def test_respond_chat_any_typed_turns(typed, dialogue_exports):
    run_tool(respond_tool.main, ["--model", str(dialogue_exports.kgcvae), "-n", "1", "--max-len", "4",
                                 "--device", "cpu"], "textvae-respond", stdin=b"\n".join(typed))


@pytest.mark.parametrize("contents", CONTENTS)
@fuzz
@given(data=st.data())
def test_act_tagger_any_training_file(contents, data, work):
    content = data.draw(file_contents("dialogues", contents), label="content")
    path = _write(work / "tagged.jsonl", content)
    run_tool(act_tagger_tool.main, ["--data", str(path), "--test", str(path), "--out", str(work / "tagger"),
                                    "--epochs", "1", "--min-count", "1", "--cache-dir", str(work / "cache")],
             "textvae-act-tagger")


CORPUS_FILES = {"ptb": "ptb.train.txt", "snli": "snli_1.0_train.jsonl", "switchboard": "train.jsonl",
                "dailydialog": "train.utts.txt", "yahoo": "train.txt"}
CORPUS_FORMATS = {"ptb": "text", "snli": "snli", "switchboard": "switchboard", "dailydialog": "eou text",
                  "yahoo": "labelled text"}


@pytest.mark.parametrize(("contents", "name"), [(contents, name) for contents in CONTENTS for name in CORPUS_FILES])
@fuzz
@given(data=st.data())
def test_corpus_prepare_any_source_file(contents, name, data, work):
    content = data.draw(file_contents(CORPUS_FORMATS[name], contents), label="content")
    member = CORPUS_FILES[name]
    source = work / f"source_{name}"
    source.mkdir(exist_ok=True)
    _write(source / member, content)
    run_tool(corpus_tool.main, ["prepare", name, "--source", str(source), "--out", str(work / f"corpus_{name}")],
             "textvae-corpus")


def test_the_issue_cases_end_in_one_line(sentence_exports, dialogue_exports, work):
    """Issue 13, items 4 and 9: a line of 100,000 "[" and a file whose only text is empty, through eval and
    the act tagger (the tools that read through the data layer)."""
    deep = _write(work / "deep.jsonl", b"[" * 100_000 + b"\n")
    empty = _write(work / "empty_text.jsonl", b'{"text": ""}\n')
    common = ["--cache-dir", str(work / "cache"), "--device", "cpu", "--samples", "1", "--prior-samples", "0"]
    code, _, err = run_tool(eval_tool.main, ["--model", str(sentence_exports.vae), "--data", str(deep), *common],
                            "textvae-eval")
    assert code == 2 and f"{deep}:1: JSON nested deeper than 100 levels" in err
    code, _, err = run_tool(eval_tool.main, ["--model", str(sentence_exports.vae), "--data", str(empty), *common],
                            "textvae-eval")
    assert code == 2 and "no sentences (every sentence is empty)" in err and "no data" not in err
    code, _, err = run_tool(act_tagger_tool.main, ["--data", str(deep), "--out", str(work / "t")],
                            "textvae-act-tagger")
    assert code == 2 and "JSON nested deeper than 100 levels" in err
