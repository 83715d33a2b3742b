"""Every flag the documents show a tool with is one that tool's --help lists: the documents cannot drift from the
command lines. The documents are README.md, docs/guide.md and BENCHMARKS.md (their bash blocks and inline code)
and each tool's own docstring, the text its --help prints (its examples); every tool, and every subcommand of
the tools that have them, is shown somewhere."""

import argparse
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/guide.md", "BENCHMARKS.md")
SUBCOMMANDS = {"textvae-corpus": {"list", "prepare"}, "textvae-latent": {"attribute", "analogy"},
               "textvae-train": {"fit", "validate", "test"}}


def scripts() -> dict[str, str]:
    """``{tool: module}`` from pyproject.toml's [project.scripts] (read by pattern: tomllib is Python 3.11+)."""
    section = (ROOT / "pyproject.toml").read_text(encoding="utf-8").split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^(textvae-[a-z-]+) = "([\w.]+):main"', section, flags=re.M))


def command_lines() -> list[str]:
    """Every tool command line the documents show: the lines of their bash blocks, their inline code spans
    (`textvae-X ...`, wrapped over lines or not) and the indented lines of each tool's docstring that start with a
    tool's command (its examples; not its summary "textvae-X: ...", nor prose)."""
    lines = []
    for name in DOCUMENTS:
        text = (ROOT / name).read_text(encoding="utf-8")
        for block in re.findall(r"```bash\n(.*?)\n```", text, flags=re.S):
            lines += block.replace("\\\n", " ").splitlines()
        lines += [" ".join(span.split()) for span in re.findall(r"`(textvae-[a-z-]+[^`]*)`", text)]
    for module in sorted(set(scripts().values())):
        doc = importlib.import_module(module).__doc__ or ""
        lines += [line for line in doc.replace("\\\n", " ").splitlines() if re.match(r"\s+textvae-[a-z-]+ ", line)]
    return lines


def documented() -> dict[tuple[str, str | None], set[str]]:
    """``{(tool, subcommand): flags}`` of every command line the documents show."""
    uses: dict[tuple[str, str | None], set[str]] = {}
    for line in command_lines():
        for part in re.split(r"&&|\|", line.split(" #")[0]):
            match = re.match(r"\s*(textvae-[a-z-]+)\s*(.*)", part)
            if match is None:
                continue
            tool, rest = match.groups()
            words = rest.split()
            sub = words[0] if words and words[0] in SUBCOMMANDS.get(tool, ()) else None
            flags = {f for f in re.findall(r"(?<!\S)(--[a-z][a-z0-9-]*)(?=[\s=]|$)", rest) if "." not in f}
            uses.setdefault((tool, sub), set()).update(flags)
    return uses


def help_text(tool: str, sub: str | None, capsys) -> str:
    module = importlib.import_module(scripts()[tool])
    with pytest.raises(SystemExit) as exit_info:
        module.main([*([sub] if sub else []), "--help"])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


def test_the_documents_show_every_tool_and_subcommand():
    shown = documented()
    tools = {tool for tool, _ in shown}
    assert tools <= set(scripts()), tools - set(scripts())
    assert tools == set(scripts()), f"shown nowhere: {sorted(set(scripts()) - tools)}"
    for tool, module in scripts().items():
        if tool == "textvae-train":  # LightningCLI's parser: its fit is shown, validate and test are Lightning's own
            assert (tool, "fit") in shown
            continue
        parser = importlib.import_module(module)._parser()
        subs = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        for sub in (subs[0].choices if subs else [None]):
            assert (tool, sub) in shown, f"{tool} {sub or ''}: shown in no document"


@pytest.mark.parametrize("tool, sub", sorted(documented(), key=lambda k: (k[0], k[1] or "")))
def test_every_documented_flag_is_in_the_tools_help(tool, sub, capsys):
    flags = documented()[(tool, sub)]
    listed = set(re.findall(r"--[a-z][a-z0-9_.-]*", help_text(tool, sub, capsys)))
    assert flags <= listed, f"{tool} {sub or ''}: documented but not in --help: {sorted(flags - listed)}"
