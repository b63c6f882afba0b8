"""``--model-kwargs``-style ``KEY=VALUE`` options of the ``spikeflow`` command, read as
TOML values with Python's ``True``/``False``/``None``."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from typing import Any

from spikeflow.errors import ConfigurationError

__all__ = ["parse_kwargs"]


def parse_kwargs(items: Sequence[str], option: str) -> dict[str, Any]:
    """``["tau=2.0", "detach_reset=False", "v_reset=None", "surrogate_function=atan"]`` ->
    a dict.

    Each value is read as a TOML value (numbers, ``true``/``false``, ``"strings"``,
    ``[lists]``, ``{inline = "tables"}``); Python's ``True``, ``False`` and ``None`` (and
    JSON's ``null``) are those constants, as the whole value and as a value inside a list
    or table (``{name = "atan", spiking = False}``, ``[32, None]``; never inside a quoted
    string, nor as a key); a bare name such as ``atan`` or ``torch.float16`` is taken as a
    string, as is a path beginning ``/``, ``./`` or ``../`` (``pretrained=/data/r18.pth``),
    and anything else (``2.O``) is an error. A single item that is a JSON object is also
    accepted.
    """
    from spikeflow.training.config import tomllib

    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            value = json.loads(items[0])
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{option}: not a JSON object: {exc}") from exc
        if not isinstance(value, dict):
            raise ConfigurationError(f"{option}: expected a JSON object, got {items[0]!r}")
        return value
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"{option}: expected KEY=VALUE, got {item!r}")
        text = text.strip()
        if text in _CONSTANTS:
            out[key.strip()] = _CONSTANTS[text]
            continue
        try:
            out[key.strip()] = _toml_value(text)
        except tomllib.TOMLDecodeError as exc:
            if not (_BARE_NAME.fullmatch(text) or _BARE_PATH.fullmatch(text)):
                raise ConfigurationError(
                    f"{option}: {item!r} is neither a TOML value (number, true/false, "
                    f'"string", [list], {{table}}; Python\'s True, False and None are '
                    f"read in lists and tables too) nor a bare name or path: "
                    f"{_located(str(exc), text)}"
                ) from exc
            out[key.strip()] = text
    return out


_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
#: A file path written bare (``pretrained=/data/resnet18.pth``, ``./w.pth``, ``../w.pth``).
_BARE_PATH = re.compile(r"(?:\.\.?)?/[A-Za-z0-9_.\-/+~]*")
#: The constants as Python (and JSON, for null) spell them; TOML's true/false are TOML
#: values. Without this, ``batch_norm=False`` would be the (truthy) string 'False'.
_CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None, "null": None}
#: A run of TOML bare-word characters (keys, numbers, dates, true/false, inf, nan).
_WORD = re.compile(r"[A-Za-z0-9_+\-.:]+")


def _toml_value(text: str) -> Any:
    """The TOML value ``text``, with Python's True/False/None (and null) read as the
    constants where a value goes inside a list or an inline table.

    Raises:
        tomllib.TOMLDecodeError: ``text`` is no TOML value, even so.
    """
    from spikeflow.training.config import tomllib

    # None stands in TOML (which has no null) as a string no input holds: it is made anew
    # for each value, and a command line cannot hold its NUL character.
    mark = _none_mark(secrets.token_hex(8))
    value = tomllib.loads(_PREFIX + _python_constants_as_toml(text, mark)[0])["v"]
    return _restore_none(value, mark)


_PREFIX = "v = "


def _none_mark(token: str) -> str:
    """The string that stands for None in the TOML the parser sees (``token``: 16 hex
    digits, new for each value; :func:`_located` needs only its length)."""
    return f"\x00spikeflow-none-{token}"


_POSITION = re.compile(r"\(at line 1, column (\d+)\)")


def _located(message: str, text: str) -> str:
    """The TOML parser's ``message`` about ``text`` with its first-line column counted
    in ``text`` as typed: the parser saw it after :data:`_PREFIX` and with Python's
    constants rewritten (None as a long marker string)."""
    match = _POSITION.search(message)
    if match is None:
        return message
    _, rewrites = _python_constants_as_toml(text, _none_mark("0" * 16))  # its length only
    at, shift = int(match.group(1)) - 1 - len(_PREFIX), 0
    for start, old_len, new_len in rewrites:  # in order: map back through each rewrite
        if at < start + shift:
            break
        if at < start + shift + new_len:  # inside a rewritten word: at its start
            at = start + shift
            break
        shift += new_len - old_len
    return f"{message[: match.start()]}(at column {max(at - shift, 0) + 1} of the value)"


def _python_constants_as_toml(text: str, mark: str) -> tuple[str, list[tuple[int, int, int]]]:
    """``text`` with each bare ``True``/``False``/``None``/``null`` that stands where a
    value goes (not inside a quoted string, not before ``=`` or ``.`` as a key) written
    as TOML: ``true``, ``false``, and None as the string ``mark``; and each rewrite's
    (start in ``text``, old length, new length). Comments (``#`` outside strings) are
    kept as they are."""
    out: list[str] = []
    rewrites: list[tuple[int, int, int]] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in "\"'":
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
        elif char == "#":  # a comment runs to the end of the line
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(text[i:end])
            i = end
        else:
            match = _WORD.match(text, i)
            if match is None:
                out.append(char)
                i += 1
                continue
            word, i = match.group(), match.end()
            rest = text[i:].lstrip(" \t")
            if word in _CONSTANTS and not rest.startswith(("=", ".")):
                value = _CONSTANTS[word]
                new = json.dumps(mark) if value is None else str(value).lower()
                rewrites.append((match.start(), len(word), len(new)))
                word = new
            out.append(word)
    return "".join(out), rewrites


def _string_end(text: str, start: int) -> int:
    """The index just past the TOML string starting at ``start`` (basic ``"..."`` with
    escapes, literal ``'...'``, or either tripled); the end of ``text`` if unclosed (the
    TOML parser then names the error)."""
    quote = text[start]
    delimiter = quote * 3 if text.startswith(quote * 3, start) else quote
    i = start + len(delimiter)
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text.startswith(delimiter, i):
            end = i + len(delimiter)
            while delimiter != quote and text.startswith(quote, end) and end - i < 5:
                end += 1  # a multi-line string may end with up to two more quotes
            return end
        i += 1
    return len(text)


def _restore_none(value: Any, mark: str) -> Any:
    """``value`` with every string ``mark``, in lists and tables too, None."""
    if isinstance(value, str):
        return None if value == mark else value
    if isinstance(value, list):
        return [_restore_none(v, mark) for v in value]
    if isinstance(value, dict):
        return {k: _restore_none(v, mark) for k, v in value.items()}
    return value
