"""H2: do cultures use different facial features? Saliency share per region, distance to landmarks,
pixel-wise differences, the region of each conv filter, and linear CKA between representations."""

from __future__ import annotations

from itertools import combinations
from typing import Any, Sequence

import jax
import numpy as np
import pandas as pd

from emofx.data.dataset import FaceDataset
from emofx.data.emotions import emotion_order
from emofx.data.progress import tqdm
from emofx.data.regions import RegionMaps
from emofx.explain.saliency import attribute
from emofx.nets.checkpoint import TrainedModel, as_unit_float
from emofx.study import stats
from emofx.study.cultures import ALL_EMOTIONS, CompareConfig, ComparisonError, CultureRuns


def normalised_saliency(maps: np.ndarray) -> np.ndarray:
    """|map| scaled to unit mass per image (a map with no mass becomes uniform)."""
    mass = np.abs(np.asarray(maps, dtype=np.float64))
    totals = mass.reshape(len(mass), -1).sum(axis=1)
    flat = np.full(mass.shape, 1.0 / np.prod(mass.shape[1:]))
    return np.where(totals[:, None, None] > 0, mass / np.where(totals > 0, totals, 1)[:, None, None], flat)


def region_shares(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each image's saliency mass (N, H, W) inside each region mask (N, R, H, W): (N, R)."""
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=np.float64)
    if maps.ndim != 3 or masks.ndim != 4 or maps.shape != (masks.shape[0], *masks.shape[2:]):
        raise ValueError(f"saliency maps of shape {maps.shape} do not fit region masks of shape {masks.shape}: one "
                         "(H, W) map per image of the regions' images (N, R, H, W)")
    broken = ~np.isfinite(maps).all(axis=(1, 2))
    if broken.any():
        raise ValueError(f"{int(broken.sum())} of {len(maps)} saliency maps hold NaN or infinite values (first: image "
                         f"{int(np.flatnonzero(broken)[0])}); they have no share to give")
    return np.einsum("nhw,nrhw->nr", normalised_saliency(maps), masks)


def saliency_region_shares(maps: np.ndarray, regions: RegionMaps, dataset: FaceDataset) -> pd.DataFrame:
    """One row per image: its emotion and the share of its saliency mass in each facial region
    (``regions``: :class:`emofx.data.regions.RegionMaps` of ``dataset``)."""
    shares = pd.DataFrame(region_shares(maps, regions.masks), columns=list(regions.region_names))
    shares.insert(0, "emotion", dataset.label_names)
    shares["region_method"] = regions.image_method  # how each image's regions were found: landmarks, eyes, ...
    return shares


def region_share_means(shares: pd.DataFrame, regions: RegionMaps,
                       classes: Sequence[str]) -> tuple[pd.DataFrame, pd.Series]:
    """The mean of :func:`saliency_region_shares` per emotion (rows in ``classes`` order, those present) and
    region, and each region's share of the pixels: what a map spread evenly over the face would give."""
    names = list(regions.region_names)
    by_emotion = shares.groupby("emotion")[names].mean()
    area = pd.Series(regions.masks.mean(axis=(0, 2, 3)), index=names)
    return by_emotion.reindex([c for c in classes if c in by_emotion.index]), area


