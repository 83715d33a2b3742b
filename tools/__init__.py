"""The textvae command-line tools.

Started as a console script (``textvae-X``), a tool takes seconds to import torch and Lightning before its
``main`` runs; Ctrl-C in those seconds ends it with one line and exit code 130, as it does later, not with an
import traceback. Each ``main`` puts Python's own handler back (``restore_interrupt``).

:class:`Parser` is here, not in ``tools._cli`` with the rest of what the tools share, because it needs no torch:
``textvae-corpus list`` and every tool's ``--help`` and command-line errors answer without loading it.
"""

import argparse
import os
import signal
import sys


def _interrupted_while_starting(signum, frame):
    sys.stderr.write(f"\n{os.path.basename(sys.argv[0])}: interrupted\n")
    sys.stderr.flush()
    os._exit(130)  # nothing has been written yet; no cleanup to run, and no exception through an import


def restore_interrupt() -> None:
    """Ctrl-C raises KeyboardInterrupt again, for the tool to handle."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def print_warning(prog: str, message: object) -> None:
    """A warning for the user, as every tool prints one: ``textvae-X: warning: ...`` on one line of stderr."""
    print(f"{prog}: warning: {' '.join(str(message).split())}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """The tools' argument parser: every command-line mistake is one line ``textvae-X: error: ...`` and exit code
    2, never the usage and never a traceback; a subcommand's too (its parsers are this class, and its prog
    ``textvae-X sub`` names the tool first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog.split()[0]}: error: {message}\n")


if os.path.basename(sys.argv[0] if sys.argv else "").startswith("textvae-"):
    signal.signal(signal.SIGINT, _interrupted_while_starting)

