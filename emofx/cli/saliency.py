"""Saliency maps of a trained run: where in the face the model looks (the paper's Figures 5-6).

Maps are computed on held-out images: the run's test images when --data is the run's own
dataset, every image otherwise (restricted to the classes the model knows). Writes
OUT/maps.npz (maps, data indices, labels, targets, predictions), OUT/grid.png (rows =
emotions, columns = example faces; one grid per culture) and OUT/scores.json (accuracy; when
the data has region masks, as synthetic faces do, the pointing game and the mass ratio against
the regions that carry the emotion signal, per image in OUT/region_scores.csv; for
integrated-gradients, completeness; the share of saliency mass in each facial region, per image
in OUT/region_shares.csv and per emotion in scores.json and OUT/region_shares.png). --sanity adds
the cascading randomisation check (randomisation.csv, randomisation.png) and deletion/insertion
curves (deletion_insertion.csv).

Example:

    emofx saliency runs/mouth/trial-0 --data mouth.npz --method guided --out saliency/mouth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from emofx.data.dataset import FaceDataset
    from emofx.data.regions import RegionMaps
    from emofx.nets.checkpoint import TrainedModel

OUTPUTS = ("maps.npz", "grid.png", "scores.json", "region_scores.csv", "region_shares.csv", "region_shares.png",
           "randomisation.csv", "randomisation.png", "deletion_insertion.csv")


def refuse_to_overwrite(out: Path, names: Sequence[str], overwrite: bool) -> None:
    """Stop before any work when ``out`` already holds one of our outputs (unless ``overwrite``)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; choose another --out")
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds {', '.join(existing)}; choose another --out or pass --overwrite")


def _explained(target: str, score: str | None, classes: Sequence[str]) -> str:
    """What the maps explain, for the grid's title: the target class and, when not the default, the score."""
    from emofx.explain.saliency import class_index

    node = {"label": "each image's class node", "predicted": "each image's predicted class"}.get(
        target) or f"the {classes[class_index(classes, target)]} class"
    return node + (f" ({score})" if score else "")


def clear_outputs(out: Path, names: Sequence[str], patterns: Sequence[str] = ()) -> None:
    """Remove the files an earlier run of ours wrote in ``out`` (``names``, and those matching ``patterns``), once
    the new results are computed, so none of them outlives an --overwrite; folders and other files stay."""
    for path in [out / name for name in names] + [p for pattern in patterns for p in out.glob(pattern)]:
        if path.is_file() or path.is_symlink():
            path.unlink()


def _earlier_grids(out: Path) -> list[str]:
    """The per-culture grids an earlier run wrote in ``out``, as its scores.json lists them (none when unreadable:
    a ``grid-*.png`` it does not list may be the user's)."""
    try:
        listed = json.loads((out / "scores.json").read_text()).get("grids", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in listed if isinstance(name, str) and name == Path(name).name and name.startswith("grid-")]


