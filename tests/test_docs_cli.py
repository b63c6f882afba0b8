"""Every ``spikeflow train`` / ``eval`` / ``export`` command printed in README.md and
docs/*.md parses with the real ``spikeflow`` parser, and every ``python examples/...``
or ``python benchmarks/...`` command names options its script defines.

The commands are read from fenced blocks (``\\``-continued lines joined, ``$`` prompts
and ``# comments`` dropped) and from inline code spans (also those that wrap a line).
Placeholders stand for a value of the right type: ``<run>``, ``...``, an upper-case
name (``N``, ``K``, ``FEEDBACK``), ``a|b`` alternatives (each one is checked) and
``[--option VALUE]`` brackets. A flag written without its value in prose
(```spikeflow train --neuron```) is checked by its name. So a renamed or removed
option, a value outside an option's choices or of the wrong type, or a stray word
fails here, naming the page and line.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from spikeflow.cli.options import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: A ``spikeflow train|eval|export`` invocation (not the ``spikeflow train:`` of its output).
COMMAND = re.compile(r"(?:^|[\s`(])spikeflow\s+(train|eval|export)(?=\s|$)([^\n]*)")
#: A script of the repository run with python.
SCRIPT = re.compile(r"python3?\s+((?:examples|benchmarks)/\w+\.py)([^\n]*)")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
SPAN = re.compile(r"`([^`]+)`")
PLACEHOLDER = re.compile(r"^(?:<[^>]*>|\.\.\.|[A-Z][A-Z_]*|[α-ω])$")


@dataclass(frozen=True)
class Command:
    """One documented command: its page, line, sub-command (or script) and arguments."""

    page: str
    line: int
    program: str
    text: str


def _commands(pattern: re.Pattern[str]) -> list[Command]:
    """Every match of ``pattern`` in the pages' fenced blocks and inline code spans."""
    found: list[Command] = []
    for page in PAGES:
        text = page.read_text()
        pieces: list[tuple[int, str]] = []
        for fence in FENCE.finditer(text):
            if fence.group(1) == "python":  # its comments are prose
                continue
            first = text.count("\n", 0, fence.start(2)) + 1
            pieces.extend(_fenced_lines(first, fence.group(2)))
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for span in SPAN.finditer(prose):
            pieces.append((prose.count("\n", 0, span.start()) + 1, span.group(1)))
        for line, piece in pieces:
            piece = piece.replace("\n", " ")
            for match in pattern.finditer(piece):
                rest = re.split(r"\s#|\s\|\s|&&|;|\)$", match.group(2))[0]
                found.append(Command(page.name, line, match.group(1), rest))
    return list(dict.fromkeys(found))


def _fenced_lines(first: int, body: str) -> list[tuple[int, str]]:
    """The lines of a fenced block numbered in the page (``first``: its first line),
    each ``\\``-continued command joined into one line numbered by its first, ``$``
    prompts dropped."""
    lines = body.split("\n")
    joined: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        start, parts = i, []
        while i < len(lines) - 1 and lines[i].rstrip().endswith("\\"):
            parts.append(lines[i].rstrip()[:-1])
            i += 1
        parts.append(lines[i])
        joined.append((first + start, re.sub(r"^\s*\$\s+", "", " ".join(parts))))
        i += 1
    return joined


def _tokens(text: str) -> list[str]:
    """The words of ``text`` as a shell splits them, ``[...]`` brackets of optional
    parts and ``...`` dropped, a ``<placeholder>`` one word."""
    text = re.sub(r"\[(--[^\]]*)\]", r"\1", text)
    text = re.sub(r"<[^<>]*>", "<x>", text)  # <class name in lower case>: one word
    try:
        words = shlex.split(text)
    except ValueError:  # an unclosed quote in prose
        words = text.split()
    return [w for w in words if w not in ("...", "…")]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the spikeflow parser has no sub-commands")


def _stand_in(action: argparse.Action) -> str:
    """A valid value for ``action`` where the docs print a placeholder."""
    if action.choices:
        return str(next(iter(action.choices)))
    for value in ("1", "key=1") if action.nargs == "+" else ("1", "x"):
        try:
            if action.type is not None:
                action.type(value)  # type: ignore[misc]
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            continue
        return value
    raise AssertionError(f"no stand-in value for {action.option_strings}")


def _arguments(tokens: list[str], parser: argparse.ArgumentParser) -> list[list[str]]:
    """The argument lists ``tokens`` stands for: placeholders replaced by valid values,
    a value missing after a flag supplied, and one list per ``a|b`` alternative."""
    options = parser._option_string_actions
    out: list[str] = []
    alternatives: list[tuple[int, list[str]]] = []
    action: argparse.Action | None = None
    for token in tokens:
        flag = token.split("=", 1)[0] if token.startswith("--") else token
        if token.startswith("-") and flag in options:
            if action is not None and action.nargs in (None, "+"):
                out.append(_stand_in(action))  # a flag named without its value
            action = options[flag]
            out.append(token)
            if "=" in token or action.nargs == 0 or action.nargs == "?":
                action = None if action.nargs != "?" else action
            continue
        if action is not None and PLACEHOLDER.match(token):
            out.append(_stand_in(action))
        elif action is not None and "|" in token and not token.startswith(("{", "[")):
            alternatives.append((len(out), token.split("|")))
            out.append(token.split("|")[0])
        else:
            out.append(token)
        if action is not None and action.nargs != "+":
            action = None
    if action is not None and action.nargs in (None, "+"):
        out.append(_stand_in(action))
    lists = [out]
    for index, values in alternatives:
        for value in values[1:]:
            other = list(out)
            other[index] = value
            lists.append(other)
    return lists


