"""Every ```python block of docs/*.md runs as printed.

Each page's blocks run in order in one namespace (as a reader who copies them one after
the other), from a temporary working directory, with ``../shared/data`` pointing at the
real sample data (the page is skipped from that block on when it is absent, like the
other data tests). ``docs/migration.md`` is left out: its tables run in
``tests/test_migration*.py``.

A block that cannot run in CI (a GPU, a download, a peer that is not installed, minutes
of training) carries a marker on the line right before its fence::

    <!-- docs-test: skip (needs a CUDA GPU) -->

and is reported as a skip with that reason; a marker without a reason, or one that is
not right before a ```python fence, is an error.

Where a line states its value in a trailing comment, the value is checked when that is
simple: a bare expression or a one-name assignment whose comment starts with

* a shape, ``# (16, 3, 32, 32)``, ``# [4, 16, 392]`` or ``# torch.Size([4, 16, 392])``:
  the shape of a tensor or array, the items of a tuple or list;
* ``# tensor([...])``: the values, to the printed decimals;
* numpy's print of integers, ``# [502 502 510]``, or a nested list,
  ``# [[0, 1804], [1755, 3317]]``: the values;
* a number: a scalar result, to the printed decimals; ``True`` or ``False``.

A value of another type than the comment's is not checked; comments that start
otherwise (``# [T, B, classes]``, prose) are read, not checked.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA
from spikeflow.surrogate import SURROGATES

DOCS = Path(__file__).resolve().parents[1] / "docs"
TESTED_ELSEWHERE = {"migration.md"}  # tests/test_migration*.py run its tables

# Pages that other changes were editing when this test was written, whose blocks fail
# or are slow: "xfail" (strict: once the page runs, the XPASS says to drop the entry)
# or "skip" (too slow to run until the page is changed). Fix the page, then remove it.
PENDING: dict[str, tuple[str, str]] = {}

# Peers and optional extras a block may import: absent, the page is skipped from there.
OPTIONAL = {"snntorch", "norse", "spikingjelly", "tonic", "lava", "triton", "nir", "nirtorch"}

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*docs-test:(.*?)-->", re.S)
SKIP = re.compile(r"\s*skip\s*\((.*)\)\s*", re.S)
DATA = "../shared/data"


@dataclass(frozen=True)
class Block:
    """One ```python block: its page, the line of its fence, its code and the reason
    of its skip marker (None when it runs)."""

    page: str
    line: int
    code: str
    skip: str | None


def _balanced(text: str) -> bool:
    """Whether the parentheses of ``text`` pair up (a reason in one pair of them)."""
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def page_blocks(page: str) -> list[Block]:
    """The ```python blocks of ``docs/<page>`` in order, with their skip markers.

    Raises ValueError for a ``docs-test`` marker that is not ``skip (reason)`` with a
    reason, or that is not on the line right before a ```python fence."""
    text = (DOCS / page).read_text()
    fences = list(FENCE.finditer(text))
    reasons: dict[int, str] = {}
    for marker in MARKER.finditer(text):
        line = text.count("\n", 0, marker.start()) + 1
        skip = SKIP.fullmatch(marker.group(1))
        if not skip or not skip.group(1).strip() or not _balanced(skip.group(1)):
            raise ValueError(
                f"docs/{page}:{line}: a docs-test marker must read "
                f"'<!-- docs-test: skip (the reason) -->'; got {marker.group(0)!r}"
            )
        after = next((f for f in fences if f.start() >= marker.end()), None)
        if after is None or text[marker.end() : after.start()].strip():
            raise ValueError(
                f"docs/{page}:{line}: {marker.group(0)!r} is not on the line right "
                "before a ```python fence"
            )
        reasons[after.start()] = " ".join(skip.group(1).split())
    blocks = []
    for match in fences:
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(page, line, match.group(1), reasons.get(match.start())))
    return blocks


