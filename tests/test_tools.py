"""Every console script answers --help, and user mistakes end in one line, never a traceback."""

import importlib
import subprocess
import sys

import pytest

TOOLS = ["train", "corpus", "eval", "sample", "homotopy", "respond", "latent", "reinforce", "classifier", "act_tagger"]


@pytest.mark.parametrize("tool", TOOLS)
def test_help(tool):
    result = subprocess.run([sys.executable, "-m", f"tools.{tool}", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
    assert "Traceback" not in result.stderr


def command_line(module: str, prog: str, argv: list[str], *marks) -> pytest.param:
    """A command line of ``module`` on which every required argument is given; nothing on it is read before it
    parses, so a flag added to it is what the tool refuses."""
    return pytest.param(module, prog, argv, marks=marks, id=f"{module}-{argv[0].lstrip('-')}")


COMMAND_LINES = [
    command_line("corpus", "textvae-corpus", ["list"]),
    command_line("corpus", "textvae-corpus", ["prepare", "ptb", "--out", "{tmp}/corpus"]),
    command_line("eval", "textvae-eval", ["--model", "{tmp}/model", "--data", "{tmp}/d.jsonl"]),
    command_line("sample", "textvae-sample", ["--model", "{tmp}/model"]),
    command_line("homotopy", "textvae-homotopy", ["--model", "{tmp}/model", "--from-prior", "--to-prior"]),
    command_line("latent", "textvae-latent", ["attribute", "--model", "{tmp}/model", "--data", "{tmp}/d.jsonl",
                                              "--from-label", "a", "--to-label", "b", "a sentence ."]),
    command_line("latent", "textvae-latent", ["analogy", "--model", "{tmp}/model", "--a", "a", "--b", "b", "--c", "c"]),
    command_line("respond", "textvae-respond", ["--model", "{tmp}/model"]),
    command_line("reinforce", "textvae-reinforce", ["--model", "{tmp}/model", "--data", "{tmp}/corpus"]),
    command_line("classifier", "textvae-classifier", ["--data", "{tmp}/d.jsonl", "--out", "{tmp}/out"]),
    command_line("act_tagger", "textvae-act-tagger", ["--data", "{tmp}/d.jsonl", "--out", "{tmp}/out"]),
    command_line("train", "textvae-train", ["fit"]),
]


@pytest.mark.parametrize(("module", "prog", "argv"), COMMAND_LINES)
@pytest.mark.parametrize("nonsense", ["--nonsense", "--no-such-flag=3", "-Z"])
def test_a_flag_no_tool_has_is_one_line_naming_it(module, prog, argv, nonsense, tmp_path, capsys):
    tool = importlib.import_module(f"tools.{module}")
    with pytest.raises(SystemExit) as exit_info:
        tool.main([arg.format(tmp=tmp_path) for arg in argv] + [nonsense])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [f"{prog}: error: unrecognized arguments: {nonsense}"], err
    assert not any(tmp_path.iterdir())  # refused before anything was written
