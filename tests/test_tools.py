"""Every console script answers --help, and user mistakes end in one line, never a traceback."""

import subprocess
import sys

import pytest

TOOLS = ["train", "corpus", "eval", "sample", "homotopy", "respond", "latent"]


@pytest.mark.parametrize("tool", TOOLS)
def test_help(tool):
    result = subprocess.run([sys.executable, "-m", f"tools.{tool}", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
    assert "Traceback" not in result.stderr
