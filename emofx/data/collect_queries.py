"""The query table of a web collection: which search (query, emotion, language, culture) found each file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from emofx.data.emotions import ALIASES


class QueryTableError(ValueError):
    """A query table that cannot be used; the message names the file and what to do."""


def read_queries(path: str | os.PathLike, root: Path) -> pd.DataFrame:
    """The query table, indexed by resolved file path: ``query``, ``emotion``, ``language``, ``culture``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"query table {path} does not exist")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise QueryTableError(f"{path} is not a readable CSV ({err})") from None
    name = next((c for c in ("file", "path", "image") if c in table.columns), None)
    if name is None or "query" not in table.columns:
        raise QueryTableError(f"{path}: expected columns file, query and optionally emotion, language, culture; "
                           f"found {list(table.columns)}")
    for column in ("emotion", "language", "culture"):
        if column not in table.columns:
            table[column] = ""
    bad = sorted({e for e in table["emotion"] if e.strip() and e.strip().lower() not in ALIASES})
    if bad:
        raise QueryTableError(f"{path}: emotion values {bad[:8]} are not emotion names")
    table["emotion"] = [ALIASES.get(e.strip().lower(), "") for e in table["emotion"]]
    table.index = [str((root / f).resolve()) if not Path(f).is_absolute() else str(Path(f).resolve())
                   for f in table[name]]
    table = table[["query", "emotion", "language", "culture"]]
    if not table.index.has_duplicates:
        return table
    # One image found by several searches: its rows are joined ("a; b"), if they agree on the emotion.
    emotions = table.groupby(level=0)["emotion"].agg(lambda e: sorted(set(e) - {""}))
    conflicting = emotions[emotions.map(len) > 1]
    if len(conflicting):
        raise QueryTableError(f"{path}: {len(conflicting)} files are listed with different emotions, e.g. "
                           f"{conflicting.index[0]} as {conflicting.iloc[0]}; give each file one emotion")
    joined = table.groupby(level=0, sort=False).agg(lambda values: "; ".join(dict.fromkeys(v for v in values if v)))
    return joined


def rows_without_file(table: pd.DataFrame, files: Sequence[Path], queries: str | os.PathLike, root: Path) -> int:
    """How many of the query table's files are not under ``root``; none found at all is an error (the file column
    is then likely relative to another folder)."""
    present = {str(p.resolve()) for p in files}
    missing = [name for name in table.index if name not in present]
    if len(missing) == len(table):
        raise QueryTableError(f"none of the {len(table)} files of the query table {queries} is under {root} (its first "
                           f"row names {missing[0]}); give the file column relative to the source folder, or absolute")
    return len(missing)
