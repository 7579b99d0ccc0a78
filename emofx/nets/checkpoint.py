"""Trained models on disk: parameters, architecture, classes and provenance in one directory.

A checkpoint directory holds ``params.msgpack`` (Flax serialisation), for a model with batch
normalisation ``batch_stats.msgpack`` (its running statistics), and ``model.json`` (model
config, class names, preprocessing, training recipe, split indices, library versions). A
loaded model predicts exactly as the saved one did.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Sequence

import flax
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from emofx.data.emotions import UnknownEmotionError, canonical_emotion
from emofx.data.paths import atomic_write
from emofx.data.progress import tqdm
from emofx.nets.buckets import bucket_size, pad_rows
from emofx.nets.model import (EmotionCNN, ModelConfig, model_variables, pixel_free, pixel_stats, variable_shapes,
                              standardise)

CHECKPOINT_DIR = "checkpoint"
PARAMS_FILE = "params.msgpack"
MODEL_FILE = "model.json"
BATCH_STATS_FILE = "batch_stats.msgpack"
PIECE_ROWS = 4096  # predict_proba runs larger sets in pieces of this many rows (or fewer), one progress step each


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the requested model."""


# /proc/cpuinfo's flags, widest first, and what XLA's CPU compiler makes of each
VECTOR_FLAGS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"))


def cpu_vector_width(cpuinfo: str | None = None, xla_flags: str | None = None) -> str:
    """The widest vector instructions XLA compiles for here, e.g. ``AVX-512`` or ``AVX2``, from ``cpuinfo`` (default:
    /proc/cpuinfo) and a cap in ``xla_flags`` (default: $XLA_FLAGS' ``--xla_cpu_max_isa``); "" where unknown (off
    Linux). CPUs of other widths sum in other orders: the same seed trains to other numbers on each."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))
    width = next((name for flag, name in VECTOR_FLAGS if flag in flags), "")
    cap = re.search(r"--xla_cpu_max_isa=(\S+)", os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags)
    return f"{cap.group(1)} as XLA_FLAGS caps it ({width or 'unknown'} CPU)" if cap else width


def device_description() -> str:
    """The device computations run on and the cores this process may use, e.g. ``cpu (2 cores, AVX-512)``, ``cpu
    (1 of 2 cores, AVX2)`` (``taskset``) or ``NVIDIA H200 (16 cores)``: recorded with every run so that its times
    can be read, and because CPU training's last digits depend on the cores XLA spreads its sums over and on the
    CPU's vector width (:func:`cpu_vector_width`)."""
    device = jax.devices()[0]
    name = device.platform if device.platform == "cpu" else device.device_kind
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = f"{usable} cores" if usable == os.cpu_count() else f"{usable} of {os.cpu_count()} cores"
    width = cpu_vector_width() if device.platform == "cpu" else ""
    return f"{name} ({cores}{', ' + width if width else ''})"


def source_revision(package: Path | None = None) -> str:
    """The git commit a package's source (default: emofx's own) was checked out at, with ``+dirty`` when its
    tracked files differ from that commit, or '' when its ``__init__.py`` is not a tracked file of a git checkout
    (an installed wheel, no git): recorded with every run because the version number alone does not say which
    code made the numbers."""
    package = package or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # this package, not a repository it happens to sit in
        commit, changes = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("+dirty" if changes else "")


