"""A loader run as a process of its own: its wall-clock seconds, exit code and peak RSS.

Why not just ``getrusage``: on Linux a child's ``ru_maxrss`` starts at its parent's
high-water mark (``exec`` carries the old address space's peak over), so a 5 MB ``sqlite3``
shell started from a 70 MB bench reads as 70 MB. The child's own ``VmHWM`` in
``/proc/PID/status`` is polled while it runs, and ``ru_maxrss`` (from ``wait4``: this
child's, not the maximum over all children) is used where it is above the bench's own peak
(read after the child ran), so it cannot be the inherited figure; the polled one otherwise.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Finished", "run_timed"]

_POLL_SECONDS = 0.01
_KIB = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB elsewhere


@dataclass(frozen=True)
class Finished:
    """How one process went."""

    seconds: float
    code: int
    peak_rss: int | None  # bytes; None where neither /proc nor wait4 tells


def _hwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _Watch(threading.Thread):
    """Reads the child's VmHWM until told to stop (the child has been reaped by then)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            hwm = _hwm(self.pid)
            if hwm is not None:
                self.peak = max(self.peak or 0, hwm)
            self.done.wait(_POLL_SECONDS)


def run_timed(argv: list[str], env: dict[str, str], stdin: Path | None, log: Path) -> Finished:
    """Run ``argv`` (standard output dropped, standard error into ``log``) and time it."""
    with open(stdin or os.devnull, "rb") as fin, open(log, "wb") as err:
        began = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=fin, stdout=subprocess.DEVNULL, stderr=err, env=env)
        watch = _Watch(proc.pid)
        watch.start()
        if not hasattr(os, "wait4"):  # pragma: no cover - Windows
            code = proc.wait()
            seconds = time.perf_counter() - began
            rss = None
        else:
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - began
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            rss = usage.ru_maxrss * _KIB
        watch.done.set()
        watch.join()
    # Read after the child's exec: what it inherited is at most this process's peak by then.
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _KIB
    if rss is None or rss <= own_peak:
        rss = watch.peak
    return Finished(seconds, code, rss)
