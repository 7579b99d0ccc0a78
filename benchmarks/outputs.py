"""Result files a benchmark will write: refused up front when they exist already (nothing is overwritten)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path


def refuse_existing(parser: argparse.ArgumentParser, paths: Iterable[str | os.PathLike], option: str,
                    overwrite: bool | None = None) -> None:
    """Stop with a one-line usage error (exit status 2) naming every path in ``paths`` that exists.

    ``overwrite`` is the command's ``--overwrite`` flag (True: nothing is refused); None where it has none.
    """
    if overwrite:
        return
    found = [str(path) for path in paths if Path(path).exists()]
    if found:
        hint = f"choose another {option}" + (" or pass --overwrite" if overwrite is not None else "")
        parser.error(f"{', '.join(found)} already exist{'s' if len(found) == 1 else ''}; {hint} "
                     "(nothing was written)")
