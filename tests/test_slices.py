"""Per-image work in slices (emofx.nets.slices): same numbers, bounded temporary memory on the CPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emofx.explain import saliency
from emofx.nets import checkpoint
from emofx.nets.checkpoint import TrainedModel
from emofx.nets.model import ModelConfig, init_params, pixel_free, pixel_stats
from emofx.nets.slices import FORWARD_COPIES, GRADIENT_COPIES, images_per_slice, in_slices

PAPER = ModelConfig(num_classes=7)
SMALL = ModelConfig(num_classes=3, widths=(8, 16, 16), dense_units=32)


def test_slice_sizes_follow_the_memory_budget():
    # The paper's CNN on 48x48 faces: a first-layer output of 576 KiB per image.
    assert images_per_slice(PAPER, FORWARD_COPIES, backend="cpu") == 16
    assert images_per_slice(PAPER, GRADIENT_COPIES, backend="cpu") == 8
    assert images_per_slice(ModelConfig(num_classes=7, input_size=96), GRADIENT_COPIES, backend="cpu") == 2
    assert images_per_slice(ModelConfig(num_classes=7, input_size=512), GRADIENT_COPIES, backend="cpu") == 1
    assert images_per_slice(PAPER, FORWARD_COPIES, backend="gpu") is None  # whole batches on accelerators


@pytest.mark.parametrize("n", [1, 4, 10, 12])
def test_in_slices_equals_one_call_and_pads_the_last_slice(n):
    x = jnp.arange(n * 3, dtype=jnp.float32).reshape(n, 3)
    w = jnp.arange(n, dtype=jnp.float32)

    def fn(a, b):
        return a * 2 + b[:, None]

    np.testing.assert_array_equal(in_slices(fn, x, w, size=4), fn(x, w))
    np.testing.assert_array_equal(in_slices(fn, x, w, size=None), fn(x, w))


def test_sliced_logits_and_maps_equal_whole_batch_ones(assert_close_to_scale, float32_tolerance):
    model = TrainedModel(SMALL, init_params(SMALL, 0), ("happy", "sad", "surprised"))
    images = np.random.default_rng(0).random((37, 48, 48), dtype=np.float32)
    targets = np.arange(37) % 3
    config, variables, stats = pixel_free(SMALL), model.variables, pixel_stats(SMALL)
    sliced = model.logits(images)
    whole = checkpoint.EmotionCNN(config).apply(variables, checkpoint.standardise(jnp.asarray(images), stats))
    assert_close_to_scale(sliced, whole, float32_tolerance, "logits")
    maps = saliency.guided_backprop(model, images, targets)
    one_by_one = np.concatenate([saliency.guided_backprop(model, images[i:i + 1], targets[i:i + 1]) for i in range(37)])
    scale = float(np.abs(one_by_one).max())
    assert scale > 0
    assert_close_to_scale(np.asarray(maps) / scale, one_by_one / scale, float32_tolerance, "guided backprop")


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="slicing applies on the CPU only")
def test_a_batch_of_64_paper_faces_needs_a_buffer_glibc_keeps():
    # The point of slicing: each call's temporary buffer stays under glibc's 32 MiB mmap threshold
    # (whole-batch programs needed 59 MiB for inference and 168 MiB for a saliency map).
    params = init_params(PAPER, 0)
    images = jax.ShapeDtypeStruct((64, 48, 48), jnp.float32)
    config, stats = pixel_free(PAPER), pixel_stats(PAPER)
    inference = checkpoint._logits.lower(config, {"params": params}, images, stats).compile()
    gradient = saliency._gradient_core.lower(config, {"params": params}, stats, images,
                                             jax.ShapeDtypeStruct((64,), jnp.int32), "guided", "probability").compile()
    temporary = [c.memory_analysis().temp_size_in_bytes / 2 ** 20 for c in (inference, gradient)]
    assert max(temporary) < 32, temporary  # measured on 2 cores: 19.6 and 31.2 MiB
