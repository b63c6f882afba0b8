"""Knowledge distillation (Hinton, Vinyals and Dean 2015) for a spiking student.

A trained teacher's class scores ``z_t`` [B, K] soften, at temperature ``τ``, into a
distribution ``p_t = softmax(z_t / τ)``; the student's scores ``z_s`` are read from its
output sequence ``[T, B, K]`` as the trainer reads its prediction (:func:`student_logits`:
the time-mean for the ``rate`` readout, the sum for ``count``, the maximum over time for
``max``). The loss is

``L = α τ² KL(p_t || softmax(z_s / τ)) + (1 - α) L_hard(out_seq, target)``

with the KL divergence averaged over the batch (``batchmean``) and ``τ²`` keeping the
soft term's gradients at the scale of the hard one's as ``τ`` grows (Hinton's section 2).
``L_hard`` is the run's own loss (:func:`spikeflow.losses.get_loss`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["DISTILLATION_READOUTS", "check_distillation_arguments", "distillation_loss",
           "soft_target_loss", "student_logits"]  # fmt: skip

#: The readouts whose class scores are logits a softmax can read (``first_spike`` ranks
#: classes by the step of their first spike, which has no gradient).
DISTILLATION_READOUTS = ("rate", "count", "max")


def check_distillation_arguments(alpha: object, temperature: object) -> tuple[float, float]:
    """``(alpha, temperature)`` as floats, or a ConfigurationError naming the bad one:
    ``alpha`` in [0, 1], ``temperature`` finite and > 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ConfigurationError(f"kd_alpha must be a number in [0, 1], got {alpha!r}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise ConfigurationError(f"kd_temperature must be a finite number > 0, got {temperature!r}")
    return float(alpha), float(temperature)


def student_logits(out_seq: Tensor, readout: str = "rate") -> Tensor:
    """The class scores ``[B, K]`` of a student's output ``[T, B, K]`` under ``readout``:
    ``rate`` the time-mean, ``count`` the sum over time, ``max`` the maximum over time.

    Raises:
        ShapeError: ``out_seq`` is not ``[T, B, K]``.
        ConfigurationError: a readout other than those of :data:`DISTILLATION_READOUTS`.
    """
    if not isinstance(out_seq, Tensor) or out_seq.dim() != 3:
        shape = tuple(out_seq.shape) if isinstance(out_seq, Tensor) else type(out_seq).__name__
        raise ShapeError(f"distillation: the student's output must be [T, B, K], got {shape}")
    if readout == "rate":
        return out_seq.mean(dim=0)
    if readout == "count":
        return out_seq.sum(dim=0)
    if readout == "max":
        return out_seq.max(dim=0).values
    raise ConfigurationError(
        f"distillation reads the student's class scores as logits; readout {readout!r} has "
        f"none (use a loss or --readout of {', '.join(DISTILLATION_READOUTS)})"
    )


def soft_target_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``τ² KL(softmax(teacher / τ) || softmax(student / τ))``, averaged over the batch;
    ``student`` and ``teacher`` are logits ``[B, K]`` (the teacher's carry no gradient)."""
    if student.shape != teacher.shape:
        raise ShapeError(
            f"distillation: the teacher's logits {tuple(teacher.shape)} do not match the "
            f"student's {tuple(student.shape)} (same batch and classes expected)"
        )
    if not teacher.is_floating_point():
        raise DTypeError(f"distillation: the teacher's logits must be float, got {teacher.dtype}")
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher.detach().to(student.dtype) / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(
    out_seq: Tensor,
    target: Tensor,
    teacher_logits: Tensor,
    hard_loss: Callable[[Tensor, Tensor], Tensor],
    alpha: float = 0.5,
    temperature: float = 4.0,
    readout: str = "rate",
) -> Tensor:
    """Hinton's distillation loss of a spiking student (module docstring).

    Args:
        out_seq: the student's output ``[T, B, K]``.
        target: what ``hard_loss`` takes (class labels ``[B]`` or distributions ``[B, K]``).
        teacher_logits: the teacher's class scores ``[B, K]`` (detached here).
        hard_loss: the loss on the labels, called ``hard_loss(out_seq, target)``.
        alpha: weight of the soft-target term, in [0, 1] (``1 - alpha`` on the hard loss).
        temperature: the softmax temperature ``τ`` > 0.
        readout: how the student's class scores are read (:func:`student_logits`).

    Raises:
        ConfigurationError: ``alpha`` or ``temperature`` out of range, or a readout
            with no logits.
        ShapeError: the student's and teacher's scores differ in shape.
    """
    alpha, temperature = check_distillation_arguments(alpha, temperature)
    soft = soft_target_loss(student_logits(out_seq, readout), teacher_logits, temperature)
    if alpha == 1.0:
        return soft
    return alpha * soft + (1.0 - alpha) * hard_loss(out_seq, target)