def pages() -> list[str]:
    """The docs pages with ```python blocks, but those tested elsewhere."""
    return sorted(
        p.name
        for p in DOCS.glob("*.md")
        if p.name not in TESTED_ELSEWHERE and FENCE.search(p.read_text())
    )


# -- the values stated in comments ---------------------------------------------------

INTS = r"-?\d+(?:\s*,\s*-?\d+)*"
SHAPE = re.compile(rf"(?:torch\.Size\(\[({INTS})?\]\)|\(({INTS}),?\)|\[({INTS})\])(?![\w.(])")
TENSOR = re.compile(r"tensor\((\[[-+\d.,\s\[\]e]*\])\)")
NUMBER = re.compile(r"(-?\d+(?:\.(\d+))?)(?![\d.\w(\[x])")
BOOL = re.compile(r"(True|False)\b")
PRINTED = re.compile(r"\[(-?\d+(?:\s+-?\d+)+)\]")  # numpy's print: [502 502 510]
NESTED = re.compile(r"\[\[[-\d,\s\[\]]*\]\]")  # a nested list: [[0, 1804], [1755, 3317]]


def stated(comment: str) -> tuple[str, Any] | None:
    """The value a trailing comment states, as (kind, value), or None when it states
    none that is simple to check."""
    text = comment.lstrip("#").strip()
    if match := SHAPE.match(text):
        ints = next((g for g in match.groups() if g is not None), "")
        return "shape", tuple(int(v) for v in ints.split(",") if v.strip())
    if match := PRINTED.match(text):
        return "values", [int(v) for v in match.group(1).split()]
    if match := NESTED.match(text):
        return "values", ast.literal_eval(match.group(0))
    if match := TENSOR.match(text):
        values = ast.literal_eval(match.group(1))
        decimals = max((len(d) for d in re.findall(r"\.(\d+)", match.group(1))), default=0)
        return "tensor", (values, decimals)
    if match := BOOL.match(text):
        return "bool", match.group(1) == "True"
    if match := NUMBER.match(text):
        return "number", (float(match.group(1)), len(match.group(2) or ""))
    return None


def check_value(where: str, value: Any, comment: str) -> None:
    """Assert that ``value`` is what ``comment`` (at ``where``) states (the checks are
    described in the module's docstring); a value of another type is not checked."""
    claim = stated(comment)
    assert claim is not None, f"{where}: states no value"
    kind, expected = claim
    array = isinstance(value, torch.Tensor | np.ndarray)
    size = value.numel() if isinstance(value, torch.Tensor) else getattr(value, "size", 1)
    if kind == "shape":
        if array:
            assert tuple(value.shape) == expected, f"{where}: shape {tuple(value.shape)}"
        elif isinstance(value, tuple | list | torch.Size):
            assert tuple(value) == expected, f"{where}: {value!r}"
    elif kind == "tensor":
        values, decimals = expected
        if array:
            got = torch.as_tensor(np.asarray(value), dtype=torch.float64)
            want = torch.tensor(values, dtype=torch.float64)
            assert got.shape == want.shape, f"{where}: shape {tuple(got.shape)}"
            tol = 0.5 * 10.0**-decimals + 1e-9
            assert torch.allclose(got, want, rtol=0, atol=tol), f"{where}: {value}"
    elif kind == "values":
        if array or isinstance(value, tuple | list):
            assert np.asarray(value).tolist() == expected, f"{where}: {value!r}"
    elif kind == "bool":
        if isinstance(value, bool | torch.Tensor | np.bool_) and size == 1:
            assert bool(value) == expected, f"{where}: {value!r}"
    elif kind == "number":
        number, decimals = expected
        scalar = isinstance(value, int | float) and not isinstance(value, bool)
        if scalar or (array and size == 1):
            got = float(value.item() if array else value)
            tol = 0.5 * 10.0**-decimals + 1e-9 * abs(number)
            assert abs(got - number) <= tol, f"{where}: {got}"


