"""Every flag the README and docs/guide.md show a tool with is one that tool's --help lists: the documents
cannot drift from the command lines."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = {"textvae-corpus": {"list", "prepare"}, "textvae-latent": {"attribute", "analogy"},
               "textvae-train": {"fit", "validate", "test"}}


def scripts() -> dict[str, str]:
    """``{tool: module}`` from pyproject.toml's [project.scripts] (read by pattern: tomllib is Python 3.11+)."""
    section = (ROOT / "pyproject.toml").read_text(encoding="utf-8").split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^(textvae-[a-z-]+) = "([\w.]+):main"', section, flags=re.M))


def documented() -> dict[tuple[str, str | None], set[str]]:
    """``{(tool, subcommand): flags}`` of every tool line in the documents' bash blocks."""
    text = "".join((ROOT / name).read_text(encoding="utf-8") for name in ("README.md", "docs/guide.md"))
    uses: dict[tuple[str, str | None], set[str]] = {}
    for block in re.findall(r"```bash\n(.*?)\n```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
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


def test_the_documents_show_the_tools():
    tools = {tool for tool, _ in documented()}
    assert tools <= set(scripts()), tools - set(scripts())
    assert len(tools) >= 8


@pytest.mark.parametrize("tool, sub", sorted(documented(), key=lambda k: (k[0], k[1] or "")))
def test_every_documented_flag_is_in_the_tools_help(tool, sub, capsys):
    flags = documented()[(tool, sub)]
    listed = set(re.findall(r"--[a-z][a-z0-9_.-]*", help_text(tool, sub, capsys)))
    assert flags <= listed, f"{tool} {sub or ''}: documented but not in --help: {sorted(flags - listed)}"
