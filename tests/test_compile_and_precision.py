"""The precision setting, the persistent compilation cache and compile-time accounting, whole-set inference."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emofx.nets import compilation, precision
from emofx.nets.training import StepConfig, TrainConfig


def test_precision_comes_from_the_value_then_the_environment_then_default(monkeypatch):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    assert precision.resolve_precision() == "default"
    assert precision.resolve_precision("HIGHEST") == "highest"
    monkeypatch.setenv(precision.PRECISION_ENV, "high")
    assert precision.resolve_precision() == "high" and TrainConfig().precision is None
    assert TrainConfig(precision="default").precision == "default"
    monkeypatch.setenv(precision.PRECISION_ENV, "tf32")
    with pytest.raises(ValueError, match=r"unknown precision 'tf32' \(from \$EMOFX_PRECISION\); choose one of"):
        precision.resolve_precision()
    with pytest.raises(ValueError, match="unknown precision 'fast'"):
        TrainConfig(precision="fast")


def test_a_training_without_a_precision_of_its_own_takes_the_one_in_force():
    # Resolved when the steps are built: $EMOFX_PRECISION from the start (emofx.nets.model sets it), then
    # set_precision / use_precision in Python (they were ignored: a training read the environment variable again).
    for name in ("high", "default", "highest"):
        with precision.use_precision(name):
            assert StepConfig.of(TrainConfig(), 1).precision == name == precision.precision_for()
            assert StepConfig.of(TrainConfig(precision="high"), 1).precision == "high"
    with jax.default_matmul_precision("tensorfloat32"):  # JAX's own names, in emofx's
        assert precision.precision_for() == "high"
    with jax.default_matmul_precision("F32_F32_F32"), pytest.raises(ValueError, match="none of emofx's"):
        precision.precision_for()


def test_use_precision_applies_to_what_is_traced_inside():
    before = precision.precision_in_force()
    with precision.use_precision("high") as name:
        assert name == "high" and precision.precision_in_force() == "high"
        text = jax.jit(lambda a: a @ a).lower(jnp.ones((2, 2))).as_text()
    assert precision.precision_in_force() == before
    assert "HIGH" in text  # the dot carries the precision into the compiled program
    wrapped = jax.jit(precision.at_precision(lambda a: a @ a, "highest"))
    assert "HIGHEST" in wrapped.lower(jnp.ones((2, 2))).as_text()


def test_tf32_emulation_cuts_the_operands_of_products_a_gpu_would_run_in_tf32():
    # benchmarks/emulated_tf32.py, which `make test` relies on for a GPU's tolerances: it must cut exactly the
    # operands a GPU's TF32 cuts (float32, at default and high, forward and backward), and nothing else.
    from benchmarks.emulated_tf32 import emulated_tf32, to_tf32

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 300), dtype=np.float32), rng.standard_normal((300, 5), dtype=np.float32)
    bits = x.view(np.uint32)
    assert np.array_equal(np.asarray(to_tf32(x)).view(np.uint32), bits & 0xFFFFE000)
    exact = x.astype(np.float64) @ y
    cut = np.asarray(to_tf32(x), np.float64) @ np.asarray(to_tf32(y), np.float64)
    assert np.abs(cut - exact).max() > 1e-3  # what the test can tell apart: TF32 errs ~100x more than float32

    def product(a, b):  # a function of its own: no program compiled outside the block is reused inside it
        return jnp.dot(a, b)

    def kernel_gradient(image, kernel):
        def total(k):
            return jax.lax.conv_general_dilated(image, k, (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
        return jax.grad(total)(kernel)

    image = rng.standard_normal((2, 8, 8, 3), dtype=np.float32)
    kernel = rng.standard_normal((3, 3, 3, 4), dtype=np.float32)
    before = np.asarray(jax.jit(lambda a, b: jnp.dot(a, b))(x, y))
    with emulated_tf32():
        for name in ("default", "high", "highest"):
            with precision.use_precision(name):
                got, gradient = np.asarray(product(x, y)), np.asarray(kernel_gradient(image, kernel))
            if name == "highest":
                assert np.abs(got - exact).max() < 1e-4
            else:
                assert np.abs(got - cut).max() < 1e-4, name
                # The kernel gradient sums products of the image's pixels, which are cut: the same as a cut image's.
                with precision.use_precision("highest"):
                    want = np.asarray(kernel_gradient(np.asarray(to_tf32(image)), kernel))
                np.testing.assert_allclose(gradient, want, rtol=0, atol=1e-5, err_msg=name)
    after = np.asarray(jax.jit(lambda a, b: jnp.dot(a, b))(x, y))
    np.testing.assert_array_equal(after, before)  # and as before once the block is left


def test_cache_folder_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(compilation.COMPILATION_CACHE_ENV, "off")
    assert compilation.compilation_cache_dir() is None
    monkeypatch.setenv(compilation.COMPILATION_CACHE_ENV, str(tmp_path / "here"))
    assert compilation.compilation_cache_dir() == tmp_path / "here"
    assert compilation.compilation_cache_dir("OFF") is None
    monkeypatch.delenv(compilation.COMPILATION_CACHE_ENV)
    monkeypatch.setenv("EMOFX_CACHE", str(tmp_path / "cache"))
    users_setting = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)  # no folder of the user's own
    try:
        default = compilation.compilation_cache_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", users_setting)
    assert default.parent == tmp_path / "cache" / "jax" and default.name == compilation.machine_tag()
    assert users_setting is None or compilation.compilation_cache_dir() == Path(users_setting)  # kept when set


def test_a_compiled_program_lands_in_the_cache_and_compile_time_is_counted(tmp_path, monkeypatch):
    previous = jax.config.jax_compilation_cache_dir if jax.config.jax_enable_compilation_cache else "off"
    try:
        assert compilation.enable_compilation_cache(tmp_path) == tmp_path
        monkeypatch.setattr(compilation, "MIN_COMPILE_SECONDS", 0.0)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        before = compilation.compile_seconds()
        jax.jit(lambda x: jnp.sin(x) * 3.25 + 0.125)(jnp.arange(7.0)).block_until_ready()
        assert compilation.compile_seconds() > before
        assert any(path.name.endswith("-cache") for path in tmp_path.iterdir())
        assert compilation.enable_compilation_cache("off") is None and not jax.config.jax_enable_compilation_cache
    finally:
        compilation.enable_compilation_cache(previous)


def test_a_cache_folder_that_cannot_be_made_switches_the_cache_off_with_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    previous = jax.config.jax_compilation_cache_dir if jax.config.jax_enable_compilation_cache else "off"
    try:
        with pytest.warns(UserWarning, match="compilation cache off: cannot create"):
            assert compilation.enable_compilation_cache(blocker / "cache") is None
    finally:
        compilation.enable_compilation_cache(previous)


def test_whole_set_probabilities_equal_the_batchwise_softmax(make_tiny_model, assert_close_to_scale,
                                                            float32_tolerance):
    model = make_tiny_model(("angry", "happy", "sad"), 2)
    images = np.random.default_rng(0).integers(0, 256, (37, 16, 16), dtype=np.uint8)
    expected = np.concatenate([np.asarray(jax.nn.softmax(model.logits(images[i:i + 8]))) for i in range(0, 37, 8)])
    for batch_size in (8, 512):
        got = model.predict_proba(images, batch_size)
        assert got.shape == (37, 3)
        assert_close_to_scale(got, expected, float32_tolerance, f"batch {batch_size}")
    assert model.predict_proba(images[:0]).shape == (0, 3)


def test_process_seconds_counts_from_the_process_start(tmp_path):
    code = ("import time; time.sleep(0.6); from emofx.nets.compilation import process_seconds; "
            "a = process_seconds(); time.sleep(0.3); print(a, process_seconds())")
    first, second = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                              check=True).stdout.split())
    assert 0.6 <= first < 60  # the sleep before emofx was imported is counted
    assert second - first >= 0.3 - 0.02  # /proc's clock ticks are 10 ms


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's (Linux)")
def test_release_free_memory_returns_freed_heap_pages_to_the_system():
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4000) for _ in range(40_000)]  # 160 MB of small blocks, below the mmap threshold
    for block in blocks:
        ctypes.memset(block, 1, 4000)
    keeper = libc.malloc(4000)  # above the freed ones: glibc cannot shrink the heap from its top by itself
    for block in blocks:
        libc.free(block)
    try:
        before = _rss_mib()
        assert compilation.release_free_memory() is True
        assert before - _rss_mib() > 100
    finally:
        libc.free(keeper)


def test_memory_is_handed_back_after_large_compilations_and_loads_from_the_cache(monkeypatch):
    trims = []
    monkeypatch.setattr(compilation, "release_free_memory", lambda: trims.append(1) or True)
    compilation.compile_seconds()  # listening from here on
    for event, seconds in [("/jax/core/compile/backend_compile_duration", 0.2),
                           ("/jax/core/compile/backend_compile_duration", 3.0),
                           ("/jax/compilation_cache/compile_time_saved_sec", 0.2),
                           ("/jax/compilation_cache/compile_time_saved_sec", 3.0)]:
        jax.monitoring.record_event_duration_secs(event, seconds)
    assert len(trims) == 2  # the two programs that took a second or more to compile


def test_memory_is_handed_back_after_a_programs_first_run_for_each_signature_only(monkeypatch):
    program = jax.jit(lambda x: x + 1)
    inputs = [jnp.ones(3), jnp.ones(4)]
    results = [program(x) for x in inputs]  # compiled before counting
    trims = []
    monkeypatch.setattr(compilation, "release_free_memory", lambda: trims.append(1) or True)
    for _ in range(3):
        compilation.release_after_first_run(program, (3,), results[0])
    assert len(trims) == 1
    compilation.release_after_first_run(program, (4,), results[1])
    assert len(trims) == 2


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")
