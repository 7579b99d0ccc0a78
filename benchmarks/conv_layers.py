"""Where a training step's time goes, per conv layer and per formulation of each piece.

    python -m benchmarks.conv_layers                 # paper CNN, batch 64 (about a minute on 2 cores)
    python -m benchmarks.conv_layers --csv layers.csv

For every conv layer of the paper's CNN this times, as separately compiled functions, the
forward convolution, the input gradient and the kernel gradient, each in the formulations
worth comparing on CPU:

* ``lax``: what JAX's autodiff of ``lax.conv_general_dilated`` gives (the reference);
* ``split-grad``: :mod:`emofx.nets.ops`' hand-written gradients (the CPU fast path);
* ``patches`` (kernel gradient only): the 25 shifted slices of the padded input stacked
  into a (B*H*W, 25*Cin) matrix and contracted with the output gradient in one matmul;
* ``winograd``: :mod:`emofx.nets.winograd` (layers with at least 64 input channels), each piece
  doing fewer multiply-adds than the GFLOP column counts: 3x with tiles of 6 (the default
  precision), 2.5x with tiles of 4 (``high`` and ``highest``).

It also times the whole compiled training step with ``conv_impl="lax"``, ``"split-grad"``
and ``"winograd"``. Alternatives are interleaved within each repeat so that load from other
processes hits them alike; each number is the median over repeats of the process's CPU
time (``time.process_time``: robust to a loaded machine) and of wall time. ``gflops_per_cpu_s``
compares each piece with the machine's matmul rate per CPU-second (printed too).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmarks.workloads import conv_net_flops
from emofx.nets import ops
from emofx.nets.model import ModelConfig, init_params
from emofx.nets.training import TrainConfig, init_state, make_train_step


def _vjp(impl: str, x: jax.Array, kernel: jax.Array, grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Input and kernel gradient of ``impl``'s convolution (XLA drops the one a caller does not use)."""
    return jax.vjp(lambda a, k: ops.conv2d_same(a, k, impl), x, kernel)[1](grad)


def layer_pieces(x: jax.Array, kernel: jax.Array, grad: jax.Array) -> dict[tuple[str, str], Callable[[], jax.Array]]:
    """(piece, formulation) -> a zero-argument call of a compiled function on this layer's arrays."""
    hw = kernel.shape[:2]
    compiled = {
        ("forward", "lax"): (lambda a, k, g: ops.conv2d_same(a, k, "lax")),
        ("input_grad", "lax"): (lambda a, k, g: _vjp("lax", a, k, g)[0]),
        ("input_grad", "split-grad"): (lambda a, k, g: ops.conv_input_grad(g, k)),
        ("kernel_grad", "lax"): (lambda a, k, g: _vjp("lax", a, k, g)[1]),
        ("kernel_grad", "split-grad"): (lambda a, k, g: ops.correlation_kernel_grad(a, g, hw)),
        ("kernel_grad", "patches"): (lambda a, k, g: ops.patches_kernel_grad(a, g, hw)),
    }
    if x.shape[-1] >= ops.WINOGRAD_MIN_CHANNELS:  # where conv_impl="winograd" uses Winograd
        compiled.update({
            ("forward", "winograd"): (lambda a, k, g: ops.conv2d_same(a, k, "winograd")),
            ("input_grad", "winograd"): (lambda a, k, g: _vjp("winograd", a, k, g)[0]),
            ("kernel_grad", "winograd"): (lambda a, k, g: _vjp("winograd", a, k, g)[1]),
        })
    return {name: (lambda f=jax.jit(f): f(x, kernel, grad)) for name, f in compiled.items()}


