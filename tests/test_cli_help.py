"""What `emofx COMMAND --help` shows a newcomer: the command's docstring as written (paragraphs and indented example
command lines on lines of their own, not run into the prose) and every option's default."""

from __future__ import annotations

import argparse
import importlib

import pytest

from emofx.cli import COMMANDS, build_parser

# Flags whose default is "off" and options without a default say nothing by being left out.
SILENT_ACTIONS = (argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction,
                  argparse._SubParsersAction, argparse._VersionAction)


def _command_parser(name: str) -> argparse.ArgumentParser:
    parser = build_parser([name])
    sub = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return sub.choices[name]


def _options(parser: argparse.ArgumentParser, prog: str):
    """(prog, action) for every option of ``parser`` and of its subcommands (`emofx labels import`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _options(child, f"{prog} {name}")
        elif action.option_strings:
            yield prog, action


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_keeps_the_docstrings_lines(name):
    help_text = _command_parser(name).format_help().splitlines()
    doc = importlib.import_module(f"emofx.cli.{name}").__doc__
    missing = [line for line in doc.strip().splitlines() if line.strip() and line.rstrip() not in help_text]
    assert not missing, f"emofx {name} --help reflows its description; lines not shown as written: {missing[:3]}"


def test_example_commands_stand_on_their_own_lines():
    assert "    emofx batch --config experiments/synthetic_cultures.yaml" in _command_parser("batch").format_help()
    assert "\n\nSeveral run directories are scored as one ensemble" in _command_parser("evaluate").format_help()


def test_every_option_with_a_default_names_it():
    unnamed = []
    for name in COMMANDS:
        for prog, action in _options(_command_parser(name), f"emofx {name}"):
            if isinstance(action, SILENT_ACTIONS) or action.default in (None, [], argparse.SUPPRESS):
                continue
            # The word itself: a default's value alone matched by chance (--target's "label", --landmarks' "auto").
            if "default" not in (action.help or "").lower():
                unnamed.append(f"{prog} {action.option_strings[-1]} (default {action.default!r})")
    assert not unnamed, "options whose --help does not say their default:\n" + "\n".join(unnamed)


def test_every_option_and_subcommand_says_what_it_is():
    """`emofx labels import --help` had neither a description nor a word on --out."""
    silent = []
    for name in COMMANDS:
        parser = _command_parser(name)
        silent += [f"{prog} {action.option_strings[-1]}" for prog, action in _options(parser, f"emofx {name}")
                   if not action.help]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                silent += [f"emofx {name} {child} (description)" for child, sub in action.choices.items()
                           if not sub.description]
    assert not silent, f"without help text: {silent}"
