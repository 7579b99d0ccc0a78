"""Where emofx finds the shared real datasets and keeps its caches, how it writes a file whole, how it reads a
JSON record back, and the command that installs one of its optional extras where it runs."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

DATA_ENV = "EMOFX_DATA"
CACHE_ENV = "EMOFX_CACHE"


def shared_data_root() -> Path:
    """The real datasets: ``$EMOFX_DATA`` if set, else ``../shared/data`` beside the project root."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser().resolve()
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def absolutize_path_env() -> None:
    """Resolve a relative ``$EMOFX_DATA``/``$EMOFX_CACHE`` against the current folder, in place.

    Notebook kernels run in the notebooks' folder, so a relative path given on the command line
    (``EMOFX_DATA=../shared/data emofx batch ...``) would otherwise point somewhere else there.
    """
    for name in (DATA_ENV, CACHE_ENV):
        if os.environ.get(name):
            os.environ[name] = str(Path(os.environ[name]).expanduser().resolve())


def install_command(extra: str) -> str:
    """The command that installs emofx's optional ``extra`` into the environment running this process: pip run by
    this Python (a bare ``pip`` may be another environment's, and emofx is not on PyPI, so there ``pip install
    "emofx[extra]"`` finds nothing); from a source tree not installed, the tree itself, editable."""
    python = shlex.quote(sys.executable)
    try:
        importlib.metadata.distribution("emofx")
    except importlib.metadata.PackageNotFoundError:
        return f"{python} -m pip install -e {shlex.quote(f'{Path(__file__).resolve().parents[2]}[{extra}]')}"
    return f'{python} -m pip install "emofx[{extra}]"'


def cache_root() -> Path:
    """Cache for prepared faces: ``$EMOFX_CACHE`` if set, else ``~/.cache/emofx``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "emofx"


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it (one per process and thread), flushed
    to disk and renamed over ``path``: a reader, or a crash, never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class RecordError(ValueError):
    """A JSON record that emofx wrote (metrics.json, status.json, ...) cannot be read back as one."""


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


def read_json_record(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path``; a :class:`RecordError` naming the file where it is not readable JSON or holds
    something other than an object (a damaged or hand-edited record), so that no reader fails later on a
    missing ``.get``."""
    try:
        value = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"{path} is not readable JSON ({err})") from None
    if not isinstance(value, dict):
        raise RecordError(f"{path} holds {_JSON_KINDS.get(type(value), type(value).__name__)}, not the JSON object "
                          "emofx writes there")
    return value


def given_twice(paths: Sequence[str | os.PathLike]) -> Path | None:
    """The first of ``paths`` that names the same file or folder as an earlier one (once resolved), else None:
    commands refuse an input or output given twice rather than use it twice."""
    seen: set[Path] = set()
    for path in paths:
        resolved = Path(path).resolve()
        if resolved in seen:
            return Path(path)
        seen.add(resolved)
    return None


def check_new_file(path: str | os.PathLike, overwrite: bool, option: str = "--out") -> None:
    """Stop before any work when an output file cannot be written as asked: ``path`` is a folder (even with
    ``overwrite``, a folder is never replaced), or it exists and ``overwrite`` is off."""
    path = Path(path)
    if path.is_dir():
        given = f" (given as {option})" if option else ""
        raise IsADirectoryError(f"{path} is a folder{given}; give the name of a file to write")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")


def folder_files(root: Path) -> dict[Path, list[Path]]:
    """Every non-hidden folder under ``root`` (itself included) with its non-hidden files, sorted. Folders that
    are symbolic links are followed (a collection of links into the data), each real folder once (no loops)."""
    found: dict[Path, list[Path]] = {}
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found[Path(folder)] = [Path(folder) / f for f in sorted(files) if not f.startswith(".")]
    return found


def unencodable_name(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be recorded in a dataset or table (a name that is not valid UTF-8, e.g. Latin-1 from an
    old archive), or None."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8 (an old archive's encoding?); rename it, e.g. convmv -f latin1 -t utf8"
    return None


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as text that can be written anywhere: the bytes of a name that is not UTF-8 shown as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def first_few(items: Sequence[Any], first: int = 3, sep: str = ", ") -> str:
    """The ``first`` items as text and how many more (``a, b, c and 4 more``), for messages naming what was found."""
    shown = sep.join(str(item) for item in items[:first])
    return shown + (f" and {len(items) - first} more" if len(items) > first else "")

