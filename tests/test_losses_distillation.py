"""losses.distillation_loss (Hinton et al. 2015) against the formula written out by hand
and its gradient derived by hand, in float64; the student's class scores read as the
trainer reads its prediction."""

from __future__ import annotations

import pytest
import torch

from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.losses import (
    ce_mean_loss,
    distillation_loss,
    rate_mse_loss,
    soft_target_loss,
    student_logits,
)


def _by_hand(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """tau² · (1/B) Σ_b Σ_k p_t[b, k] (log p_t[b, k] - log p_s[b, k]), the softmaxes
    written out as exp(z) / Σ exp(z)."""
    p_t = torch.exp(teacher / tau) / torch.exp(teacher / tau).sum(-1, keepdim=True)
    p_s = torch.exp(student / tau) / torch.exp(student / tau).sum(-1, keepdim=True)
    return tau**2 * (p_t * (p_t.log() - p_s.log())).sum() / student.shape[0]


@pytest.mark.parametrize("tau", [0.5, 1.0, 4.0])
def test_soft_target_term_is_the_kl_written_out(tau):
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    teacher = 3 * torch.randn(6, 10, generator=gen, dtype=torch.float64)
    got = soft_target_loss(student, teacher, tau)
    torch.testing.assert_close(got, _by_hand(student, teacher, tau), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_soft_target_gradient_is_tau_times_the_probability_gap(tau):
    # d/dz_s [tau² KL(p_t || softmax(z_s / tau))] = tau (softmax(z_s / tau) - p_t) / B
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    soft_target_loss(student, teacher, tau).backward()
    gap = torch.softmax(student.detach() / tau, -1) - torch.softmax(teacher.detach() / tau, -1)
    torch.testing.assert_close(student.grad, tau * gap / 5, rtol=1e-12, atol=1e-14)
    assert teacher.grad is None  # the teacher's scores are targets


def test_student_scores_are_read_as_the_trainer_reads_them():
    out = torch.rand(4, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(student_logits(out, "rate"), out.mean(0))
    torch.testing.assert_close(student_logits(out, "count"), out.sum(0))
    torch.testing.assert_close(student_logits(out, "max"), out.amax(0))
    with pytest.raises(ConfigurationError, match="readout 'first_spike' has none"):
        student_logits(out, "first_spike")
    with pytest.raises(ShapeError, match=r"\[T, B, K\], got \(3, 5\)"):
        student_logits(out[0], "rate")


@pytest.mark.parametrize(("hard", "readout"), [(rate_mse_loss, "rate"), (ce_mean_loss, "rate"),
                                               (ce_mean_loss, "count")])  # fmt: skip
def test_the_loss_weighs_soft_and_hard_terms(hard, readout):
    gen = torch.Generator().manual_seed(2)
    out = torch.rand(6, 8, 10, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 10, (8,), generator=gen)
    teacher = 2 * torch.randn(8, 10, generator=gen, dtype=torch.float64)
    scores = student_logits(out, readout)
    soft, hard_value = _by_hand(scores, teacher, 2.0), hard(out, target)
    got = distillation_loss(out, target, teacher, hard, alpha=0.3, temperature=2.0,
                            readout=readout)  # fmt: skip
    torch.testing.assert_close(got, 0.3 * soft + 0.7 * hard_value, rtol=1e-12, atol=1e-14)
    ends = [distillation_loss(out, target, teacher, hard, a, 2.0, readout) for a in (0.0, 1.0)]
    torch.testing.assert_close(ends[0], hard_value, rtol=1e-12, atol=0)
    torch.testing.assert_close(ends[1], soft, rtol=1e-12, atol=1e-14)


def test_gradcheck_through_a_spiking_readout():
    gen = torch.Generator().manual_seed(3)
    out = torch.rand(4, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 4, 2])
    teacher = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    for readout in ("rate", "count", "max"):
        assert torch.autograd.gradcheck(
            lambda o, r=readout: distillation_loss(o, target, teacher, ce_mean_loss, 0.6, 1.5, r),
            (out,),
        )


def test_bad_arguments_are_named():
    out, target = torch.rand(4, 3, 5), torch.tensor([0, 1, 2])
    teacher = torch.randn(3, 5)
    with pytest.raises(ConfigurationError, match=r"kd_alpha must be a number in \[0, 1\], got 1.5"):
        distillation_loss(out, target, teacher, ce_mean_loss, alpha=1.5)
    with pytest.raises(ConfigurationError, match="kd_temperature must be a finite number > 0"):
        distillation_loss(out, target, teacher, ce_mean_loss, temperature=0)
    with pytest.raises(ShapeError, match=r"teacher's logits \(3, 4\) do not match the student's"):
        distillation_loss(out, target, torch.randn(3, 4), ce_mean_loss)
    with pytest.raises(DTypeError, match="teacher's logits must be float"):
        distillation_loss(out, target, torch.ones(3, 5, dtype=torch.long), ce_mean_loss)


def test_alpha_one_at_temperature_one_is_lava_dls_knowledge_dist():
    """Lava-DL's ``KnowledgeDist`` (slayer.knowledge_distillation) trains on
    ``CrossEntropyLoss()(z_s, softmax(z_t))``: no labels, temperature 1. That cross-entropy
    is the KL plus the teacher's entropy, so ``alpha = 1, temperature = 1`` gives it less
    that constant, and the same gradient (float64)."""
    gen = torch.Generator().manual_seed(3)
    student = torch.randn(6, 10, generator=gen, dtype=torch.float64, requires_grad=True)
    teacher = 3 * torch.randn(6, 10, generator=gen, dtype=torch.float64)
    p_t = teacher.softmax(1)
    lava = torch.nn.CrossEntropyLoss()(student, p_t)  # Lava-DL's loss, soft targets
    entropy = -(p_t * p_t.log()).sum(1).mean()
    labels = torch.randint(0, 10, (6,), generator=gen)
    ours = distillation_loss(student.unsqueeze(0), labels, teacher, ce_mean_loss, 1.0, 1.0, "rate")
    torch.testing.assert_close(ours, lava - entropy)
    (grad_ours,) = torch.autograd.grad(ours, student)
    (grad_lava,) = torch.autograd.grad(lava, student)
    torch.testing.assert_close(grad_ours, grad_lava)