class _ParseError(Exception):
    pass


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> None:
    """Parse ``args`` with ``parser``, raising :class:`_ParseError` with argparse's
    message instead of exiting."""

    def error(message: str) -> None:
        raise _ParseError(message)

    parser.error = error  # type: ignore[method-assign]
    parser.allow_abbrev = False  # the docs spell each option out
    parser.parse_args([a for a in args if a not in ("-h", "--help")])  # help would exit


TRAIN_EVAL = _commands(COMMAND)
SCRIPTS = _commands(SCRIPT)


def test_the_docs_print_commands():
    """The extraction finds the documented commands (an empty list would pass anything)."""
    subs = {c.program for c in TRAIN_EVAL}
    assert subs == {"train", "eval", "export"}
    assert len(TRAIN_EVAL) > 100 and len(SCRIPTS) > 20
    texts = {(c.page, c.text.strip()) for c in TRAIN_EVAL}
    assert ("training.md", "--resume runs/a") in texts  # a fenced command
    joined = [c for c in TRAIN_EVAL if c.page == "energy.md" and "spikformer" in c.text]
    assert joined and "pools=2" in joined[0].text  # an inline span across lines


@pytest.mark.parametrize("command", TRAIN_EVAL, ids=lambda c: f"{c.page}:{c.line}")
def test_documented_command_parses(command: Command):
    parser = _subparsers()[command.program]
    tokens = _tokens(command.text)
    for args in _arguments(tokens, parser):
        try:
            try:
                _parse(parser, args)
            except _ParseError as exc:  # prose that names one eval option, not the run
                if command.program != "eval" or "RUN --checkpoint is required" not in str(exc):
                    raise
                args = [*args, "--checkpoint", "runs/x"]
                _parse(parser, args)
        except _ParseError as exc:
            pytest.fail(
                f"{command.page}:{command.line}: `spikeflow {command.program} "
                f"{command.text.strip()}` does not parse ({' '.join(args)}): {exc}"
            )


@pytest.mark.parametrize("command", SCRIPTS, ids=lambda c: f"{c.page}:{c.line}")
def test_documented_script_options_exist(command: Command):
    script = ROOT / command.program
    assert script.is_file(), f"{command.page}:{command.line}: no script {command.program}"
    source = script.read_text()
    for token in _tokens(command.text):
        flag = token.split("=", 1)[0]
        if re.fullmatch(r"--[a-z][\w-]*", flag):
            assert f'"{flag}"' in source, (
                f"{command.page}:{command.line}: {command.program} defines no option {flag}"
            )


def _defaults_of(program: str) -> dict[str, object]:
    """The default of each option of ``spikeflow <program>``: ``TrainConfig``'s for
    ``train`` (its options default to what the config says), argparse's for ``eval``
    and ``export``."""
    import dataclasses

    from spikeflow.training import TrainConfig

    if program in ("eval", "export"):
        return {a.dest: a.default for a in _subparsers()[program]._actions}
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        for f in dataclasses.fields(TrainConfig)
    }


@pytest.mark.parametrize("program", ["train", "eval", "export"])
def test_help_states_each_value_default(program: str):
    """``spikeflow <program> --help`` states the default of every option that takes a
    value and has one (the docs' option table is checked against the same defaults by
    readers of --help)."""
    defaults = _defaults_of(program)
    missing = []
    for action in _subparsers()[program]._actions:
        value = defaults.get(action.dest)
        if action.nargs == 0 or value is None or value is False or value in ([], {}):
            continue
        spelled = {str(value), f"{value:g}" if isinstance(value, float) else str(value)}
        help_text = action.help or ""
        if "default" not in help_text or not any(v in help_text for v in spelled):
            missing.append(f"{action.option_strings[0]} (default {value!r}): {help_text!r}")
    assert not missing, "--help does not state these defaults:\n" + "\n".join(missing)


def test_training_option_table_lists_every_train_option():
    """docs/training.md's option table (the one after ``| option | default | meaning |``)
    names each option of ``spikeflow train --help`` (in a row of its own or, with its
    default, in the row of the option it goes with: ``--momentum`` under
    ``--optimizer``), and each row is headed by options the parser has."""
    lines = (ROOT / "docs" / "training.md").read_text().splitlines()
    start = lines.index("| option | default | meaning |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    flag = re.compile(r"--[A-Za-z0-9][a-z0-9-]*")
    named = {f for row in rows for f in flag.findall(row)}
    headed = {f for row in rows for f in flag.findall(row.split("|")[1])}
    train = _subparsers()["train"]
    flags = {
        option
        for action in train._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert not flags - named, f"not in training.md's option table: {sorted(flags - named)}"
    assert not headed - flags, f"rows for options train lacks: {sorted(headed - flags)}"
