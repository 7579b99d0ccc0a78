"""Benchmark suite: emofx vs PyTorch eager on the paper's CNN, plus the machine's matmul rate.

    python -m benchmarks.run --json      # full run (about a minute on 2 cores)
    python -m benchmarks.run --quick     # smoke test
    python -m benchmarks.run --json --batch-size 64 512   # a sweep (on a GPU: torch eager and torch.compile)

Measures training throughput (images/s of training as ``emofx.nets.training.fit`` runs it: compiled
chunks of 4 steps, each sampling a batch from the training set on the device, augmenting it,
forward with dropout, backward, SGD update; PyTorch: the same steps in an eager loop),
inference throughput and guided-backprop saliency
maps/s, each with the process's peak resident memory (RSS) and minor page faults per call during
the timed repeats, for emofx and
for the identical architecture in PyTorch (``benchmarks/torch_reference.py``; skipped with
a message when torch is not installed), and the float32 rate of a 2048x2048 JAX matmul.
When JAX runs on a GPU, PyTorch runs on the same GPU (``--device``), and ``torch.compile``
is timed as a third framework (``--torch-compile``; tasks it cannot compile are reported as
null). ``--batch-size`` takes several sizes: each is a complete run, and the summary holds
the first size's numbers at the top level and every size's under ``by_batch_size``.

Each framework runs in its own worker process (no thread pools competing inside one
process; a clean peak-RSS per framework), and the parent interleaves their timed repeats
(emofx, torch, emofx, torch, ...) so that load from other processes hits both alike. A
repeat times a few calls after warm-up; a throughput is the median over repeats.
train_efficiency is emofx's training FLOP rate divided by the matmul rate. The last line
printed with ``--json`` is one JSON object holding every number.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from benchmarks.outputs import refuse_existing
from benchmarks.workloads import TASKS, WORKLOADS, BenchConfig, conv_net_flops, jax_matmul_gflops
from emofx.nets.allocator import allocator_setting, command_environment, with_tuned_malloc
from emofx.study.machine import cpu_shares, cpu_times

QUICK = BenchConfig(repeats=2, warmup=1, calls=(("train", 1), ("infer", 2), ("saliency", 1)), train_steps=2)


# ---------------------------------------------------------------------------- memory
def reset_peak_rss() -> None:
    """Restart the kernel's peak-RSS counter of this process (Linux; a no-op elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (since :func:`reset_peak_rss` on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


