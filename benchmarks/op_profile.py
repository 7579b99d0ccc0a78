"""Where one benchmark call's time goes, per XLA operation: matmuls against everything else.

    python -m benchmarks.op_profile train --cores 1       # the paper CNN's 4-step training call, one core
    python -m benchmarks.op_profile infer --json out.json
    python -m benchmarks.op_profile saliency --cores 1 --by source   # time per layer and JAX operation

Runs ``benchmarks.workloads``' emofx call of a task (the same program ``benchmarks.run`` times) a few
times under ``jax.profiler.trace`` with XLA's per-operation trace events switched on
(``--xla_cpu_enable_xprof_traceme``), then adds up each operation's *exclusive* time (its own
time, less the operations nested in it, such as a loop's body) by operation name without XLA's
numeric suffix (``add_bitcast_fusion.7`` -> ``add_bitcast_fusion``), or with ``--by source`` by the JAX
operation each came from (XLA's ``op_name`` metadata, such as
``transpose(jvp(EmotionCNN))/EmotionCNN.conv_features/conv1/.../select_n``: which layer, forward or
backward, and what in it), and by kind:

* ``matmul``: dots, convolutions and the fusions built around one (read from the optimised HLO
  that XLA dumps while compiling: YNNPACK also runs pooling reductions, which are not matmuls);
* ``loop``: ``while`` / ``conditional`` / ``call`` bodies' own bookkeeping;
* ``other``: every other operation: Winograd transforms, pads, slices, concatenations, pooling,
  elementwise work.

The persistent compilation cache is switched off for the run, so that every program is compiled
(and dumped) in the process. The CPU backend only (``JAX_PLATFORMS=cpu`` is set): its trace names
every operation; on a GPU, ``jax.profiler``'s own tools show the kernels.

``matmul_bound_speedup`` is the call's speed-up if everything but the matmuls took no time
(operation time / matmul time): what removing overhead alone could ever give. On more than one core
XLA runs independent operations side by side and YNNPACK's helper work on another thread is not
traced, so the attribution is exact with ``--cores 1`` (the process is pinned to the first cores
before JAX starts).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.outputs import refuse_existing
from benchmarks.workloads import TASKS, BenchConfig
from emofx.nets.compilation import COMPILATION_CACHE_ENV

MATMUL_OPCODES = ("dot", "convolution")
LOOP_OPCODES = ("while", "conditional", "call")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([\w.-]+) = (.*)$")
_CALLED = re.compile(r"(?:calls|to_apply|body|condition)=%([\w.-]+)")
_OP_NAME = re.compile(r'op_name="(?:jit\([^/"]*\)/)?([^"]*)"')  # the JAX operation, without the program's name
GROUPINGS = ("op", "source")


def hlo_op_kinds(hlo_text: str) -> dict[str, str]:
    """``matmul`` / ``loop`` / ``other`` for every instruction of an optimised HLO module's text:
    matmul for a dot or convolution and for a fusion whose computation (or one it calls) has one."""
    computations: dict[str, list[tuple[str, str, list[str]]]] = {}
    current: list | None = None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY\s+)?%([\w.-]+) \(.*\{\s*$", line)
        if header:
            current = computations.setdefault(header.group(1), [])
        elif current is not None and (match := _INSTRUCTION.match(line)):
            current.append((match.group(1), _opcode(match.group(2)), _CALLED.findall(line)))

    has_matmul: dict[str, bool] = {}

    def computation_has_matmul(name: str) -> bool:
        if name not in has_matmul:
            has_matmul[name] = False  # a guard against cycles while this one is being looked at
            has_matmul[name] = any(opcode in MATMUL_OPCODES or any(computation_has_matmul(c) for c in called)
                                   for _, opcode, called in computations.get(name, []))
        return has_matmul[name]

    kinds = {}
    for instructions in computations.values():
        for name, opcode, called in instructions:
            if opcode in MATMUL_OPCODES or (opcode == "fusion" and any(computation_has_matmul(c) for c in called)):
                kinds[name] = "matmul"
            else:
                kinds[name] = "loop" if opcode in LOOP_OPCODES else "other"
    return kinds


def hlo_op_sources(hlo_text: str) -> dict[str, str]:
    """The JAX operation (``op_name`` metadata, less the leading ``jit(...)/``) of every instruction of an
    optimised HLO module's text that has one."""
    sources = {}
    for line in hlo_text.splitlines():
        if (match := _INSTRUCTION.match(line)) and (name := _OP_NAME.search(line)):
            sources[match.group(1)] = name.group(1)
    return sources


def _opcode(definition: str) -> str:
    """The opcode of an HLO instruction's right-hand side ``TYPE opcode(...)``; a tuple TYPE is
    parenthesised and may nest."""
    depth, end = 0, 0
    if definition.startswith("("):
        for end, char in enumerate(definition):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                break
    rest = definition[end + 1:] if definition.startswith("(") else definition.split(" ", 1)[-1]
    match = re.match(r"\s*([\w-]+)\(", rest)
    return match.group(1) if match else ""


