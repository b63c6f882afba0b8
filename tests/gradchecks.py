"""The float64 gradcheck the neuron and kernel test modules share, made affordable for
Triton's CPU interpreter (imported, not collected by pytest)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Outputs = Tensor | Sequence[Tensor]


def _as_tuple(out: Outputs) -> tuple[Tensor, ...]:
    return (out,) if isinstance(out, Tensor) else tuple(out)


def gradcheck_backend(
    backend: str,
    fn: Callable[..., Outputs],
    inputs: tuple[Tensor, ...],
    reference: Callable[..., Outputs],
    *,
    atol: float = 1e-12,
    rtol: float = 1e-10,
) -> None:
    """Assert that ``fn`` (a neuron run through kernel backend ``backend``) has the
    float64 derivatives of its forward at ``inputs``.

    Everywhere but Triton's CPU interpreter this is ``torch.autograd.gradcheck``, which
    builds the whole Jacobian: two backward calls per output element. The interpreter
    runs a kernel's time loop in Python (tens of milliseconds a call for a few steps),
    which made that ~10 s per test. There the gradcheck runs in PyTorch's
    fast mode instead (the analytical Jacobian of every input-output pair projected on
    random vectors, against finite differences of the Triton forward), and the full
    gradients come from a comparison: the outputs and the vector-Jacobian products for
    two random cotangents, which hold every input element's gradient, must equal those of
    ``reference`` (the same function through the reference loop, backend ``"torch"``,
    which the full gradcheck covers on the other backends) to ``atol``/``rtol``. Where
    the full gradcheck checks each Jacobian element to a relative 1e-3, this checks each
    input's gradient to ``rtol``: a 1e-4 relative error in the threshold's gradient
    fails it, which the full gradcheck let through."""
    from spikeflow.kernels.triton_backend import interpreting

    if backend != "triton" or not interpreting():
        assert torch.autograd.gradcheck(fn, inputs)
        return
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)
    got, want = _as_tuple(fn(*inputs)), _as_tuple(reference(*inputs))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        cotangents = [torch.randn(o.shape, dtype=o.dtype, generator=generator).to(o.device)
                      for o in got]  # fmt: skip
        grads = torch.autograd.grad(got, inputs, cotangents, retain_graph=True)
        expected = torch.autograd.grad(want, inputs, cotangents, retain_graph=True)
        for name, (a, b) in enumerate(zip(grads, expected)):
            torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=f"input {name}")
