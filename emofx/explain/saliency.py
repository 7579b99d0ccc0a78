"""Attribution maps: where in the face a trained model looks to decide the emotion.

Every method has one calling convention, in the spirit of PAIR-code/saliency::

    maps = method(model, images, targets, **options)   # images (B, H, W) in [0, 1]

returning a (B, H, W) map per image for the class index in ``targets``. The compiled
cores take the frozen :class:`~emofx.nets.model.ModelConfig` as a static argument and the
parameters as a pytree, so one compilation serves a whole run (and randomised copies of
it). :func:`attribute` is the front door: it converts uint8 images, batches (padding the
last batch so nothing recompiles), dispatches by method name and returns numpy.

Methods (``METHODS``): ``gradient`` (vanilla gradient of the class probability, the
paper's section 2.2; ``score="logit"`` for the logit, which the reference code explains: on a small
model trained on synthetic faces the two maps' magnitudes correlate 0.88-0.99 per image), ``guided`` (guided
backpropagation, the paper's Figures 5-6), ``smoothgrad``, ``integrated-gradients``, ``gradcam`` and
``occlusion``. Target classes come from :func:`resolve_targets`.
"""

from __future__ import annotations

import inspect
import math
from functools import partial
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from emofx.data.emotions import UnknownEmotionError, canonical_emotion
from emofx.data.progress import tqdm
from emofx.nets.checkpoint import TrainedModel, as_unit_float, check_model_inputs
from emofx.nets.model import EmotionCNN, ModelConfig, pixel_free, pixel_stats, standardise

SCORES = ("probability", "logit", "log-probability")
IG_STEPS = 128  # enough for completeness within a few percent on the paper's CNN
TARGET_KINDS = ("label", "predicted")


# ---------------------------------------------------------------------------- guided ReLU
@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
    """ReLU whose backward pass lets gradient through only where the forward input and the
    incoming gradient are both positive (Springenberg et al. 2015; the reference's "GuidedRelu")."""
    return jnp.maximum(x, 0.0)