def exclusive_op_times(events: list[dict[str, Any]]) -> Counter:
    """Microseconds of each XLA operation's own time (children on the same thread subtracted), by
    (HLO module, operation) name. ``events``: Chrome-trace events; the operations are the complete
    ("X") events that carry an ``hlo_op`` argument."""
    by_thread: dict[tuple, list[tuple[float, float, tuple[str, str]]]] = defaultdict(list)
    for event in events:
        args = event.get("args", {})
        if event.get("ph") == "X" and "hlo_op" in args:
            by_thread[(event["pid"], event["tid"])].append(
                (event["ts"], event["dur"], (args.get("hlo_module", ""), args["hlo_op"])))
    totals: Counter = Counter()
    for spans in by_thread.values():
        open_spans: list[list] = []  # [end, op, duration, children's time]
        for start, duration, op in sorted(spans, key=lambda span: (span[0], -span[1])):
            while open_spans and open_spans[-1][0] <= start:
                _close(open_spans.pop(), totals)
            if open_spans:
                open_spans[-1][3] += duration
            open_spans.append([start + duration, op, duration, 0.0])
        while open_spans:
            _close(open_spans.pop(), totals)
    return totals


def _close(span: list, totals: Counter) -> None:
    _, op, duration, children = span
    totals[op] += max(duration - children, 0.0)


