"""Stopping cleanly: SIGTERM and SIGHUP handled as Ctrl-C is, and no child process left orphaned."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from typing import Any, Iterator


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler's cancel, `timeout`, a closed terminal, a stopped notebook kernel):
    stop as on Ctrl-C. Unlike Ctrl-C, it reached this process alone, so it is forwarded to the child."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signal_number).name}")
        self.signal_number = signal_number


@contextlib.contextmanager
def stops_cleanly() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Stopped in the main thread while the block runs, as SIGINT raises
    KeyboardInterrupt, so every child is stopped and what finished is kept."""
    def stop(signal_number: int, frame: Any) -> None:
        raise Stopped(signal_number)

    stoppers = [number for number in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if number is not None]
    previous = {number: signal.signal(number, stop) for number in stoppers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_child(child: subprocess.Popen, forward: bool) -> None:
    """Ctrl-C reached the child too (one process group); any other stop is forwarded to it as SIGTERM,
    which every kerasmnist command handles as Ctrl-C (SIGINT would not do: a shell starts background jobs
    with SIGINT ignored, and the child inherits that). Give it a moment to write its own record, then
    make sure no orphan is left training."""
    if forward:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