def landmark_distance(maps: np.ndarray, landmarks: np.ndarray, top_fraction: float) -> np.ndarray:
    """Mean distance (pixels) from each image's top ``top_fraction`` most salient pixels to the nearest landmark.

    ``landmarks`` is (N, L, 2) in (x, y) pixel coordinates; NaN landmarks are skipped (an image
    with none gets NaN). Only salient pixels (above 0) count among the top ones: a sparse map is
    measured on its salient pixels, an all-zero map gets NaN. The paper's proposed proximity
    measure (section 5): small when high gradients sit on facial landmarks.
    """
    mass = np.abs(np.asarray(maps, dtype=np.float64)).reshape(len(maps), -1)
    height, width = np.shape(maps)[1:]
    k = max(1, int(round(top_fraction * height * width)))
    top = np.argpartition(-mass, k - 1, axis=1)[:, :k]
    salient = np.take_along_axis(mass, top, axis=1) > 0  # (N, k)
    points = np.stack([top % width, top // width], axis=-1).astype(np.float64)  # (N, k, 2) as (x, y)
    distances = np.linalg.norm(points[:, :, None, :] - np.asarray(landmarks, np.float64)[:, None, :, :], axis=-1)
    distances = np.where(np.isnan(distances), np.inf, distances).min(axis=2)  # missing landmarks (NaN) are skipped
    counted = np.isfinite(distances) & salient  # an image with none (no salient pixel or landmark) gets NaN
    total = np.where(counted, distances, 0.0).sum(axis=1)
    return np.where(counted.any(axis=1), total / np.maximum(counted.sum(axis=1), 1), np.nan)


def saliency_measures(runs: CultureRuns, regions: RegionMaps, config: CompareConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """Per (trial, test image): region shares and landmark proximity; plus every map (normalised).

    ``regions`` holds the masks and landmarks of every image of ``runs.dataset``.
    Returns the tidy table and the normalised maps in the table's row order.
    """
    frames, all_maps = [], []
    for trial in tqdm(range(runs.n_trials), desc=f"saliency {runs.name}", disable=not config.progress, leave=False):
        indices = runs.test_indices[trial]
        data = runs.dataset.subset(indices)
        model = runs.models[trial]
        targets = np.array([model.classes.index(name) for name in data.label_names], np.int32)  # the model's order
        # SmoothGrad's noise from the seed and each image's index: an image tested by two trials gets the same noise
        noise = {"seed": config.seed} if config.saliency_method == "smoothgrad" else {}
        maps = attribute(model, data.images, targets, method=config.saliency_method, image_ids=indices, **noise)
        shares = region_shares(maps, regions.masks[indices])
        frame = pd.DataFrame(shares, columns=list(regions.region_names))
        frame.insert(0, "emotion", data.label_names)
        frame.insert(0, "image", indices)
        frame.insert(0, "trial", trial)
        frame.insert(0, "culture", runs.name)
        frame["landmark_distance"] = landmark_distance(maps, regions.landmarks[indices], config.top_fraction)
        frame["region_method"] = regions.image_method[indices]  # how this image's regions were found
        frames.append(frame)
        all_maps.append(normalised_saliency(maps).astype(np.float32))
    return pd.concat(frames, ignore_index=True), np.concatenate(all_maps)


def unit_values(measures: pd.DataFrame, columns: Sequence[str], unit: str, pooled: bool = False) -> pd.DataFrame:
    """Average ``columns`` per test unit: per (culture, trial, emotion) or per (culture, image, emotion).

    ``pooled`` adds one row per unit with emotion :data:`ALL_EMOTIONS`: the mean over that
    unit's emotions (each emotion weighted equally), i.e. the region-level measure.
    """
    key = "trial" if unit == "trials" else "image"
    values = measures.groupby(["culture", key, "emotion"], as_index=False)[list(columns)].mean()
    if not pooled:
        return values
    overall = values.groupby(["culture", key], as_index=False)[list(columns)].mean()
    return pd.concat([values, overall.assign(emotion=ALL_EMOTIONS)], ignore_index=True)


def measure_tests(measures: pd.DataFrame, culture_a: str, culture_b: str, columns: Sequence[str],
                  config: CompareConfig) -> pd.DataFrame:
    """Per emotion and measure: difference (a minus b), Hedges' g, permutation p and corrected p.

    The statistic is Welch's t, so that the max-statistic correction can compare measures of
    different spread. With trials as the unit every (emotion, measure) is tested on the same
    trial assignments, which gives the Westfall-Young max-T adjusted p-values; ``holm``/``bh``
    adjust the per-test permutation p-values instead. The family is every row of the table.
    """
    values = unit_values(measures, columns, config.unit, pooled=config.pooled_emotions)
    if config.unit == "trials":
        wide = values.pivot_table(index=["culture", "trial"], columns="emotion", values=list(columns))
        wide = wide.swaplevel(axis=1).dropna(axis=1)
        wide = wide[sorted(wide.columns, key=lambda c: (*emotion_order(c[0], ALL_EMOTIONS), list(columns).index(c[1])))]
        groups = [(wide.columns, wide.loc[culture].to_numpy()) for culture in (culture_a, culture_b)]
        tests = [(groups[0][0], groups[0][1], groups[1][1])]
    else:
        tests = []
        by_emotion = values.groupby("emotion", sort=False)
        for emotion, group in sorted(by_emotion, key=lambda item: emotion_order(item[0], ALL_EMOTIONS)):
            group = group.dropna(subset=list(columns))
            a = group.loc[group["culture"] == culture_a, list(columns)].to_numpy()
            b = group.loc[group["culture"] == culture_b, list(columns)].to_numpy()
            tests.append(([(emotion, c) for c in columns], a, b))
    rows = []
    for labels, a, b in tests:
        if len(a) < 2 or len(b) < 2:
            continue
        test = stats.permutation_test(a, b, statistic="welch_t", n_permutations=config.n_permutations,
                                      seed=config.seed)
        effect = stats.hedges_g(a, b)
        for j, (emotion, column) in enumerate(labels):
            rows.append({"emotion": emotion, "region": column, "mean_a": a[:, j].mean(), "mean_b": b[:, j].mean(),
                         "diff": a[:, j].mean() - b[:, j].mean(), "effect_size": effect[j],
                         "p_value": test.p_value[j], "p_max_t": test.p_fwer[j],
                         "unit": config.unit, "n_a": len(a), "n_b": len(b), "exact": test.exact})
    table = pd.DataFrame(rows)
    if table.empty:
        raise ComparisonError(f"no emotion has at least 2 {config.unit} per culture to test")
    max_t = table.pop("p_max_t").to_numpy()
    adjusted = max_t if config.correction == "maxT" else stats.adjust(table["p_value"].to_numpy(), config.correction)
    table.insert(table.columns.get_loc("p_value") + 1, "p_adjusted", adjusted)
    table.insert(table.columns.get_loc("p_adjusted") + 1, "correction", config.correction)
    return table


def pixel_difference(measures: pd.DataFrame, maps: np.ndarray, culture_a: str, culture_b: str,
                     config: CompareConfig) -> dict[str, np.ndarray]:
    """Mean saliency difference map (a minus b) with a max-statistic (Welch t) FWER-corrected test per pixel.

    The unit follows ``config.unit``: each trial's mean map over its test images, or each image's
    map averaged over the trials that tested it.
    """
    key = "trial" if config.unit == "trials" else "image"
    groups = []
    for culture in (culture_a, culture_b):
        rows = measures.index[measures["culture"] == culture].to_numpy()
        labels = measures.loc[rows, key].to_numpy()
        units = np.unique(labels)
        groups.append(np.stack([maps[rows[labels == u]].mean(axis=0) for u in units]))
    test = stats.permutation_test(groups[0], groups[1], statistic="welch_t",
                                  n_permutations=min(config.n_permutations, 999), seed=config.seed)
    return {"difference": groups[0].mean(axis=0) - groups[1].mean(axis=0), "t": test.statistic,
            "p_fwer": test.p_fwer, "mean_a": groups[0].mean(axis=0), "mean_b": groups[1].mean(axis=0)}


# ---------------------------------------------------------------------------- H2: filters
def filter_regions(model: TrainedModel, images: np.ndarray, masks: np.ndarray, top_k: int) -> np.ndarray:
    """For every last-conv filter, the region (index into masks' R axis) where it fires hardest.

    A filter's ``top_k`` largest activations over all images and positions each vote with the
    region under its receptive-field centre in that image, if the filter is active there (above 0:
    a filter that fires at fewer positions gets fewer votes, not votes from where it is silent);
    dead filters (never active) get -1.
    """
    features = np.concatenate([
        np.asarray(model.module().apply(model.variables, as_unit_float(images[s:s + 256]),
                                        method="conv_features"))
        for s in range(0, len(images), 256)
    ])  # (N, h, w, F)
    n, h, w, n_filters = features.shape
    height, width = images.shape[1:]
    flat = features.reshape(-1, n_filters)
    k = min(top_k, len(flat))
    top = np.argpartition(-flat, k - 1, axis=0)[:k]  # (k, F) positions in (N, h, w) order
    image, rest = np.divmod(top, h * w)
    row, col = np.divmod(rest, w)
    centre_y = ((row + 0.5) * height / h).astype(int).clip(0, height - 1)
    centre_x = ((col + 0.5) * width / w).astype(int).clip(0, width - 1)
    active = np.take_along_axis(flat, top, axis=0) > 0  # (k, F)
    votes = masks[image, :, centre_y, centre_x] * active[:, :, None]  # (k, F, R)
    winner = votes.sum(axis=0).argmax(axis=1)
    dead = flat.max(axis=0) <= 0
    return np.where(dead, -1, winner)


def filter_table(runs: CultureRuns, regions: RegionMaps, config: CompareConfig) -> pd.DataFrame:
    """Per (trial, filter): the face region of the filter's strongest responses on the trial's test images."""
    frames = []
    for trial in range(runs.n_trials):
        indices = runs.test_indices[trial]
        winners = filter_regions(runs.models[trial], runs.dataset.images[indices], regions.masks[indices],
                                 config.filter_top_k)
        names = np.asarray(list(regions.region_names) + ["dead"])[winners]
        frames.append(pd.DataFrame({"culture": runs.name, "trial": trial, "filter": np.arange(len(winners)),
                                    "region": names}))
    return pd.concat(frames, ignore_index=True)


def filter_test(filters: pd.DataFrame, culture_a: str, culture_b: str, region_names: Sequence[str],
                config: CompareConfig) -> dict[str, Any]:
    """Do the cultures' models place their filters in different regions? Units: models (trials)."""
    live = filters[filters["region"] != "dead"]
    shares = (live.groupby(["culture", "trial"])["region"].value_counts(normalize=True)
              .unstack(fill_value=0.0).reindex(columns=list(region_names), fill_value=0.0))
    distance, p = stats.distribution_test(shares.loc[culture_a].to_numpy(), shares.loc[culture_b].to_numpy(),
                                          n_permutations=config.n_permutations, seed=config.seed)
    return {"total_variation": distance, "p_value": p, "unit": "models (trials)",
            "share_a": shares.loc[culture_a].mean().to_dict(), "share_b": shares.loc[culture_b].mean().to_dict()}


# ---------------------------------------------------------------------------- representations
def probe_images(a: CultureRuns, b: CultureRuns, per_culture: int, seed: int) -> np.ndarray:
    """The same images for every model: up to ``per_culture`` from each culture, seeded."""
    rng = np.random.default_rng(seed)
    picks = [d.images[np.sort(rng.permutation(len(d))[:per_culture])] for d in (a.dataset, b.dataset)]
    return np.concatenate(picks)


def cka_table(a: CultureRuns, b: CultureRuns, config: CompareConfig) -> pd.DataFrame:
    """Linear CKA of penultimate activations for every pair of models: between and within cultures."""
    images = probe_images(a, b, config.cka_images, config.seed)
    activations = {}
    for culture in (a, b):
        for trial, model in enumerate(culture.models):
            penultimate = model.module().apply(model.variables, as_unit_float(images), method="penultimate")
            activations[(culture.name, trial)] = np.asarray(jax.device_get(penultimate))
    keys = list(activations)
    rows = []
    for first, second in combinations(keys, 2):
        kind = "between" if first[0] != second[0] else f"within_{'a' if first[0] == a.name else 'b'}"
        try:
            value = stats.linear_cka(activations[first], activations[second])
        except stats.StatsInputError:
            value = float("nan")  # a model whose representation is constant on the probe images
        rows.append({"culture_1": first[0], "trial_1": first[1], "culture_2": second[0], "trial_2": second[1],
                     "kind": kind, "cka": value})
    return pd.DataFrame(rows)

