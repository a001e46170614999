"""SIGTERM and SIGHUP handled as Ctrl-C is, on both floors: a stopped command keeps what finished."""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler's cancel, `timeout`, a closed terminal, a stopped notebook kernel):
    stop as on Ctrl-C."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signal_number).name}")
        self.signal_number = signal_number


def exit_status(stop: KeyboardInterrupt) -> int:
    """A stopped command's exit status, as a shell gives it: 128 + the signal's number."""
    return 128 + (stop.signal_number if isinstance(stop, Stopped) else signal.SIGINT)


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
