"""A layer that prints the shape of what passes through it (SpikingJelly's
``PrintShapeModule``), for finding where a network's shapes go wrong."""

from __future__ import annotations

import sys

from torch import Tensor, nn

__all__ = ["PrintShapeModule"]


class PrintShapeModule(nn.Module):
    """Print ``"{ext_str} shape=(...)"`` to standard error and return the input as it is.

    Stateless and shape-agnostic (any step mode). Printing is a side effect: under
    ``torch.compile`` it splits the graph, so take it out once the shapes are right.

    Args:
        ext_str: the label printed before the shape (default ``"PrintShapeModule"``).

    Example::

        >>> net = nn.Sequential(Conv2d(2, 8, 3), PrintShapeModule("after conv"), Flatten())
        >>> net(torch.rand(4, 16, 2, 34, 34))     # prints: after conv shape=(4, 16, 8, 32, 32)
    """

    def __init__(self, ext_str: str = "PrintShapeModule") -> None:
        super().__init__()
        self.ext_str = str(ext_str)

    def forward(self, x: Tensor) -> Tensor:
        """``x``, after printing its shape."""
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        print(f"{self.ext_str} shape={shape}", file=sys.stderr)
        return x

    def extra_repr(self) -> str:
        return f"ext_str={self.ext_str!r}"
