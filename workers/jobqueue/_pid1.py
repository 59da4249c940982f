"""SIGTERM from the first moment of the ``jobqueue`` command, when it is a container's PID 1.

The kernel drops the signals that PID 1 has no handler for. Every worker and CronJob pod runs
``jobqueue`` as its container's first process, so a pod deleted in the second its command
started (a quick scale-up and down) ignored SIGTERM while Python imported, then claimed jobs
and ran them until the kubelet's SIGKILL at the end of the grace period. Imported first by
the package: until the worker installs its graceful handler (and for the short commands),
SIGTERM exits 143, as it would for any other process. Only for the CLI — an application
that imports the library as its PID 1 keeps its own signal handling — and stdlib only, so
that it runs before anything slow. What is left is the interpreter's own start-up (tens of
milliseconds) during which no Python code runs; an init process in the container (tini, or
the pod's ``shareProcessNamespace``) would close that too.
"""

from __future__ import annotations

import os
import signal
import sys


def _exit(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)


if (
    os.getpid() == 1
    and os.path.basename(sys.argv[0]) == "jobqueue"
    and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
):
    signal.signal(signal.SIGTERM, _exit)
