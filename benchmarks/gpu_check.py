"""One check of a machine (made for a GPU; ``--quick`` runs anywhere in a minute or two), one JSON summary.

    bash benchmarks/gpu_check.sh                 # on a GPU machine: < 5 minutes
    bash benchmarks/gpu_check.sh --quick         # a small version of every step (CPU-friendly)

Steps, each a separate process so that one failure does not hide the others:

``environment``  Python, JAX (version, backend, devices), PyTorch (version, CUDA), the precision
                 setting, XLA flags, ``nvidia-smi`` when present;
``tests``        the numerics tests that depend on the device (fast convolutions vs ``lax.conv``,
                 the model, training, saliency, the PyTorch parity checks) at ``highest``, then those
                 that compare implementations at ``default`` (``at_default``: the GPU's own TF32, whose
                 tolerances ``make test`` checks on a CPU by emulation, ``benchmarks/emulated_tf32.py``);
``benchmark``    ``python -m benchmarks.run`` at batch 64 and 512 (PyTorch eager and
                 torch.compile on the same device);
``protocol``     ``python -m benchmarks.protocol`` on KDEF and the Taiwanese set, 5 trials x 20
                 epochs (the issue's end-to-end target: < 20 s on an H200-class GPU), one run at a
                 time and again with ``--lanes`` (all runs as one vmapped program);
``fer2013``      ``emofx train`` on FER2013's training images (predefined split) for a few epochs.

Quick mode shrinks each step (a few tests, 8x8 benchmark images without PyTorch, tiny networks on
synthetic cultures and 500 FER2013 images); a step whose data is missing is ``skipped`` with the
reason; a step that raises any other error is ``failed`` with the error's type and message. The summary
(``OUT/gpu_check.json``, also printed last) holds, per step, its status (``passed``, ``failed``,
``skipped``), seconds, the command and its parsed result.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("environment", "tests", "benchmark", "protocol", "fer2013")
DEVICE_TESTS = ("tests/test_ops.py", "tests/test_model.py", "tests/test_training.py", "tests/test_lanes.py",
                "tests/test_saliency.py", "tests/test_benchmarks.py")
# The Makefile's NUMERICS: the tests that compare implementations, run again at the fast precision.
NUMERICS_TESTS = ("tests/test_ops.py", "tests/test_model.py", "tests/test_saliency.py", "tests/test_lanes.py")
QUICK_TESTS = ("tests/test_ops.py", "-k", "one_hot or max_pool or unknown")
TINY_NET = ("--widths", "4,8,8", "--dense-units", "8")


class StepFailed(RuntimeError):
    """A step's command failed (its message is the command's last output line)."""


class StepSkipped(RuntimeError):
    """A step cannot run here (e.g. its data is missing)."""


def run_command(command: list[str], timeout: float, log: Path, env: dict[str, str] | None = None) -> str:
    """Run ``command`` in the repository root (with ``env`` added to the environment); its output goes to
    ``log`` and is returned."""
    with open(log, "w") as out:
        out.write("$ " + shlex.join(command) + "\n")
        out.flush()
        try:
            done = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                  env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired:
            raise StepFailed(f"timed out after {timeout:.0f} s (see {log})") from None
    text = log.read_text()
    if done.returncode != 0:
        last = [line for line in text.splitlines() if line.strip()][-1:] or [""]
        raise StepFailed(f"exit status {done.returncode}: {last[0][:300]} (see {log})")
    return text


def last_json(text: str) -> dict[str, Any]:
    """The last line of ``text`` that parses as a JSON object."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise StepFailed("the command printed no JSON summary")


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`environment_info` in a new process (JAX and PyTorch are never imported here)."""
    command = [sys.executable, "-c", "import json; from benchmarks.gpu_check import environment_info; "
                                     "print(json.dumps(environment_info()))"]
    return {"command": shlex.join(command), **last_json(run_command(command, args.timeout,
                                                                    args.out / "environment.log"))}


def environment_info() -> dict[str, Any]:
    """Python, JAX, PyTorch, precision and XLA settings, and ``nvidia-smi``'s view of the GPUs."""
    import jax

    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "jax": jax.__version__, "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind, "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "emofx_precision": os.environ.get("EMOFX_PRECISION", ""),
    }
    try:
        import torch

        info.update(torch=torch.__version__, torch_cuda=torch.cuda.is_available(),
                    torch_device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    except ImportError:
        info.update(torch=None, torch_cuda=False)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia_smi"] = None
    return info


def _pytest(selection: tuple[str, ...], precision: str, log: Path, timeout: float) -> dict[str, Any]:
    """Run the tests ``selection`` at matmul ``precision``: the command and its counts."""
    # One process (no -n), and without the project's xdist options, so that a Python without pytest-xdist runs it.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *selection]
    text = run_command(command, timeout, log, env={"EMOFX_PRECISION": precision})
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error)", text.splitlines()[-1])}
    return {"command": f"EMOFX_PRECISION={precision} {shlex.join(command)}", **counts}


