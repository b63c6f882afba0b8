"""Membrane potential batch normalisation (MPBN; Guo et al., "Membrane Potential Batch
Normalization for Spiking Neural Networks", ICCV 2023, arXiv 2308.08359), SpikingJelly
2.0's ``MPBNBaseNode`` and ``MPBNLIFNode``, with the threshold re-parameterisation and
the test-time threshold modulation of Zhao et al. ("Threshold Modulation for Online
Test-Time Adaptation of Spiking Neural Networks", arXiv 2505.05375).

Training: a batch normalisation of the charged membrane, at every step, before firing::

    H[t] = charge(V[t-1], X[t])
    H'[t] = BN(H[t])                 (per feature, over the batch of this step)
    S[t] = Θ(H'[t] - θ),   V[t] = reset(H'[t], S[t])

Inference: :meth:`MPBNBaseNode.re_parameterize_v_threshold` folds the normalisation
into a per-feature threshold, so the membrane is no longer normalised::

    θ~ = (θ - β) sqrt(σ² + ε) / γ + μ,   S[t] = Θ(H[t] - θ~),   V[t] = reset(H[t], S[t])

(``BN(H) >= θ`` exactly where ``H >= θ~`` when ``γ > 0``; the membrane after a reset,
and so the dynamics, differ from the normalised ones unless ``normalize_residual``
replaces the membrane of the neurons that did not fire by its normalised value.) In
training mode a folded neuron adapts ``μ`` and ``σ²`` to the batch statistics of each
step (test-time adaptation), or an average of them with ``running_stats=True``.

Why a loop (:class:`~spikeflow.neurons.loop.LoopNode`) and not a declaration: the
normalisation reduces over the batch at every step, and a declared neuron's step is
elementwise (what lets the kernel generator trace it). No fused kernel is generated;
the step runs as PyTorch code (autograd through it, every device).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag, check_int, check_real
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.neurons.base import show_float_or_shape
from spikeflow.neurons.lif import _check_tau
from spikeflow.neurons.loop import LoopNode, check_surrogate
from spikeflow.surrogate import Surrogate

__all__ = ["MPBNBaseNode", "MPBNLIFNode"]


class MPBNBaseNode(LoopNode):
    """Base of neurons with membrane potential batch normalisation (see the module
    docstring). A subclass gives the charge, :meth:`charge`; :class:`MPBNLIFNode`'s is
    the LIF's.

    The normalisation is ``self.vbn``: ``nn.BatchNorm1d(out_features)`` after a linear
    layer (steps ``[B, C]`` or ``[B, C, L]``), ``nn.BatchNorm2d(out_channels)`` after a
    convolution (steps ``[B, C, H, W]``), with PyTorch's arguments (``eps=1e-5``,
    ``momentum=0.1``): in training mode it normalises each step by that step's batch
    statistics and updates its running statistics once per step; in eval mode it uses
    them. The state dict's names are SpikingJelly's (``vbn.weight``, ``vbn.bias``,
    ``vbn.running_mean``, ..., ``a``; after folding ``mu``, ``sigma2``, ``gamma``,
    ``beta``), so weights load from one into the other; a folded learnt threshold adds
    ``v_threshold``, which SpikingJelly does not save.

    Args:
        v_threshold: θ, in the normalised units of ``BN(H)`` (default 1).
        v_reset: hard-reset value (default 0), or ``None`` for soft reset, which
            subtracts ``v_threshold`` (not the learnt or folded threshold, as in
            SpikingJelly). The membrane starts at ``v_reset`` (0 with soft reset).
        surrogate_function: the spike function (default ``Sigmoid(alpha=4)``).
        detach_reset: detach the spike in the reset.
        step_mode: ``'m'`` (``[T, B, ...]``, default; SpikingJelly's is ``'s'``) or
            ``'s'``.
        store_v_seq: keep the membrane after reset of every step in ``self.v_seq``.
        mpbn: normalise the membrane (default True); False gives the plain neuron.
        out_features: the number of features after a linear layer (exactly one of
            ``out_features`` and ``out_channels``).
        out_channels: the number of channels after a convolution.
        learnable_vth: learn a positive threshold per feature, ``exp(a)`` (``a`` starts
            at 0), in place of ``v_threshold`` in the fire rule.
        bn_momentum: the first weight of a batch's statistics in the running average of
            the test-time adaptation (``running_stats=True``), in [0, 1] (default 0.1).
        bn_decay_momentum: the factor ``bn_momentum`` shrinks by at every adapted step,
            in [0, 1] (default 0.94).
        bn_min_momentum: the floor of that decay, in [0, 1] (default 0.005).

    Raises:
        ConfigurationError: not exactly one of ``out_features``/``out_channels``, a
            feature count that is not an integer >= 1, a non-finite threshold or reset,
            ``v_threshold <= v_reset``, a momentum outside [0, 1], a flag that is not a
            bool, a surrogate that is not a ``spikeflow.surrogate.Surrogate``.
        ShapeError: (at a call) steps whose feature dimension (dim 1) is not the
            normalisation's, or of a rank the normalisation does not take.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
        mpbn: bool = True,
        out_features: int | None = None,
        out_channels: int | None = None,
        learnable_vth: bool = False,
        bn_momentum: float = 0.1,
        bn_decay_momentum: float = 0.94,
        bn_min_momentum: float = 0.005,
    ) -> None:
        super().__init__(step_mode, store_v_seq)
        owner = type(self).__name__
        self.v_threshold: float | Tensor = check_real(f"{owner}: v_threshold", v_threshold)
        if v_reset is not None:
            v_reset = check_real(f"{owner}: v_reset", v_reset)
            if not self.v_threshold > v_reset:
                raise ConfigurationError(
                    f"{owner}: v_threshold ({self.v_threshold:g}) must be above v_reset "
                    f"({v_reset:g}): otherwise a neuron fires again from its reset value"
                )
        self.v_reset = v_reset
        self.surrogate_function = check_surrogate(owner, surrogate_function)
        self.detach_reset = check_flag(owner, "detach_reset", detach_reset)
        mpbn = check_flag(owner, "mpbn", mpbn)
        if (out_features is None) == (out_channels is None):
            raise ConfigurationError(
                f"{owner}: give exactly one of out_features (after a linear layer) and "
                f"out_channels (after a convolution); got out_features={out_features!r}, "
                f"out_channels={out_channels!r}"
            )
        conv = out_channels is not None
        name = "out_channels" if conv else "out_features"
        features = check_int(f"{owner}: {name}", out_channels if conv else out_features, 1)
        self.num_features = features
        self.vbn: nn.Module = (
            (nn.BatchNorm2d(features) if conv else nn.BatchNorm1d(features))
            if mpbn
            else nn.Identity()
        )
        self.register_buffer("mu", None)
        self.register_buffer("sigma2", None)
        self.gamma: Tensor | None = None
        self.beta: Tensor | None = None
        self.eps: float | None = None
        self.fold_bn = False
        self.normalize_residual = False
        self.running_stats = False
        for key, value in (("bn_momentum", bn_momentum), ("bn_decay_momentum", bn_decay_momentum),
                           ("bn_min_momentum", bn_min_momentum)):  # fmt: skip
            setattr(self, key, check_real(f"{owner}: {key}", value, 0.0, 1.0))
        self.learnable_vth = check_flag(owner, "learnable_vth", learnable_vth)
        if self.learnable_vth:  # a positive threshold per feature: exp(a)
            self.a = nn.Parameter(torch.zeros(features))

    # -- the model ---------------------------------------------------------------------

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        """The charged membrane ``H[t]`` from the input ``x`` and the membrane ``v``
        after the last reset (a subclass gives it)."""
        raise NotImplementedError

    def initial_values(self) -> dict[str, float]:
        return {"v": 0.0 if self.v_reset is None else self.v_reset}

    def re_parameterize_v_threshold(
        self, normalize_residual: bool = False, running_stats: bool = False
    ) -> None:
        """Fold the normalisation into the threshold for inference (see the module
        docstring): ``μ``, ``σ²`` (the running statistics), ``γ``, ``β`` and ``ε`` of
        ``self.vbn`` are kept as ``mu``, ``sigma2``, ``gamma``, ``beta``, ``eps``, and
        ``self.vbn`` becomes ``nn.Identity()``. A learnt threshold becomes the buffer
        ``v_threshold = exp(a)`` (per feature, in the state dict, where SpikingJelly
        keeps it out and a reload loses it) and ``a`` is dropped. Nothing happens
        when the membrane is not normalised (``mpbn=False``, or folded already).

        Args:
            normalize_residual: after firing, replace the membrane of the neurons that
                did not fire by its normalised value ``(H - μ) γ / sqrt(σ² + ε) + β``.
            running_stats: in training mode (test-time adaptation), update ``μ`` and
                ``σ²`` as a running average of each step's batch statistics, with a
                weight ``bn_momentum`` that decays by ``bn_decay_momentum`` at every
                step down to ``bn_min_momentum``; False: use each step's statistics.
        """
        owner = type(self).__name__
        normalize_residual = check_flag(owner, "normalize_residual", normalize_residual)
        running_stats = check_flag(owner, "running_stats", running_stats)
        if not isinstance(self.vbn, nn.modules.batchnorm._BatchNorm):
            return
        self.fold_bn = True
        if self.learnable_vth:  # a buffer: it moves with the module and is saved
            threshold = torch.exp(self.a.detach())
            del self.v_threshold, self.a
            self.register_buffer("v_threshold", threshold)
            self.learnable_vth = False
        self.normalize_residual = normalize_residual
        self.running_stats = running_stats
        bn = self.vbn
        self.mu = bn.running_mean
        self.sigma2 = bn.running_var
        self.gamma = bn.weight  # parameters of the node now, as in SpikingJelly
        self.beta = bn.bias
        self.eps = bn.eps
        self.vbn = nn.Identity()

    # -- one step ----------------------------------------------------------------------

    def _check_step(self, x: Tensor) -> None:
        owner = type(self).__name__
        rank = (4,) if isinstance(self.vbn, nn.BatchNorm2d) else (2, 3)
        if self.fold_bn:
            rank = (2, 3, 4)
        if x.dim() not in rank or x.shape[1] != self.num_features:
            want = " or ".join(f"{r}" for r in rank)
            raise ShapeError(
                f"{owner}: each step must be [B, {self.num_features}, ...] with "
                f"{want} dimensions (the features at dim 1), got a step of shape "
                f"{tuple(x.shape)}"
            )

    def _adapt(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ, σ²)`` for this step of a folded neuron, adapted in training mode."""
        mu, sigma2 = self.mu, self.sigma2
        if self.training and not (h.dim() == 2 and h.shape[0] == 1):
            dims = [d for d in range(h.dim()) if d != 1]
            batch_mu = torch.mean(h, dim=dims).detach()
            batch_sigma2 = torch.var(h, dim=dims, unbiased=True).detach()
            if self.running_stats:
                m = self.bn_momentum
                mu = mu.detach() * (1 - m) + batch_mu * m
                sigma2 = sigma2.detach() * (1 - m) + batch_sigma2 * m
                self.bn_momentum = max(m * self.bn_decay_momentum, self.bn_min_momentum)
            else:
                mu, sigma2 = batch_mu, batch_sigma2
            self.mu, self.sigma2 = mu, sigma2
        return mu, sigma2

    def step(self, x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        self._check_step(x)
        h = self.charge(x, state["v"])
        if not isinstance(self.vbn, nn.Identity):
            h = self.vbn(h)
        feature = (1, -1, *([1] * (h.dim() - 2)))
        if self.fold_bn:
            mu, sigma2 = self._adapt(h)
            theta = (self.v_threshold - self.beta) * torch.sqrt(sigma2 + self.eps) / self.gamma + mu
            theta = theta.view(feature)
        elif self.learnable_vth:
            theta = torch.exp(self.a).view(feature)
        else:
            theta = self.v_threshold
        diff = h - theta
        spike = self.surrogate_function(diff)
        if self.fold_bn and self.normalize_residual:
            sigma = torch.sqrt(sigma2 + self.eps).view(feature)
            normalized = (h - mu.view(feature)) / sigma * self.gamma.view(feature)
            h = torch.where(diff <= 0, normalized + self.beta.view(feature), h)
        s = spike.detach() if self.detach_reset else spike
        if self.v_reset is None:
            reset_theta = self.v_threshold
            if isinstance(reset_theta, Tensor):  # a folded learnt threshold, per feature
                reset_theta = reset_theta.view(feature)
            v = h - s * reset_theta
        else:
            v = s * self.v_reset + (1.0 - s) * h
        return spike, {"v": v}

    def extra_repr(self) -> str:
        parts = [
            f"v_threshold={show_float_or_shape(self.v_threshold)}",
            f"v_reset={self.v_reset}",
            f"detach_reset={self.detach_reset}",
            f"step_mode={self.step_mode!r}",
        ]
        if self.learnable_vth:
            parts.append("learnable_vth=True")
        if self.fold_bn:
            parts.append(
                f"fold_bn=True, normalize_residual={self.normalize_residual}, "
                f"running_stats={self.running_stats}"
            )
        return ", ".join(parts)


class MPBNLIFNode(MPBNBaseNode):
    """LIF neuron with membrane potential batch normalisation (see the module
    docstring), SpikingJelly 2.0's ``MPBNLIFNode`` (the same spikes, membranes, running
    statistics and gradients, before and after folding)::

        H[t] = V[t-1] - (V[t-1] - V_r) / tau + X[t]       (decay_input=False, default)
        H[t] = V[t-1] + (X[t] - (V[t-1] - V_r)) / tau     (decay_input=True)

    (``V_r`` 0 with soft reset), then ``BN``, fire and reset as in
    :class:`MPBNBaseNode`.

    Args:
        tau: membrane time constant, a finite number > 1 (default 2).
        decay_input: whether the input is divided by ``tau`` too (default False, as in
            SpikingJelly's MPBN and the paper).
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
            store_v_seq, mpbn, out_features, out_channels, learnable_vth, bn_momentum,
            bn_decay_momentum, bn_min_momentum: as for :class:`MPBNBaseNode` (the
            positional order is SpikingJelly's).

    Raises:
        ConfigurationError: ``tau <= 1`` or not finite, ``decay_input`` not a bool,
            and the errors of :class:`MPBNBaseNode`.
    """

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = False,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: Surrogate | None = None,
        detach_reset: bool = False,
        step_mode: StepMode = "m",
        store_v_seq: bool = False,
        mpbn: bool = True,
        out_features: int | None = None,
        out_channels: int | None = None,
        learnable_vth: bool = False,
        bn_momentum: float = 0.1,
        bn_decay_momentum: float = 0.94,
        bn_min_momentum: float = 0.005,
    ) -> None:
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq, mpbn, out_features, out_channels, learnable_vth,
                         bn_momentum, bn_decay_momentum, bn_min_momentum)  # fmt: skip
        self.tau = _check_tau("tau", tau)
        self.decay_input = check_flag(type(self).__name__, "decay_input", decay_input)

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        """The LIF charge (see the class docstring), SpikingJelly's operation order."""
        v_rest = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            return v + (x - (v - v_rest)) / self.tau
        return v - (v - v_rest) / self.tau + x

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, decay_input={self.decay_input}, " + super().extra_repr()
