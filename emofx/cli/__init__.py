"""The ``emofx`` command line: one module per command under :mod:`emofx.cli`.

Each command module has a docstring (its --help description, printed with its line breaks), ``add_arguments(parser)``
and ``run(args) -> int``; its one-line help lives in :data:`COMMANDS`. Commands are imported lazily so
``emofx --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import NoReturn, Sequence

from emofx.nets.allocator import restart_with_tuned_malloc

COMMANDS: dict[str, str] = {
    "prepare": "turn a face collection into an emofx dataset (.npz)",
    "merge": "combine several datasets into one",
    "info": "summarise a dataset, a run or a folder of runs",
    "train": "train the paper's CNN on a dataset",
    "evaluate": "evaluate a trained run on any dataset (shared classes)",
    "quickstart": "the main job on synthetic cultures: train, evaluate, tables",
    "saliency": "saliency maps of a trained run (guided backprop, ...)",
    "modify": "modify emotions by gradient ascent on the image",
    "compare": "compare two cultures' runs: accuracy, features, representations",
    "labels": "crowd labels: import answers, aggregate them (mv, Dawid-Skene, ...)",
    "collect": "clean a folder of web images: dedup, faces, filters, manifest",
    "batch": "run a notebook for every parameter combination with papermill",
    "figures": "regenerate the paper's figures and tables from recorded runs",
    "report": "one report (Markdown, HTML) on an experiment's recorded runs",
}

# Environment variables the commands read (the modules named own them; spelled out here so that
# `emofx --help` imports nothing heavy).
ENVIRONMENT: dict[str, str] = {
    "EMOFX_DATA": "folder of the real datasets behind the notebooks' named sources (kdef, fer2013, ...; default "
                  "../shared/data beside the project); prepare takes paths",
    "EMOFX_CACHE": "folder of prepared faces (default ~/.cache/emofx)",
    "EMOFX_PRECISION": "matmul/convolution precision: default, high or highest (emofx.nets.precision)",
    "EMOFX_COMPILATION_CACHE": "folder of compiled programs, or off (emofx.nets.compilation)",
    "EMOFX_TUNED_MALLOC": "0 leaves the C allocator as it is (emofx.nets.allocator)",
    "EMOFX_PROGRESS": "progress bars: auto, text or off (emofx.data.progress)",
}

# Errors that mean "the user's input was wrong": reported in one line, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, KeyError, OSError)

# XLA's failure to allocate memory (a JaxRuntimeError, on a CPU or a GPU) starts so; reported in one line, exit
# status 1, with what to ask for less of.
OUT_OF_MEMORY = "RESOURCE_EXHAUSTED:"
LESS_MEMORY = {
    "train": "a smaller --batch-size, or fewer --seeds or --trials side by side (or --side-by-side no)",
    "saliency": "a smaller --n",
    "modify": "a smaller --n",
}


def _command_module(name: str):
    return importlib.import_module(f"emofx.cli.{name}")


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line, as every other error of emofx (argparse prints the whole
    usage block first); the subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The `emofx` parser. Only the command named in ``argv`` gets its options (and imports its module),
    so that `emofx --help` stays fast."""
    width = max(map(len, ENVIRONMENT))
    parser = _Parser(
        prog="emofx",
        description="Facial emotion representations across cultures (Yousefi et al.), in JAX.",
        epilog="environment variables (every command):\n" + "\n".join(
            f"  {name:<{width}}  {meaning}" for name, meaning in ENVIRONMENT.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name in COMMANDS:
        if wanted == name:
            module = _command_module(name)
            # The docstring's own layout is kept (paragraphs, indented examples): argparse would run them together.
            cmd = sub.add_parser(name, help=COMMANDS[name], description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
            module.add_arguments(cmd)
            cmd.set_defaults(_run=module.run)
        else:
            sub.add_parser(name, help=COMMANDS[name], add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names; returns the exit status (130 on Ctrl-C, one line on running out of memory)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)  # imports the command's modules: seconds in which Ctrl-C may come
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("emofx: interrupted", file=sys.stderr)
        return 130
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(args.command, warnings.showwarning)
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"emofx {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except RuntimeError as err:
        if not str(err).startswith(OUT_OF_MEMORY):
            raise
        words = _with_gib(str(err).splitlines()[0][len(OUT_OF_MEMORY):].strip().rstrip("."))
        less = LESS_MEMORY.get(args.command, "less data at once, or a machine with more memory")
        print(f"emofx {args.command}: error: out of memory ({words}); ask for {less}", file=sys.stderr)
        return 1
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, OSError) and err.strerror and err.filename:  # the system's own words, path first
            message = f"{err.filename}: {err.strerror[:1].lower()}{err.strerror[1:]}" + (
                f" (moving it to {err.filename2})" if err.filename2 else "")
        print(f"emofx {args.command}: error: {message}", file=sys.stderr)
        return 2


def _reader_gone() -> int:
    """The program reading the output stopped early (``emofx evaluate RUN | head``): end quietly, as other command-line
    tools do, with the status of a process that SIGPIPE ended; stdout goes nowhere so that Python's final flush of it
    does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (e.g. captured by a test)
        pass
    return 141  # 128 + SIGPIPE (13)


def _with_gib(words: str) -> str:
    """XLA's ``... allocating N bytes`` with the size in GiB beside it."""
    return re.sub(r"(\d+) bytes", lambda m: f"{m.group(0)} = {int(m.group(1)) / 2 ** 30:.1f} GiB", words)


def _one_line_warnings(command: str, show_otherwise):
    """``warnings.showwarning`` for a command: emofx's own warnings (written for the user) as one line
    ``emofx COMMAND: warning: ...``, without the source line, each once (a record several steps read warns once);
    other libraries' warnings as ``show_otherwise`` does."""
    package = os.path.join(Path(__file__).resolve().parent.parent, "")  # emofx's folder, ending in a separator
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if not str(filename).startswith(package):
            return show_otherwise(message, category, filename, lineno, file, line)
        if str(message) not in shown:
            shown.add(str(message))
            print(f"emofx {command}: warning: {message}", file=file or sys.stderr)

    return show


def console_main() -> int:
    """The ``emofx`` command: :func:`main` in a process whose C allocator spares XLA's CPU calls most of
    their page faults (:mod:`emofx.nets.allocator`; ``EMOFX_TUNED_MALLOC=0`` leaves it as it is)."""
    restart_with_tuned_malloc()
    return main()


if __name__ == "__main__":
    sys.exit(console_main())
