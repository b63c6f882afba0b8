"""Temporal contrastive learning, TCL (Qiu et al. 2023, arXiv 2305.13909; methods.md 9).

The representation of each sample at each time step is an anchor; the positives of an
anchor are every other representation with the same label (the same sample at the
other steps included), and all the other representations form the denominator: the
supervised contrastive loss (Khosla et al. 2020) over the ``T·B`` per-step
representations. :func:`tcl_loss` adds it to the cross-entropy of the time-mean output.

The paper's projection head, temperature and weighting are not verified (methods.md 9);
the defaults here are SupCon's usual temperature 0.1 and weight 1 (docs/models.md).

:func:`stcl_loss` is the Siamese variant (STCL): two augmented views of each sample,
stacked along the batch, their per-step representations contrasted all together (the
two views of a sample are positives of each other at every step) and the CE of each
view's time-mean averaged. No code of the authors' is public: this follows the paper's
description (docs/models.md says what is read into it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeflow._checks import check_labels, check_real
from spikeflow.errors import DTypeError, ShapeError
from spikeflow.losses.rate import _check_labels_only, _check_output, _real

__all__ = ["stcl_loss", "tcl_loss", "temporal_contrastive_loss"]


def temporal_contrastive_loss(features: Tensor, target: Tensor, temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss over the per-step representations ``features``.

    Args:
        features: ``[T, B, D]`` (any ``[T, B, ...]``, flattened per step), one
            representation per time step and sample; L2-normalised here.
        target: integer class labels ``[B]``.
        temperature: τ > 0 dividing the cosine similarities.

    With ``z_i`` the normalised representations (``i`` over the ``N = T·B`` pairs of
    step and sample), ``P(i)`` the others with ``i``'s label and
    ``A(i)`` all the others:
    ``L = mean_i -1/|P(i)| Σ_{p∈P(i)} log(exp(z_i·z_p/τ) / Σ_{a∈A(i)} exp(z_i·z_a/τ))``,
    the mean over the anchors that have a positive; zero if none has. A representation
    that is exactly zero (a silent spiking output at that step) has no direction and
    takes no part (a tiny nonzero one still gets gradients of about ``1/‖f‖``). Computed
    in float32 at least, outside autocast.
    """
    if not isinstance(features, Tensor) or features.dim() < 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ShapeError(f"temporal_contrastive_loss: features must be [T, B, D], got {shape}")
    if not features.is_floating_point():
        raise DTypeError(
            f"temporal_contrastive_loss: features must be floating point, got {features.dtype}"
        )
    steps, batch = features.shape[:2]
    if steps == 0 or batch == 0:
        raise ShapeError(
            f"temporal_contrastive_loss: features have no steps or no samples "
            f"(shape {tuple(features.shape)})"
        )
    if not isinstance(target, Tensor) or target.is_floating_point():
        raise DTypeError("temporal_contrastive_loss: target must be integer class labels [B]")
    check_labels("temporal_contrastive_loss", target, batch, None)
    temperature = check_real("temporal_contrastive_loss: temperature", temperature, 0.0,
                             low_open=True)  # fmt: skip
    with torch.autocast(features.device.type, enabled=False):  # float32 at least
        return _supervised_contrastive(features, target, temperature)