def _guided_relu_forward(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.maximum(x, 0.0), x


def _guided_relu_backward(x: jax.Array, grad: jax.Array) -> tuple[jax.Array]:
    return (jnp.where((x > 0) & (grad > 0), grad, 0.0),)


guided_relu.defvjp(_guided_relu_forward, _guided_relu_backward)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": nn.relu, "guided": guided_relu}


# ---------------------------------------------------------------------------- targets
def class_index(classes: Sequence[str], name: str, what: str = "not") -> int:
    """Index of the emotion ``name`` (any alias) in ``classes``, with a clear error otherwise."""
    try:
        emotion = canonical_emotion(name)
    except UnknownEmotionError as err:
        raise ValueError(f"{name!r} is {what} an emotion: {err}") from None
    if emotion not in classes:
        raise ValueError(f"{emotion!r} is not a class of this model; its classes are {list(classes)}")
    return list(classes).index(emotion)


def resolve_targets(
    model: TrainedModel,
    images: np.ndarray,
    target: str | int | Sequence[int] | np.ndarray,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Class indices (N,) for ``target``: ``"label"`` (each image's own class, the paper's
    choice; needs ``labels`` in the model's class order), ``"predicted"``, an emotion name
    (any alias) or class index for all images, or an explicit index per image.

    Maps explain the network on the image alone, so ``"predicted"`` is that function's top class, also for a
    model whose recipe scores the mean of an image's and its mirror image's probabilities (``strong``): its
    averaged prediction may differ on a few images."""
    n = len(images)
    num_classes = len(model.classes)
    if isinstance(target, str):
        if target == "label":
            if labels is None:
                raise ValueError("target 'label' needs the images' labels; pass labels= or choose 'predicted'")
            indices = np.asarray(labels, dtype=np.int32)
        elif target == "predicted":
            indices = model.predict(images, flip_average=False).astype(np.int32)
        else:
            indices = np.full(n, class_index(model.classes, target, f"neither {' nor '.join(TARGET_KINDS)} nor"),
                              np.int32)
    else:
        indices = np.broadcast_to(np.asarray(target, dtype=np.int32), (n,)).copy()
    if indices.shape != (n,):
        raise ValueError(f"need one target per image ({n}); got shape {indices.shape}")
    if n and (indices.min() < 0 or indices.max() >= num_classes):
        raise ValueError(f"target indices must lie in [0, {num_classes}); got {indices.min()}..{indices.max()}")
    return indices


# ---------------------------------------------------------------------------- scores
def select_score(logits: jax.Array, targets: jax.Array, score: str) -> jax.Array:
    """The scalar per image that a map explains: the target's probability, logit or log-probability."""
    if score == "probability":
        values = jax.nn.softmax(logits)
    elif score == "logit":
        values = logits
    elif score == "log-probability":
        values = jax.nn.log_softmax(logits)
    else:
        raise ValueError(f"unknown score {score!r}; choose one of {SCORES}")
    return jnp.take_along_axis(values, targets[:, None], axis=1)[:, 0]


def class_scores(
    config: ModelConfig, variables: Any, images: jax.Array, targets: jax.Array,
    activation: str = "relu", score: str = "probability",
) -> jax.Array:
    """Per-image score (B,) of the target class; ``variables`` as :attr:`TrainedModel.variables`."""
    logits = EmotionCNN(config, activation=ACTIVATIONS[activation]).apply(variables, images)
    return select_score(logits, targets, score)


def _input_gradient(config, variables, stats, images, targets, activation, score) -> jax.Array:
    # Images do not interact in the model, so the gradient of the batch sum is per-image.
    # ``config`` is pixel-free and ``stats`` standardises inside the graph (see _core_arguments).
    return jax.grad(
        lambda x: class_scores(config, variables, standardise(x, stats), targets, activation, score).sum())(images)


def _core_arguments(model: TrainedModel) -> tuple[ModelConfig, Any, jax.Array]:
    """(pixel-free config, variables, pixel stats): models that differ only in their training set's
    pixel statistics share one compilation of every core below. The variables are parameters
    and, with batch normalisation, running statistics (eval mode)."""
    return pixel_free(model.config), model.variables, pixel_stats(model.config)


# ---------------------------------------------------------------------------- compiled cores
@partial(jax.jit, static_argnames=("config", "activation", "score"))
def _gradient_core(config, variables, stats, images, targets, activation, score):
    return _input_gradient(config, variables, stats, images, targets, activation, score)


@partial(jax.jit, static_argnames=("config", "activation", "score", "n_samples"))
def _smoothgrad_core(config, variables, stats, images, targets, image_keys, noise_level, activation, score, n_samples):
    spread = noise_level * (images.max(axis=(1, 2)) - images.min(axis=(1, 2)))
    noise = jax.vmap(lambda k: jax.random.normal(k, (n_samples, *images.shape[1:])))(image_keys)
    noise = jnp.moveaxis(noise, 1, 0) * spread[None, :, None, None]

    def accumulate(total, eps):
        return total + _input_gradient(config, variables, stats, images + eps, targets, activation, score), None

    total, _ = jax.lax.scan(accumulate, jnp.zeros_like(images), noise)
    return total / n_samples


@partial(jax.jit, static_argnames=("config", "activation", "score", "steps"))
def _integrated_gradients_core(config, variables, stats, images, targets, baseline, activation, score, steps):
    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps  # midpoint rule

    def accumulate(total, alpha):
        point = baseline + alpha * (images - baseline)
        return total + _input_gradient(config, variables, stats, point, targets, activation, score), None

    total, _ = jax.lax.scan(accumulate, jnp.zeros_like(images), alphas)
    return (images - baseline) * total / steps


@partial(jax.jit, static_argnames=("config", "score"))
def _score_core(config, variables, stats, images, targets, score):
    return class_scores(config, variables, standardise(images, stats), targets, score=score)


@partial(jax.jit, static_argnames=("config", "score"))
def _gradcam_core(config, variables, stats, images, targets, score):
    module = EmotionCNN(config)
    features = module.apply(variables, standardise(images, stats), method=EmotionCNN.conv_features)

    def target_score(f):
        logits = module.apply(variables, f, method=EmotionCNN.classify_features)
        return select_score(logits, targets, score).sum()

    weights = jax.grad(target_score)(features).mean(axis=(1, 2))
    cam = jax.nn.relu(jnp.einsum("bhwc,bc->bhw", features, weights))
    return jax.image.resize(cam, images.shape, method="bilinear")


@partial(jax.jit, static_argnames=("config", "score"))
def _occlusion_core(config, variables, stats, images, targets, patches, fill, score):
    reference = class_scores(config, variables, standardise(images, stats), targets, "relu", score)

    def drop(patch):
        occluded = jnp.where(patch[None], fill, images)
        return reference - class_scores(config, variables, standardise(occluded, stats), targets, "relu", score)

    drops = jax.lax.map(drop, patches)  # (P, B)
    coverage = patches.sum(axis=0)
    return jnp.einsum("pb,phw->bhw", drops, patches.astype(jnp.float32)) / jnp.maximum(coverage, 1)


# ---------------------------------------------------------------------------- public methods
def _check_score(score: str) -> None:
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {SCORES}")


def _inputs(model: TrainedModel, images: np.ndarray, targets: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """What every method takes, checked: the images as float32 in [0, 1] and the targets as class indices."""
    targets = check_model_inputs(model, images, targets)
    if np.ndim(images) == 4:  # (N, H, W, 1), as check_images allows: maps are (N, H, W) whatever the input
        images = images[..., 0]
    return as_unit_float(images), jnp.asarray(targets)


def check_maps(maps: np.ndarray, shape: tuple[int, ...]) -> None:
    """Refuse maps that are not one (H, W) map per image of ``shape`` (N, H, W): maps of other images or size."""
    if np.shape(maps) != tuple(shape):
        raise ValueError(f"maps of shape {np.shape(maps)}: need one map per image, of the images' size {tuple(shape)}")


def _baseline(baseline: float | np.ndarray, shape: tuple[int, ...]) -> jax.Array:
    """An integrated-gradients baseline (a value, or one or N images) as [0, 1] floats of ``shape``."""
    value = np.asarray(baseline)
    if value.shape not in ((), tuple(shape[1:]), tuple(shape)):
        raise ValueError(f"a baseline of shape {value.shape}: give one value, one image {tuple(shape[1:])} or one "
                         f"per image {tuple(shape)}")
    if value.dtype != np.uint8 and value.size and not (0 <= value.min() and value.max() <= 1):
        raise ValueError(f"the baseline must be uint8 pixels or floats in [0, 1] (0.5 is mid-grey); got values "
                         f"{value.min():.4g}..{value.max():.4g}")
    return jnp.broadcast_to(as_unit_float(value), shape)


def vanilla_gradient(model: TrainedModel, images: np.ndarray, targets: np.ndarray,
                     score: str = "probability") -> jax.Array:
    """d score / d image: the paper's map (section 2.2) with ``score="probability"``."""
    _check_score(score)
    images, targets = _inputs(model, images, targets)
    return _gradient_core(*_core_arguments(model), images, targets, "relu", score)


def guided_backprop(model: TrainedModel, images: np.ndarray, targets: np.ndarray,
                    score: str = "probability") -> jax.Array:
    """The gradient through guided ReLUs (the paper's Figures 5-6: from the class's softmax node)."""
    _check_score(score)
    images, targets = _inputs(model, images, targets)
    return _gradient_core(*_core_arguments(model), images, targets, "guided", score)


def smoothgrad(
    model: TrainedModel, images: np.ndarray, targets: np.ndarray, score: str = "probability", base: str = "gradient",
    n_samples: int = 25, noise_level: float = 0.15, seed: int = 0, image_ids: np.ndarray | None = None,
) -> jax.Array:
    """Mean gradient over ``n_samples`` noisy copies (Smilkov et al. 2017); noise std is
    ``noise_level`` x the image's value range. ``base`` is ``gradient`` or ``guided``. The noise of
    an image depends only on ``seed`` and its id in ``image_ids`` (e.g. its index in its dataset;
    default: its position), not on batching or on which other images are explained."""
    _check_score(score)
    if base not in ("gradient", "guided"):
        raise ValueError(f"smoothgrad base must be 'gradient' or 'guided'; got {base!r}")
    if n_samples < 1:
        raise ValueError(f"smoothgrad needs n_samples >= 1; got {n_samples}")
    if not 0 <= noise_level < math.inf:
        raise ValueError(f"smoothgrad's noise_level (the noise's std as a share of the value range) must be >= 0 and "
                         f"finite; got {noise_level}")
    images, targets = _inputs(model, images, targets)
    ids = jnp.arange(len(images)) if image_ids is None else jnp.asarray(image_ids, jnp.uint32)
    if ids.shape != (len(images),):
        raise ValueError(f"smoothgrad needs one image id per image ({len(images)}); got shape {ids.shape}")
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(seed), ids)
    activation = "guided" if base == "guided" else "relu"
    return _smoothgrad_core(*_core_arguments(model), images, targets, keys,
                            jnp.float32(noise_level), activation, score, int(n_samples))


def integrated_gradients(
    model: TrainedModel, images: np.ndarray, targets: np.ndarray, score: str = "probability",
    baseline: float | np.ndarray = 0.0, steps: int = IG_STEPS,
) -> jax.Array:
    """(x - baseline) times the mean gradient along the straight path (Sundararajan et al. 2017),
    midpoint rule with ``steps`` points; ``baseline`` is a value or an (H, W) / (B, H, W) image.
    Completeness (the maps sum to score(x) - score(baseline)) is checked by :func:`completeness`."""
    _check_score(score)
    if steps < 1:
        raise ValueError(f"integrated gradients needs steps >= 1; got {steps}")
    images, targets = _inputs(model, images, targets)
    base = _baseline(baseline, images.shape)
    return _integrated_gradients_core(*_core_arguments(model), images, targets, base,
                                      "relu", score, int(steps))


def gradcam(model: TrainedModel, images: np.ndarray, targets: np.ndarray, score: str = "logit") -> jax.Array:
    """Grad-CAM (Selvaraju et al. 2017) on the last convolution, upsampled bilinearly to the image."""
    _check_score(score)
    images, targets = _inputs(model, images, targets)
    return _gradcam_core(*_core_arguments(model), images, targets, score)


def occlusion_patches(size: int, patch: int, stride: int) -> np.ndarray:
    """Boolean (P, size, size) squares of side ``patch`` every ``stride`` pixels, covering every pixel."""
    if not 1 <= patch <= size or stride < 1:
        raise ValueError(f"occlusion needs 1 <= patch <= image size ({size}) and stride >= 1; got {patch}, {stride}")
    starts = sorted(set(range(0, size - patch + 1, stride)) | {size - patch})
    masks = np.zeros((len(starts) ** 2, size, size), bool)
    for k, (r, c) in enumerate((r, c) for r in starts for c in starts):
        masks[k, r:r + patch, c:c + patch] = True
    return masks


def occlusion(
    model: TrainedModel, images: np.ndarray, targets: np.ndarray, score: str = "probability",
    patch: int = 8, stride: int = 4, fill: float = 0.5,
) -> jax.Array:
    """Drop of the score when a ``patch`` square is set to ``fill``, averaged over the squares
    covering each pixel (Zeiler & Fergus 2014)."""
    _check_score(score)
    if not 0 <= fill <= 1:
        raise ValueError(f"occlusion fill must lie in [0, 1] (0.5 is mid-grey); got {fill}")
    images, targets = _inputs(model, images, targets)
    patches = jnp.asarray(occlusion_patches(images.shape[1], patch, stride))
    return _occlusion_core(*_core_arguments(model), images, targets, patches,
                           jnp.float32(fill), score)


METHODS: dict[str, Callable[..., jax.Array]] = {
    "gradient": vanilla_gradient,
    "guided": guided_backprop,
    "smoothgrad": smoothgrad,
    "integrated-gradients": integrated_gradients,
    "gradcam": gradcam,
    "occlusion": occlusion,
}


def explained_score(method: str, options: dict[str, Any]) -> str:
    """The score ``method``'s maps explain given ``options``: the one asked for, else the method's default
    (the probability, as in the paper; the logit for Grad-CAM)."""
    parameter = inspect.signature(METHODS[method]).parameters.get("score")
    return options.get("score") or (parameter.default if parameter is not None else "probability")


# ---------------------------------------------------------------------------- front door
def attribute(
    model: TrainedModel, images: np.ndarray, targets: np.ndarray, method: str = "guided",
    batch_size: int = 64, progress: bool = False, image_ids: np.ndarray | None = None, **options: Any,
) -> np.ndarray:
    """Maps (N, H, W) float32 of ``method`` for uint8 or [0, 1] images and ``targets``: per image an index into
    ``model.classes`` or an emotion name (``dataset.label_names``; a dataset's ``labels`` index its own classes,
    which name other emotions wherever its classes are not the model's).

    Images go through in batches of ``batch_size`` (the last one padded, so every batch
    reuses one compilation); ``options`` are the method's keyword arguments, and an option that
    holds one image per input image (an (N, H, W) integrated-gradients baseline) is batched with them.
    ``image_ids`` names each image (e.g. its index in its dataset): SmoothGrad draws an image's noise from it, so an
    image gets the same map whichever images come with it (default: its position); other methods need none.
    """
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    targets = check_model_inputs(model, images, targets)  # shapes, pixels, targets: a mistake stops before any batch
    images = np.asarray(images)
    if images.ndim == 4:  # one grayscale channel (check_images allows no other): the maps are (N, H, W)
        images = images[..., 0]
    n = len(images)
    if n == 0:
        return np.zeros(images.shape, np.float32)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1; got {batch_size!r}")
    size = min(batch_size, n)
    if image_ids is not None and np.shape(image_ids) != (n,):
        raise ValueError(f"image_ids must hold one id per image ({n}); got shape {np.shape(image_ids)}")
    if method == "smoothgrad":  # each image's noise from its id, whatever the batch
        options = {**options, "image_ids": np.arange(n) if image_ids is None else np.asarray(image_ids)}
    per_image = {name: np.asarray(value) for name, value in options.items()
                 if (name == "image_ids" or np.ndim(value) == images.ndim) and np.ndim(value) and len(value) == n}
    out = []
    for start in tqdm(range(0, n, size), desc=f"saliency ({method})", disable=not progress, leave=False):
        batch_options = {**options, **{name: _batch_rows(value, start, size) for name, value in per_image.items()}}
        maps = METHODS[method](model, _batch_rows(images, start, size), _batch_rows(targets, start, size),
                               **batch_options)
        out.append(np.asarray(maps, np.float32)[: min(size, n - start)])
    return np.concatenate(out)


def target_scores(model: TrainedModel, images: np.ndarray, targets: np.ndarray, score: str = "probability",
                  batch_size: int = 256) -> np.ndarray:
    """The ``score`` of each image's target class (N,) float32, for [0, 1] images (N, H, W), by one compiled program
    in batches of ``batch_size`` (the last padded): what :func:`class_scores` gives, without dispatching the model
    op by op (deletion/insertion curves score an image set 42 times)."""
    _check_score(score)
    config, variables, stats = _core_arguments(model)
    images, targets = np.asarray(images, np.float32), np.asarray(targets, np.int32)
    n = len(images)
    size = max(1, min(batch_size, n))
    out = [np.asarray(_score_core(config, variables, stats, jnp.asarray(_batch_rows(images, start, size)),
                                  jnp.asarray(_batch_rows(targets, start, size)), score))[:n - start]
           for start in range(0, n, size)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _batch_rows(array: np.ndarray, start: int, size: int) -> np.ndarray:
    """Rows ``start`` to ``start + size`` of ``array``, the last repeated to a full batch: every batch has one shape,
    so one compiled program serves them all (the repeated rows' results are dropped)."""
    part = array[start:start + size]
    return np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])


def completeness(
    model: TrainedModel, images: np.ndarray, targets: np.ndarray, maps: np.ndarray,
    baseline: float | np.ndarray = 0.0, score: str = "probability",
) -> pd.DataFrame:
    """Integrated Gradients' completeness per image: ``attribution_sum`` against ``score_difference`` =
    ``score`` (of the image) - ``baseline_score``, their ``absolute_error``, and the ``relative_error``: the
    absolute error over the largest of the difference and the two scores, so that an image whose score barely
    moves from the baseline's (a difference of 2e-4) does not turn a rounding-sized error into 140%."""
    images, targets = _inputs(model, images, targets)
    check_maps(maps, images.shape)
    base = _baseline(baseline, images.shape)
    at_image = target_scores(model, np.asarray(images), np.asarray(targets), score)
    at_baseline = target_scores(model, np.asarray(base), np.asarray(targets), score)
    difference = at_image - at_baseline
    total = np.asarray(maps, np.float64).reshape(len(difference), -1).sum(axis=1)
    error = np.abs(total - difference)
    scale = np.max(np.abs([difference, at_image, at_baseline]), axis=0)
    frame = pd.DataFrame({
        "score": at_image, "baseline_score": at_baseline,
        "attribution_sum": total,
        "score_difference": difference,
        "absolute_error": error,
        "relative_error": error / np.maximum(scale, 1e-12),
    })
    frame.index.name = "image"
    return frame
