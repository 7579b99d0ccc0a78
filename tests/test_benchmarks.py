"""The benchmark compares like with like: the PyTorch reference is emofx's CNN, FLOPs add up."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from benchmarks import run
from benchmarks.workloads import BenchConfig, conv_net_flops
from emofx.nets.allocator import TUNED_MALLOC_ENV, command_environment, with_tuned_malloc
from emofx.nets.checkpoint import TrainedModel
from emofx.nets.model import ModelConfig, count_params, init_params
from emofx.nets.precision import use_precision


def test_paper_cnn_flops_match_the_issue_budget():
    flops = conv_net_flops(ModelConfig(num_classes=7))
    assert flops["forward"] == pytest.approx(0.4847e9, rel=1e-3)
    assert flops["train"] == pytest.approx(1.4469e9, rel=1e-3)


def test_bench_config_rejects_bad_plans_and_draws_a_seeded_batch():
    with pytest.raises(ValueError, match="repeats"):
        BenchConfig(repeats=0)
    images, labels = BenchConfig(batch_size=4).batch()
    assert images.shape == (4, 48, 48) and images.dtype == np.uint8
    assert labels.min() >= 0 and labels.max() < 7
    np.testing.assert_array_equal(BenchConfig(batch_size=4).batch()[0], images)


def test_cli_refuses_bad_arguments_before_starting_workers(tmp_path, capsys):
    assert run.main(["--repeats", "0"]) == 2
    assert "repeats" in capsys.readouterr().err
    assert run.main(["--train-steps", "0", "--no-torch"]) == 2
    assert "train_steps" in capsys.readouterr().err
    existing = tmp_path / "out.json"
    existing.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--output", str(existing)])
    assert exit_info.value.code == 2 and "out.json already exists" in capsys.readouterr().err
    assert existing.read_text() == "{}"
    beside = tmp_path / "new.repeats.csv"  # the per-repeat table written beside --output new.json
    beside.write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--output", str(tmp_path / "new.json")])
    assert exit_info.value.code == 2 and "new.repeats.csv already exists" in capsys.readouterr().err
    assert beside.read_text() == "keep me" and not (tmp_path / "new.json").exists()
    from benchmarks import crowd_simulated, gpu_check, startup

    for main, argv, message in ((run.main, ["--image-size", "4"], "--image-size must be at least 8"),
                                (startup.main, ["--later", "-1"], "--later must be >= 0"),
                                (crowd_simulated.main, ["--images", "0", "--out", str(tmp_path / "c")],
                                 "--images must be at least 1"),
                                (gpu_check.main, ["--timeout", "-1"], "--timeout must be a positive number")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_summary_takes_the_median_over_repeats_and_the_ratio_of_medians():
    speeds = {("emofx", "train"): [30.0, 10.0, 20.0, 50.0, 40.0], ("torch", "train"): [5.0, 100.0, 10.0, 20.0, 15.0],
              ("emofx", "infer"): [300.0, 100.0, 200.0], ("torch", "infer"): [80.0, 50.0, 120.0],
              ("emofx", "saliency"): [9.0, 3.0, 6.0], ("torch", "saliency"): [4.0, 4.0, 1.0]}
    table = pd.DataFrame([{"framework": f, "task": t, "repeat": r, "images_per_s": v}
                          for (f, t), values in speeds.items() for r, v in enumerate(values)])
    config = BenchConfig()
    out = run._summarise(table, config, matmul_gflops=100.0, frameworks=["emofx", "torch"])
    assert (out["emofx_train_ips"], out["torch_train_ips"], out["train_ratio"]) == (30.0, 15.0, 2.0)
    assert (out["emofx_infer_ips"], out["torch_infer_ips"], out["infer_ratio"]) == (200.0, 80.0, 2.5)
    assert (out["emofx_saliency_ips"], out["torch_saliency_ips"], out["saliency_ratio"]) == (6.0, 4.0, 1.5)
    assert "train_ratio_compile" not in out  # torch.compile was not timed
    flops = conv_net_flops(ModelConfig(num_classes=config.num_classes, input_size=config.image_size))
    train_gflop = flops["train"] / 1e9
    assert out["emofx_train_gflops"] == pytest.approx(30.0 * train_gflop, abs=0.01)
    assert out["train_efficiency"] == pytest.approx(out["emofx_train_gflops"] / 100.0, abs=1e-3)
    alone = run._summarise(table[table["framework"] == "emofx"], config, 100.0, ["emofx"])
    assert "torch_train_ips" not in alone and alone["train_ratio"] is None  # emofx only: no ratio


def test_torch_reference_is_the_same_network_as_emofx():
    torch = pytest.importorskip("torch", reason="torch (the `bench` extra) is not installed")
    from benchmarks import torch_reference as ref
    from emofx.explain import saliency

    assert ref.count_params(ref.TorchEmotionCNN()) == count_params(init_params(ModelConfig(num_classes=7), 0))
    config = ModelConfig(num_classes=4, widths=(8, 16, 16), dense_units=32)
    model = TrainedModel(config, init_params(config, 1), ("a", "b", "c", "d"))
    torch_model = ref.load_emofx_params(
        ref.TorchEmotionCNN(ref.TorchModelConfig(num_classes=4, widths=(8, 16, 16), dense_units=32)), model.params)
    images = np.random.default_rng(0).random((3, 48, 48), dtype=np.float32)
    targets = np.array([0, 2, 3], np.int32)
    with use_precision("highest"):  # PyTorch on the CPU multiplies in float32: so must emofx, whatever the session's
        logits, emofx_maps = model.logits(images), saliency.guided_backprop(model, images, targets)
    np.testing.assert_allclose(ref.infer(torch_model, torch.from_numpy(images)).numpy(),
                               np.asarray(logits), rtol=1e-4, atol=1e-5)
    torch_maps = ref.guided_backprop(torch_model, torch.from_numpy(images), torch.from_numpy(targets).long()).numpy()
    emofx_maps = np.asarray(emofx_maps)
    assert np.abs(emofx_maps).max() > 0
    np.testing.assert_allclose(torch_maps, emofx_maps, rtol=1e-3, atol=1e-4 * np.abs(emofx_maps).max())


def test_workers_get_the_allocator_each_framework_runs_with(monkeypatch):
    monkeypatch.delenv(TUNED_MALLOC_ENV, raising=False)
    assert run.worker_environment("emofx", "default") == command_environment()  # as the emofx command starts
    assert run.worker_environment("torch", "default") is None  # PyTorch as this process
    assert run.worker_environment("emofx", "inherit") is None and run.worker_environment("torch", "inherit") is None
    assert run.worker_environment("torch", "tuned") == with_tuned_malloc()
    monkeypatch.setenv(TUNED_MALLOC_ENV, "0")
    assert run.worker_environment("emofx", "default") == dict(os.environ)
    with pytest.raises(ValueError, match="unknown allocator setting 'fast'"):
        run.worker_environment("emofx", "fast")


def test_benchmark_run_times_every_task_end_to_end():
    # A tiny plan (8x8 images, batch 4) through the real worker processes and workloads; the
    # paper's widths keep the second layer on the Winograd path.
    config = BenchConfig(batch_size=4, image_size=8, repeats=1, warmup=1, train_steps=2, dataset_size=10,
                         calls=(("train", 1), ("infer", 1), ("saliency", 1)))
    assert config.images_per_call("train") == 8 and config.images_per_call("infer") == 4
    include_torch = run.torch_available()
    environ_before = dict(os.environ)
    table, summary = run.run_benchmark(config, include_torch=include_torch, log=lambda message: None,
                                       malloc="tuned")
    frameworks = ["emofx"] + (["torch"] if include_torch else [])
    assert dict(os.environ) == environ_before  # the workers' environment is theirs alone
    expected = with_tuned_malloc().get("GLIBC_TUNABLES")  # where the C library is glibc 2.35+
    for name in frameworks:  # every worker started with them (--malloc tuned)
        assert summary[f"{name}_malloc_tunables"] == expected
    assert len(table) == len(frameworks) * 3
    for name in frameworks:
        for task in ("train", "infer", "saliency"):
            assert summary[f"{name}_{task}_ips"] > 0 and summary[f"{name}_{task}_peak_rss_mib"] > 0
            faults = summary[f"{name}_{task}_faults_per_call"]
            assert isinstance(faults, int) and faults >= 0
    assert summary["emofx_conv_impl"] in ("winograd", "lax")
    assert summary["train_steps_per_call"] == 2 and summary["matmul_gflops"] > 0
    assert sum(summary["cpu_shares"].values()) == pytest.approx(1, abs=1e-3)  # workers count as other processes
    assert summary["cpu_shares"]["other_processes"] > 0
    expected_ratio = summary["emofx_train_ips"] / summary["torch_train_ips"] if include_torch else None
    assert summary["train_ratio"] == (pytest.approx(expected_ratio, rel=1e-2) if include_torch else None)
    rows = table[(table["framework"] == "emofx") & (table["task"] == "train")]
    assert rows["images_per_s"].iloc[0] == pytest.approx(8 / rows["seconds"].iloc[0])


def test_a_worker_that_dies_is_an_error_naming_it_not_a_hang():
    # A crash or an out-of-memory kill used to leave the parent waiting on the pipe for ever.
    config = BenchConfig(batch_size=2, image_size=8, repeats=1, warmup=1, train_steps=1, dataset_size=4,
                         calls=(("train", 1), ("infer", 1), ("saliency", 1)))
    worker = run.Worker("emofx", config)
    worker.process.kill()
    with pytest.raises(RuntimeError, match=r"emofx worker exited \(status -9\) during warm_up infer"):
        worker.ask("warm_up", "infer")
    worker.close()
    assert not worker.process.is_alive()
