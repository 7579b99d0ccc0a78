"""Compile once: JAX's persistent compilation cache, and how long compilation took.

Every emofx process (a CLI call, a papermill kernel, a notebook) would otherwise compile the
same programs again (20-40 s on a CPU for the paper's CNN). :func:`enable_compilation_cache`
points JAX's persistent cache at a per-user folder so that a second process loads the compiled
programs instead; it runs when :mod:`emofx` is imported. The folder is, in order:
``$EMOFX_COMPILATION_CACHE`` (``off`` switches the cache off), else JAX's own setting
(``$JAX_COMPILATION_CACHE_DIR``) when the user made one, else ``<emofx cache>/jax/<machine>`` (``~/.cache/emofx`` or
``$EMOFX_CACHE``, see :mod:`emofx.data.paths`) where ``<machine>`` names the CPU's instruction set,
so a cache folder shared between machines never hands AVX-512 code to an AVX2 CPU. JAX keys
every entry by the program, jaxlib version, backend, XLA flags and compile options, and writes
entries under a file lock (the size cap below turns the lock on), so concurrent processes
share one folder safely.

:func:`compile_seconds` is the process's total time spent tracing, lowering and compiling
(or loading from the persistent cache), from JAX's own monitoring events: training reports
the part spent during a run separately from its steps.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import threading
import time
import warnings
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator

from emofx.data.paths import cache_root

COMPILATION_CACHE_ENV = "EMOFX_COMPILATION_CACHE"
OFF_VALUES = ("off", "0", "false", "no", "none")
MAX_CACHE_BYTES = 4 * 2 ** 30  # least recently used entries go beyond this
MIN_COMPILE_SECONDS = 0.0  # every program is kept: a new process loads even small ones faster than it compiles them
TRIM_AFTER_SECONDS = 1.0  # compilations this long free enough memory to hand back (release_free_memory)

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_LOAD_SAVED = "/jax/compilation_cache/compile_time_saved_sec"  # a program loaded from the persistent cache
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   _BACKEND_COMPILE)
_compile_total = [0.0]
_lock = threading.Lock()
_listening = [False]
_first_runs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # program -> signatures run (weak: no leak)
_IMPORTED = time.perf_counter()


def machine_tag() -> str:
    """A short name for this machine's architecture and CPU instruction set (the cache sub-folder)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line.split(":", 1)[1]
                break
    except OSError:
        pass
    digest = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:10]
    return f"{platform.machine() or 'unknown'}-{digest}"


def compilation_cache_dir(setting: str | os.PathLike | None = None) -> Path | None:
    """The persistent cache folder for ``setting`` (else ``$EMOFX_COMPILATION_CACHE``); None when off."""
    value = str(setting) if setting is not None else os.environ.get(COMPILATION_CACHE_ENV, "")
    if value.strip().lower() in OFF_VALUES:
        return None
    if value.strip():
        return Path(value).expanduser()
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own JAX setting ($JAX_COMPILATION_CACHE_DIR)
        return Path(jax.config.jax_compilation_cache_dir).expanduser()
    return cache_root() / "jax" / machine_tag()


def enable_compilation_cache(setting: str | os.PathLike | None = None) -> Path | None:
    """Turn JAX's persistent compilation cache on in :func:`compilation_cache_dir` (or off); returns the folder.

    Call it before the first compilation to cover every program; later calls redirect JAX's
    cache. Also starts counting :func:`compile_seconds`.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    _listen()
    directory = compilation_cache_dir(setting)
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            warnings.warn(f"emofx: compilation cache off: cannot create {directory} ({err}); "
                          f"set {COMPILATION_CACHE_ENV} to a writable folder", stacklevel=2)
            directory = None
    if directory is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_max_size", MAX_CACHE_BYTES)
    jax_cache.reset_cache()  # the next compilation opens the (new) folder
    return directory


def compile_seconds() -> float:
    """Seconds this process has spent tracing, lowering and compiling JAX programs (or loading them), summed over
    the programs: those compiled side by side in background threads count each, so it can exceed the wall time."""
    _listen()
    with _lock:
        return _compile_total[0]


def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the operating system (glibc's ``malloc_trim``).

    XLA's CPU compiler frees most of what it allocated while compiling the training step
    (about 1 GB for the paper's CNN), but glibc keeps freed small blocks in the process, so a
    training process would stay that much larger for its whole life. Called after every
    sizeable compilation or load from the persistent cache, and after a training chunk's first
    run (:func:`emofx.nets.training.make_train_chunk`); returns False where there is no glibc
    (macOS, Windows, musl).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.malloc_trim(0))


def release_after_first_run(program: Any, signature: Hashable, result: Any) -> None:
    """After ``program``'s first run for ``signature`` (its arguments' shapes): wait for ``result``, then
    :func:`release_free_memory`. A program's first run frees blocks that glibc would keep for the
    process's life (about 70 MiB for the training step of the paper's CNN on a CPU)."""
    seen = _first_runs.setdefault(program, set())
    if signature not in seen:
        import jax

        seen.add(signature)
        jax.block_until_ready(result)
        release_free_memory()


def compile_in_background(jitted: Any, arguments: Callable[[], tuple]) -> threading.Thread:
    """Trace, lower and compile (or load from the persistent cache) ``jitted`` for ``arguments()``
    (arrays or ``jax.ShapeDtypeStruct``; computed in the thread) in a daemon thread; returns it.

    JAX keeps what it traced, lowered and compiled in process-wide caches, so the first real call
    with matching arguments finds its program there: a new process gets its training program
    while it does its other setup (initial variables, the first validation). Join the thread
    before that call, or both would compile. Errors are left to the real call, which raises
    them where they can be handled.
    """
    def work() -> None:
        try:
            jitted.lower(*arguments()).compile()
        except Exception:  # noqa: BLE001 - the real call compiles again and raises it
            pass

    thread = threading.Thread(target=work, name="emofx-compile", daemon=True)
    thread.start()
    return thread


@contextmanager
def joined_on_error(thread: threading.Thread) -> Iterator[None]:
    """Wait for a :func:`compile_in_background` thread before an error leaves the block: a process
    that exits while XLA still compiles in another thread aborts (SIGABRT) instead of reporting the error."""
    try:
        yield
    except BaseException:
        thread.join()
        raise


def process_seconds() -> float:
    """Seconds since this process started (from ``/proc`` on Linux; else since emofx was imported).

    Training reports when its first step was ready on this clock, so that the cost of starting
    a new process (imports, data, compiling or loading programs) is measured, not guessed.
    """
    try:
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
        started_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return since_boot - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def _listen() -> None:
    with _lock:
        if _listening[0]:
            return
        _listening[0] = True
    import jax

    def record(event: str, duration: float, **_: object) -> None:
        if event in _COMPILE_EVENTS:
            with _lock:
                _compile_total[0] += duration
        # Loading a large program from the persistent cache leaves freed blocks too (70-90 MiB for the
        # training step of the paper's CNN): its saved compile time says it was a large one.
        if event in (_BACKEND_COMPILE, _CACHE_LOAD_SAVED) and duration >= TRIM_AFTER_SECONDS:
            release_free_memory()

    jax.monitoring.register_event_duration_secs_listener(record)
