"""textvae-respond: a real chat through a pseudo-terminal (stdlib pty: pexpect is not installed), and batch mode,
on real tiny HRED / VHRED / CVAE / kgCVAE exported by textvae-train (tests/dialogue_exports.py).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from textvae.decoding import Decoding
from textvae.export import load_export
from tools import respond

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ("import sys; from tools.respond import main; "
          "sys.exit(main(sys.argv[1:]))")


pytestmark = pytest.mark.usefixtures("one_thread")


class Terminal:
    """textvae-respond running on the far side of a pseudo-terminal: type lines, read what the screen shows."""

    def __init__(self, args: list[str]):
        path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), *filter(None, [os.environ.get("PYTHONPATH")])])
        env = os.environ | {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes the tool, its stdin/stdout/stderr the terminal
            os.execve(sys.executable, [sys.executable, "-c", LAUNCH, *args], env)
        self.screen = b""  # everything the terminal showed
        self.cursor = 0  # where the next expect starts looking

    def expect(self, pattern: str, timeout: float = 60) -> str:
        """Read until ``pattern`` (a regex) shows after the previous match; return the text up to it."""
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern.encode(), self.screen[self.cursor:])):
            ready, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise AssertionError(f"no {pattern!r} within {timeout} s; the screen shows:\n"
                                     f"{self.screen.decode(errors='replace')}")
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the tool exited
                chunk = b""
            if not chunk:
                raise AssertionError(f"the tool ended before {pattern!r}:\n{self.screen.decode(errors='replace')}")
            self.screen += chunk
        text = self.screen[self.cursor:self.cursor + found.end()].decode(errors="replace")
        self.cursor += found.end()
        return text

    def type(self, line: bytes | str) -> None:
        os.write(self.fd, (line.encode() if isinstance(line, str) else line) + b"\n")

    def exit_code(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            try:  # keep draining, so the tool never blocks on a full terminal
                if select.select([self.fd], [], [], 0.1)[0]:
                    self.screen += os.read(self.fd, 4096)
            except OSError:
                pass
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("the tool did not exit")


def _responses(text: str, n: int) -> list[str]:
    lines = re.findall(r"^  (\d+)\. (.*?)\r?$", text, flags=re.M)
    assert [int(k) for k, _ in lines] == list(range(1, n + 1)), text
    return [line for _, line in lines]


def test_chat_in_a_terminal(dialogue_exports):
    term = Terminal(["--model", str(dialogue_exports.kgcvae), "-n", "3", "--max-len", "8", "--max-turn-len", "6",
                     "--device", "cpu"])
    term.expect(r"3 responses a turn, greedy per sampled z\. Type a turn; .*\[ACT name\]")
    term.expect("you> ")
    term.type("hi , i need a train to ely .")  # 9 tokens: 3 cut
    text = term.expect("you> ")
    assert "the turn was cut to 6 tokens (3 tokens dropped)" in text
    first = _responses(text, 3)
    assert all(re.match(r"\[\w+\] ", r) for r in first)  # kgCVAE shows the act of each response
    term.type("[HISTORY]")
    history = term.expect("you> ")
    assert "you: hi , i need a train" in history and "system: " + first[0].split("] ", 1)[1] in history
    term.type("   ")
    assert "empty turn" in term.expect("you> ")
    term.type(b"caf\xe9 ?")  # latin-1, not UTF-8
    assert "not valid UTF-8" in term.expect("you> ")
    term.type("[ACT nonsense]")
    assert "unknown act 'nonsense'; this model knows affirm, bye" in term.expect("you> ")
    term.type("[ACT inform]")
    term.expect("you> ")
    term.type("which day ?")
    answers = _responses(term.expect("you> "), 3)
    assert all(r.startswith("[inform] ") for r in answers)
    term.type("[PICK 3]")
    assert "response 3 is the system's turn" in term.expect("you> ")
    term.type("[HISTORY]")
    assert "system: " + answers[2].split("] ", 1)[1] in term.expect("you> ")
    term.type("[DONE]")
    assert "new dialogue" in term.expect("you> ")
    term.type("[HISTORY]")
    assert "(empty: type a turn)" in term.expect("you> ")
    term.type("[EXIT]")
    assert term.exit_code() == 0
    assert b"Traceback" not in term.screen


def test_end_of_input_quits_cleanly(dialogue_exports):
    term = Terminal(["--model", str(dialogue_exports.hred), "-n", "2", "--max-len", "6", "--device", "cpu"])
    banner = term.expect("you> ")
    assert "2 responses a turn, sample" in banner and "[PICK k]" in banner and "[ACT name]" not in banner  # no acts
    term.type("hello .")
    _responses(term.expect("you> "), 2)
    os.write(term.fd, b"\x04")  # Ctrl-D at the start of a line: end of input
    assert term.exit_code() == 0
    assert b"Traceback" not in term.screen


# ----------------------------------------------------------------------------------------------- batch


def _write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines), encoding="utf-8")
    return path


CONTEXTS = [
    {"id": "a", "turns": [{"speaker": "user", "text": "hi , i need a train to ely ."},
                          {"speaker": "system", "text": "which day ?"},
                          {"speaker": "user", "text": "on friday ."}], "act": "inform"},
    ["i want to book a table .", "for how many people ?", "six , please ."],
    {"turns": [{"speaker": "user", "text": "hello ."}], "response": "how may i help ?"},
]


def test_batch_mode_writes_n_responses_per_context(dialogue_exports, tmp_path, capsys):
    contexts = _write_lines(tmp_path / "contexts.jsonl", CONTEXTS)
    out = tmp_path / "out" / "responses.jsonl"
    assert respond.main(["--model", str(dialogue_exports.kgcvae), "--input", str(contexts), "--output", str(out),
                         "-n", "4", "--max-len", "10", "--batch-size", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 3 and records[0]["id"] == "a" and "id" not in records[1]
    assert all(len(r["responses"]) == 4 and len(r["acts"]) == 4 for r in records)
    assert records[0]["acts"] == ["inform"] * 4
    assert set(records[1]["acts"]) <= set(dialogue_exports.acts)
    again = tmp_path / "again.jsonl"
    respond.main(["--model", str(dialogue_exports.kgcvae), "--input", str(contexts), "--output", str(again),
                  "-n", "4", "--max-len", "10", "--batch-size", "2"])
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")  # same seed, same responses
    respond.main(["--model", str(dialogue_exports.kgcvae), "--input", str(contexts), "--output", str(again),
                  "-n", "2", "--max-len", "10", "--act", "request"])
    records = [json.loads(line) for line in again.read_text(encoding="utf-8").splitlines()]
    assert [r["acts"] for r in records] == [["inform"] * 2, ["request"] * 2, ["request"] * 2]  # a line's act wins


def test_limits_default_to_the_exported_training_data_module(dialogue_exports, tmp_path, capsys):
    """The export records the data module's max_context (3) and max_len (30); batch mode reads both."""
    contexts = _write_lines(tmp_path / "contexts.jsonl", [["hello .", "hi .", "a train please .", "to ely ."],
                                                          [" ".join(["word"] * 33)]])
    out = tmp_path / "out.jsonl"
    assert respond.main(["--model", str(dialogue_exports.vhred), "--input", str(contexts), "--output", str(out),
                         "-n", "2", "--max-len", "6"]) == 0
    captured = capsys.readouterr()
    assert "greedy per sampled z)" in captured.out
    assert "1 context has more than 3 turns; the model reads the last 3" in captured.err
    assert "cut 1 turn to 30 tokens (3 tokens dropped; the first on line 2)" in captured.err
    assert respond.main(["--model", str(dialogue_exports.vhred), "--input", str(contexts), "--output", str(out),
                         "-n", "2", "--max-len", "6", "--allow-unk", "--temperature", "0.5"]) == 0
    assert "sample per sampled z (T 0.5, <unk> allowed))" in capsys.readouterr().out


