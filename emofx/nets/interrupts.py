"""Ctrl-C during training that is never lost.

Python turns SIGINT into ``KeyboardInterrupt`` in whatever Python code runs at that moment; when that is
a callback whose exceptions Python ignores (JAX's garbage-collection hook runs between chunks), the
interrupt vanishes and training runs to its end. :func:`caught_interrupts` remembers every SIGINT while
training, and the loop raises it again at its next chunk.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


_SEEN = threading.Event()  # a SIGINT came while training; one for the process, as the handler is


def _remember(signum: int, frame: object) -> None:
    _SEEN.set()
    raise KeyboardInterrupt


def _stop_if_interrupted() -> None:
    if _SEEN.is_set():
        raise KeyboardInterrupt


@contextmanager
def caught_interrupts() -> Iterator[Callable[[], None]]:
    """Within: SIGINT raises ``KeyboardInterrupt`` as usual and is remembered; the function yielded raises it
    again wherever it was swallowed. Nested uses share the outermost one's memory. Off the main thread, or where
    SIGINT is ignored or has a handler of its own, SIGINT is left alone."""
    current = signal.getsignal(signal.SIGINT)
    if current is _remember:  # inside another caught_interrupts
        yield _stop_if_interrupted
        return
    if threading.current_thread() is not threading.main_thread() or current is not signal.default_int_handler:
        yield lambda: None
        return
    _SEEN.clear()
    signal.signal(signal.SIGINT, _remember)
    try:
        yield _stop_if_interrupted
    finally:
        signal.signal(signal.SIGINT, current)
        _SEEN.clear()