def library_versions() -> dict[str, str]:
    """Versions of emofx (and its source commit, :func:`source_revision`), the numeric libraries and Python."""
    import optax

    from emofx import __version__

    return {
        "emofx": __version__,
        "emofx-commit": source_revision(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A trained :class:`EmotionCNN`: its config, parameters, class names and, with batch
    normalisation, the running statistics (``batch_stats``)."""

    config: ModelConfig
    params: Any
    classes: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)
    batch_stats: Any = None

    @property
    def variables(self) -> dict[str, Any]:
        """What ``module().apply`` takes: parameters and running statistics (eval mode)."""
        return model_variables(self.params, self.batch_stats)

    @property
    def flip_average(self) -> bool:
        """Whether its recipe scores each image with its mirror image (test-time flip averaging), as
        recorded in the checkpoint; scoring it so gives the numbers of its run's metrics.json."""
        return bool(self.info.get("train_config", {}).get("flip_average", False))

    def module(self, activation: Callable[[jax.Array], jax.Array] | None = None) -> EmotionCNN:
        """The Flax module, optionally with another activation (e.g. a guided ReLU)."""
        return EmotionCNN(self.config) if activation is None else EmotionCNN(self.config, activation=activation)

    def logits(self, images: jax.Array | np.ndarray) -> jax.Array:
        """Logits for images in [0, 1] (B, H, W) (eval mode); uint8 images are scaled by 1/255.

        One compiled call: scaling and standardisation run inside it, and the variables and
        pixel statistics stay on the device between calls. The shape and type are checked
        (:func:`check_images`), and the pixel values of host arrays; those of a device array not: that would
        cost a device round trip per call, so they must already lie in [0, 1] (:meth:`predict_proba` checks them).
        """
        check_images(images, self.config.input_size, values=not isinstance(images, jax.Array))
        return _logits(self._pixel_free_config, self._device_variables, jnp.asarray(images), self._stats)

    def predict_proba(self, images: np.ndarray, batch_size: int = 512, flip_average: bool | None = None,
                      progress: bool = False) -> np.ndarray:
        """Class probabilities (N, C) for uint8 or [0, 1] images (eval mode: batch normalisation uses
        the running statistics, so padding and batch composition change nothing).

        The set is padded to a shape bucket (:mod:`emofx.nets.buckets`, so sets of similar size share
        one compiled program) and one compiled call runs it in batches of up to ``batch_size`` (a power of
        two dividing the bucket), scaling, standardisation and softmax included: no host synchronisation
        per batch. A bucket over :data:`PIECE_ROWS` rows goes in equal pieces (the same batches, so the
        same numbers), followed by a ``progress`` bar: FER2013 whole takes about a minute on two CPU cores.
        ``flip_average``: the mean of the probabilities of each image and its mirror image (test-time
        augmentation), inside the same call; ``None``: as the model's recipe evaluates
        (:attr:`flip_average`), so predictions match its metrics.json.
        """
        check_images(images, self.config.input_size)
        n = len(images)
        if n == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        rows = bucket_size(n)
        batch = math.gcd(rows, 2 ** int(math.log2(max(1, batch_size))))
        piece = rows if rows <= PIECE_ROWS else math.gcd(rows, max(PIECE_ROWS, batch))
        padded = pad_rows(np.asarray(images), rows)
        flip = self.flip_average if flip_average is None else bool(flip_average)
        compiled = _probabilities(self._pixel_free_config, batch, flip)
        out = []
        with tqdm(total=n, desc="predict", unit="img", disable=not progress or piece == rows, leave=False) as bar:
            for start in range(0, n, piece):  # a piece of padding alone is not run
                part = jnp.asarray(padded[start:start + piece])
                out.append(np.asarray(compiled(self._device_variables, part, self._stats)))
                bar.update(min(piece, n - start))
        return np.concatenate(out)[:n]

    def predict(self, images: np.ndarray, batch_size: int = 512, flip_average: bool | None = None,
                progress: bool = False) -> np.ndarray:
        """The most probable class per image (see :meth:`predict_proba`)."""
        return self.predict_proba(images, batch_size, flip_average, progress).argmax(axis=1)

    @cached_property
    def _device_variables(self) -> Any:
        return jax.device_put(self.variables)

    @cached_property
    def _stats(self) -> jax.Array:
        return pixel_stats(self.config)

    @cached_property
    def _pixel_free_config(self) -> ModelConfig:
        return pixel_free(self.config)

    def save(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None, *,
             overwrite: bool = False) -> Path:
        """Write the checkpoint into ``directory`` (created); returns it.

        A folder that already holds a checkpoint is refused unless ``overwrite``, which also removes
        a stale batch-statistics file the new model does not have."""
        directory = Path(directory)
        if (directory / CHECKPOINT_DIR).is_dir():  # a second model beside it: which one is the run's?
            raise FileExistsError(f"{directory} is a run folder (its model is in {CHECKPOINT_DIR}/); save to another "
                                  "folder")
        if (directory / MODEL_FILE).exists() or (directory / PARAMS_FILE).exists():
            if not overwrite:
                raise FileExistsError(f"{directory} already holds an emofx checkpoint; save to another folder, "
                                      "or pass overwrite=True to replace it")
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "model_config": self.config.to_dict(),
            "classes": list(self.classes),
            "preprocessing": {
                "scale": "uint8 / 255",
                "pixel_mean": self.config.pixel_mean,
                "pixel_std": self.config.pixel_std,
                "input_size": self.config.input_size,
            },
            "versions": library_versions(),
            **self.info,
            **(extra or {}),
        }
        atomic_write(directory / PARAMS_FILE, flax.serialization.to_bytes(jax.device_get(self.params)))
        if self.batch_stats:
            atomic_write(directory / BATCH_STATS_FILE, flax.serialization.to_bytes(jax.device_get(self.batch_stats)))
        else:
            (directory / BATCH_STATS_FILE).unlink(missing_ok=True)
        atomic_write(directory / MODEL_FILE, json.dumps(payload, indent=2, default=_json_default).encode())
        return directory

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        *,
        expect_config: ModelConfig | None = None,
        expect_classes: Sequence[str] | None = None,
    ) -> "TrainedModel":
        """Read a checkpoint (a run directory or its ``checkpoint/`` folder).

        ``expect_config`` / ``expect_classes`` make a mismatch with another architecture or
        class set a clear :class:`CheckpointError` rather than a shape error later.
        """
        directory = resolve_checkpoint_dir(directory)
        try:
            payload = json.loads((directory / MODEL_FILE).read_text())
            config = ModelConfig.from_dict(payload["model_config"])
            classes = tuple(payload["classes"])
        except (ValueError, KeyError, TypeError) as err:  # damaged, or written by another emofx version
            detail = f"no field {err}" if isinstance(err, KeyError) else str(err)
            raise CheckpointError(f"{directory / MODEL_FILE} is not a readable emofx model ({detail}); retrain the "
                                  "run, or read it with the emofx version that wrote it") from None
        if expect_config is not None and expect_config.architecture() != config.architecture():
            raise CheckpointError(
                f"checkpoint {directory} has architecture {config.architecture()}, "
                f"not the requested {expect_config.architecture()}"
            )
        if expect_classes is not None and tuple(expect_classes) != classes:
            raise CheckpointError(
                f"checkpoint {directory} was trained on classes {list(classes)}, not {list(expect_classes)}"
            )
        template = variable_shapes(config)
        params = _read_tree(directory / PARAMS_FILE, template["params"])
        batch_stats = _read_tree(directory / BATCH_STATS_FILE, template["batch_stats"]) \
            if "batch_stats" in template else None
        info = {k: v for k, v in payload.items() if k not in ("model_config", "classes")}
        return cls(config=config, params=params, classes=classes, info=info, batch_stats=batch_stats)