def classify(totals: Counter, dumps: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The kind of each traced (module, operation), from the dumped optimised modules
    ``dumps`` [(module name, HLO text)]: of the modules of that name, the one that defines every
    traced operation (a module name such as ``jit_step`` may be compiled more than once)."""
    kinds = {}
    for module, (ops, text) in _defining_modules(totals, dumps).items():
        found = hlo_op_kinds(text)
        kinds.update({(module, op): found[op] for op in ops})
    return kinds


def sources(totals: Counter, dumps: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The JAX operation each traced (module, operation) came from (:func:`hlo_op_sources`), from the same
    dumped module as :func:`classify`; an operation without ``op_name`` metadata keeps its own name."""
    names = {}
    for module, (ops, text) in _defining_modules(totals, dumps).items():
        found = hlo_op_sources(text)
        names.update({(module, op): found.get(op, op) for op in ops})
    return names


def _defining_modules(totals: Counter, dumps: list[tuple[str, str]]) -> dict[str, tuple[set[str], str]]:
    """Per traced module name: its traced operations, and the text of the dumped module of that name that
    defines them all (raises where none does)."""
    traced: dict[str, set[str]] = defaultdict(set)
    for module, op in totals:
        traced[module].add(op)
    chosen = {}
    for module, ops in traced.items():
        candidates = [(text, {m.group(1) for m in map(_INSTRUCTION.match, text.splitlines()) if m})
                      for name, text in dumps if name == module]
        text, defined = max(candidates, key=lambda candidate: len(ops & candidate[1]), default=("", set()))
        missing = sorted(ops - defined)
        if missing:
            raise RuntimeError(f"no dumped HLO module {module!r} defines the traced operations {missing[:5]}; "
                               "was a program loaded from a compilation cache?")
        chosen[module] = (ops, text)
    return chosen


def _dumped_modules(folder: Path) -> list[tuple[str, str]]:
    modules = []
    for path in sorted(folder.glob("*after_optimizations.txt")):
        text = path.read_text()
        name = re.match(r"HloModule ([\w.-]+)", text)
        if name:
            modules.append((name.group(1), text))
    return modules


def _trace_events(folder: Path) -> list[dict[str, Any]]:
    traces = sorted(folder.glob("plugins/profile/*/*.trace.json.gz"))
    if not traces:
        raise RuntimeError(f"jax.profiler wrote no trace under {folder}; is this JAX build's profiler available?")
    with gzip.open(traces[-1]) as handle:
        trace = json.load(handle)
    return trace["traceEvents"] if isinstance(trace, dict) else trace


def profile_task(task: str, config: BenchConfig, hlo_dump: Path, calls: int = 5,
                 by: str = "op") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Time ``calls`` calls of emofx's ``task`` (after warm-up), then trace as many: one row per
    operation name, or per JAX operation with ``by="source"`` (ms per call, share, kind), and a summary
    (untraced wall ms per call, ms and share per kind, ``matmul_bound_speedup``). JAX must not have been
    imported with other XLA flags before."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; choose one of {', '.join(GROUPINGS)}")
    import jax

    from benchmarks.workloads import emofx_workload

    call = emofx_workload(config)[task]
    for _ in range(max(config.warmup, 1)):
        call()
    started = time.perf_counter()  # untraced: the profiler itself slows the calls down
    for _ in range(calls):
        call()
    wall_ms = 1e3 * (time.perf_counter() - started) / calls
    with tempfile.TemporaryDirectory(prefix="emofx-op-profile-") as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(calls):
                call()
        totals = exclusive_op_times(_trace_events(Path(folder)))
    if not totals:
        raise RuntimeError("the trace holds no XLA operation events: XLA_FLAGS must include "
                           "--xla_cpu_enable_xprof_traceme=true before JAX starts (run this module as a script)")
    dumps = _dumped_modules(hlo_dump)
    kinds = classify(totals, dumps)
    names = sources(totals, dumps) if by == "source" else {key: re.sub(r"\.\d+$", "", key[1]) for key in totals}
    rows = Counter()
    for key, time_us in totals.items():
        rows[(names[key], kinds[key])] += time_us
    table = pd.DataFrame([{by: name, "kind": kind, "ms_per_call": 1e-3 * t / calls}
                          for (name, kind), t in rows.items()])
    table["share"] = table["ms_per_call"] / table["ms_per_call"].sum()
    table = table.sort_values("ms_per_call", ascending=False, ignore_index=True)
    by_kind = table.groupby("kind")["ms_per_call"].sum()
    op_ms = float(by_kind.sum())
    summary = {
        "task": task, "images_per_call": config.images_per_call(task), "calls": calls, "grouped_by": by,
        "wall_ms_per_call": wall_ms, "op_ms_per_call": op_ms,
        "ms_per_call_by_kind": {kind: float(ms) for kind, ms in by_kind.items()},
        "share_by_kind": {kind: float(ms / op_ms) for kind, ms in by_kind.items()},
        "matmul_bound_speedup": op_ms / float(by_kind["matmul"]) if by_kind.get("matmul", 0) > 0 else None,
        "cores": len(os.sched_getaffinity(0)), "jax_version": jax.__version__,
        "batch_size": config.batch_size, "image_size": config.image_size, "train_steps": config.train_steps,
    }
    return table, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.op_profile", description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--cores", type=int, help="pin the process to this many cores before JAX starts "
                                                  "(1: exact attribution; default: all it may use)")
    parser.add_argument("--calls", type=int, default=5, help="traced calls after warm-up (default 5)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--train-steps", type=int, default=BenchConfig.train_steps)
    parser.add_argument("--top", type=int, default=15, help="operations listed (default 15)")
    parser.add_argument("--by", choices=GROUPINGS, default="op",
                        help="group by XLA operation name (op, the default) or by the JAX operation each came from "
                             "(source: layer, forward or backward, and what in it)")
    parser.add_argument("--json", type=Path,
                        help="also write the summary and every operation's row here (must not exist)")
    args = parser.parse_args(argv)
    if "jax" in sys.modules:
        parser.error("JAX is already imported in this process; run `python -m benchmarks.op_profile` in a new one")
    available = sorted(os.sched_getaffinity(0))
    if args.cores is not None and not 1 <= args.cores <= len(available):
        parser.error(f"--cores must be between 1 and the {len(available)} cores this process may use; got {args.cores}")
    if args.calls < 1 or args.top < 1:
        parser.error(f"--calls and --top must be >= 1; got {args.calls} and {args.top}")
    if args.json:
        refuse_existing(parser, [args.json], "--json")
        if not args.json.parent.is_dir():
            parser.error(f"--json {args.json}: the folder {args.json.parent} does not exist; create it first")
    try:
        config = BenchConfig(batch_size=args.batch_size, image_size=args.image_size, train_steps=args.train_steps)
    except ValueError as error:
        parser.error(str(error))
    if args.cores is not None:
        os.sched_setaffinity(0, available[:args.cores])
    hlo_dump = Path(tempfile.mkdtemp(prefix="emofx-hlo-"))
    os.environ["XLA_FLAGS"] = (f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_enable_xprof_traceme=true "
                               f"--xla_dump_to={hlo_dump} --xla_dump_hlo_as_text").strip()
    os.environ[COMPILATION_CACHE_ENV] = "off"
    os.environ["JAX_PLATFORMS"] = "cpu"
    try:
        table, summary = profile_task(args.task, config, hlo_dump, args.calls, args.by)
    except RuntimeError as error:
        parser.exit(1, f"{parser.prog}: {error}\n")
    finally:
        shutil.rmtree(hlo_dump, ignore_errors=True)
    with pd.option_context("display.width", 160):
        shown = table.head(args.top).round({"ms_per_call": 2, "share": 3})
        width = int(shown[args.by].str.len().max())  # names left-aligned, header included
        shown = shown.assign(**{args.by: shown[args.by].str.ljust(width)}).rename(
            columns={args.by: args.by.ljust(width)})
        print(shown.to_string(index=False))
    print(f"\n{args.task}: {summary['wall_ms_per_call']:.1f} ms per call of {summary['images_per_call']} images on "
          f"{summary['cores']} core(s); operations {summary['op_ms_per_call']:.1f} ms, of which "
          + ", ".join(f"{kind} {share:.0%}" for kind, share in sorted(summary["share_by_kind"].items()))
          + "; matmul-bound speed-up " + (f"{bound:.2f}x" if (bound := summary["matmul_bound_speedup"]) else "n/a"))
    if args.json:
        args.json.write_text(json.dumps({**summary, "ops": table.to_dict(orient="records")}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