def tests(args: argparse.Namespace) -> dict[str, Any]:
    result = _pytest(QUICK_TESTS if args.quick else DEVICE_TESTS, "highest", args.out / "tests.log", args.timeout)
    result["at_default"] = _pytest(QUICK_TESTS if args.quick else NUMERICS_TESTS, "default",
                                   args.out / "tests-default.log", args.timeout)
    return result


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    sizes = ["--batch-size", "4", "--image-size", "8", "--quick", "--no-torch"] if args.quick else \
        ["--batch-size", "64", "512", "--repeats", "3"]
    command = [sys.executable, "-m", "benchmarks.run", "--json", *sizes]
    summary = last_json(run_command(command, args.timeout, args.out / "benchmark.log"))
    keys = re.compile(r"_(ips|ratio|ratio_compile|peak_rss_mib)$|^(device|torch_device|batch_size)$")
    by_size = {size: {k: v for k, v in one.items() if keys.search(k)} for size, one in summary["by_batch_size"].items()}
    return {"command": shlex.join(command), "by_batch_size": by_size}


def _prepare(args: argparse.Namespace, name: str, source: Callable[[], str | Path], *options: str) -> Path:
    """``OUT/data/NAME.npz``, prepared by ``emofx prepare`` from ``source()`` unless it is there already:
    a machine without the raw data runs with prepared files put there (``benchmarks/device_check.sh``)."""
    out = args.out / "data" / f"{name}.npz"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        run_command([sys.executable, "-m", "emofx", "prepare", str(source()), "--out", str(out), "--no-progress",
                     *options], args.timeout, args.out / f"prepare-{name}.log")
    return out


def _shared(name: str) -> Path:
    from emofx.data.paths import DATA_ENV, shared_data_root

    path = shared_data_root() / name
    if not path.exists():
        raise StepSkipped(f"{path} not found (set {DATA_ENV} to the folder holding {name}/)")
    return path


