"""A neuron streamed in chunks equals one call on the whole sequence: the check the
neuron test modules share (imported, not collected by pytest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from spikeflow import functional as F


def check_chunked_streaming(
    make: Callable[[], Any],
    x: Tensor,
    parameter: str,
    split: tuple[int, ...] = (5, 9, 9),
    after_chunk: Callable[[Any], Any] | None = None,
) -> tuple[Tensor, list[Any]]:
    """Run two neurons from ``make()`` on ``x``: one call streamed, and chunks of
    ``split``. Assert equal spikes, equal final states, and equal gradients of a random
    weighting of the spikes with respect to ``x`` and the neuron's ``parameter``.
    Returns the whole call's spikes and ``after_chunk(neuron)`` after every chunk."""
    g = torch.randn_like(x)
    whole_node, chunk_node = make(), make()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    with F.streaming(whole_node):
        whole = whole_node(x1)
        end = dict(whole_node.state)
    parts, seen = [], []
    with F.streaming(chunk_node):
        for chunk in x2.split(list(split)):
            parts.append(chunk_node(chunk))
            if after_chunk is not None:
                seen.append(after_chunk(chunk_node))
        for name, value in end.items():
            torch.testing.assert_close(chunk_node.state[name], value, atol=1e-14, rtol=0)
    streamed = torch.cat(parts)
    assert torch.equal(streamed, whole)
    grads_whole = torch.autograd.grad((whole * g).sum(), [x1, getattr(whole_node, parameter)])
    grads_chunks = torch.autograd.grad((streamed * g).sum(), [x2, getattr(chunk_node, parameter)])
    for a, b in zip(grads_chunks, grads_whole):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    return whole, seen