def instrument(code: str, filename: str, first_line: int = 1) -> Any:
    """Compile ``code`` so that each top-level bare expression or one-name assignment
    whose line ends in a comment that states a value (``stated``) is checked against it
    by ``__docs_check__`` in the namespace. ``code`` starts on line ``first_line`` of
    ``filename``, which errors and tracebacks name."""
    code = "\n" * (first_line - 1) + code
    tree = ast.parse(code, filename)
    lines = code.splitlines()
    body = []
    for node in tree.body:
        body.append(node)
        end = node.end_lineno
        comment = None
        if end is not None and isinstance(node, ast.Expr | ast.Assign):
            tail = lines[end - 1][node.end_col_offset :]
            if tail.strip().startswith("#"):
                comment = tail.strip()
            elif isinstance(node, ast.Expr) and end < len(lines):
                if lines[end].strip().startswith("#"):  # the value on the next line
                    comment, end = lines[end].strip(), end + 1
        if comment is None or stated(comment) is None:
            continue
        if isinstance(node, ast.Expr):
            target: ast.expr = node.value
            body.pop()
        elif len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = ast.Name(node.targets[0].id, ast.Load())
        else:
            continue
        where = f"{filename}:{end}: {comment}"
        call = ast.Call(
            ast.Name("__docs_check__", ast.Load()),
            [ast.Constant(where), target, ast.Constant(comment)],
            [],
        )
        body.append(ast.copy_location(ast.Expr(call), node))
    tree.body = body
    return compile(ast.fix_missing_locations(tree), filename, "exec")


# -- the tests -----------------------------------------------------------------------


def test_pending_pages_exist():
    assert set(PENDING) <= set(pages())
    assert {kind for kind, _ in PENDING.values()} <= {"skip", "xfail"}


def test_markers_are_well_formed_and_the_skips_few():
    skipped = [b for page in pages() for b in page_blocks(page) if b.skip]
    total = sum(len(page_blocks(page)) for page in pages())
    assert total > 100
    assert len(skipped) <= total // 10, [f"{b.page}:{b.line}" for b in skipped]


@pytest.mark.parametrize("text, message", [
    ("<!-- docs-test: skip () -->\n```python\nx = 1\n```\n", "must read"),
    ("<!-- docs-test: skip -->\n```python\nx = 1\n```\n", "must read"),
    ("<!-- docs-test: run -->\n```python\nx = 1\n```\n", "must read"),
    ("<!-- docs-test: skip () (slow) -->\n```python\nx = 1\n```\n", "must read"),
    ("<!-- docs-test: skip (slow) -->\n\nsome prose\n```python\nx = 1\n```\n", "right before"),
])  # fmt: skip
def test_a_bad_marker_is_an_error(tmp_path, monkeypatch, text, message):
    monkeypatch.setattr(f"{__name__}.DOCS", tmp_path)
    (tmp_path / "page.md").write_text(text)
    with pytest.raises(ValueError, match=message):
        page_blocks("page.md")


