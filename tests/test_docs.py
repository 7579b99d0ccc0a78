"""The command lines the docs show are command lines emofx accepts: every `emofx ...` in the READMEs' code blocks and
inline code, and in the experiment files' headers, parses with the options the commands have today."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from emofx.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted({*REPO.glob("*.md"), *REPO.glob("*/README.md"), *REPO.glob("benchmarks/**/README.md"),
               *REPO.glob("experiments/*.yaml")})
COMMAND = re.compile(r"(?:^|[\s(`])(?:\.venv/bin/)?emofx ((?:%s)\b[^`#;|&)]*)" % "|".join(COMMANDS))


def _snippets(text: str) -> list[str]:
    """Inline code (over line breaks), the lines of fenced blocks and of a YAML file's comments, continuations
    joined."""
    found = [m.group(1).replace("\n", " ") for m in re.finditer(r"`([^`]+)`", re.sub(r"```.*?```", "", text,
                                                                                      flags=re.S))]
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        found += block.replace("\\\n", " ").splitlines()
    comments = "\n".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    return found + comments.replace("\\\n", " ").splitlines()


def _command_lines(path: Path) -> dict[str, bool]:
    """Each command line, and whether it is whole: a command followed by an argument (``emofx train --precision
    highest`` or ``emofx evaluate --against`` names an option: it may leave out what the command or the option
    requires, but not misspell the option or give it a value it refuses); a bare command name and placeholders
    (``...``, ``[--out DIR]``) left out."""
    lines = {}
    for snippet in _snippets(path.read_text()):
        for match in COMMAND.finditer(snippet):
            words = match.group(1).split()
            rest = words[2:] if words[0] == "labels" else words[1:]
            if rest and not any("..." in word or word.startswith("[") for word in words):
                lines[match.group(1).strip()] = not (rest[0].startswith("-") and len(rest) < 3)
    return lines


def test_the_docs_show_many_command_lines():
    assert len(DOCS) >= 10 and sum(len(_command_lines(path)) for path in DOCS) >= 80


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_line_in_the_docs_parses(path):
    wrong = []
    for line, whole in _command_lines(path).items():
        # shell variables ($k) and one-letter placeholders (N) stand for numbers
        argv = ["1" if re.fullmatch(r"\$\{?\w+\}?|[A-Z]", word) else word for word in shlex.split(line)]
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
                build_parser(argv).parse_args(argv)
        except SystemExit as exit_:
            if exit_.code and (whole or re.search(r"unrecognized arguments|invalid", errors.getvalue())):
                wrong.append(f"emofx {line}\n    {errors.getvalue().strip()}")
    assert not wrong, f"{path.relative_to(REPO)}: command lines emofx refuses:\n" + "\n".join(wrong)