def test_topics_reach_the_models_trained_with_them(dialogue_exports, tmp_path, capsys):
    contexts = _write_lines(tmp_path / "contexts.jsonl", [{"turns": ["a table for two ."], "topic": "restaurant"},
                                                          ["a taxi please ."]])
    out = tmp_path / "out.jsonl"
    export = load_export(dialogue_exports.cvae)
    responder = respond.Responder(export=export, num_samples=2, decoding=Decoding("greedy", max_len=8),
                                  max_context=3, max_turn_len=30, z_source="prior",
                                  generator=torch.Generator().manual_seed(0), device="cpu")
    lines = respond.read_contexts(contexts, responder, act=None, topic=export.topics.index("taxi"))
    assert [line.context.topic for line in lines] == [export.topics.index(name)
                                                      for name in ("restaurant", "taxi")]  # a line's topic wins
    assert respond.main(["--model", str(dialogue_exports.cvae), "--input", str(contexts), "--output", str(out),
                         "--topic", "taxi", "-n", "2", "--max-len", "8"]) == 0
    respond.main(["--model", str(dialogue_exports.hred), "--input", str(contexts), "--output", str(out),
                  "-n", "2", "--max-len", "8"])
    assert 'ignored the "topic" of 1 line: HRED was trained without topics' in capsys.readouterr().err
    for model, argv, expected in [("cvae", ["--topic", "opera"], "--topic: unknown topic 'opera'; this model knows hotel"),
                                  ("hred", ["--topic", "taxi"], "--topic: HRED was trained without topics")]:
        with pytest.raises(SystemExit):
            respond.main(["--model", str(getattr(dialogue_exports, model)), "--input", str(contexts),
                          "--output", str(out), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err


def test_hred_samples_at_the_temperature_asked(dialogue_exports, tmp_path, capsys):
    contexts = _write_lines(tmp_path / "contexts.jsonl", [CONTEXTS[1]])
    outputs = []
    for seed in ("0", "1"):
        out = tmp_path / f"out{seed}.jsonl"
        respond.main(["--model", str(dialogue_exports.hred), "--input", str(contexts), "--output", str(out),
                      "-n", "4", "--max-len", "8", "--temperature", "2", "--seed", seed])
        outputs.append(json.loads(out.read_text(encoding="utf-8"))["responses"])
    assert "(1 context, 4 responses each, sample (T 2))" in capsys.readouterr().out
    assert outputs[0] != outputs[1] and len(set(outputs[0])) > 1  # words sampled: seeds and samples differ


def test_prior_scale_reaches_the_decoding(dialogue_exports, tmp_path, capsys, monkeypatch):
    """--prior-scale S is the Decoding's prior_scale (the frontier's "prior xS"; what it does to z:
    tests/test_benchmark_helpers.py), and the summary line names it."""
    contexts = _write_lines(tmp_path / "contexts.jsonl", [CONTEXTS[1]])
    asked = []
    generate = respond.generate_responses

    def recording(*args, **kwargs):
        asked.append(kwargs["decoding"])
        return generate(*args, **kwargs)

    monkeypatch.setattr(respond, "generate_responses", recording)
    out = tmp_path / "out.jsonl"
    assert respond.main(["--model", str(dialogue_exports.kgcvae), "--input", str(contexts), "--output", str(out),
                         "-n", "3", "--max-len", "8", "--prior-scale", "0.5", "--temperature", "0.5"]) == 0
    assert asked == [Decoding("sample", temperature=0.5, max_len=8, prior_scale=0.5)]
    assert "sample per sampled z (T 0.5), prior x0.5)" in capsys.readouterr().out
    assert len(json.loads(out.read_text(encoding="utf-8"))["responses"]) == 3


def test_batch_posterior_hred_sampling_and_warnings(dialogue_exports, tmp_path, capsys):
    posterior = _write_lines(tmp_path / "posterior.jsonl", [CONTEXTS[2]])
    out = tmp_path / "posterior_out.jsonl"
    respond.main(["--model", str(dialogue_exports.cvae), "--input", str(posterior), "--output", str(out),
                  "--z-source", "posterior", "-n", "2", "--max-len", "8"])
    assert len(json.loads(out.read_text(encoding="utf-8"))["responses"]) == 2
    long = _write_lines(tmp_path / "long.jsonl", [["a b c d e f g h i j ."], *CONTEXTS[:1]])  # 11 and 9 tokens
    respond.main(["--model", str(dialogue_exports.hred), "--input", str(long), "--output", str(out),
                  "--max-turn-len", "5", "--top-k", "3", "--max-len", "8", "--max-context", "2"])
    captured = capsys.readouterr()
    assert "sample" in captured.out
    err = captured.err.strip().splitlines()
    assert any("cut 2 turns to 5 tokens (10 tokens dropped; the first on line 1)" in line for line in err), err
    assert any('ignored the "act" of 1 line' in line for line in err), err
    assert any("1 context has more than 2 turns; the model reads the last 2" in line for line in err), err
    assert all(line.startswith("textvae-respond: warning: ") for line in err)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert all("acts" not in r for r in records)


BATCH_ERRORS = [
    # (model, input lines, extra argv, words the error line must contain)
    ("kgcvae", ['{"turns": [}'], [], "contexts.jsonl:1: malformed JSON"),
    ("kgcvae", [CONTEXTS[1], {"turns": [{"speaker": "A", "text": "  "}]}], [], "contexts.jsonl:2: turn 0 is empty"),
    ("kgcvae", [{"turns": []}], [], "contexts.jsonl:1: the context has no turns"),
    ("kgcvae", [{"turns": [{"text": "hi"}]}], [], 'turn 0 needs a non-empty string "speaker"'),
    ("kgcvae", [{"text": "hi"}], [], "contexts.jsonl:1: expected"),
    ("kgcvae", [CONTEXTS[1] + [], {"turns": ["hi ."], "act": "dance"}], [], "contexts.jsonl:2: unknown act 'dance'"),
    ("kgcvae", [{"turns": ["hi ."], "topic": "opera"}], [], "contexts.jsonl:1: unknown topic 'opera'"),
    ("kgcvae", [{"turns": ["hi ."], "topic": 3}], [], 'contexts.jsonl:1: "topic" must be a string'),
    ("cvae", [CONTEXTS[1]], ["--z-source", "posterior"], 'contexts.jsonl:1: --z-source posterior needs a reference'),
    ("hred", [CONTEXTS[2]], ["--z-source", "posterior"], "needs a latent model"),
    ("hred", [CONTEXTS[1]], ["--act", "inform"], "--act: HRED is not conditioned on dialog acts"),
    ("kgcvae", [CONTEXTS[1]], ["--act", "dance"], "--act: unknown act 'dance'"),
    ("kgcvae", [CONTEXTS[1]], ["--beam", "2", "--temperature", "0.7"], "give one"),
    ("hred", [CONTEXTS[1]], ["--prior-scale", "0.5"], "--prior-scale widens the prior z is drawn from; HRED has no z"),
    ("cvae", [CONTEXTS[2]], ["--z-source", "posterior", "--prior-scale", "0.5"], "draws z from the recognition network"),
    ("kgcvae", [CONTEXTS[1]], ["--prior-scale", "0"], "argument --prior-scale: must be in (0, 100]"),
    ("kgcvae", [], [], "no contexts in the file"),
]


@pytest.mark.parametrize(("model", "lines", "argv", "expected"), BATCH_ERRORS)
def test_batch_mistakes_end_in_one_line(model, lines, argv, expected, dialogue_exports, tmp_path, capsys):
    contexts = _write_lines(tmp_path / "contexts.jsonl", lines)
    out = tmp_path / "responses.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        respond.main(["--model", str(getattr(dialogue_exports, model)), "--input", str(contexts), "--output", str(out),
                      *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("textvae-respond: error: ") and expected in err[0], err
    assert not out.exists()


def test_invalid_utf8_and_mode_mistakes(dialogue_exports, tmp_path, capsys):
    bad = tmp_path / "contexts.jsonl"
    bad.write_bytes(json.dumps(CONTEXTS[1]).encode() + b"\n" + '["caf\xe9"]\n'.encode("latin-1"))
    cases = [
        (["--input", str(bad), "--output", str(tmp_path / "o.jsonl")], "contexts.jsonl:2: not valid UTF-8"),
        (["--input", str(bad)], "needs both --input FILE and --output FILE"),
        (["--z-source", "posterior"], "--z-source posterior needs reference responses"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            respond.main(["--model", str(dialogue_exports.cvae), *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err


@pytest.fixture(scope="module")
def sentence_exports(tmp_path_factory):
    from test_evaluation import build_exports

    return build_exports(tmp_path_factory.mktemp("sentence_exports"))


def test_a_sentence_model_is_refused(sentence_exports, capsys):
    exports = sentence_exports
    with pytest.raises(SystemExit):
        respond.main(["--model", str(exports.vae)])
    assert "is a sentence model" in capsys.readouterr().err


def test_an_export_that_says_dialogues_but_holds_no_dialogue_model(sentence_exports, tmp_path, capsys):
    """A sentence VAE whose config claims kind "dialogues" (a hand-edited or foreign export): both dialogue
    tools refuse it in one line, naming the contract."""
    import shutil

    from tools import eval as eval_tool

    exports = sentence_exports
    mislabelled = tmp_path / "mislabelled"
    shutil.copytree(exports.vae, mislabelled)
    config = json.loads((mislabelled / "config.json").read_text(encoding="utf-8"))
    config["kind"] = "dialogues"
    (mislabelled / "config.json").write_text(json.dumps(config), encoding="utf-8")
    for tool, argv in [(respond, []), (eval_tool, ["--data", str(exports.data)])]:
        with pytest.raises(SystemExit):
            tool.main(["--model", str(mislabelled), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "(the DialogueModel contract)" in err[0], err
