"""The tools under a hostile tester (issue 13): every numeric flag's range checked at parse time and stated in
--help, memory estimates checked before any work, exports that would crash (NaN weights, a tokenizer that is
not the model's, fields of the wrong type) refused by load_export, devices named, Ctrl-C without a traceback
and without half-written output, output paths that are folders, /dev/null as input, and homotopy printing
what it was given safely. Every failure: one line ``textvae-X: error: ...``, a non-zero exit, no traceback.

The exports are tiny untrained models written by save_export (no training: these tests are about the tools).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from safetensors.torch import load_file, save_file

from textvae.data.records import DataError, atomic_output, write_jsonl
from textvae.data.synthetic import generate_dialogues, generate_sentences
from textvae.data.tokenizers import WordTokenizer
from textvae.export import load_export, save_export
from textvae.models import HRED, SentenceVAE
from tools import _cli
from tools import act_tagger as act_tagger_tool
from tools import classifier as classifier_tool
from tools import eval as eval_tool
from tools import homotopy as homotopy_tool
from tools import latent as latent_tool
from tools import reinforce as reinforce_tool
from tools import respond as respond_tool
from tools import sample as sample_tool

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
V1_KGCVAE = Path(__file__).parent / "fixtures" / "exports_v1" / "kgcvae"
TOOLS = {"sample": sample_tool, "homotopy": homotopy_tool, "eval": eval_tool, "respond": respond_tool,
         "act-tagger": act_tagger_tool, "latent": latent_tool, "reinforce": reinforce_tool, "classifier": classifier_tool}


class Files(NamedTuple):
    sentences: Path  # prepared sentence JSONL
    dialogues: Path  # prepared dialogue JSONL
    contexts: Path  # textvae-respond --input lines
    vae: Path
    hred: Path
    nan_vae: Path  # the vae with a NaN weight
    nan_hred: Path


def _nan_copy(source: Path, target: Path) -> Path:
    """A copy of an export with one weight NaN, as a training with an absurd learning rate exports it."""
    shutil.copytree(source, target)
    tensors = load_file(target / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, target / "model.safetensors")
    return target


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    root = tmp_path_factory.mktemp("reliability")
    sentences, dialogues = generate_sentences(40, seed=0), generate_dialogues(6, seed=0)
    write_jsonl(root / "sentences.jsonl", sentences)
    write_jsonl(root / "dialogues.jsonl", dialogues)
    (root / "contexts.jsonl").write_text(json.dumps(["hello .", "hi , a train please ."]) + "\n", encoding="utf-8")
    tokenizer = WordTokenizer.train([s.text for s in sentences] + [t.text for d in dialogues for t in d.turns])
    torch.manual_seed(0)
    vae = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=8, latent_dim=2)
    save_export(root / "vae", vae, tokenizer)
    hred = HRED(vocab_size=tokenizer.vocab_size, embed_dim=8, utterance_dim=8, context_dim=8, decoder_dim=8)
    save_export(root / "hred", hred, tokenizer, max_context=3, max_len=20)
    return Files(root / "sentences.jsonl", root / "dialogues.jsonl", root / "contexts.jsonl", root / "vae",
                 root / "hred", _nan_copy(root / "vae", root / "nan_vae"), _nan_copy(root / "hred", root / "nan_hred"))


def fails(tool, argv: list[str], capsys, code: int = 2) -> str:
    """Run ``tool.main(argv)``, expect exit ``code`` with one stderr line and no traceback; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(arg) for arg in argv])
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def error(tool, argv: list[str], capsys) -> str:
    line = fails(tool, argv, capsys)
    assert line.startswith(f"{tool.PROG}: error: "), line
    return line


# ----------------------------------------------------------------------------------- ranges at parse time

