"""The fast convolution path computes what plain lax.conv computes: outputs and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emofx.explain.saliency import guided_relu
from emofx.nets import ops, winograd
from emofx.nets.model import EmotionCNN, ModelConfig, init_params
from emofx.nets.precision import use_precision

# (batch, height, width, in channels, out channels, kernel): the paper model's three layers
# (batch 2), a batch that is not a multiple of the kernel-gradient chunk, other kernel sizes
# (even sizes pad asymmetrically) and a non-square image.
SHAPES = [
    (2, 48, 48, 1, 64, 5),
    (2, 24, 24, 64, 128, 5),
    (2, 12, 12, 128, 256, 5),
    (11, 10, 10, 3, 7, 5),
    (5, 9, 9, 4, 6, 3),
    (3, 8, 8, 2, 5, 4),
    (4, 6, 10, 3, 2, 5),
    (2, 6, 7, 64, 3, 5),  # a Winograd layer (>= 64 input channels) whose width is no multiple of the tile
]


def normal_arrays(seed: int, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Standard-normal float32 arrays of ``shapes``, drawn by NumPy: eager ``jax.random`` would
    compile a random-bits program for every new shape (seconds each on a CPU)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]


@pytest.fixture
def assert_close(assert_close_to_scale, float32_tolerance):
    """Equal to the session's float32 tolerance (tests/conftest.py) relative to the reference's largest magnitude."""
    return lambda actual, expected, what: assert_close_to_scale(actual, expected, float32_tolerance, what)


def conv_and_grads(impl: str, x: jax.Array, kernel: jax.Array, cotangent: jax.Array):
    y, vjp = jax.vjp(lambda a, k: ops.conv2d_same(a, k, impl), x, kernel)
    return (y, *vjp(cotangent))


@pytest.mark.parametrize("impl", ["split-grad", "winograd"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fast_paths_match_lax_outputs_and_gradients(shape, impl, assert_close):
    b, h, w, c_in, c_out, k = shape
    x, kernel, cotangent = normal_arrays(sum(shape), (b, h, w, c_in), (k, k, c_in, c_out), (b, h, w, c_out))
    kernel /= np.sqrt(k * k * c_in)
    reference = jax.jit(conv_and_grads, static_argnums=0)("lax", x, kernel, cotangent)
    fast = jax.jit(conv_and_grads, static_argnums=0)(impl, x, kernel, cotangent)
    for name, got, want in zip(("output", "input gradient", "kernel gradient"), fast, reference):
        assert got.shape == want.shape, name
        assert_close(got, want, f"{name} of {shape} by {impl}")


@pytest.mark.parametrize("precision", ["highest", "default"])
@pytest.mark.parametrize("shape", SHAPES + [(3, 9, 11, 8, 5, 3), (2, 8, 8, 9, 5, 4), (2, 7, 13, 8, 3, 6)],
                         ids=lambda s: "x".join(map(str, s)))
def test_winograd_matches_lax_on_any_shape(shape, precision, assert_close_to_scale, rtol_at):
    # Directly, whatever the channel count: odd and even kernels, widths that are no multiple
    # of the tile, non-square images; at full precision (tiles of 4) and at the fast default
    # (tiles of 6 on a CPU), each within the tolerance of its precision (tests/conftest.py).
    b, h, w, c_in, c_out, k = shape
    x, kernel, cotangent = normal_arrays(sum(shape) + 1, (b, h, w, c_in), (k, k, c_in, c_out), (b, h, w, c_out))
    kernel /= np.sqrt(k * k * c_in)
    padding = (ops._same_padding(k), ops._same_padding(k))

    @jax.jit  # one program per shape: op-by-op dispatch would compile every primitive of the transforms
    def winograd_and_grads(a, kk, ct):
        y, vjp = jax.vjp(lambda a, kk: winograd.conv2d(a, kk, padding), a, kk)
        return (y, *vjp(ct))

    with use_precision(precision):
        reference = jax.jit(conv_and_grads, static_argnums=0)("lax", x, kernel, cotangent)
        fast = winograd_and_grads(x, kernel, cotangent)
    for name, got, want in zip(("output", "input gradient", "kernel gradient"), fast, reference):
        assert got.shape == want.shape, name
        assert_close_to_scale(got, want, rtol_at(precision), f"{name} of {shape} at {precision}")


def test_winograd_tile_follows_the_precision_in_force():
    assert winograd.tile_for("default", "cpu") == winograd.tile_for("bfloat16", "cpu") == winograd.FAST_TILE == 6
    assert winograd.tile_for("highest", "cpu") == winograd.tile_for("high", "cpu") == winograd.TILE == 4
    assert winograd.tile_for("float32", "cpu") == winograd.tile_for("tensorfloat32", "cpu") == 4
    # Where the fast precision multiplies in TF32 or bfloat16, the larger tile's transforms would amplify that rounding.
    assert winograd.tile_for("default", "gpu") == winograd.tile_for("default", "tpu") == 4
    x, kernel = normal_arrays(3, (2, 5, 12, 64), (5, 5, 64, 8))
    padding = ((2, 2), (2, 2))
    by_precision = {}
    for precision, tile in (("default", 6), ("highest", 4)):
        if winograd.tile_for(precision) != tile:
            pytest.skip(f"the {jax.default_backend()} backend takes tiles of {winograd.tile_for(precision)} "
                        f"at {precision}: nothing to tell apart")
        with use_precision(precision):
            traced = jax.jit(lambda a, k: winograd.conv2d(a, k, padding))(x, kernel)
            explicit = jax.jit(lambda a, k, tile=tile: winograd.conv2d(a, k, padding, tile=tile))(x, kernel)
        np.testing.assert_array_equal(traced, explicit, err_msg=f"at {precision}")
        by_precision[precision] = traced
    # The two tiles round differently: the test can tell which one ran.
    assert not np.array_equal(by_precision["default"], by_precision["highest"])


def test_tiles_of_6_are_a_cpus_only_as_tf32_rounding_grows_through_them():
    # Why winograd.tile_for gives tiles of 6 on a CPU only: with a GPU's TF32 emulated (benchmarks/emulated_tf32.py),
    # the paper's three layers' outputs err by (relative to their scale) 7.6-9.7e-4 by the direct convolution,
    # 1.6-3.7e-3 by F(4, 5) and 0.86-2.8e-2 by F(6, 5); in float32 on a CPU, F(6, 5) errs by 2e-5 (test above).
    from benchmarks.emulated_tf32 import emulated_tf32

    if jax.devices()[0].platform != "cpu":
        pytest.skip("emulates TF32 on a CPU; on this device the fast precision's own errors are the other tests'")
    errors = {}
    for shape in SHAPES[:3]:
        b, h, w, c_in, c_out, k = shape
        x, kernel = normal_arrays(sum(shape) + 1, (b, h, w, c_in), (k, k, c_in, c_out))
        kernel /= np.sqrt(k * k * c_in)
        with use_precision("highest"):
            exact = np.asarray(jax.jit(lambda a, kk: ops.conv2d_same(a, kk, "lax"))(x, kernel))
        with emulated_tf32(), use_precision("default"):
            got = {"lax": jax.jit(lambda a, kk: ops.conv2d_same(a, kk, "lax"))(x, kernel)}
            for tile in (4, 6):
                got[tile] = jax.jit(lambda a, kk, t=tile: winograd.conv2d(a, kk, ((2, 2), (2, 2)), tile=t))(x, kernel)
        scale = np.abs(exact).max()
        errors[shape] = {name: float(np.abs(np.asarray(y) - exact).max() / scale) for name, y in got.items()}
    for shape, error in errors.items():
        assert 2e-4 < error["lax"] < 1.5e-3, (shape, error)
        assert error[4] < 5e-3 and error[6] > 2.5 * error[4], (shape, error)


@pytest.mark.parametrize("tile,taps", [(2, 3), (4, 3), (4, 5), (3, 5), (6, 5), (2, 6)])
def test_winograd_transforms_compute_a_correlation(tile, taps):
    output, kernel, inputs = winograd.transforms(tile, taps)
    assert output.shape == (tile, tile + taps - 1) and kernel.shape == (tile + taps - 1, taps)
    rng = np.random.default_rng(tile * 10 + taps)
    d, k = rng.normal(size=tile + taps - 1), rng.normal(size=taps)
    expected = np.array([d[q:q + taps] @ k for q in range(tile)])
    # float64 NumPy on O(1) values (no XLA, TF32 or float32): the sides differ by float64 rounding alone,
    # amplified by the transforms' growth with the tile (at most 368 eps over 200 draws, for tile 6).
    assert output.dtype == kernel.dtype == inputs.dtype == np.float64
    np.testing.assert_allclose(output @ ((kernel @ k) * (inputs @ d)), expected, rtol=0,
                               atol=1e4 * np.finfo(np.float64).eps)


def test_winograd_refuses_tiles_beyond_its_interpolation_points():
    with pytest.raises(ValueError, match="interpolation points"):
        winograd.transforms(12, 5)


def test_kernel_gradient_does_not_depend_on_chunking_or_formulation(assert_close):
    x, grad = normal_arrays(0, (10, 8, 8, 3), (10, 8, 8, 4))
    whole = ops.correlation_kernel_grad(x, grad, (5, 5), chunk=10)
    assert whole.shape == (5, 5, 3, 4)
    for chunk in (1, 3, 8):
        assert_close(ops.correlation_kernel_grad(x, grad, (5, 5), chunk=chunk), whole, f"chunk {chunk}")
    assert_close(ops.patches_kernel_grad(x, grad, (5, 5)), whole, "patches")
    assert_close(ops.conv_kernel_grad(x, grad, (5, 5)), whole, "what the fast paths use (3 channels: patches)")


@pytest.mark.parametrize("shape", [(3, 8, 8, 1, 6, 5), (2, 6, 10, 4, 3, 4)],
                         ids=lambda s: "x".join(map(str, s)))
def test_patches_kernel_grad_matches_lax(shape, assert_close):
    b, h, w, c_in, c_out, k = shape
    x, kernel, grad = normal_arrays(sum(shape), (b, h, w, c_in), (k, k, c_in, c_out), (b, h, w, c_out))
    expected = jax.vjp(lambda kk: ops.conv2d_same(x, kk, "lax"), kernel)[1](grad)[0]
    assert_close(ops.patches_kernel_grad(x, grad, (k, k)), expected, f"patches kernel gradient of {shape}")


def test_input_gradient_of_a_one_hot_kernel_is_a_shift():
    # A kernel whose only 1 sits one row below the centre reads x[h + 1]; its input gradient
    # therefore moves the output gradient one row down (and drops what falls off the edge).
    kernel = jnp.zeros((3, 3, 1, 1)).at[2, 1, 0, 0].set(1.0)
    grad = jnp.arange(16.0).reshape(1, 4, 4, 1)
    expected = jnp.zeros_like(grad).at[:, 1:].set(grad[:, :-1])
    np.testing.assert_array_equal(ops.conv_input_grad(grad, kernel), expected)


def test_max_pool_matches_reduce_window_and_routes_gradient_to_the_maximum():
    x, cotangent = normal_arrays(1, (2, 6, 8, 3), (2, 3, 4, 3))
    window = lambda a: jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),  # noqa: E731
                                             "VALID")
    np.testing.assert_array_equal(ops.max_pool_2x2(x), window(x))
    ours = jax.vjp(ops.max_pool_2x2, x)[1](cotangent)[0]
    theirs = jax.vjp(window, x)[1](cotangent)[0]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=0)  # both route each value unchanged: no arithmetic
    assert int((ours != 0).sum()) == cotangent.size  # one maximum per window (no ties in random data)


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties_like_reduce_window():
    # Windows of 4, 3 and 2 equal maxima in every arrangement, as uniform image regions give them.
    corners = np.array(np.meshgrid(*[[0.0, 1.0]] * 4, indexing="ij")).reshape(4, -1).T  # (16, 4): each window
    x = jnp.asarray(corners.reshape(1, 16, 2, 2).transpose(0, 2, 1, 3).reshape(1, 2, 32, 1))
    cotangent = jnp.arange(1.0, 17.0).reshape(1, 1, 16, 1)
    window = lambda a: jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),  # noqa: E731
                                             "VALID")
    np.testing.assert_array_equal(ops.max_pool_2x2(x), window(x))
    ours = jax.jit(jax.vjp(ops.max_pool_2x2, x)[1])(cotangent)[0]
    np.testing.assert_array_equal(ours, jax.vjp(window, x)[1](cotangent)[0])
    routed = np.asarray(ours).reshape(2, 16, 2).transpose(1, 0, 2).reshape(16, 4)  # per window, raster order
    first_maximum = np.argmax(corners, axis=1)
    np.testing.assert_array_equal(routed[np.arange(16), first_maximum], np.arange(1.0, 17.0))
    assert np.count_nonzero(routed) == 16  # nothing to the other maxima: the gradient's sum is kept


def test_pooling_before_the_activation_gives_the_values_and_gradients_of_pooling_after():
    x, cotangent = normal_arrays(3, (2, 6, 8, 3), (2, 3, 4, 3))
    for activation in (jax.nn.relu, guided_relu):
        before = lambda a, act=activation: act(ops.max_pool_2x2(a))  # noqa: E731 (the model's order)
        after = lambda a, act=activation: ops.max_pool_2x2(act(a))  # noqa: E731
        np.testing.assert_array_equal(before(x), after(x))
        np.testing.assert_array_equal(jax.vjp(before, x)[1](cotangent)[0], jax.vjp(after, x)[1](cotangent)[0])


def test_the_bias_added_after_pooling_gives_the_values_and_gradients_of_adding_it_before(assert_close):
    x, bias, cotangent = normal_arrays(5, (2, 6, 8, 3), (3,), (2, 3, 4, 3))
    before = lambda a, b: jax.nn.relu(ops.max_pool_2x2(a + b))  # noqa: E731
    after = lambda a, b: jax.nn.relu(ops.max_pool_2x2(a) + b)  # noqa: E731 (the model's order, emofx.nets.model.Conv)
    (y_before, vjp_before), (y_after, vjp_after) = jax.vjp(before, x, 3 * bias), jax.vjp(after, x, 3 * bias)
    np.testing.assert_array_equal(y_after, y_before)  # rounding is monotone: max(a + b) is max(a) + b to the bit
    assert 0 < np.count_nonzero(y_after) < y_after.size  # the activation cuts some values and passes others
    (dx_before, db_before), (dx_after, db_after) = vjp_before(cotangent), vjp_after(cotangent)
    np.testing.assert_array_equal(dx_after, dx_before)
    assert_close(db_after, db_before, "bias gradient")  # the same terms, summed over pooled positions


def test_auto_picks_the_fast_path_on_cpu_and_lax_elsewhere():
    assert ops.resolve_conv_impl("auto", "cpu") == "winograd"
    assert ops.resolve_conv_impl("auto", "gpu") == "lax"
    assert ops.resolve_conv_impl("auto", "tpu") == "lax"
    assert ops.resolve_conv_impl("lax", "cpu") == "lax"
    assert ModelConfig(num_classes=2).conv_impl == "auto"


def test_unknown_implementation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown convolution implementation 'fft'.*winograd"):
        ops.conv2d_same(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), "fft")


@pytest.mark.parametrize("impl", ["split-grad", "winograd"])
def test_whole_model_logits_and_parameter_gradients_match_lax(impl, assert_close_to_scale, rtol_at):
    # Whether the formulations compute one function, at full float32 whatever the session's precision: through
    # three layers and back, TF32's rounding (amplified by Winograd's transforms, 2-4e-3 of the scale per layer
    # against the direct convolution's 8e-4, benchmarks/emulated_tf32.py) compounds past any tolerance that still
    # tests something. Each layer alone is compared at each precision above (test_winograd_matches_lax_on_any_shape).
    configs = {impl: ModelConfig(num_classes=5, widths=(64, 64, 16), dense_units=32, conv_impl=impl)
               for impl in ("lax", "split-grad", "winograd")}
    params = init_params(configs["lax"], 3)
    images = np.random.default_rng(4).uniform(size=(6, 48, 48)).astype(np.float32)
    labels = jnp.arange(6) % 5

    def run(impl: str):
        module = EmotionCNN(configs[impl])

        def loss(p):
            logits = module.apply({"params": p}, images, train=True, rngs={"dropout": jax.random.PRNGKey(5)})
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(6), labels]), logits

        (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        return logits, grads

    with use_precision("highest"):
        (ref_logits, ref_grads), (fast_logits, fast_grads) = run("lax"), run(impl)
    rtol = rtol_at("highest")
    assert_close_to_scale(fast_logits, ref_logits, rtol, "logits")
    flat_ref = jax.tree_util.tree_leaves_with_path(ref_grads)
    flat_fast = dict(jax.tree_util.tree_leaves_with_path(fast_grads))
    assert len(flat_ref) == 10  # kernel and bias of 3 convs, dense and output
    for path, want in flat_ref:
        assert float(jnp.abs(want).max()) > 0, f"zero reference gradient at {path}"
        assert_close_to_scale(flat_fast[path], want, rtol, f"gradient {jax.tree_util.keystr(path)}")


def test_few_channel_layers_run_in_batch_chunks_on_the_cpu_path_only():
    grey, wide = jnp.zeros((64, 48, 48, 1)), jnp.zeros((64, 24, 24, 64))
    assert ops.layer_batch_chunk(grey, "winograd") == ops.LAYER_CHUNK
    assert ops.layer_batch_chunk(grey, "split-grad") == ops.LAYER_CHUNK
    assert ops.layer_batch_chunk(grey, "lax") is None  # the GPU path keeps whole batches
    assert ops.layer_batch_chunk(wide, "winograd") is None
    assert ops.layer_batch_chunk(grey[:12], "winograd") is None  # not a multiple of the chunk
    assert ops.layer_batch_chunk(grey[:8], "winograd") is None  # one chunk: nothing to split
    x = jnp.asarray(normal_arrays(2, (24, 5, 5, 3))[0])
    per_chunk = jnp.concatenate([jnp.cumsum(x[start:start + 8], axis=0) for start in (0, 8, 16)])
    np.testing.assert_array_equal(ops.in_batch_chunks(lambda a: jnp.cumsum(a, axis=0), x, 8), per_chunk)
    np.testing.assert_array_equal(ops.in_batch_chunks(lambda a: jnp.cumsum(a, axis=0), x, None), jnp.cumsum(x, axis=0))


def test_the_first_layer_in_chunks_computes_what_the_whole_batch_computes(assert_close):
    # 16 images run the grey first layer in two chunks of 8 on the CPU path; 8 images run it whole.
    config = ModelConfig(num_classes=5, widths=(64, 64, 16), dense_units=32, conv_impl="winograd")
    params = init_params(config, 3)
    images = np.random.default_rng(16).uniform(size=(16, 48, 48)).astype(np.float32)
    logits = jax.jit(lambda x: EmotionCNN(config).apply({"params": params}, x))
    input_grad = jax.jit(jax.grad(lambda x: logits(x)[:, 0].sum()))
    chunked = logits(images), input_grad(images)
    whole = [np.concatenate([f(images[:8]), f(images[8:])]) for f in (logits, input_grad)]
    assert float(jnp.abs(whole[1]).max()) > 0
    assert_close(chunked[0], whole[0], "logits")
    assert_close(chunked[1], whole[1], "input gradient")


def test_winograd_refuses_padding_that_changes_the_image_size():
    with pytest.raises(ValueError, match="does not keep the size"):
        winograd.conv2d(jnp.zeros((1, 8, 8, 8)), jnp.zeros((5, 5, 8, 2)), ((1, 1), (2, 2)))
