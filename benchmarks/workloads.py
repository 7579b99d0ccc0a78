"""What the benchmark times: one call of each task, for emofx and for the PyTorch reference.

A *workload* maps a task name to a zero-argument callable that runs the task once on one
batch and returns when its results are computed. emofx's workloads go through the
library's real code paths: the compiled training step of :mod:`emofx.training`
(augmentation, forward with dropout, backward, SGD update), :meth:`TrainedModel.logits`
for inference and :func:`emofx.saliency.guided_backprop` for saliency. Inputs are random
images and labels drawn from the config's seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

TASKS = ("train", "infer", "saliency")


@dataclass(frozen=True)
class BenchConfig:
    """Problem size and timing plan of a benchmark run (the paper's CNN by default)."""

    batch_size: int = 64
    image_size: int = 48
    num_classes: int = 7
    repeats: int = 5
    warmup: int = 2
    calls: tuple[tuple[str, int], ...] = (("train", 2), ("infer", 6), ("saliency", 3))
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"batch_size and repeats must be >= 1 and warmup >= 0; got "
                             f"{self.batch_size}, {self.repeats}, {self.warmup}")

    def calls_per_repeat(self, task: str) -> int:
        """How many calls one timed repeat of ``task`` makes."""
        return dict(self.calls)[task]

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Random uint8 images (B, H, W) and class labels (B,) from ``seed``."""
        rng = np.random.default_rng(self.seed)
        images = rng.integers(0, 256, (self.batch_size, self.image_size, self.image_size), dtype=np.uint8)
        return images, rng.integers(0, self.num_classes, self.batch_size).astype(np.int32)


def conv_net_flops(config) -> dict[str, float]:
    """Multiply-add FLOPs per image of the paper's CNN (``config``: an emofx ModelConfig):
    forward, and a training step (forward + kernel gradients + input gradients of every
    layer but the first, whose input needs none)."""
    side, channels, kk = config.input_size, 1, config.kernel_size ** 2
    layers = []
    for width in config.widths:
        layers.append(2.0 * side * side * kk * channels * width)
        side, channels = side // 2, width
    dense_in = side * side * channels
    layers += [2.0 * dense_in * config.dense_units, 2.0 * config.dense_units * config.num_classes]
    forward = sum(layers)
    return {"forward": forward, "train": 3 * forward - layers[0]}


def emofx_workload(config: BenchConfig) -> dict[str, Callable[[], object]]:
    """emofx's train / infer / saliency calls on one batch (compiled on first call)."""
    import jax

    from emofx import saliency
    from emofx.checkpoint import TrainedModel
    from emofx.model import ModelConfig, init_params
    from emofx.training import TrainConfig, init_state, make_train_step

    model_config = ModelConfig(num_classes=config.num_classes, input_size=config.image_size)
    train_config = TrainConfig(batch_size=config.batch_size, seed=config.seed)
    images_u8, labels = config.batch()
    images_u8, labels = jax.device_put(images_u8), jax.device_put(labels)
    unit_images = images_u8.astype("float32") / 255.0
    model = TrainedModel(model_config, init_params(model_config, config.seed),
                         tuple(f"class{i}" for i in range(config.num_classes)))
    step = make_train_step(model_config, train_config)
    # The step donates its state's buffers: train on a copy so the model's parameters survive.
    state = [init_state(jax.tree.map(jax.numpy.copy, model.params), train_config)]  # replaced by each step
    keys = iter(jax.random.split(jax.random.PRNGKey(config.seed), 1_000_000))

    def train() -> object:
        state[0], metrics = step(state[0], images_u8, labels, next(keys))
        return jax.block_until_ready(metrics)

    return {
        "train": train,
        "infer": lambda: jax.block_until_ready(model.logits(unit_images)),
        "saliency": lambda: jax.block_until_ready(saliency.guided_backprop(model, unit_images, labels)),
    }


def torch_workload(config: BenchConfig) -> dict[str, Callable[[], object]]:
    """The PyTorch reference's train / infer / saliency calls on one batch (eager, CPU)."""
    import torch

    from benchmarks import torch_reference as ref

    torch.manual_seed(config.seed)
    model = ref.TorchEmotionCNN(ref.TorchModelConfig(num_classes=config.num_classes, input_size=config.image_size))
    optimizer = ref.make_optimizer(model)
    generator = torch.Generator().manual_seed(config.seed)
    images_u8, labels = config.batch()
    images = torch.from_numpy(images_u8).float() / 255.0
    targets = torch.from_numpy(labels).long()
    return {
        "train": lambda: ref.train_step(model, optimizer, images, targets, generator),
        "infer": lambda: ref.infer(model, images),
        "saliency": lambda: ref.guided_backprop(model, images, targets),
    }


def jax_matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """The machine's float32 matmul rate through JAX: median over ``repeats`` of a size^2 matmul."""
    import time

    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        seconds.append(time.perf_counter() - start)
    return 2.0 * size ** 3 / float(np.median(seconds)) / 1e9


WORKLOADS: dict[str, Callable[[BenchConfig], dict[str, Callable[[], object]]]] = {
    "emofx": emofx_workload,
    "torch": torch_workload,
}