NUMERIC_FLAGS = [
    # (tool, the flag, a value out of its range, what its --help states)
    ("sample", "-n", "1000001", "1 to 1,000,000"),
    ("sample", "--temperature", "inf", "in [0.001, 100]"),
    ("sample", "--temperature", "1e-300", "in [0.001, 100]"),
    ("sample", "--temperature", "1e300", "in [0.001, 100]"),
    ("sample", "--temperature", "nan", "in [0.001, 100]"),
    ("sample", "--beam", "257", "1 to 256"),
    ("sample", "--max-len", "1001", "1 to 1,000"),
    ("sample", "--top-p", "5e-324", "in (0, 1]"),
    ("sample", "--top-k", "-1", "at least 0"),
    ("sample", "--seed", str(2**64), "0 to 2**63-1"),
    ("sample", "--seed", "-1", "0 to 2**63-1"),
    ("homotopy", "--steps", str(10**20), "1 to 10,000"),
    ("homotopy", "--steps", "1e20", "1 to 10,000"),
    ("homotopy", "--temperature", "inf", "in [0.001, 100]"),
    ("homotopy", "--beam", "1000", "1 to 256"),
    ("homotopy", "--max-len", str(10**9), "1 to 1,000"),
    ("homotopy", "--seed", str(2**64), "0 to 2**63-1"),
    ("eval", "--samples", "100001", "1 to 100,000"),
    ("eval", "--prior-samples", "1000001", "0 (none) or 2 to 1,000,000"),
    ("eval", "--responses", "1001", "1 to 1,000"),
    ("eval", "--mi-group", "10001", "2 to 10,000"),
    ("eval", "--svi-steps", "10001", "0 to 10,000"),
    ("eval", "--svi-lr", "inf", "in (0, 100]"),
    ("eval", "--batch-size", "65537", "1 to 65,536"),
    ("eval", "--max-context", "1001", "1 to 1,000"),
    ("eval", "--max-sentences", "0", "at least 1"),
    ("eval", "--temperature", "1e300", "in [0.001, 100]"),
    ("eval", "--beam", "257", "1 to 256"),
    ("eval", "--max-len", "1001", "1 to 1,000"),
    ("eval", "--seed", str(2**64), "0 to 2**63-1"),
    ("respond", "-n", "1001", "1 to 1,000"),
    ("respond", "--temperature", "1e-300", "in [0.001, 100]"),
    ("respond", "--beam", "257", "1 to 256"),
    ("respond", "--max-len", "1001", "1 to 1,000"),
    ("respond", "--batch-size", "65537", "1 to 65,536"),
    ("respond", "--max-context", "1001", "1 to 1,000"),
    ("respond", "--max-turn-len", "1001", "1 to 1,000"),
    ("respond", "--seed", str(2**64), "0 to 2**63-1"),
    ("act-tagger", "--epochs", "10001", "1 to 10,000"),
    ("act-tagger", "--min-count", str(10**10), "1 to 1,000,000,000"),
    ("act-tagger", "--seed", str(2**64), "0 to 2**63-1"),
]


@pytest.mark.parametrize(("tool", "flag", "value", "stated"), NUMERIC_FLAGS,
                         ids=[f"{t}{f}={v}" for t, f, v, _ in NUMERIC_FLAGS])
def test_every_numeric_flag_is_checked_at_parse_time_against_the_range_its_help_states(tool, flag, value, stated,
                                                                                     tmp_path, capsys):
    module = TOOLS[tool]
    with pytest.raises(SystemExit):
        module.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert stated in help_text, f"{flag}: {stated!r} not in --help"
    required = ["--data", tmp_path / "d.jsonl", "--out", tmp_path] if tool == "act-tagger" else \
        ["--model", tmp_path, "--from-prior", "--to-prior"] if tool == "homotopy" else \
        ["--model", tmp_path, "--data", tmp_path / "d.jsonl"] if tool == "eval" else ["--model", tmp_path]
    line = fails(module, [*required, flag, value], capsys)  # before any model or file is read
    assert f"error: argument {flag}" in line and "must be" in line and len(line) < 200, line


def test_every_numeric_flag_of_every_tool_states_a_range(capsys):
    """No numeric flag without its range in --help (the flags are found from the parsers themselves)."""
    def actions(parser):  # a parser's own, and its subcommands'
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command in action.choices.values():
                    yield from actions(command)
            else:
                yield action

    for name, module in TOOLS.items():
        for action in actions(module._parser()):
            numeric = getattr(action.type, "__qualname__", "").startswith(("count.", "number.")) or action.type is int
            if not numeric:
                continue
            text = " ".join((action.help or "").split())
            assert any(words in text for words in (" to ", "at least", "in [", "in (", "0 (none)")), \
                f"{name} {action.option_strings[0]}: no range in its help {text!r}"


