"""Matrix products of two activations on NeuroMC (an attention's ``Q Kᵀ`` and ``· V``).

A module that multiplies two activations in its own ``forward`` (Spikformer's
``Q (Kᵀ V)``, Max-Former's) runs ``torch.matmul`` (``@``), ``mm`` or ``bmm``.
SpikingJelly 2.0's NeuroMC estimate prices such a product from the ``aten.mm``/
``aten.bmm`` it traces as a layer's product whose second operand plays the weights;
spikeflow prices it the same way, with the same counts:

* ``out = A @ B``, ``A`` ``[..., M, K]``, ``B`` ``[..., K, N]`` (leading dims
  broadcast, ``G`` matrices in all): ``G·M`` rows of ``K`` inputs and ``N`` outputs,
  ``M = G·M·K·N`` MACs. Forward on FP as a Linear's: ``A`` streamed as its input (1 bit
  if spikes, else 16; ``fp_soma`` or ``ann_fe``), ``B`` held as its weights (16 bits,
  each of its entries read once), reduced over ``K``; never kept in the weight SRAM
  between passes (``reuse_weights`` does not apply: it is a fresh activation).
* Backward, when the output gets a gradient: ``dA = dY Bᵀ`` (if ``A`` needs one) on BP
  as a Linear's input gradient (``bp_grad`` if ``A`` was spikes, else ``ann_be``;
  reduced over ``N``, ``B`` as the weights, one output per entry of ``A``); ``dB = Aᵀ
  dY`` (if ``B`` needs one) on WG as a Linear's weight gradient (``wg`` if ``A`` was
  spikes, else ``ann_we``; ``A`` the input, ``dY`` the gradients, reduced over the
  ``G·M`` rows with ``C = K`` and ``K = N``, one output per entry of ``B``).
* An operand broadcast over the ``G`` matrices (a ``[K, N]`` right operand shared by
  every row, as a Linear's weights: ``x @ W.T`` is priced as ``nn.Linear``) gets one
  gradient per entry, summed over the matrices that share it: ``dB`` has ``K·N``
  outputs, not ``G·K·N``; a shared left operand's ``dA`` sums ``N·G/G_A`` products per
  output (``G_A`` the matrices ``A`` holds).

The dataflow convention is thus the released model's weight-stationary one with the
right operand stationary. 1-d operands are read as a row (left) or a column (right).
"""

from __future__ import annotations

import math

from torch import Tensor

from spikeflow.energy.neuromc_costs import Work

__all__ = ["MatmulShape", "matmul_backward_works", "matmul_forward_work"]


class MatmulShape:
    """The sizes of ``A @ B``: ``G`` matrices of ``M x K`` times ``K x N``."""

    def __init__(self, a: Tensor, b: Tensor) -> None:
        a_shape = tuple(a.shape) if a.dim() >= 2 else (1, *a.shape)
        b_shape = tuple(b.shape) if b.dim() >= 2 else (*b.shape, 1)
        lead_a, lead_b = a_shape[:-2], b_shape[:-2]
        width = max(len(lead_a), len(lead_b))
        lead_a = (1,) * (width - len(lead_a)) + lead_a
        lead_b = (1,) * (width - len(lead_b)) + lead_b
        self.g = math.prod(max(i, j) for i, j in zip(lead_a, lead_b, strict=True))
        self.m, self.k = int(a_shape[-2]), int(a_shape[-1])
        self.n = int(b_shape[-1])
        self.left_numel, self.right_numel = int(a.numel()), int(b.numel())

    @property
    def macs(self) -> int:
        """``G·M·K·N``."""
        return self.g * self.m * self.k * self.n

    def dims(self) -> dict[str, int]:
        """The loop dims: ``B = G·M`` rows, ``T = 1``, ``C = K``, ``K = N``."""
        rows = self.g * self.m
        return {"B": rows, "T": 1, "C": self.k, "K": self.n, "OY": 1, "OX": 1, "FY": 1, "FX": 1}


def matmul_forward_work(shape: MatmulShape, left_spikes: bool) -> Work:
    """The forward of ``A @ B`` on FP (module docstring)."""
    engine = "fp_soma" if left_spikes else "ann_fe"
    return Work("mac", engine, macs=shape.macs, reduce=(shape.k, 1), taps=1,
                weight_numel=shape.right_numel, output_numel=shape.g * shape.m * shape.n,
                input_bits=1 if left_spikes else 16)  # fmt: skip


def matmul_backward_works(shape: MatmulShape, left_spikes: bool, left_grad: bool,
                          right_grad: bool) -> list[tuple[str, Work]]:  # fmt: skip
    """``(op, work)`` of the gradients of ``A`` (BP) and ``B`` (WG) that are needed."""
    works = []
    if left_grad:  # dA = dY Bᵀ, reducing over N (and the matrices sharing A's entries)
        engine = "bp_grad" if left_spikes else "ann_be"
        shared = shape.g * shape.m * shape.k // max(shape.left_numel, 1)
        work = Work("mac", engine, True, shape.macs, (shape.n * shared, 1), 1,
                    shape.right_numel, shape.left_numel)  # fmt: skip
        works.append(("matmul.backward.grad_left", work))
    if right_grad:  # dB = Aᵀ dY, reducing over the G·M rows: one output per entry of B
        engine = "wg" if left_spikes else "ann_we"
        work = Work("mac", engine, True, shape.macs, (shape.k, shape.n), 1,
                    shape.g * shape.m * shape.n, shape.right_numel,
                    1 if left_spikes else 16)  # fmt: skip
        works.append(("matmul.backward.grad_right", work))
    return works