def _supervised_contrastive(features: Tensor, target: Tensor, temperature: float) -> Tensor:
    steps, batch = features.shape[:2]
    dtype = torch.promote_types(features.dtype, torch.float32)
    flat = features.reshape(steps * batch, -1).to(dtype)
    labels = target.reshape(1, batch).expand(steps, batch).reshape(-1)
    # An all-zero representation (a silent spiking output) has no direction: it takes
    # no part (normalising it would give gradients of 1/eps).
    norms = flat.norm(dim=1)
    present = norms > 0
    z = flat[present] / norms[present].unsqueeze(1)
    labels = labels[present]
    logits = z @ z.T / temperature
    self_pair = torch.eye(len(z), dtype=torch.bool, device=z.device)
    log_prob = logits - torch.logsumexp(logits.masked_fill(self_pair, float("-inf")), dim=1,
                                        keepdim=True)  # fmt: skip
    positive = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_pair
    count = positive.sum(dim=1)
    anchors = count > 0
    if not bool(anchors.any()):
        return flat.sum() * 0.0  # no anchor has a positive: nothing to pull together
    mean_positive = (log_prob.masked_fill(~positive, 0.0).sum(dim=1)[anchors]
                     / count[anchors])  # fmt: skip
    return -mean_positive.mean()


def tcl_loss(
    out_seq: Tensor, target: Tensor, lamb: float = 1.0, temperature: float = 0.1
) -> Tensor:
    """TCL: ``CE(mean_t O, y) + lamb * temporal_contrastive_loss(O, y, temperature)``.

    The output ``O`` ``[T, B, K]`` at each step serves as the representation. ``target``
    must be integer labels ``[B]``. Predict with the ``rate`` readout (the time-mean),
    which works at any T.
    """
    _check_labels_only(out_seq, target, "tcl_loss")
    lamb, temperature = _tcl_arguments(lamb, temperature)
    ce = F.cross_entropy(out_seq.mean(dim=0), target.long())
    if lamb == 0.0:
        return ce
    return ce + lamb * temporal_contrastive_loss(out_seq, target, temperature)


def stcl_loss(
    out_seq: Tensor, target: Tensor, lamb: float = 1.0, temperature: float = 0.1
) -> Tensor:
    """STCL: TCL over two augmented views of each sample, stacked along the batch.

    ``out_seq`` ``[T, V·B, K]`` holds ``V`` views of the ``B`` samples of ``target``
    (integer labels ``[B]``): samples ``v·B .. (v+1)·B - 1`` are view ``v``. ``V = 2``
    in training (``spikeflow train --loss stcl`` feeds the model two augmented views,
    :mod:`spikeflow.training.views`); ``V = 1`` (evaluation, one view) makes it
    :func:`tcl_loss`. The value is
    ``mean_v CE(mean_t O^v, y) + lamb * temporal_contrastive_loss(O, [y; y], temperature)``:
    every ``(step, view, sample)`` is an anchor whose positives are all the others of
    its label, the other view of the same sample at every step included.
    """
    views = _check_views(out_seq, target)
    lamb, temperature = _tcl_arguments(lamb, temperature)
    labels = target.long().repeat(views)
    ce = F.cross_entropy(out_seq.mean(dim=0), labels)  # = the mean of each view's CE
    if lamb == 0.0:
        return ce
    return ce + lamb * temporal_contrastive_loss(out_seq, labels, temperature)


def _check_views(out_seq: Tensor, target: Tensor) -> int:
    """The number of views (1 or 2) ``out_seq`` ``[T, V·B, K]`` holds of the samples of
    ``target`` (integer labels ``[B]``), or a ShapeError / DTypeError naming stcl_loss."""
    _check_output(out_seq, "stcl_loss")
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dim() != 1:
        raise DTypeError("stcl_loss: target must be integer class labels [B]")
    batch, total = target.shape[0], out_seq.shape[1]
    if batch == 0 or total not in (batch, 2 * batch):
        raise ShapeError(
            f"stcl_loss: out_seq [T, V·B, K] must hold one or two views of the B = {batch} "
            f"samples of target (V·B = {batch} or {2 * batch}), got {total}"
        )
    check_labels("stcl_loss", target, batch, out_seq.shape[2])
    return total // batch


def _tcl_arguments(lamb: object, temperature: object) -> tuple[float, float]:
    lamb = _real("tcl_loss", "lamb", lamb, 0.0)
    temperature = check_real("tcl_loss: temperature", temperature, 0.0, low_open=True)
    return lamb, temperature
