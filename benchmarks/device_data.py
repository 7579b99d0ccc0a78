"""Raw datasets as one file, to take them to a machine that cannot reach ``../shared/data``.

A lent GPU machine receives a copy of the repository (and ignored paths named to travel with
it, 64 MiB in all) and reaches nothing else. FER2013's 35,887 JPEG files hold 56.5 MB; packed
as one array of their bytes (and FER+'s vote tables, compressed), they fit where an archive's
per-file headers or the decoded pixels (83 MB) would not. No image is decoded or re-encoded:
``unpack`` writes back the very files, so ``emofx prepare`` gives the same dataset there.

    python -m benchmarks.device_data pack ../shared/data fer2013 ferplus --out .carry/fer.npz
    python -m benchmarks.device_data unpack .carry/fer.npz --out /tmp/data   # then EMOFX_DATA=/tmp/data

Keep the packed file in a folder git ignores (``.carry/`` is): the datasets' terms forbid
redistributing their images. ``pack`` only reads the data; ``unpack`` never overwrites a file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path, PurePosixPath

import numpy as np

FORMAT = "emofx-device-data-1"


class PackError(RuntimeError):
    """A dataset folder or a packed file that cannot be used (one-line message)."""


def pack(data_root: Path, datasets: list[str], out: Path) -> tuple[int, int]:
    """Write the files under ``data_root/<dataset>`` for each of ``datasets`` into ``out`` (npz):
    their paths relative to ``data_root`` and their bytes. Returns (files, bytes of ``out``)."""
    files = []
    for name in datasets:
        folder = data_root / name
        if not folder.is_dir():
            raise PackError(f"{folder} is not a folder; name datasets that {data_root} holds")
        files += sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise PackError(f"no files under {', '.join(str(data_root / n) for n in datasets)}")
    if out.exists():
        raise PackError(f"{out} exists; remove it or choose another --out")
    contents = [p.read_bytes() for p in files]
    offsets = np.cumsum([0] + [len(c) for c in contents], dtype=np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as handle:  # an open file: numpy adds no ".npz" to the name
        np.savez_compressed(handle, format=np.array(FORMAT), offsets=offsets,
                            paths=np.array([p.relative_to(data_root).as_posix() for p in files]),
                            blob=np.frombuffer(b"".join(contents), dtype=np.uint8))
    return len(files), out.stat().st_size


def unpack(packed: Path, out: Path) -> int:
    """Write the files of ``packed`` under ``out`` (paths as packed); returns how many. Refuses
    paths that would leave ``out`` and files that already exist, before writing anything."""
    try:
        data = np.load(packed, allow_pickle=False)
        if str(data["format"]) != FORMAT:
            raise PackError(f"{packed} is not a {FORMAT} file")
        paths, offsets, blob = data["paths"], data["offsets"], data["blob"]
    except (OSError, ValueError, KeyError) as err:
        raise PackError(f"{packed} is not a packed dataset file ({type(err).__name__}: {err})") from None
    targets = []
    for path in paths:
        relative = PurePosixPath(str(path))
        if relative.is_absolute() or ".." in relative.parts:
            raise PackError(f"{packed} holds the path {path!r}, which would leave {out}; nothing written")
        targets.append(out / relative)
    existing = [t for t in targets if t.exists()]
    if existing:
        raise PackError(f"{len(existing)} files already exist under {out} (e.g. {existing[0]}); "
                        "unpack into an empty folder")
    for target, start, stop in zip(targets, offsets[:-1], offsets[1:]):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob[start:stop].tobytes())
    return len(targets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.device_data", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    packing = verbs.add_parser("pack", help="datasets of a data folder -> one file")
    packing.add_argument("data_root", type=Path, help="folder holding the datasets (e.g. ../shared/data)")
    packing.add_argument("datasets", nargs="+", help="dataset folders in it (e.g. fer2013 ferplus)")
    packing.add_argument("--out", type=Path, required=True, help="the file to write (must not exist)")
    unpacking = verbs.add_parser("unpack", help="one file -> the datasets' files under a folder")
    unpacking.add_argument("packed", type=Path)
    unpacking.add_argument("--out", type=Path, required=True, help="folder to write into (no file is overwritten)")
    args = parser.parse_args(argv)
    try:
        if args.verb == "pack":
            count, size = pack(args.data_root, args.datasets, args.out)
            print(f"packed {count} files of {', '.join(args.datasets)} into {args.out} ({size / 2 ** 20:.1f} MiB)")
        else:
            count = unpack(args.packed, args.out)
            print(f"unpacked {count} files into {args.out}")
    except PackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