# ---------------------------------------------------------------------------- worker process
def _serve(framework: str, config: BenchConfig, conn) -> None:
    """Worker loop: build ``framework``'s workload, then answer the parent's commands (a failing
    command is reported to the parent, which names the framework and task, and the loop goes on)."""
    try:
        calls = WORKLOADS[framework](config)
        conn.send(("ok", _versions(framework, config)))
    except Exception as err:
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    while True:
        command, *args = conn.recv()
        if command == "stop":
            break
        try:
            conn.send(("ok", _COMMANDS[command](calls, config, *args)))
        except Exception as err:
            conn.send(("error", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"))


def minor_faults() -> int | None:
    """This process's minor page faults so far (None where there is no ``resource`` module)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


_faults_at_warm_up: list[int | None] = [None]


def _warm_up(calls, config: BenchConfig, task: str) -> float:
    """Compile and warm up ``task``; the peak-RSS and page-fault counts then restart (steady state is measured)."""
    start = time.perf_counter()
    for _ in range(max(config.warmup, 1)):
        calls[task]()
    reset_peak_rss()
    _faults_at_warm_up[0] = minor_faults()
    return time.perf_counter() - start


def _faults_since_warm_up(calls, config: BenchConfig) -> int | None:
    now, then = minor_faults(), _faults_at_warm_up[0]
    return None if now is None or then is None else now - then


def _time_repeat(calls, config: BenchConfig, task: str) -> float:
    n = config.calls_per_repeat(task)
    start = time.perf_counter()
    for _ in range(n):
        calls[task]()
    return time.perf_counter() - start


_COMMANDS = {
    "warm_up": _warm_up,
    "repeat": _time_repeat,
    "peak_rss": lambda calls, config: peak_rss_mib(),
    "faults": _faults_since_warm_up,
    "matmul": lambda calls, config: jax_matmul_gflops(),
}


def _versions(framework: str, config: BenchConfig) -> dict[str, str]:
    import jax

    if framework.startswith("torch"):
        import torch

        device = config.torch_device
        name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
        return {"torch_version": torch.__version__, "torch_device": f"{device}: {name}",
                "torch_threads": torch.get_num_threads(), f"{framework}_malloc_tunables": allocator_setting()}
    device = jax.devices()[0]
    kind = _cpu_name() if device.platform == "cpu" else device.device_kind
    return {"jax_version": jax.__version__, "device": f"{device.platform}: {kind}",
            "emofx_conv_impl": _emofx_conv_impl(), "emofx_malloc_tunables": allocator_setting()}


def _emofx_conv_impl() -> str:
    from emofx.nets.model import ModelConfig
    from emofx.nets.ops import resolve_conv_impl

    return resolve_conv_impl(ModelConfig(num_classes=2).conv_impl)


class Worker:
    """A framework's workload running in a child process, driven over a pipe."""

    def __init__(self, framework: str, config: BenchConfig, environ: dict[str, str] | None = None) -> None:
        """Start ``framework``'s worker; ``environ`` (default: this process's) is its environment."""
        self.framework = framework
        self.conn, child = mp.get_context("spawn").Pipe()
        self.process = mp.get_context("spawn").Process(target=_serve, args=(framework, config, child), daemon=True)
        saved = dict(os.environ)
        try:
            if environ is not None:  # a spawned child starts with the parent's environment of the moment
                os.environ.clear()
                os.environ.update(environ)
            self.process.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        child.close()  # the worker's end lives in the worker alone: its death ends the pipe (EOFError)
        self.info = self._answer("start-up")

    def ask(self, command: str, *args: Any) -> Any:
        what = f"{command} {' '.join(map(str, args))}".strip()
        try:
            self.conn.send((command, *args))
        except OSError:  # BrokenPipeError: the worker is gone
            self._died(what)
        return self._answer(what)

    def _answer(self, what: str) -> Any:
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            self._died(what)
        if status != "ok":
            raise RuntimeError(f"{self.framework} worker failed during {what}: {value}")
        return value

    def _died(self, what: str) -> NoReturn:
        """Raise the error of a worker that exited without answering (a crash, or killed for memory)."""
        self.process.join(timeout=10)
        raise RuntimeError(f"{self.framework} worker exited (status {self.process.exitcode}) during {what}, "
                           "without an answer: a crash in the framework, or the process was killed "
                           "(out of memory?); run it again with fewer images per call (--batch-size)")

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(("stop",))
            except OSError:  # it died meanwhile
                pass
        self.process.join(timeout=30)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------- the run
MALLOC_MODES = ("default", "tuned", "inherit")


def worker_environment(framework: str, malloc: str) -> dict[str, str] | None:
    """The environment ``framework``'s worker starts in (None: this process's) for the C allocator
    setting ``malloc``: ``default``, each framework as its own command runs it (emofx with glibc's
    tunables, as the ``emofx`` command starts itself, :mod:`emofx.nets.allocator`; PyTorch as this
    process); ``tuned``, every worker with them; ``inherit``, every worker as this process."""
    if malloc not in MALLOC_MODES:
        raise ValueError(f"unknown allocator setting {malloc!r}; choose one of {', '.join(MALLOC_MODES)}")
    if malloc == "tuned":
        return with_tuned_malloc()
    return command_environment() if malloc == "default" and framework == "emofx" else None


def run_benchmark(config: BenchConfig, include_torch: bool = True, log=print,
                  torch_compile: bool = False, malloc: str = "default") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Time every task for emofx (and torch eager, and torch.compile), interleaved; returns the
    per-repeat table and the summary. A task that torch.compile cannot run is reported as null.
    ``malloc``: the C allocator setting of the workers (:func:`worker_environment`)."""
    frameworks = ["emofx"] + (["torch"] if include_torch else []) + (["torch_compile"] if torch_compile else [])
    load_before, started = os.getloadavg(), cpu_times()
    workers = {name: Worker(name, config, worker_environment(name, malloc)) for name in frameworks}
    rows = []
    summary: dict[str, Any] = {}
    try:
        for worker in workers.values():
            summary.update(worker.info)
        log(f"matmul: JAX {2048}x{2048} float32 ...")
        summary["matmul_gflops"] = workers["emofx"].ask("matmul")
        for task in TASKS:
            timed = {}
            for name, worker in workers.items():
                try:
                    seconds = worker.ask("warm_up", task)
                except RuntimeError as err:
                    if name != "torch_compile":
                        raise
                    summary[f"{name}_{task}_error"] = str(err)
                    log(f"{task}: {name} skipped: {err}")
                    continue
                timed[name] = worker
                log(f"{task}: {name} warmed up in {seconds:.1f} s")
            images = config.images_per_call(task) * config.calls_per_repeat(task)
            for repeat in range(config.repeats):
                for name, worker in timed.items():
                    seconds = worker.ask("repeat", task)
                    rows.append({"framework": name, "task": task, "repeat": repeat, "seconds": seconds,
                                 "images_per_s": images / seconds})
                log(f"{task}: repeat {repeat + 1}/{config.repeats}: " + ", ".join(
                    f"{r['framework']} {r['images_per_s']:.1f}/s" for r in rows[-len(timed):]))
            for name, worker in timed.items():
                summary[f"{name}_{task}_peak_rss_mib"] = round(worker.ask("peak_rss"), 1)
                faults = worker.ask("faults")  # fresh buffers cost page faults (emofx.nets.allocator)
                summary[f"{name}_{task}_faults_per_call"] = (
                    None if faults is None else round(faults / (config.repeats * config.calls_per_repeat(task))))
    finally:
        for worker in workers.values():
            worker.close()
    table = pd.DataFrame(rows)
    summary.update(_summarise(table, config, summary["matmul_gflops"], frameworks))
    summary.update({
        "torch_compile": torch_compile, "batch_size": config.batch_size, "image_size": config.image_size,
        "repeats": config.repeats,
        "train_steps_per_call": config.train_steps,
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_shares": cpu_shares(started),
        "cpu_shares_note": "the machine's CPU time while this ran: this_process is the coordinator only, the "
                           "framework workers that do the timed work count in other_processes; steal is what other "
                           "virtual machines took, and idle what was left",
        "peak_rss_note": "peak resident set size (MiB) of each framework's worker process during the timed "
                         "repeats of the task, after warm-up",
        "faults_note": "minor page faults per call of the task in each framework's worker during the timed repeats",
    })
    if not include_torch:
        summary["torch_version"] = None
    return table, summary


def _summarise(table: pd.DataFrame, config: BenchConfig, matmul_gflops: float, frameworks: list[str]) -> dict[str, Any]:
    from emofx.nets.model import ModelConfig

    medians = table.groupby(["framework", "task"])["images_per_s"].median()
    out: dict[str, Any] = {}
    for name in frameworks:
        for task in TASKS:
            out[f"{name}_{task}_ips"] = round(float(medians[(name, task)]), 2) if (name, task) in medians else None
    for task in TASKS:
        for reference, suffix in (("torch", ""), ("torch_compile", "_compile")):
            other = out.get(f"{reference}_{task}_ips")
            if reference in frameworks or not suffix:
                out[f"{task}_ratio{suffix}"] = round(out[f"emofx_{task}_ips"] / other, 3) if other else None
    flops = conv_net_flops(ModelConfig(num_classes=config.num_classes, input_size=config.image_size))
    out["train_gflop_per_image"] = round(flops["train"] / 1e9, 4)
    out["emofx_train_gflops"] = round(out["emofx_train_ips"] * flops["train"] / 1e9, 2)
    out["matmul_gflops"] = round(matmul_gflops, 2)
    out["train_efficiency"] = round(out["emofx_train_gflops"] / matmul_gflops, 3)
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def results_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """The headline numbers as a table: one row per task, emofx vs torch."""
    rows = []
    for task in TASKS:
        row = {
            "task": task,
            "emofx (img/s)": summary[f"emofx_{task}_ips"],
            "torch (img/s)": summary.get(f"torch_{task}_ips"),
            "ratio": summary.get(f"{task}_ratio"),
            "emofx peak RSS (MiB)": summary[f"emofx_{task}_peak_rss_mib"],
            "torch peak RSS (MiB)": summary.get(f"torch_{task}_peak_rss_mib"),
        }
        if f"{task}_ratio_compile" in summary:
            row.update({"torch.compile (img/s)": summary.get(f"torch_compile_{task}_ips"),
                        "ratio (compile)": summary.get(f"{task}_ratio_compile")})
        rows.append(row)
    return pd.DataFrame(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object, last")
    parser.add_argument("--quick", action="store_true", help="a smoke test: fewer, shorter repeats")
    parser.add_argument("--repeats", type=int, help="timed repeats per task and framework (default 5; quick 2)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64],
                        help="images per batch; several sizes make a sweep (default 64; e.g. 64 512)")
    parser.add_argument("--image-size", type=int, default=48, help="side of the square images (default 48)")
    parser.add_argument("--train-steps", type=int,
                        help=f"training steps per call, emofx's unrolled chunk (default {BenchConfig.train_steps}, "
                             f"as `emofx train` runs it; quick {QUICK.train_steps})")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="where PyTorch runs: the GPU when JAX uses one (auto), or cpu / gpu")
    parser.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile (default: on a GPU)")
    parser.add_argument("--no-torch", action="store_true", help="time emofx only")
    parser.add_argument("--malloc", choices=MALLOC_MODES, default="default",
                        help="the workers' C allocator: each framework as its own command runs it (default: emofx "
                             "with glibc's tunables unless EMOFX_TUNED_MALLOC=0, PyTorch as this process), every "
                             "worker with them (tuned), or every worker as this process (inherit); "
                             "emofx.nets.allocator")
    parser.add_argument("--output", type=Path, help="also write the summary JSON here and the repeats as CSV beside it "
                                                    "(OUTPUT.repeats.csv; neither may exist)")
    args = parser.parse_args(argv)
    if args.image_size < 8:
        parser.error(f"--image-size must be at least 8 (three 2x2 poolings); got {args.image_size}")
    if args.output is not None:
        refuse_existing(parser, [args.output, repeats_path(args.output)], "--output")
    return args


def repeats_path(output: Path) -> Path:
    """The per-repeat CSV written beside the summary JSON ``output``."""
    return output.with_suffix(".repeats.csv")


def torch_device(choice: str) -> str:
    """Where PyTorch runs: ``cuda`` for ``gpu`` (or ``auto`` when JAX's default backend is a GPU), else ``cpu``."""
    if choice == "auto":
        import jax

        choice = "gpu" if jax.default_backend() == "gpu" else "cpu"
    if choice == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device gpu: this PyTorch build sees no CUDA GPU")
        return "cuda"
    return "cpu"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    include_torch = not args.no_torch
    if include_torch and not torch_available():
        print("torch is not installed: skipping the PyTorch reference "
              f"(install it with `{shlex.quote(sys.executable)} -m pip install -e '.[bench]'` in the repository)",
              file=sys.stderr)
        include_torch = False
    try:
        device = torch_device(args.device) if include_torch else "cpu"
        configs = [replace(QUICK if args.quick else BenchConfig(), batch_size=size, torch_device=device,
                           image_size=args.image_size,
                           **{name: value for name, value in (("repeats", args.repeats),
                                                              ("train_steps", args.train_steps)) if value is not None})
                   for size in args.batch_size]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    compile_torch = include_torch and (args.torch_compile if args.torch_compile is not None else device == "cuda")
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    tables, summaries = [], {}
    try:
        for config in configs:
            log(f"batch size {config.batch_size}")
            table, summaries[config.batch_size] = run_benchmark(config, include_torch, log, compile_torch,
                                                               args.malloc)
            tables.append(table.assign(batch_size=config.batch_size))
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary = {**summaries[configs[0].batch_size], "by_batch_size": {str(k): v for k, v in summaries.items()}}
    for size, one in summaries.items():
        print(f"batch size {size}:")
        print(results_frame(one).to_string(index=False))
    print(f"matmul {summary['matmul_gflops']:.1f} GFLOP/s; emofx training {summary['emofx_train_gflops']:.1f} "
          f"GFLOP/s; train_efficiency {summary['train_efficiency']:.3f}; device {summary['device']}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=2))
        pd.concat(tables).to_csv(repeats_path(args.output), index=False)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