def test_values_in_range_still_work(files, capsys):
    """The bounds let real use through: the extremes of the temperature, a big seed, beam search."""
    for extra in (["--temperature", "0.001"], ["--temperature", "100"], ["--seed", str(2**63 - 1)],
                  ["--decode", "beam", "--beam", "3"]):
        assert sample_tool.main(["--model", str(files.vae), "-n", "2", "--max-len", "5", "--device", "cpu",
                                 *extra]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2


# ------------------------------------------------------------------------------------------- memory


def test_what_memory_cannot_hold_is_refused_before_the_work_with_the_estimate_and_a_remedy(files, tmp_path,
                                                                                           monkeypatch, capsys):
    """On a machine with 1 GiB, ordinary runs go through and the largest values the parsers allow are refused
    (they would need several GiB), with the estimate and the flags to lower."""
    monkeypatch.setattr(_cli, "device_memory", lambda device: 2**30)
    huge_beam = ["--decode", "beam", "--beam", "256", "--max-len", "1000"]
    out = tmp_path / "o.jsonl"
    cases = [
        (sample_tool, ["--model", files.vae, "-n", "2", "--max-len", "3"], [*huge_beam, "-n", "1000"],
         "lower --beam, --max-len"),
        (homotopy_tool, ["--model", files.vae, "--from-prior", "--to-prior", "--steps", "1", "--max-len", "3"],
         [*huge_beam, "--steps", "10000"], "--steps"),
        (eval_tool, ["--model", files.vae, "--data", files.sentences, "--samples", "2", "--prior-samples", "0"],
         ["--samples", "100000", "--batch-size", "65536"], "lower --batch-size or --samples"),
        (eval_tool, ["--model", files.hred, "--data", files.dialogues, "--responses", "1", "--max-sentences", "2",
                     "--max-len", "3"], ["--responses", "1000", "--beam", "256", "--max-len", "1000"], "--responses"),
        (respond_tool, ["--model", files.hred, "--input", files.contexts, "--output", out, "-n", "1", "--max-len", "3"],
         ["-n", "1000", "--beam", "256", "--max-len", "1000"], "lower -n, --beam or --max-len, or --batch-size"),
    ]
    for tool, argv, too_much, remedy in cases:
        assert tool.main([str(arg) for arg in [*argv, "--device", "cpu"]]) == 0
        capsys.readouterr()
        out.unlink(missing_ok=True)
        line = error(tool, [*argv, *too_much, "--device", "cpu"], capsys)
        assert "would need about" in line and "GiB of memory, more than this machine's 1.0 GiB" in line, line
        assert remedy in line, line
        assert not out.exists()


def test_the_estimate_grows_with_what_is_decoded_together():
    from textvae.decoding import Decoding, decoding_bytes

    greedy, beam = Decoding("greedy", max_len=50), Decoding("beam", beam_size=8, max_len=50)
    assert decoding_bytes(10, beam, 1000) == 8 * decoding_bytes(10, Decoding("greedy", max_len=50), 1000)
    assert decoding_bytes(20, greedy, 1000) == 2 * decoding_bytes(10, greedy, 1000)
    assert decoding_bytes(1, greedy, 50_000) > 50_000 * 4  # at least the logits of one step


# ------------------------------------------------------------------------------------------- exports


def test_nan_weights_are_refused_by_every_tool(files, tmp_path, capsys):
    runs = [
        (sample_tool, ["--model", files.nan_vae, "-n", "2"]),
        (homotopy_tool, ["--model", files.nan_vae, "--from-prior", "--to-prior"]),
        (eval_tool, ["--model", files.nan_vae, "--data", files.sentences]),
        (eval_tool, ["--model", files.nan_hred, "--data", files.dialogues]),
        (respond_tool, ["--model", files.nan_hred, "--input", files.contexts, "--output", tmp_path / "o.jsonl"]),
        (respond_tool, ["--model", files.nan_hred]),
    ]
    for tool, argv in runs:
        line = error(tool, [*argv, "--device", "cpu"], capsys)
        assert "model.safetensors: tensor '" in line and "holds NaN or infinite values" in line, line
        assert "retrain" in line
    assert not (tmp_path / "o.jsonl").exists()


def _edited(source: Path, target: Path, **changes) -> Path:
    """A copy of an export with config.json (``config=``: a function of it) or tokenizer.json changed."""
    shutil.copytree(source, target)
    for name in ("config", "tokenizer"):
        if name in changes:
            path = target / f"{name}.json"
            path.write_text(json.dumps(changes[name](json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")
    return target


def test_a_tokenizer_that_is_not_the_models_is_refused(files, tmp_path, capsys):
    short = _edited(files.vae, tmp_path / "short", tokenizer=lambda t: t | {"tokens": t["tokens"][:10]})
    line = error(sample_tool, ["--model", short, "-n", "2"], capsys)  # was: IndexError when decoding
    assert "tokenizer.json: the tokenizer has 10 tokens but the model's vocabulary has" in line, line
    longer = _edited(files.hred, tmp_path / "longer",
                     tokenizer=lambda t: t | {"tokens": t["tokens"] + ["extra1", "extra2"]})
    assert "do not belong together" in error(respond_tool, ["--model", longer], capsys)


def _set(key: str, value):
    def edit(config: dict) -> dict:
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[last] = value
        return config
    return edit


@pytest.mark.parametrize(("source", "key", "value", "words"), [
    ("hred", "info", ["data"], "info must be an object"),
    ("hred", "categories", "acts", "categories must map"),
    ("hred", "categories.acts", {"a": 1}, "categories.acts must be a list of strings"),
    ("hred", "max_context", "3", "max_context must be a whole number"),
    ("hred", "max_len", -1, "max_len must be a whole number"),
    ("hred", "model", "textvae.models.HRED", '"model" must be an object'),
    ("hred", "model.init_args", ["vocab_size"], '"model" must be an object'),
    ("hred", "model.init_args.vocab_size", 10**10, "do not belong together"),  # checked before allocating
    ("hred", "model.init_args.embed_dim", 9, "has shape"),
    ("v1", "max_len", -1, "max_len is given twice"),  # version 1 kept it in info: a top-level one was dropped
    ("v1", "info.max_context", "3", "max_context must be a whole number"),
    ("v1", "info", "not an object", "info must be an object"),
])
def test_export_fields_of_the_wrong_type_or_range_are_one_line_errors(source, key, value, words, files, tmp_path,
                                                                      capsys):
    folder = _edited(V1_KGCVAE if source == "v1" else files.hred, tmp_path / "edited", config=_set(key, value))
    with pytest.raises(DataError) as raised:
        load_export(folder)
    assert words in str(raised.value) and "\n" not in str(raised.value)
    line = error(respond_tool, ["--model", folder], capsys)
    assert words in line


def test_a_version_1_field_at_the_top_level_is_checked_not_dropped(tmp_path):
    config = json.loads((V1_KGCVAE / "config.json").read_text(encoding="utf-8"))
    del config["info"]["max_len"]
    config["max_len"] = -1
    shutil.copytree(V1_KGCVAE, tmp_path / "v1")
    (tmp_path / "v1" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(DataError, match="max_len must be a whole number >= 1"):
        load_export(tmp_path / "v1")
    config["max_len"] = 12
    (tmp_path / "v1" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert load_export(tmp_path / "v1").max_len == 12


# ------------------------------------------------------------------------- validators the tools share


def test_a_label_key_that_names_no_label_is_the_same_one_line_in_every_tool(files, tmp_path, capsys):
    """_cli.require_label_key: textvae-sample, -latent and -eval refuse it alike, before reading any data."""
    said = "--label-key must be 'label' or 'attributes.NAME', got 'colour'"
    for tool, argv in [(sample_tool, ["--model", files.vae, "--plot", tmp_path / "p.png", "--data", files.sentences]),
                       (latent_tool, ["attribute", "--model", files.vae, "--data", files.sentences, "--from-label", "a",
                                      "--to-label", "b", "a sentence ."]),
                       (eval_tool, ["--model", files.vae, "--data", files.sentences, "--device", "cpu"])]:
        for key in ("colour", "attributes."):
            line = error(tool, [*argv, "--label-key", key], capsys)
            assert line == f"{tool.PROG}: error: {said.replace('colour', key)}", line
    assert not (tmp_path / "p.png").exists()


def test_a_name_the_model_does_not_know_is_one_line_naming_the_flag(files, capsys):
    """_cli.name_to_id: --label of textvae-sample, --act and --topic of textvae-respond."""
    line = error(sample_tool, ["--model", files.vae, "--label", "happy", "--device", "cpu"], capsys)
    assert line == ("textvae-sample: error: --label: needs a model conditioned on labels (a CVAE or M2 SentenceVAE); "
                    "SentenceVAE here generates without one"), line
    for flag, said in (("--act", "HRED is not conditioned on dialog acts"), ("--topic", "HRED was trained without topics")):
        line = error(respond_tool, ["--model", files.hred, flag, "inform", "--device", "cpu"], capsys)
        assert line.startswith(f"textvae-respond: error: {flag}: {said}"), line


def test_the_flags_every_tool_shares_read_alike_in_their_help(capsys):
    """_cli.add_model_argument, add_cache_argument, add_seed_argument: one flag, one range, one wording."""
    def flag_help(module, flag: str, argv: tuple[str, ...] = ()) -> str:
        with pytest.raises(SystemExit):
            module.main([*argv, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        return text[text.index(f"{flag} ", text.index("options:")):]

    for module, argv in [(sample_tool, ()), (homotopy_tool, ()), (eval_tool, ()), (respond_tool, ()),
                         (reinforce_tool, ()), (latent_tool, ("attribute",)), (latent_tool, ("analogy",))]:
        assert flag_help(module, "--model", argv).startswith("--model DIR ")
        assert "export folder" in flag_help(module, "--model", argv)[:60]
        assert flag_help(module, "--seed", argv).startswith("--seed S ")
        assert "0 to 2**63-1 (default 0)" in flag_help(module, "--seed", argv)
    for module in (eval_tool, classifier_tool, act_tagger_tool):
        assert flag_help(module, "--cache-dir").startswith(
            "--cache-dir DIR dataset cache (default: .cache next to the data file, shared with textvae-train)")


# -------------------------------------------------------------------------------------------- devices


def test_devices_are_named_at_parse_time(files, capsys):
    for tool, argv in [(sample_tool, ["--model", files.vae]), (respond_tool, ["--model", files.hred]),
                       (eval_tool, ["--model", files.vae, "--data", files.sentences]),
                       (homotopy_tool, ["--model", files.vae, "--from-prior", "--to-prior"])]:
        line = error(tool, [*argv, "--device", "foo"], capsys)
        assert "argument --device: unknown device 'foo'" in line and "weights" not in line, line
        if not torch.cuda.is_available():
            line = error(tool, [*argv, "--device", "cuda"], capsys)
            assert line.endswith("argument --device: CUDA is not available on this machine; use --device cpu"), line
    with pytest.raises(DataError, match="unknown device 'foo'"):
        load_export(files.vae, device="foo")


# -------------------------------------------------------------------------------------------- Ctrl-C


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_during_a_chat_turn_cancels_that_turn_and_returns_to_the_prompt(files, monkeypatch, capsys):
    export = load_export(files.hred)
    responder = respond_tool.Responder(export=export, num_samples=2, decoding=respond_tool.Decoding("greedy", max_len=5),
                                       max_context=3, max_turn_len=20, z_source="prior",
                                       generator=torch.Generator().manual_seed(0), device="cpu")
    real = respond_tool.Responder.respond
    calls = []

    def respond_once_interrupted(self, contexts, progress=None):
        calls.append([list(c.turns) for c in contexts])
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(self, contexts, progress)

    monkeypatch.setattr(respond_tool.Responder, "respond", respond_once_interrupted)
    stdin = io.BytesIO(b"hello .\na train please .\n[HISTORY]\n[EXIT]\n")
    stdout = io.StringIO()
    respond_tool.chat(responder, stdin, stdout, act=None, topic=None, prompt=False)
    err = capsys.readouterr().err
    assert "interrupted: that turn was cancelled" in err and "Traceback" not in err
    assert len(calls) == 2 and len(calls[1][0]) == 1  # the cancelled turn is not in the next context
    shown = stdout.getvalue()
    assert "  1. " in shown and "  2. " in shown  # the next turn was answered
    history = shown.split("  you: ")
    assert len(history) == 2 and "a train please" in history[1] and "hello" not in history[1]


def test_respond_help_documents_ctrl_c(capsys):
    with pytest.raises(SystemExit):
        respond_tool.main(["--help"])
    assert "Ctrl-C while the responses are generated cancels that turn" in " ".join(capsys.readouterr().out.split())


def test_ctrl_c_in_batch_tools_exits_130_with_one_line_and_no_output(files, tmp_path, monkeypatch, capsys):
    out = tmp_path / "responses.jsonl"
    monkeypatch.setattr(respond_tool.Responder, "respond", _interrupt)
    line = fails(respond_tool, ["--model", files.hred, "--input", files.contexts, "--output", out], capsys, code=130)
    assert line == "textvae-respond: interrupted"
    assert list(tmp_path.iterdir()) == []  # neither the output nor its .tmp

    monkeypatch.setattr(sample_tool, "decode_texts", _interrupt)
    assert fails(sample_tool, ["--model", files.vae, "-n", "3"], capsys, code=130) == "textvae-sample: interrupted"

    monkeypatch.setattr(eval_tool, "evaluate", _interrupt)
    line = fails(eval_tool, ["--model", files.vae, "--data", files.sentences, "--json", tmp_path / "e.json"], capsys,
                 code=130)
    assert line == "textvae-eval: interrupted" and list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_the_previous_file_and_no_tmp(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt), atomic_output(out) as tmp:
        tmp.write_text("half a", encoding="utf-8")
        raise KeyboardInterrupt
    assert out.read_text(encoding="utf-8") == "previous\n" and sorted(tmp_path.iterdir()) == [out]


def test_an_interrupted_respond_write_leaves_no_tmp(files, tmp_path, monkeypatch, capsys):
    """Ctrl-C while the output is being written (the responses are done): no output, no responses.jsonl.tmp."""
    out = tmp_path / "responses.jsonl"
    real_dumps = json.dumps
    monkeypatch.setattr(respond_tool.json, "dumps",
                        lambda record, **kw: _interrupt() if "responses" in record else real_dumps(record, **kw))
    fails(respond_tool, ["--model", files.hred, "--input", files.contexts, "--output", out], capsys, code=130)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ smaller items


def test_respond_output_that_is_a_folder_is_named_and_leaves_nothing(files, tmp_path, capsys):
    folder = tmp_path / "inputs"
    folder.mkdir()
    line = error(respond_tool, ["--model", files.hred, "--input", files.contexts, "--output", folder], capsys)
    assert f"--output {folder} is a folder; give a file name" in line and ".tmp" not in line, line
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []
    line = error(respond_tool, ["--model", files.hred, "--input", folder, "--output", tmp_path / "o.jsonl"], capsys)
    assert "--input" in line and "is a folder" in line


def test_respond_input_dev_null_is_an_empty_input(files, tmp_path, capsys):
    line = error(respond_tool, ["--model", files.hred, "--input", "/dev/null", "--output", tmp_path / "o.jsonl"],
                 capsys)
    assert line.endswith("/dev/null: no contexts in the file"), line
    assert list(tmp_path.iterdir()) == []


def test_homotopy_prints_given_sentences_escaped_on_one_line_each(files, capsys):
    assert homotopy_tool.main(["--model", str(files.vae), "--from", "a\nb \x1b[31m red", "--to", "c\td \u202e",
                               "--steps", "2", "--max-len", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 4  # steps + 2: the newline did not split a row
    assert "\x1b" not in out and "\u202e" not in out and "\t" not in out
    assert lines[0].endswith("[from] a\\nb \\x1b[31m red") and lines[-1].endswith("[to]   c\\td \\u202e")


def test_homotopy_notes_an_input_cut_to_the_models_longest(files, capsys):
    long = " ".join(["the"] * 1000)  # the model reads 510 words
    assert homotopy_tool.main(["--model", str(files.vae), "--from", long, "--to", "the end .", "--steps", "1",
                               "--max-len", "3", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "textvae-homotopy: note: 1 sentence was cut to the model's longest input (510 tokens)" in err


def test_sample_reconstructions_are_escaped_and_cut_inputs_noted(files, tmp_path, capsys):
    text = tmp_path / "sentences.txt"
    text.write_text("a \x1b[2J b\n" + " ".join(["the"] * 600) + "\n", encoding="utf-8")
    assert sample_tool.main(["--model", str(files.vae), "--reconstruct", str(text), "--max-len", "3",
                             "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()
    assert len(rows) == 2 and rows[0].startswith("a \\x1b[2J b\t") and "\x1b" not in captured.out
    assert "1 sentence was cut to the model's longest input (510 tokens)" in captured.err


# ----------------------------------------------------------------------------------------- progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_line_shows_on_a_terminal_and_is_erased(monkeypatch):
    monkeypatch.setattr(_cli, "PROGRESS_DELAY", 0.0)
    screen = Terminal()
    with _cli.Progress("textvae-x", "sentences", 10, stream=screen) as progress:
        progress(3)
    assert "textvae-x: 3 of 10 sentences (30%)" in screen.getvalue()
    assert screen.getvalue().endswith("\r\x1b[K")  # erased: what follows starts on a clean line
    quiet = io.StringIO()  # not a terminal (a log file, a pipe): nothing
    with _cli.Progress("textvae-x", "sentences", 10, stream=quiet) as progress:
        progress(3)
    assert quiet.getvalue() == ""


def test_short_work_stays_silent_on_a_terminal():
    screen = Terminal()
    with _cli.Progress("textvae-x", "sentences", 10, stream=screen) as progress:  # PROGRESS_DELAY 2 s
        progress(10)
    assert screen.getvalue() == ""


def test_long_evaluations_and_batches_show_progress(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_cli, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(_cli.sys.stderr, "isatty", lambda: True, raising=False)
    eval_tool.main(["--model", str(files.vae), "--data", str(files.sentences), "--samples", "2", "--batch-size", "8",
                    "--prior-samples", "3", "--device", "cpu", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert "textvae-eval: 8 of 40 sentences (20%)" in err and "of 3 prior samples" in err
    assert "textvae-eval: MiB of sentences.jsonl parsed into the cache" in err  # a first cache build (under 1 MiB)
    assert re.search(r"textvae-eval: \d+ of 40 sentences tokenised \(\d+%\)", err), err
    respond_tool.main(["--model", str(files.hred), "--input", str(files.contexts), "--output",
                       str(tmp_path / "o.jsonl"), "-n", "2", "--max-len", "4", "--device", "cpu"])
    assert "textvae-respond: 1 of 1 contexts (100%)" in capsys.readouterr().err


def on_a_terminal(command: list[str]) -> tuple[int, str, str]:
    """Run ``command`` (``python -m tools.X ...``) as a user does, its stderr a terminal (a pseudo-terminal) and its
    stdout redirected to a file, progress lines at once (``TEXTVAE_PROGRESS_DELAY=0``); return its exit code, what
    the terminal showed and what stdout got."""
    import pty
    import select
    import tempfile

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TEXTVAE_PROGRESS_DELAY": "0"}
    main, child = pty.openpty()
    stdout = tempfile.TemporaryFile()  # not a pipe: one that nobody reads while the terminal is read would fill
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=child)
    os.close(child)
    screen = b""
    while True:
        ready, _, _ = select.select([main], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the pty closes when the tool exits
            break
        if not chunk:
            break
        screen += chunk
    os.close(main)
    code = process.wait(timeout=120)
    stdout.seek(0)
    return code, screen.decode(errors="replace"), stdout.read().decode()


def in_a_pipe(command: list[str]) -> subprocess.CompletedProcess:
    """Run ``command`` with stdout and stderr pipes (a log, a script), progress lines allowed at once."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TEXTVAE_PROGRESS_DELAY": "0"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_eval_on_a_pseudo_terminal_shows_progress_with_an_eta_and_nothing_in_a_pipe(files):
    """textvae-eval --samples 500 as a user runs it: stderr a terminal (a pty), then a pipe."""
    command = [sys.executable, "-m", "tools.eval", "--model", str(files.vae), "--data", str(files.sentences),
               "--samples", "500", "--batch-size", "8", "--no-bleu", "--device", "cpu"]
    code, screen, out = on_a_terminal(command)
    assert code == 0, screen[-2000:]
    assert re.search(r"textvae-eval: \d+ of 40 sentences \(\d+%\), \d+ s, about \d+ s left", screen), screen[-2000:]
    assert "IW-NLL" in out and "\r" not in out and "sentences (" not in out  # the results, no progress
    piped = in_a_pipe(command)
    assert piped.returncode == 0 and "sentences (" not in piped.stderr and "\r" not in piped.stderr


def test_sampling_on_a_pseudo_terminal_shows_progress_with_an_eta_and_nothing_in_a_pipe(files):
    """textvae-sample -n 3000 > samples.txt: the count and an ETA on the terminal, every sample in the file;
    with stderr a pipe too, not a byte more than the samples."""
    command = [sys.executable, "-m", "tools.sample", "--model", str(files.vae), "-n", "3000", "--max-len", "4",
               "--device", "cpu"]
    code, screen, out = on_a_terminal(command)
    assert code == 0, screen[-2000:]
    assert re.search(r"textvae-sample: [\d,]+ of 3,000 sentences \(\d+%\), \d+ s, about \d+ s left", screen), \
        screen[-2000:]
    assert screen.endswith("\r\x1b[K")  # erased at the end: the prompt comes back on a clean line
    assert len(out.splitlines()) == 3000 and "\r" not in out and "textvae-sample" not in out
    piped = in_a_pipe(command)
    assert piped.returncode == 0 and piped.stderr == "" and len(piped.stdout.splitlines()) == 3000


def test_training_shows_its_first_cache_build_on_a_terminal(files, tmp_path):
    """textvae-train on a corpus it has not cached yet: the records read and the sentences tokenised, counted."""
    data = str(files.sentences)
    command = [sys.executable, "-m", "tools.train", "fit", "--config", "recipes/quickstart.yaml",
               "--trainer.fast_dev_run", "true", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
               "--trainer.default_root_dir", str(tmp_path), "--data.train", data, "--data.valid", data,
               "--data.test", data, "--data.cache_dir", str(tmp_path / "cache"), "--export", str(tmp_path / "export")]
    code, screen, _ = on_a_terminal(command)
    assert code == 0, screen[-2000:]
    assert re.search(r"textvae-train: [01] of 1 MiB of sentences.jsonl read into the cache", screen), screen[-2000:]
    assert re.search(r"textvae-train: \d+ of 40 sentences of train tokenised", screen), screen[-2000:]


def test_training_reports_a_data_warning_in_one_line(files, tmp_path):
    """Sentences cut to --data.max_len: one ``textvae-train: warning:`` line, not Python's file, line and source."""
    data = str(files.sentences)
    piped = in_a_pipe([sys.executable, "-m", "tools.train", "fit", "--config", "recipes/quickstart.yaml",
                       "--trainer.fast_dev_run", "true", "--trainer.logger", "false",
                       "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
                       "--data.train", data, "--data.valid", data, "--data.test", data, "--data.max_len", "3",
                       "--data.cache_dir", str(tmp_path / "cache"), "--export", str(tmp_path / "export")])
    assert piped.returncode == 0, piped.stderr[-2000:]
    lines = [line for line in piped.stderr.splitlines() if "truncated" in line]
    assert lines and all(line.startswith("textvae-train: warning: ") for line in lines), piped.stderr[-2000:]
    assert "DataWarning" not in piped.stderr and "datasets.py" not in piped.stderr
    assert "LeafSpec" not in piped.stderr  # a library's deprecation notice the user can do nothing about


def test_a_reader_that_stops_early_ends_the_tool_quietly(files):
    """textvae-sample ... | head -1: no "Broken pipe" error, no traceback, SIGPIPE's exit code."""
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-m", "tools.sample", "--model", str(files.vae), "-n", "5000",
                                "--max-len", "3", "--device", "cpu"], cwd=root, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert process.stdout.readline()  # one line, then the reader goes away
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and err == ""


def test_deeply_nested_json_lines_are_one_line_errors_or_plain_text(files, tmp_path, capsys):
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 5000 + "\n", encoding="utf-8")
    line = error(respond_tool, ["--model", files.hred, "--input", deep, "--output", tmp_path / "o.jsonl"], capsys)
    assert "deep.jsonl:1: JSON nested deeper than" in line, line
    assert sample_tool.main(["--model", str(files.vae), "--reconstruct", str(deep), "--max-len", "3",
                             "--device", "cpu"]) == 0  # not a JSONL file: one sentence of text
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_undecodable_command_line_bytes_are_printed_escaped(files, capsys):
    start = b"caf\xe9 .".decode("utf-8", "surrogateescape")  # as Python hands a Latin-1 argument over
    assert homotopy_tool.main(["--model", str(files.vae), "--from", start, "--to", "b", "--steps", "1",
                               "--max-len", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "[from] caf\\udce9 ." in out and out.encode("utf-8")  # encodable: no lone surrogate printed


@pytest.mark.parametrize("tool", ["textvae-eval", "textvae-sample", "textvae-train"])
def test_ctrl_c_while_a_tool_starts_is_one_line_and_exit_130(tool):
    """Ctrl-C in the seconds a console script spends importing torch and Lightning, before its main runs."""
    import signal
    import time

    script = Path(sys.executable).parent / tool
    if not script.is_file():
        pytest.skip(f"{tool} is not installed beside this Python (pip install -e .)")
    process = subprocess.Popen([str(script), "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # inside the imports: torch alone takes longer
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip() == f"{tool}: interrupted"