def train_steps(model_config: ModelConfig, batch_size: int, seed: int) -> dict[tuple[str, str], Callable[[], object]]:
    """("train_step", conv_impl) -> one call of the real compiled training step on a random batch."""
    rng = np.random.default_rng(seed)
    images = jax.device_put(rng.integers(0, 256, (batch_size, model_config.input_size, model_config.input_size),
                                         dtype=np.uint8))
    labels = jax.device_put(rng.integers(0, model_config.num_classes, batch_size).astype(np.int32))
    train_config = TrainConfig(batch_size=batch_size, seed=seed)
    calls = {}
    for impl in ("lax", "split-grad", "winograd"):
        config = replace(model_config, conv_impl=impl)
        step = make_train_step(config, train_config)
        state = [init_state(init_params(config, seed), train_config)]  # replaced by each (donating) step

        def call(step=step, state=state) -> object:
            state[0], metrics = step(state[0], images, labels, jax.random.PRNGKey(seed))
            return metrics

        calls[("train_step", impl)] = call
    return calls


def time_interleaved(calls: dict[tuple, Callable[[], object]], repeats: int) -> pd.DataFrame:
    """Median CPU and wall milliseconds per call over ``repeats``, alternatives interleaved (after one warm-up each)."""
    for call in calls.values():
        jax.block_until_ready(call())
    samples = {name: [] for name in calls}
    for _ in tqdm(range(repeats), desc="repeats", leave=False):
        for name, call in calls.items():
            cpu, wall = time.process_time(), time.perf_counter()
            jax.block_until_ready(call())
            samples[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    return pd.DataFrame([{"key": name, "cpu_ms": 1e3 * np.median([c for c, _ in s]),
                          "wall_ms": 1e3 * np.median([w for _, w in s])} for name, s in samples.items()])


def layer_breakdown(model_config: ModelConfig, batch_size: int = 64, repeats: int = 5, seed: int = 0) -> pd.DataFrame:
    """One row per (layer, piece, formulation) and per whole training step: CPU and wall ms, GFLOP, rates."""
    rng = np.random.default_rng(seed)  # NumPy: eager jax.random compiles a program per shape (seconds each)
    side, channels, k, rows = model_config.input_size, 1, model_config.kernel_size, []
    for index, width in enumerate(model_config.widths):
        x, kernel, grad = (jnp.asarray(rng.standard_normal(shape, dtype=np.float32)) for shape in
                           ((batch_size, side, side, channels), (k, k, channels, width),
                            (batch_size, side, side, width)))
        kernel /= np.sqrt(k * k * channels)
        table = time_interleaved(layer_pieces(x, kernel, grad), repeats)
        table["layer"], table["gflop"] = f"conv{index + 1} {side}x{side} {channels}->{width}", \
            2e-9 * batch_size * side * side * k * k * channels * width
        rows.append(table)
        side, channels = side // 2, width
    steps = time_interleaved(train_steps(model_config, batch_size, seed), repeats)
    steps["layer"], steps["gflop"] = "whole network", 1e-9 * batch_size * conv_net_flops(model_config)["train"]
    table = pd.concat(rows + [steps], ignore_index=True)
    table["piece"], table["formulation"] = zip(*table.pop("key"))
    table["gflops_per_cpu_s"] = table["gflop"] / (table["cpu_ms"] / 1e3)
    return table[["layer", "piece", "formulation", "gflop", "cpu_ms", "wall_ms", "gflops_per_cpu_s"]]


def matmul_gflops_per_cpu_s(size: int = 2048, repeats: int = 5) -> float:
    """The float32 rate of a size^2 JAX matmul per CPU-second of this process (median of ``repeats``)."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((size, size), dtype=np.float32))
    matmul = jax.jit(jnp.matmul)
    cpu_ms = time_interleaved({("matmul", "jax"): lambda: matmul(a, a)}, repeats)["cpu_ms"].iloc[0]
    return 2.0 * size ** 3 / (cpu_ms / 1e3) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.conv_layers", description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--csv", help="also write the table to this CSV file (must not exist)")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1:
        parser.error(f"--batch-size and --repeats must be >= 1; got {args.batch_size} and {args.repeats}")
    if args.csv and os.path.exists(args.csv):
        parser.error(f"--csv {args.csv} already exists; choose a new file name")
    table = layer_breakdown(ModelConfig(num_classes=7, input_size=args.image_size), args.batch_size, args.repeats)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(2).to_string(index=False))
    print(f"matmul: {matmul_gflops_per_cpu_s():.0f} GFLOP per CPU-second")
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
