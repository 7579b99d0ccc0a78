"""Modify emotions by gradient ascent on the image (the paper's section 4.3 and Figure 7).

Each step moves the image along the vanilla gradient (or, with --method guided, the guided
backpropagation gradient) of the --to class's log-probability, normalised by its standard deviation
(step size 0.01 by default, as in the reference), keeping pixels in [0, 1]. --to equal to the
image's class intensifies the emotion; another class converts it. Images are held out (the
run's test images when --data is the run's own dataset), optionally only those of class --from.
Writes OUT/images.npz (every step), OUT/images/*.png (original and result),
OUT/probabilities.csv (image, step, class, probability), OUT/summary.csv (per step),
OUT/summary.json and OUT/panel.png.

Example:

    emofx modify runs/mouth/trial-0 --data mouth.npz --from happy --to afraid --steps 20 --out modify/happy-afraid
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OUTPUTS = ("images.npz", "images", "probabilities.csv", "summary.csv", "summary.json", "panel.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `emofx modify` to ``parser`` (the module docstring is its help)."""
    defaults = _defaults()
    parser.add_argument("run", metavar="RUN_DIR", help="a run directory (from `emofx train`)")
    parser.add_argument("--data", required=True, metavar="DATA.npz", help="images to modify (an emofx dataset)")
    parser.add_argument("--to", required=True, metavar="CLASS", help="the emotion to move toward")
    parser.add_argument("--from", dest="source", metavar="CLASS", help="only modify images of this emotion")
    parser.add_argument("--steps", type=int, default=defaults.steps, help=f"gradient steps (default {defaults.steps})")
    parser.add_argument("--step-size", type=float, default=defaults.step_size,
                        help=f"pixel change per unit of normalised gradient (--method gradient: halved for an image "
                             f"whenever a step would lower its objective, the target's log-probability less the --l2 "
                             f"pull; default {defaults.step_size})")
    parser.add_argument("--method", choices=["gradient", "guided"], default=defaults.method,
                        help="vanilla gradient (default) or guided backpropagation (toward a class absent from the "
                             "image it often vanishes or lowers the target probability)")
    parser.add_argument("--l2", type=float, default=defaults.l2_penalty,
                        help="weight of the pull toward the original image (default 0)")
    parser.add_argument("--n", type=int, default=16,
                        help="about N images spread over the classes, at least one of each (default 16)")
    parser.add_argument("--show", type=int, default=6, help="images in the panel (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image choice (default 0)")
    parser.add_argument("--out", required=True, metavar="OUT", help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs already in OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _defaults():
    from emofx.explain.modification import ModificationConfig

    return ModificationConfig()


def run(args: argparse.Namespace) -> int:
    """Run `emofx modify` with the parsed ``args``; returns the exit status."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    from emofx.cli.saliency import at_least_one, clear_outputs, refuse_to_overwrite
    from emofx.explain.modification import ModificationConfig, modify
    from emofx.explain.saliency import class_index
    from emofx.plotting import save_figure
    from emofx.plotting.saliency import modification_panel
    from emofx.study.held_out import held_out_images, spread_over_classes

    config = ModificationConfig(steps=args.steps, step_size=args.step_size, method=args.method, l2_penalty=args.l2)
    out = Path(args.out)
    at_least_one(args.show, "--show")
    at_least_one(args.n, "--n")
    refuse_to_overwrite(out, OUTPUTS, args.overwrite)
    held = held_out_images(args.run, args.data)
    model = held.model
    target = class_index(model.classes, args.to)
    pool = np.arange(len(held.labels))
    if args.source:
        source = class_index(model.classes, args.source)
        pool = pool[held.labels == source]
        if not len(pool):
            raise ValueError(f"no held-out {model.classes[source]} images in {args.data}")
    chosen = pool[spread_over_classes(held.labels[pool], args.n, args.seed)]
    data, labels, indices = held.dataset.subset(chosen), held.labels[chosen], held.indices[chosen]
    targets = np.full(len(indices), target, np.int32)
    result = modify(model, data.images, targets, config, progress=not args.quiet)

    out.mkdir(parents=True, exist_ok=True)
    clear_outputs(out, [name for name in OUTPUTS if name != "images"], ("images/*-original.png", "images/*-result.png"))
    np.savez_compressed(out / "images.npz", images=result.images, probabilities=result.probabilities,
                        indices=indices, labels=labels, targets=targets, classes=np.asarray(model.classes))
    (out / "images").mkdir(exist_ok=True)
    for k, index in enumerate(indices):
        for name, step in (("original", 0), ("result", -1)):
            pixels = np.round(result.images[step, k] * 255).astype(np.uint8)
            cv2.imwrite(str(out / "images" / f"{index:05d}-{name}.png"), pixels)
    frame = result.to_frame()
    frame["image"] = indices[frame["image"].to_numpy()]
    frame.to_csv(out / "probabilities.csv", index=False)
    result.summary().to_csv(out / "summary.csv", index=False)
    p = result.target_probability()
    summary = {
        "to": model.classes[target], "from": model.classes[source] if args.source else None,
        "images": held.description, "n_images": len(indices),
        "config": {"steps": config.steps, "step_size": config.step_size, "method": config.method,
                   "l2_penalty": config.l2_penalty},
        "target_probability_before": float(p[0].mean()), "target_probability_after": float(p[-1].mean()),
        "mean_abs_change": result.mean_abs_change(),
        "unchanged_images": int(result.unchanged().sum()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    shown = list(range(min(args.show, len(indices))))
    save_figure(modification_panel(result, shown, source_names=[model.classes[c] for c in labels],
                                   method=config.method), out / "panel.png")
    if summary["unchanged_images"]:
        print(f"note: the {config.method} gradient vanished for {summary['unchanged_images']} of {len(indices)} "
              "images, which stayed unchanged" + ("; try --method gradient" if config.method == "guided" else ""))
    print(f"{len(indices)} images ({held.description}) -> {summary['to']}: mean P({summary['to']}) "
          f"{summary['target_probability_before']:.3f} -> {summary['target_probability_after']:.3f}, "
          f"mean |change| per pixel {summary['mean_abs_change']:.4f}; wrote {out}")
    return 0
