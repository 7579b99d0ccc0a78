"""Turn a face collection into an emofx dataset (.npz).

Examples:

    emofx prepare ../shared/data/kdef/frontal --format kdef --out kdef.npz --culture Swedish
    emofx prepare ../shared/data/taiwanese --format taiwanese --out taiwanese.npz
    emofx prepare ../shared/data/fer2013 --format folder --out fer2013.npz
    emofx prepare ../shared/data/ferplus --format ferplus --out ferplus.npz
    emofx prepare my_photos.csv --format manifest --out nfw.npz --culture Korean
    emofx prepare synthetic --format synthetic --dialect eyes --n-per-class 50 --seed 0 --out eyes.npz

Photos are searched for faces (OpenCV Haar cascade), cropped and resized to --size; images
without a face are listed as skipped with the reason (or kept as a centre crop with
--center-crop-fallback). Results are cached (see $EMOFX_CACHE), so preparing again is fast.
The source is only read; the output must lie outside it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from emofx.data.dataset import FaceDataset
from emofx.data.landmarks import LANDMARK_METHODS
from emofx.data.loaders import FACE_MODES, FORMATS, KDEF_ANGLES, describe_landmarks, load, loader_options
from emofx.data.paths import check_new_file

# Options every file loader shares: passed only to the loaders that take them.
_COMMON = ("culture", "size", "strict", "limit", "progress", "faces", "margin", "center_crop_fallback", "landmarks",
           "align")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx prepare` to ``parser`` (the module docstring is its help)."""
    parser.add_argument("source", help="folder, file, or the word 'synthetic'")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="source format")
    parser.add_argument("--out", required=True, type=Path, help="the dataset file to write (.npz)")
    parser.add_argument("--culture", help="culture of every image (default per format: kdef Swedish, "
                                          "taiwanese Taiwanese, synthetic its dialect, others none)")
    parser.add_argument("--size", type=int, default=48, help="side of the square faces in pixels (default 48)")
    parser.add_argument("--strict", action="store_true", help="stop at any unusable input instead of skipping it")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    parser.add_argument("--limit", type=int, help="use at most N inputs, spread evenly over the classes and within "
                        "each (a quick look; chosen before --exclude leaves images out)")
    parser.add_argument("--exclude", type=Path, metavar="CSV",
                        help="leave out the images listed in this CSV's path column (e.g. the exclude.csv of "
                             "`emofx collect`: a deduplicated benchmark)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    faces = parser.add_argument_group("faces in photos (folder, manifest, kdef, taiwanese)")
    faces.add_argument("--faces", choices=FACE_MODES,
                       help="folder/manifest: 'cropped' images are faces already, 'detect' finds them, "
                            "'auto' (default) decides from the image sizes")
    faces.add_argument("--margin", type=float,
                       help="border around the detected face, fraction of its side (0.1); aligned faces are framed "
                            "to match (a smaller margin puts the eyes further apart)")
    faces.add_argument("--center-crop-fallback", action="store_true",
                       help="keep images without a detected face as a centre crop instead of skipping them")
    faces.add_argument("--landmarks", choices=("auto",) + LANDMARK_METHODS,
                       help="facial landmarks: 'dlib68' (68 points found on the original photo; needs the landmarks "
                            "extra), 'eyes' (eye cascade on the face crop, eye centres only), 'none'; 'auto' "
                            "(default): dlib68 on photos, none on already-cropped faces")
    faces.add_argument("--align", action=argparse.BooleanOptionalAction, default=None,
                       help="rotate and scale each face so the eye centres land on fixed positions "
                            "(default: on for photos with landmarks)")
    specific = parser.add_argument_group("format options")
    specific.add_argument("--images", help="ferplus: FER2013 image folder or fer2013.csv "
                                           "(default: the folder fer2013 beside the FER+ folder)")
    specific.add_argument("--mapping", help="ferplus: the FER+ to FER2013 file table "
                                            "(default ferplus_to_fer2013.csv beside the votes)")
    specific.add_argument("--angles", help=f"kdef: comma-separated views among {','.join(KDEF_ANGLES)} (default S)")
    specific.add_argument("--views", help="taiwanese: comma-separated views 1 front, 2 three-quarter, 3 profile "
                                          "(default 1)")
    specific.add_argument("--no-ratings", dest="ratings", action="store_false", default=None,
                          help="taiwanese: do not attach Image_info.xls observer ratings")
    specific.add_argument("--label-names", help="mat: comma-separated names of numeric labels, in code order")
    specific.add_argument("--label-base", type=int, choices=(0, 1),
                          help="mat: the code of the first label name (default: 0 when a label 0 occurs, else 1)")
    specific.add_argument("--layout", choices=("auto", "NHW", "HWN"),
                          help="mat: images stored N x H x W or H x W x N (default auto: the axis of length N)")
    specific.add_argument("--root", help="manifest: folder that relative paths start from (default the CSV's)")
    specific.add_argument("--dialect", help="synthetic: universal, eyes, mouth, ... (default universal)")
    specific.add_argument("--n-per-class", type=int, help="synthetic: images per class (default 100)")
    specific.add_argument("--seed", type=int, help="synthetic: random seed (default 0)")


def loader_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The loader options the command line gives: shared ones where the format takes them, the rest as given."""
    accepted = set(loader_options(args.format))
    if args.culture is not None and not args.culture.strip():
        raise ValueError("--culture is empty; name the images' culture, or leave the option out for the format's "
                         "default")
    common = {
        "culture": args.culture,
        "size": args.size,
        "strict": args.strict or None,
        "limit": args.limit,
        "progress": not args.no_progress,
        "faces": args.faces,
        "margin": args.margin,
        "center_crop_fallback": args.center_crop_fallback or None,
        "landmarks": args.landmarks,
        "align": args.align,
    }
    split_list = lambda text: [v.strip() for v in text.split(",") if v.strip()]  # noqa: E731
    specific = {
        "images": args.images,
        "mapping": args.mapping,
        "angles": split_list(args.angles) if args.angles is not None else None,  # "" is refused, not the default
        "views": _views(args.views) if args.views is not None else None,
        "ratings": args.ratings,
        "label_names": split_list(args.label_names) if args.label_names else None,
        "label_base": args.label_base,
        "layout": args.layout,
        "root": args.root,
        "dialect": args.dialect,
        "n_per_class": args.n_per_class,
        "seed": args.seed,
    }
    kwargs = {k: v for k, v in common.items() if v is not None and k in accepted}
    ignored = sorted(k for k, v in common.items() if v is not None and k not in accepted and k != "progress")
    if ignored:
        raise ValueError(f"--{ignored[0].replace('_', '-')} does not apply to --format {args.format}")
    given = {k: v for k, v in specific.items() if v is not None}
    foreign = sorted(k for k in given if k not in accepted)
    if foreign:
        raise ValueError(f"--{foreign[0].replace('_', '-')} does not apply to --format {args.format}")
    return {**kwargs, **given}


def _views(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--views takes comma-separated view numbers (1 front, 2 three-quarter, 3 profile); "
                         f"got {text!r}") from None


def _check_out(out: Path, source: str, overwrite: bool) -> Path:
    """Fail before any work when --out exists, is not .npz, or lies inside the source."""
    if out.suffix != ".npz":
        raise ValueError(f"--out {out} must end in .npz")
    check_new_file(out, overwrite)
    source_path = Path(source).expanduser()
    if source_path.is_dir() and out.resolve().is_relative_to(source_path.resolve()):
        raise ValueError(f"--out {out} lies inside the source {source}; write the dataset elsewhere "
                         "(sources are read-only)")
    return out


def summary(dataset: FaceDataset, out: Path) -> str:
    """A few lines saying what was written."""
    info = dataset.info()
    lines = [
        f"wrote {out}: {info['n']} images {'x'.join(map(str, info['image_shape']))}, "
        f"{len(info['classes'])} classes, {info['subjects']} subjects",
        "  classes: " + ", ".join(f"{c} {k}" for c, k in info["counts"].items()),
        "  cultures: " + ", ".join(f"{c or '(none)'} {k}" for c, k in info["cultures"].items()),
    ]
    if "splits" in info:
        lines.append("  splits: " + ", ".join(f"{s or '(none)'} {k}" for s, k in info["splits"].items()))
    if isinstance(dataset.meta.get("landmarks"), dict):
        lines.append(f"  landmarks: {describe_landmarks(dataset.meta['landmarks'])}")
    dropped = dataset.meta.get("dropped")
    if dropped:
        lines.append(f"  dropped by the FER+ majority rule: {dropped['total']} "
                     f"(no majority {dropped['no_majority']}, unknown {dropped['unknown']}, "
                     f"not a face {dropped['not_face']})")
    duplicates = dataset.meta.get("duplicates", {})
    if duplicates.get("files"):
        same = duplicates.get("same_file", 0)
        lines.append(f"  duplicates: {duplicates['files']} images repeat the bytes of another "
                     f"({duplicates['groups']} groups{f'; {same} of them the same file listed again' if same else ''}"
                     f", e.g. {' = '.join(duplicates['examples'][0])})")
    lines.append(f"  skipped: {len(dataset.skipped)}")
    lines.extend(f"    {s['path']}: {s['reason']}" for s in dataset.skipped[:10])
    if len(dataset.skipped) > 10:
        lines.append(f"    ... and {len(dataset.skipped) - 10} more (emofx info {out} --json lists all)")
    return "\n".join(lines)


def remaining_duplicates(dataset: FaceDataset) -> dict[str, Any]:
    """Identical images still in the dataset (by ``extras["content_hash"]``), counted as the loaders count them."""
    from emofx.data.loaders.common import count_duplicates

    if "content_hash" not in dataset.extras:
        return {"files": 0, "groups": 0, "examples": []}
    return count_duplicates(dataset.path, dataset.extras["content_hash"])


def run(args: argparse.Namespace) -> int:
    """Run `emofx prepare` with the parsed ``args``; returns the exit status."""
    out = _check_out(args.out, args.source, args.overwrite)
    if args.exclude is not None and not args.exclude.is_file():
        raise FileNotFoundError(f"--exclude {args.exclude} " + ("is a folder; give the CSV file that lists the images "
                                "to leave out" if args.exclude.is_dir() else "does not exist"))
    dataset = load(args.source, args.format, **loader_kwargs(args))
    if args.exclude is not None:
        from emofx.data.collection_files import exclude_listed

        dataset, excluded = exclude_listed(dataset, args.exclude, sample=args.limit is not None)
        dataset = replace(dataset, meta={**dataset.meta, "duplicates": remaining_duplicates(dataset),
                                         "excluded": {"list": str(args.exclude.absolute()), "images": excluded}})
        print(f"left out {excluded} images listed in {args.exclude}")
    dataset.save(out, overwrite=args.overwrite)
    print(summary(dataset, out))
    return 0
