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


@contextmanager
def caught_interrupts() -> Iterator[Callable[[], None]]:
    """Within: SIGINT raises ``KeyboardInterrupt`` as usual and is remembered; the function yielded raises it
    again wherever it was swallowed. Off the main thread, or where SIGINT is ignored or has a handler of its
    own, SIGINT is left alone."""
    seen = threading.Event()

    def stop_if_interrupted() -> None:
        if seen.is_set():
            raise KeyboardInterrupt

    def remember(signum: int, frame: object) -> None:
        seen.set()
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield stop_if_interrupted
        return
    previous = signal.signal(signal.SIGINT, remember)
    try:
        yield stop_if_interrupted
    finally:
        signal.signal(signal.SIGINT, previous)