def _read_tree(path: Path, template: Any) -> Any:
    """A serialised pytree shaped like ``template`` (arrays or ``jax.ShapeDtypeStruct`` leaves); a
    clear error when it is missing or does not fit, naming the first array of another shape."""
    try:
        tree = flax.serialization.from_bytes(template, path.read_bytes())
        wrong = [f"{jax.tree_util.keystr(where)} is {np.shape(value)}, not {np.shape(expected)}"
                 for (where, value), expected in zip(jax.tree_util.tree_leaves_with_path(tree),
                                                     jax.tree.leaves(template), strict=True)
                 if np.shape(value) != np.shape(expected)]
    except FileNotFoundError as err:
        raise CheckpointError(f"{path} is missing; its model.json asks for it: the run is damaged (train it "
                              "again, e.g. emofx train --overwrite)") from err
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} does not fit its model.json ({err}): the run is damaged (train it again, "
                              "e.g. emofx train --overwrite)") from err
    if wrong:
        raise CheckpointError(f"{path} does not fit its model.json: {wrong[0]}; the run is damaged (train it "
                              "again, e.g. emofx train --overwrite)")
    return tree


def resolve_checkpoint_dir(directory: str | os.PathLike) -> Path:
    """The folder holding model.json: ``directory`` itself or its ``checkpoint/`` child."""
    directory = Path(directory)
    for candidate in (directory, directory / CHECKPOINT_DIR):
        if (candidate / MODEL_FILE).exists() and (candidate / PARAMS_FILE).exists():
            return candidate
    raise CheckpointError(
        f"no emofx checkpoint in {directory} (expected {MODEL_FILE} and {PARAMS_FILE}, "
        f"there or in {CHECKPOINT_DIR}/); train one with `emofx train`"
    )


def check_images(images: jax.Array | np.ndarray, size: int, values: bool = True) -> None:
    """Refuse, saying what to do, images a model of input ``size`` would misread: not (N, size, size) (a trailing
    channel of 1 is allowed), integers other than uint8, or (``values``) floats outside [0, 1] (0-255 pixels as floats
    would otherwise pass through :func:`as_unit_float` unscaled, and every prediction and map would be silently
    wrong)."""
    if hasattr(images, "images") and hasattr(images, "label_names"):  # a FaceDataset itself
        raise TypeError("give a dataset's images (dataset.images) and, as targets, its dataset.label_names; got the "
                        f"{type(images).__name__} itself")
    shape = tuple(np.shape(images))
    if len(shape) not in (3, 4) or shape[1:3] != (size, size) or shape[3:] not in ((), (1,)):
        raise ValueError(f"images of shape {shape}: the model takes (N, {size}, {size}) grayscale faces "
                         f"(one face: images[None]; another size: prepare the data with --size {size})")
    dtype = np.dtype(images.dtype if hasattr(images, "dtype") else np.asarray(images).dtype)  # a device array stays
    if dtype == np.uint8 or not shape[0]:
        return
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"images of type {dtype}: give uint8 pixels (0-255) or floats in [0, 1]")
    if not values:
        return
    xp = jnp if isinstance(images, jax.Array) else np  # host arrays are looked at on the host: no transfer
    low, high = float(xp.min(images)), float(xp.max(images))
    if not (-1e-4 <= low and high <= 1 + 1e-4):  # NaN fails too
        raise ValueError(f"float images must lie in [0, 1]; these range from {low:.4g} to {high:.4g} (pixels 0-255 as "
                         "floats: divide by 255, or pass uint8)")