def test_a_marker_skips_its_block_only(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.DOCS", tmp_path)
    text = "<!-- docs-test: skip (needs a\n CUDA GPU) -->\n```python\nx = 1\n```\n\n"
    text += "```python\ny = 2\n```\n"
    (tmp_path / "page.md").write_text(text)
    assert [(b.line, b.skip) for b in page_blocks("page.md")] == [
        (3, "needs a CUDA GPU"),
        (7, None),
    ]


@pytest.mark.parametrize("code, error", [
    ("x = torch.zeros(2, 3)  # (2, 4)", "shape"),
    ("torch.zeros(2, 3)  # torch.Size([3, 2])", "shape"),
    ("torch.zeros(2, 3)  # [2, 3, 1]: prose", "shape"),
    ("len([1, 2]), 3  # (2, 4)", r"\(2, 3\)"),
    ("torch.tensor([0.5, 1.0])  # tensor([0.5000, 1.0001])", "tensor"),
    ("torch.tensor(0.70716)  # 0.7071 = prose", "0.7071"),
    ("sum([48, 47])  # 96: prose", "95"),
    ("np.array([502, 510])  # [502 511]", "502"),
    ("np.array([[0, 5], [4, 9]])  # [[0, 5], [4, 8]]", "4"),
    ("torch.tensor([1, 2])\n# tensor([1, 3])", "tensor"),
    ("torch.equal(torch.zeros(1), torch.ones(1))  # True: prose", "False"),
])  # fmt: skip
def test_a_wrong_stated_value_fails(code, error):
    namespace = {"np": np, "torch": torch, "__docs_check__": check_value}
    with pytest.raises(AssertionError, match=error) as excinfo:
        exec(instrument(code, "page.md", 3), namespace)
    assert re.match(r"page\.md:[34]: #", excinfo.value.args[0])


def test_right_or_unstated_values_pass():
    code = """
x = torch.zeros(2, 3)  # (2, 3) float32
torch.zeros(2, 3).shape  # torch.Size([2, 3])
torch.tensor([0.5, 1.0])  # tensor([0.5000, 1.0000])
torch.tensor(0.70705)  # 0.7071 = prose
len([1, 2]), 3  # (2, 3)
y = [x, x]  # [T, B, classes], 2 items
sum([48, 48])  # 96: prose
np.array([502, 510])  # [502 510]
np.array([[0, 5], [4, 9]])  # [[0, 5], [4, 9]]
torch.tensor([1, 2])
# tensor([1, 2]), on the next line
torch.equal(x, x)  # True: prose
"""
    namespace = {"np": np, "torch": torch, "__docs_check__": check_value}
    exec(instrument(code, "page.md", 3), namespace)
    assert namespace["y"][0] is namespace["x"]


def _marked(page: str) -> Any:
    if page not in PENDING:
        return page
    kind, reason = PENDING[page]
    mark = pytest.mark.skip if kind == "skip" else pytest.mark.xfail(strict=True, raises=Exception)
    return pytest.param(page, marks=mark(reason=f"docs/{page}: {reason}"))


@pytest.mark.parametrize("page", [_marked(p) for p in pages()])
def test_page_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, Any] = {"__name__": "__main__", "__docs_check__": check_value}
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    surrogates = dict(SURROGATES)  # docs/surrogates.md registers one
    try:
        for block in page_blocks(page):
            if block.skip:
                continue  # reported by test_marked_block_is_skipped
            code = block.code
            if DATA in code:
                if not SHARED_DATA.exists():
                    pytest.skip(f"docs/{page}:{block.line} reads {DATA}, absent at {SHARED_DATA}")
                code = code.replace(DATA, str(SHARED_DATA))
            try:
                exec(instrument(code, f"docs/{page}", block.line + 1), namespace)
            except ModuleNotFoundError as exc:
                if exc.name is None or exc.name.split(".")[0] not in OPTIONAL:
                    raise
                pytest.skip(f"docs/{page}:{block.line} needs {exc.name}, not installed")
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
        torch.set_grad_enabled(True)
        SURROGATES.clear()
        SURROGATES.update(surrogates)
        if "matplotlib.pyplot" in sys.modules:  # the figures the blocks drew
            sys.modules["matplotlib.pyplot"].close("all")


def _marked_blocks() -> list[Block]:
    """The blocks marked skip, of the pages whose markers are well formed (a bad marker
    fails its page's test and test_markers_are_well_formed_and_the_skips_few instead of
    the collection of the file)."""
    marked = []
    for page in pages():
        try:
            marked += [b for b in page_blocks(page) if b.skip]
        except ValueError:
            pass
    return marked


MARKED = _marked_blocks()


@pytest.mark.parametrize("block", MARKED, ids=[f"{b.page}:{b.line}" for b in MARKED])
def test_marked_block_is_skipped(block):
    pytest.skip(f"docs/{block.page}:{block.line}: {block.skip}")
