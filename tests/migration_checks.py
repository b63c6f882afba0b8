"""Helpers of the docs/migration.md tests (tests/test_migration.py for SpikingJelly and
Norse, tests/test_migration_snntorch.py for snnTorch): the page's code blocks, a peer's
per-step loop, and spikes and gradients compared with a peer's."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

DOC = Path(__file__).resolve().parents[1] / "docs" / "migration.md"
TEXT = DOC.read_text()
SNN_RTOL = dict(rtol=1e-5, atol=1e-6)  # gradients through snnTorch's float32 spikes
F64_RTOL = dict(rtol=1e-10, atol=1e-12)


def block(name: str) -> str:
    """The python block after the ``<!-- migration: name ... -->`` marker."""
    match = re.search(rf"<!-- migration: {name}\b.*?-->\s*```python\n(.*?)```", TEXT, re.S)
    assert match, f"docs/migration.md has no block {name!r}"
    return match.group(1)


def run(code: str, name: str, **namespace: object) -> dict:
    """Execute a block of the page in ``namespace``; return the namespace."""
    exec(compile(code, f"docs/migration.md ({name})", "exec"), namespace)
    return namespace


def grads(out: Tensor, inputs: Sequence[Tensor], g: Tensor) -> tuple[Tensor, ...]:
    """The gradients of ``(out * g).sum()`` with respect to ``inputs``."""
    return torch.autograd.grad((out * g).sum(), inputs)


def assert_same_spikes(a: Tensor, b: Tensor, low: float = 0.02) -> None:
    """Identical spikes, and enough (and not too many) of them for that to mean something."""
    assert torch.equal(a.double(), b.double()), "spikes differ"
    assert low < b.double().mean().item() < 0.98, "too few or too many spikes to compare"


def step_loop(cell, x: Tensor, n_states: int = 1, recurrent: bool = False) -> Tensor:
    """A peer's per-step loop (snnTorch's neurons, Norse's cells) over ``x`` ``[T, ...]``:
    the stacked spikes. The states start as the cell makes them (snnTorch's RLeaky also
    takes its last spikes back: ``spk, mem = rleaky(x_t, spk, mem)``)."""
    out, states = [], None
    for x_t in x:
        result = cell(x_t) if states is None else cell(x_t, *states)
        out.append(result[0])
        states = result[:2] if recurrent else result[1 : 1 + n_states]
    return torch.stack(out)


def sequence(scale: float = 1.5, shape: tuple[int, ...] = (16, 4, 30)) -> tuple[Tensor, Tensor]:
    """An input ``[T, B, N]`` in ``[-0.2, scale - 0.2)`` and an upstream gradient."""
    return torch.rand(*shape) * scale - 0.2, torch.randn(*shape)
