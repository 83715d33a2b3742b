import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)


def test_readme_quick_start_is_two_single_lines():
    quick_start = (ROOT / "README.md").read_text(encoding="utf-8").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", quick_start, flags=re.S)
    assert len(blocks) == 2 and all("\n" not in b for b in blocks)


def test_ci_runs_the_readme_test_line():
    test_line = readme_commands()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_line in ci_lines
    assert "pytest" in test_line