def protocol(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        data = [_prepare(args, dialect, lambda: "synthetic", "--format", "synthetic", "--dialect", dialect,
                         "--n-per-class", "6") for dialect in ("eyes", "mouth")]
        plan = ["--trials", "1", "--epochs", "1", "--split", "random", *TINY_NET]
    else:
        # Faces as the published protocol timing prepared them (no landmarks: dlib would add minutes).
        data = [_prepare(args, "kdef", lambda: _shared("kdef") / "frontal", "--format", "kdef", "--landmarks", "none"),
                _prepare(args, "taiwanese", lambda: _shared("taiwanese"), "--format", "taiwanese",
                         "--landmarks", "none")]
        plan = ["--trials", "5", "--epochs", "20"]
    result = {}
    for name, extra in (("one_at_a_time", []), ("lanes", ["--lanes"])):
        runs = args.out / f"protocol-runs-{name}"
        shutil.rmtree(runs, ignore_errors=True)  # this check's own scratch runs, of an earlier check: timed anew
        command = [sys.executable, "-m", "benchmarks.protocol", *map(str, data), *plan, *extra, "--out", str(runs)]
        summary = last_json(run_command(command, args.timeout, args.out / f"protocol-{name}.log"))
        result[name] = {"command": shlex.join(command), **{k: v for k, v in summary.items() if k != "per_run"}}
    return result


def fer2013(args: argparse.Namespace) -> dict[str, Any]:
    limit = ["--limit", "500"] if args.quick else []  # enough for every class in a random split
    name = "fer2013-quick" if args.quick else "fer2013"
    data = _prepare(args, name, lambda: _shared("fer2013"), "--format", "folder", *limit)
    plan = ["--epochs", "1", "--split", "random", *TINY_NET] if args.quick else ["--epochs", "3", "--split",
                                                                                   "predefined"]
    run_dir = args.out / "fer2013-run"
    command = [sys.executable, "-m", "emofx", "train", str(data), "--out", str(run_dir), "--quiet", "--overwrite",
               *plan]
    run_command(command, args.timeout, args.out / "fer2013.log")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    keep = ("test_accuracy", "n_train", "n_val", "n_test", "steps", "seconds", "train_step_seconds", "compile_seconds")
    return {"command": shlex.join(command), **{k: metrics[k] for k in keep}}


RUNNERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "environment": environment, "tests": tests, "benchmark": benchmark, "protocol": protocol, "fer2013": fer2013,
}


def run_step(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one step; any error it raises is recorded as its status and message, never raised."""
    start = time.perf_counter()
    try:
        result, status, message = RUNNERS[name](args), "passed", ""
    except StepSkipped as err:
        result, status, message = None, "skipped", str(err)
    except StepFailed as err:
        result, status, message = None, "failed", str(err)
    except Exception as err:  # a bug or surprise in the step itself: recorded, so the summary is still written
        result, status, message = None, "failed", f"{type(err).__name__}: {err}"
    return {"status": status, "seconds": round(time.perf_counter() - start, 1), "message": message,
            "result": result}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu_check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small version of every step (runs on a CPU)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"),
                        help="folder for the logs, prepared data, runs and gpu_check.json (default gpu_check_out)")
    parser.add_argument("--only", default=",".join(STEPS),
                        help=f"comma-separated steps (default all: {','.join(STEPS)})")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per command (default 600)")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds; got {args.timeout}")
    args.steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    start, no_gpu = time.perf_counter(), ""
    summary: dict[str, Any] = {"mode": "quick" if args.quick else "full",
                               "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                               "steps": {}}
    for name in STEPS:
        if name not in args.steps:
            summary["steps"][name] = {"status": "not run", "seconds": 0.0, "message": "not in --only",
                                      "result": None}
            continue
        if no_gpu:
            summary["steps"][name] = {"status": "not run", "seconds": 0.0, "message": no_gpu, "result": None}
            continue
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        summary["steps"][name] = step = run_step(name, args)
        if name == "environment" and not args.quick and step["status"] == "passed" and \
                step["result"].get("backend") != "gpu":  # the full check is sized for a GPU: hours on a CPU
            no_gpu = (f"no GPU: JAX's backend is {step['result'].get('backend')}; the full check is sized for a GPU "
                      "(on a CPU, run it with --quick)")
            step.update(status="failed", message=no_gpu)
        print(f"gpu_check: {name} {step['status']} in {step['seconds']} s {step['message']}", file=sys.stderr,
              flush=True)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    summary["ok"] = all(s["status"] in ("passed", "skipped", "not run") for s in summary["steps"].values())
    summary["complete"] = all(s["status"] == "passed" for name, s in summary["steps"].items() if name in args.steps)
    if summary["ok"] and not summary["complete"]:
        print("gpu_check: some steps were skipped (see their messages): the check is not complete", file=sys.stderr)
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