def check_targets(targets: np.ndarray | Sequence[int], n_images: int, n_classes: int) -> np.ndarray:
    """Class indices (N,) as int32, refused unless they are ``n_images`` integers in [0, ``n_classes``): an index
    past the model's classes would give all-zero maps or a walk toward nothing, with no error from the device."""
    array = np.asarray(targets)
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"targets must be class indices (integers) or emotion names; got {array.dtype} values "
                         "('label' or 'predicted': emofx.explain.saliency.resolve_targets turns them into indices)")
    if array.shape != (n_images,):
        raise ValueError(f"need one target per image ({n_images}); got shape {array.shape}")
    if n_images and (array.min() < 0 or array.max() >= n_classes):
        raise ValueError(f"target indices must lie in [0, {n_classes}) (the model's classes); got "
                         f"{array.min()}..{array.max()}")
    return array.astype(np.int32)


def check_model_inputs(model: TrainedModel, images: jax.Array | np.ndarray,
                       targets: np.ndarray | Sequence[int]) -> np.ndarray:
    """What every method that explains or changes images takes, checked before any work: a :class:`TrainedModel`,
    images it reads as meant (:func:`check_images`) and one target per image (:func:`check_targets`, whose int32
    targets it returns): an index into ``model.classes``, or an emotion name (``dataset.label_names``, safe where a
    dataset's ``labels``, indices into its own classes, would name other emotions than the model's)."""
    if not isinstance(model, TrainedModel):
        raise TypeError(f"expected a TrainedModel (a run's .model, or TrainedModel.load(directory)); got "
                        f"{type(model).__name__}")
    check_images(images, model.config.input_size)
    names = np.asarray(targets)
    if names.dtype.kind in "UO" and names.size:
        index = {c: j for j, c in enumerate(model.classes)}
        canonical = [_canonical_or_none(n) for n in names.ravel()]
        unknown = sorted({str(n) for n, c in zip(names.ravel(), canonical) if c not in index})
        if unknown:
            raise ValueError(f"targets {unknown[:5]} are not classes of this model ({', '.join(model.classes)})")
        targets = np.array([index[c] for c in canonical], np.int32).reshape(names.shape)
    return check_targets(targets, len(images), len(model.classes))


def _canonical_or_none(name: object) -> str | None:
    try:
        return canonical_emotion(str(name))
    except UnknownEmotionError:
        return None


def as_unit_float(images: jax.Array | np.ndarray) -> jax.Array:
    """uint8 images to float32 in [0, 1]; float images are passed through (checked at the public entry points by
    :func:`check_images`; this also runs inside compiled functions, where values cannot be looked at)."""
    if getattr(images, "dtype", None) == np.uint8:
        return jnp.asarray(images, jnp.float32) / 255.0
    return jnp.asarray(images, jnp.float32)


@partial(jax.jit, static_argnums=0)
def _logits(config: ModelConfig, variables: Any, images: jax.Array, stats: jax.Array) -> jax.Array:
    # ``config`` is pixel-free and the statistics are data: models that differ only in their
    # training set's pixel statistics share one compilation (loading many trials stays fast).
    return EmotionCNN(config).apply(variables, standardise(as_unit_float(images), stats))


@lru_cache(maxsize=32)
def _probabilities(config: ModelConfig, batch_size: int, flip_average: bool):
    """A compiled ``(variables, images, stats) -> probabilities`` over ``images`` in batches of
    ``batch_size``; with ``flip_average`` the mean of each image's and its mirror image's."""

    def one(variables: Any, x: jax.Array, stats: jax.Array) -> jax.Array:
        p = jax.nn.softmax(_logits(config, variables, x, stats), axis=-1)
        return (p + jax.nn.softmax(_logits(config, variables, x[:, :, ::-1], stats), axis=-1)) / 2 \
            if flip_average else p

    def probabilities(variables: Any, images: jax.Array, stats: jax.Array) -> jax.Array:
        batches = images.reshape(-1, batch_size, *images.shape[1:])
        return jax.lax.map(lambda x: one(variables, x, stats), batches).reshape(images.shape[0], -1)

    return jax.jit(probabilities)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")
