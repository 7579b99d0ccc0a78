"""What the benchmark times: one call of each task, for emofx and for the PyTorch reference.

A *workload* maps a task name to a zero-argument callable that runs the task once and
returns when its results are computed: inference and saliency on one batch, training for
``train_steps`` steps on batches drawn from a training set of ``dataset_size`` images.
emofx's workloads go through the library's real code paths: training as
:func:`emofx.nets.training.fit` runs it (one compiled chunk of ``train_steps`` steps, each
sampling its batch from the training set held on the device, augmenting it, forward with
dropout, backward, SGD update), :meth:`TrainedModel.logits` for inference and
:func:`emofx.explain.saliency.guided_backprop` for saliency. PyTorch runs the same steps as an
eager loop (random batch, augmentation, forward, backward, update). Inputs are random
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
    calls: tuple[tuple[str, int], ...] = (("train", 1), ("infer", 6), ("saliency", 3))
    train_steps: int = 4  # per training call: emofx's compiled chunk (TrainConfig.unroll_steps, as fit runs it)
    dataset_size: int = 512
    seed: int = 0
    torch_device: str = "cpu"  # "cuda" to time PyTorch on the GPU that JAX uses

    def __post_init__(self) -> None:
        if min(self.batch_size, self.repeats, self.train_steps, self.dataset_size) < 1 or self.warmup < 0:
            raise ValueError(f"batch_size, repeats, train_steps and dataset_size must be >= 1 and warmup >= 0; "
                             f"got {self.batch_size}, {self.repeats}, {self.train_steps}, {self.dataset_size}, "
                             f"{self.warmup}")

    def calls_per_repeat(self, task: str) -> int:
        """How many calls one timed repeat of ``task`` makes."""
        return dict(self.calls)[task]

    def images_per_call(self, task: str) -> int:
        """Images one call of ``task`` processes (training: ``train_steps`` batches)."""
        return self.batch_size * (self.train_steps if task == "train" else 1)

    def dataset(self) -> tuple[np.ndarray, np.ndarray]:
        """A random training set: uint8 images (dataset_size, H, W) and labels, from ``seed``."""
        rng = np.random.default_rng(self.seed + 1)
        images = rng.integers(0, 256, (self.dataset_size, self.image_size, self.image_size), dtype=np.uint8)
        return images, rng.integers(0, self.num_classes, self.dataset_size).astype(np.int32)

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

    from emofx.explain import saliency
    from emofx.nets.checkpoint import TrainedModel
    from emofx.nets.model import ModelConfig, init_params, pixel_stats
    from emofx.nets.training import TrainConfig, init_state, make_train_chunk

    model_config = ModelConfig(num_classes=config.num_classes, input_size=config.image_size)
    train_config = TrainConfig(batch_size=config.batch_size, seed=config.seed, unroll_steps=config.train_steps)
    images_u8, labels = config.batch()
    images_u8, labels = jax.device_put(images_u8), jax.device_put(labels)
    unit_images = images_u8.astype("float32") / 255.0
    model = TrainedModel(model_config, init_params(model_config, config.seed),
                         tuple(f"class{i}" for i in range(config.num_classes)))
    train_images, train_labels = config.dataset()
    train_images = jax.device_put(train_images)
    train_targets = jax.device_put(np.eye(config.num_classes, dtype=np.float32)[train_labels])
    steps_per_epoch = -(-config.dataset_size // config.batch_size)
    chunk = make_train_chunk(model_config, train_config, steps_per_epoch, config.train_steps)
    # The chunk donates its state's buffers: train on a copy so the model's parameters survive.
    state = [init_state(jax.tree.map(jax.numpy.copy, model.params), train_config, steps_per_epoch)]
    key, stats = jax.random.PRNGKey(config.seed), pixel_stats(model_config)

    def train() -> object:
        state[0], metrics = chunk(state[0], train_images, train_targets, key, stats)
        return jax.block_until_ready(metrics)

    return {
        "train": train,
        "infer": lambda: jax.block_until_ready(model.logits(unit_images)),
        "saliency": lambda: jax.block_until_ready(saliency.guided_backprop(model, unit_images, labels)),
    }


def torch_workload(config: BenchConfig, compiled: bool = False) -> dict[str, Callable[[], object]]:
    """The PyTorch reference's train / infer / saliency calls on one batch, on ``config.torch_device``:
    eager, or with the model wrapped by ``torch.compile`` (``compiled``). On a GPU every call
    waits for the device (``torch.cuda.synchronize``), as emofx's calls block until ready."""
    import torch

    from benchmarks import torch_reference as ref

    device = torch.device(config.torch_device)
    torch.manual_seed(config.seed)
    model = ref.TorchEmotionCNN(ref.TorchModelConfig(num_classes=config.num_classes, input_size=config.image_size))
    model = model.to(device)
    optimizer = ref.make_optimizer(model)
    runner = torch.compile(model) if compiled else model
    generator = torch.Generator().manual_seed(config.seed)
    images_u8, labels = config.batch()
    images = (torch.from_numpy(images_u8).float() / 255.0).to(device)
    targets = torch.from_numpy(labels).long().to(device)
    train_images_u8, train_labels = config.dataset()
    train_images = (torch.from_numpy(train_images_u8).float() / 255.0).to(device)
    train_targets = torch.from_numpy(train_labels).long().to(device)
    wait = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def train() -> None:
        for _ in range(config.train_steps):
            batch = torch.randint(0, config.dataset_size, (config.batch_size,), generator=generator).to(device)
            ref.train_step(runner, optimizer, train_images[batch], train_targets[batch], generator)
        wait()

    def infer() -> None:
        ref.infer(runner, images)
        wait()

    def saliency() -> None:
        ref.guided_backprop(runner, images, targets)
        wait()

    return {"train": train, "infer": infer, "saliency": saliency}


def jax_matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """The machine's float32 matmul rate through JAX: median over ``repeats`` of a size^2 matmul."""
    import time

    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.standard_normal((size, size), dtype=np.float32)) for _ in range(2))
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
    "torch_compile": lambda config: torch_workload(config, compiled=True),
}
