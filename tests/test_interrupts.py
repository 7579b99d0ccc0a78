"""A Ctrl-C that Python swallows (raised inside a callback whose exceptions it ignores) still stops training."""

from __future__ import annotations

import signal

import pytest

from emofx.nets.interrupts import caught_interrupts


@pytest.fixture()
def default_sigint():
    """SIGINT as in a terminal's Python (a test runner's worker may have set it otherwise)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class _SwallowsInterrupts:
    """Like JAX's garbage-collection hook: a KeyboardInterrupt raised in ``__del__`` is printed and ignored."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)
        for _ in range(100):  # the handler runs at a bytecode boundary, still inside __del__
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed one, as Python says
def test_a_swallowed_ctrl_c_is_raised_at_the_next_check(default_sigint):
    with caught_interrupts() as stop_if_interrupted:
        stop_if_interrupted()  # nothing yet
        _SwallowsInterrupts()
        reached = True  # the KeyboardInterrupt raised inside __del__ was ignored
        with pytest.raises(KeyboardInterrupt):
            stop_if_interrupted()
    assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a background job of a shell
    try:
        with caught_interrupts() as stop_if_interrupted:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            stop_if_interrupted()  # nothing to raise
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_nested_uses_share_what_they_caught(default_sigint):
    with caught_interrupts() as outer:
        with caught_interrupts() as inner:
            _SwallowsInterrupts()
            with pytest.raises(KeyboardInterrupt):
                inner()
        with pytest.raises(KeyboardInterrupt):
            outer()
    with caught_interrupts() as later:
        later()  # a new training starts with nothing remembered