def at_least_one(value: int | None, option: str) -> None:
    """Reject a count option below 1 before any work (``None``: not given)."""
    if value is not None and value < 1:
        raise ValueError(f"{option} must be at least 1; got {value}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx saliency` to ``parser`` (the module docstring is its help)."""
    from emofx.data.regions import METHODS as REGION_METHODS
    from emofx.explain.saliency import IG_STEPS, METHODS, SCORES

    parser.add_argument("run", metavar="RUN_DIR", help="a run directory (from `emofx train`)")
    parser.add_argument("--data", required=True, metavar="DATA.npz", help="images to explain (an emofx dataset)")
    parser.add_argument("--method", choices=list(METHODS), default="guided",
                        help="attribution method (default guided: guided backpropagation, the paper's)")
    parser.add_argument("--target", default="label",
                        help="class to explain: label (the default: each image's own, the paper's), predicted, "
                             "or an emotion")
    parser.add_argument("--score", choices=SCORES, default=None,
                        help="what the map explains (default: probability; logit for gradcam)")
    parser.add_argument("--n", type=int, default=None,
                        help="about N images spread over the classes, at least one of each (default all)")
    parser.add_argument("--per-class", type=int, default=6, help="faces per emotion in the grid (default 6)")
    parser.add_argument("--overlay", action="store_true", help="draw the maps over the faces in the grid")
    parser.add_argument("--steps", type=int, default=IG_STEPS,
                        help=f"integrated-gradients path steps (default {IG_STEPS})")
    parser.add_argument("--samples", type=int, default=25, help="smoothgrad noisy samples (default 25)")
    parser.add_argument("--regions", choices=[*REGION_METHODS, "none"], default="auto",
                        help="facial regions for the share of saliency per region (region_shares.csv/.png): auto "
                             "(the default) takes the true regions of synthetic faces, else the 68 landmarks where "
                             "the data has them, else the eye cascade; none skips the shares")
    parser.add_argument("--sanity", action="store_true",
                        help="also run the sanity checks: cascading randomisation (randomisation.csv/.png) and "
                             "deletion/insertion curves (deletion_insertion.csv), summarised in scores.json")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the image choice, smoothgrad noise and re-initialised layers (default 0)")
    parser.add_argument("--out", required=True, metavar="OUT", help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs already in OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def method_options(args: argparse.Namespace) -> dict:
    """The chosen method's keyword arguments from the command line."""
    options = {} if args.score is None else {"score": args.score}
    if args.method == "integrated-gradients":
        options["steps"] = args.steps
    elif args.method == "smoothgrad":
        options.update(n_samples=args.samples, seed=args.seed)
    return options


def sanity_checks(model: TrainedModel, images: np.ndarray, targets: np.ndarray, maps: np.ndarray,
                  args: argparse.Namespace, options: dict[str, Any], out: Path) -> dict[str, Any]:
    """Cascading randomisation and deletion/insertion curves, written to ``out``; their summary."""
    from emofx.explain.metrics import cascading_randomisation, curve_auc, deletion_insertion_curves
    from emofx.plotting import save_figure
    from emofx.plotting.saliency import randomisation_curves

    randomised = cascading_randomisation(model, images, targets, methods=(args.method,), seed=args.seed,
                                         method_options={args.method: options}, progress=not args.quiet)
    randomised.to_csv(out / "randomisation.csv", index=False)
    save_figure(randomisation_curves(randomised), out / "randomisation.png")
    curves = deletion_insertion_curves(model, images, targets, maps, progress=not args.quiet)
    curves.to_csv(out / "deletion_insertion.csv", index=False)
    by_step = randomised.groupby(["step", "layer"], sort=True)[["spearman_abs", "spearman"]].mean().reset_index()
    auc = curve_auc(curves).groupby("curve")["auc"].mean()
    return {
        "randomisation": by_step.to_dict(orient="records"),
        "deletion_auc": float(auc["deletion"]),
        "insertion_auc": float(auc["insertion"]),
    }


def region_share_summary(maps: np.ndarray, regions: RegionMaps, data: FaceDataset, indices: np.ndarray,
                         classes: Sequence[str], method: str, out: Path) -> dict:
    """Each image's share of saliency mass per facial region (OUT/region_shares.csv), their means per emotion
    (OUT/region_shares.png) and the summary for scores.json: the means, overall and per emotion, beside each
    region's share of the pixels (what a map spread evenly over the face would give)."""
    from emofx.study.features import region_share_means, saliency_region_shares
    from emofx.plotting import save_figure
    from emofx.plotting.saliency import region_share_heatmap

    names = list(regions.region_names)
    shares = saliency_region_shares(maps, regions, data)
    shares.insert(0, "data_index", indices)
    shares.to_csv(out / "region_shares.csv", index=False)
    by_emotion, area = region_share_means(shares, regions, classes)
    cultures = sorted(set(data.culture) - {""})
    save_figure(region_share_heatmap(by_emotion, area, culture=" + ".join(cultures), method=method),
                out / "region_shares.png")
    return {"regions": regions.info(), "region_shares": {"all": shares[names].mean().to_dict(),
                                                         **by_emotion.to_dict(orient="index")},
            "region_area_share": area.to_dict()}


def run(args: argparse.Namespace) -> int:
    """Run `emofx saliency` with the parsed ``args``; returns the exit status."""
    import matplotlib

    matplotlib.use("Agg")
    from emofx.explain.metrics import region_scores, signal_region_masks, signal_regions, summarise_region_scores
    from emofx.data.regions import face_regions
    from emofx.explain.saliency import attribute, completeness, explained_score, resolve_targets
    from emofx.plotting import save_figure
    from emofx.plotting.saliency import saliency_grid
    from emofx.study.comparison import json_ready
    from emofx.study.held_out import held_out_images, spread_over_classes

    out = Path(args.out)
    at_least_one(args.per_class, "--per-class")
    refuse_to_overwrite(out, OUTPUTS, args.overwrite)
    at_least_one(args.n, "--n")
    held = held_out_images(args.run, args.data)
    chosen = spread_over_classes(held.labels, args.n, args.seed)
    data, labels, indices = held.dataset.subset(chosen), held.labels[chosen], held.indices[chosen]
    model = held.model
    targets = resolve_targets(model, data.images, args.target, labels)
    options = method_options(args)
    # SmoothGrad: an image's noise follows the image (its index in --data), not its place among those chosen
    ids = {"image_ids": indices}
    score = explained_score(args.method, options)
    signal, skipped_regions = None, ""
    if "region_masks" in data.extras:  # known before any work, so nothing is left half-written
        try:
            signal = signal_regions(data)
        except ValueError as err:
            skipped_regions = f"region scores skipped: {err}"
    regions = None if args.regions == "none" else face_regions(data, args.regions, progress=not args.quiet)
    maps = attribute(model, data.images, targets, args.method, progress=not args.quiet, **options, **ids)
    predictions = model.predict(data.images)

    out.mkdir(parents=True, exist_ok=True)
    clear_outputs(out, [*OUTPUTS, *_earlier_grids(out)])
    np.savez_compressed(out / "maps.npz", maps=maps, indices=indices, labels=labels, targets=targets,
                        predictions=predictions, classes=np.asarray(model.classes), method=np.asarray(args.method))
    cultures = sorted(set(data.culture)) or [""]
    grid = {"method": args.method, "per_class": args.per_class, "seed": args.seed, "overlay": args.overlay,
            "explained": _explained(args.target, None if score == "probability" else score, model.classes)
            + f" of the {held.trained_on} model"}
    save_figure(saliency_grid(data.images, maps, labels, model.classes, culture=" + ".join(c for c in cultures if c),
                              **grid), out / "grid.png")
    grids = [f"grid-{culture or 'unknown'}.png" for culture in cultures] if len(cultures) > 1 else []
    for culture, name in zip(cultures, grids):
        mine = data.culture == culture
        save_figure(saliency_grid(data.images[mine], maps[mine], labels[mine], model.classes, culture=culture,
                                  **grid), out / name)

    scores: dict = {"method": args.method, "target": args.target, "score": score, "options": options, "grids": grids,
                    "images": held.description,
                    "n_images": int(len(data)), "accuracy": float(np.mean(predictions == labels))}
    if signal is not None:
        per_image = region_scores(maps, signal_region_masks(data), predictions == labels)
        per_image.insert(0, "data_index", indices)
        per_image.to_csv(out / "region_scores.csv")
        scores.update(signal_regions=list(signal), **summarise_region_scores(per_image))
    if regions is not None:
        scores.update(region_share_summary(maps, regions, data, indices, model.classes, args.method, out))
    if args.method == "integrated-gradients":
        check = completeness(model, data.images, targets, maps, score=score)
        error = check["relative_error"]
        scores["completeness"] = {"median_relative_error": float(error.median()),
                                  "mean_relative_error": float(error.mean()),
                                  "max_relative_error": float(error.max()),
                                  "max_absolute_error": float(check["absolute_error"].max()),
                                  "share_within_5_percent": float((error <= 0.05).mean())}
    if args.sanity:
        scores.update(sanity_checks(model, data.images, targets, maps, args, {**options, **ids}, out))
    (out / "scores.json").write_text(json.dumps(json_ready(scores), indent=2))  # NaN (e.g. no image right) -> null
    summary = ", ".join(f"{k} {scores[k]:.3f}" for k in ("pointing_game", "mass_ratio") if k in scores)
    print(f"{args.method} maps of {len(data)} images ({held.description}) -> {out}"
          + (f"; {summary}" if summary else ""))
    if regions is not None:
        overall = scores["region_shares"]["all"]
        print(f"share of saliency per region ({regions.method}): "
              + ", ".join(f"{name} {share:.2f} (area {scores['region_area_share'][name]:.2f})"
                          for name, share in overall.items()) + f"; per emotion in {out / 'region_shares.png'}")
    if skipped_regions:
        print(skipped_regions)
    return 0
