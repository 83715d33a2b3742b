"""The textvae command-line tools.

Started as a console script (``textvae-X``), a tool takes seconds to import torch and Lightning before its
``main`` runs; Ctrl-C in those seconds ends it with one line and exit code 130, as it does later, not with an
import traceback. Each ``main`` puts Python's own handler back (``restore_interrupt``).
"""

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


if os.path.basename(sys.argv[0] if sys.argv else "").startswith("textvae-"):
    signal.signal(signal.SIGINT, _interrupted_while_starting)
