"""S4D: the diagonal state-space layer of Gu, Gupta, Goel and Ré (NeurIPS 2022, "On the
parameterization and initialization of diagonal state space models"), the sequence core
of the spiking SSMs (Stan & Rhodes 2024; Shen et al. 2025; Bal & Sengupta 2025).

Each of the ``H`` channels is an independent linear system of ``N/2`` complex modes
(the conjugate half of a real ``N``-state system is implied by taking twice the real
part). With ``A = -exp(log_a_real) + i a_imag``, step ``Δ = exp(log_dt)`` and the input
matrix fixed to ones (absorbed into ``C``, as in S4D's own minimal layer), zero-order
hold gives ``Ā = exp(ΔA)`` and ``B̄ = (exp(ΔA) - 1) / A``, and

    x[k] = Ā x[k-1] + B̄ u[k],     y[k] = 2 Re(C · x[k]) + D u[k],     x[-1] = 0.

Unrolled, ``y = K * u + D u`` with the causal kernel ``K[k] = 2 Re(Σ_n C_n B̄_n Ā_n^k)``,
computed in closed form (a Vandermonde product) and applied by FFT over ``2T`` points (no
circular wrap), so a whole sequence trains in parallel over time. While streaming (or in
single-step mode) the complex state ``x`` is carried, so chunks continue the sequence
exactly: the start state's share of the outputs is ``2 Re(C Ā^{k+1} x_0)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from spikeflow._checks import check_int
from spikeflow.base import MemoryModule, StepMode
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = ["S4D", "s4d_initial_imag", "ssm_parameter_groups"]

#: The SSM parameters that S4's optimiser setup trains with their own learning rate and
#: no weight decay (``C`` and ``D`` are ordinary weights).
SSM_PARAMETERS = ("log_dt", "log_a_real", "a_imag")
_INITS = ("lin", "inv")


def s4d_initial_imag(d_state: int, init: Literal["lin", "inv"] = "lin") -> Tensor:
    """The imaginary parts of S4D's initial ``A`` for a state of size ``d_state``
    (``d_state // 2`` modes, ``n = 0 .. d_state/2 - 1``), in float64.

    ``"lin"`` (S4D-Lin): ``π n``. ``"inv"`` (S4D-Inv): ``(N/π) (N / (2n + 1) - 1)``
    with ``N = d_state``. The real parts start at ``-1/2`` for both.
    """
    if init not in _INITS:
        raise ConfigurationError(f"init must be 'lin' (S4D-Lin) or 'inv' (S4D-Inv); got {init!r}")
    n = torch.arange(d_state // 2, dtype=torch.float64)
    if init == "lin":
        return math.pi * n
    return d_state / math.pi * (d_state / (2 * n + 1) - 1)


class S4D(MemoryModule):
    """Diagonal state-space layer (see the module docstring): ``[T, B, H]`` → ``[T, B, H]``.

    Multi-step input is time-major ``[T, B, d_model]``; single-step input (streaming)
    is ``[B, d_model]``. Each multi-step call starts from the zero state unless the
    module is streaming (:func:`spikeflow.functional.streaming`), in which case the
    complex state is carried (kept as ``x_real``/``x_imag`` of shape ``[N/2, B, H]``).

    Args:
        d_model: channels ``H`` (independent SSMs).
        d_state: state size ``N`` (even): ``N/2`` complex modes per channel (S4D's 64).
        dt_min, dt_max: ``Δ`` is drawn log-uniformly in ``[dt_min, dt_max]`` per channel.
        init: ``"lin"`` (S4D-Lin, ``A_n = -1/2 + iπn``, the default) or ``"inv"``
            (S4D-Inv, see :func:`s4d_initial_imag`).
        lr: the learning rate :func:`ssm_parameter_groups` gives ``log_dt``, ``log_a_real``
            and ``a_imag`` (S4's 1e-3; ``None``: the optimiser's), without weight decay.
        step_mode: ``'m'`` (default) or ``'s'``.

    Parameters: ``log_dt [H]``, ``log_a_real [H, N/2]`` (``log 1/2``), ``a_imag [H, N/2]``,
    ``c [H, N/2, 2]`` (real and imaginary parts, complex normal of unit variance) and
    ``d [H]`` (standard normal), as S4D's reference layer.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        init: Literal["lin", "inv"] = "lin",
        lr: float | None = 1e-3,
        step_mode: StepMode = "m",
    ) -> None:
        super().__init__(step_mode)
        self.d_model = check_int("d_model", d_model, 1)
        self.d_state = check_int("d_state", d_state, 2)
        if d_state % 2:
            raise ConfigurationError(f"d_state must be even (N/2 complex modes); got {d_state}")
        if not 0.0 < dt_min <= dt_max < math.inf:
            raise ConfigurationError(
                f"need 0 < dt_min <= dt_max < inf; got dt_min={dt_min}, dt_max={dt_max}"
            )
        if lr is not None and not lr >= 0.0:
            raise ConfigurationError(f"lr must be None or >= 0; got {lr}")
        self.init, self.lr = init, lr
        modes = d_state // 2
        u = torch.rand(d_model, dtype=torch.float64)
        log_dt = math.log(dt_min) + u * (math.log(dt_max) - math.log(dt_min))
        real = torch.get_default_dtype()  # as the other parameters' (torch.full, randn)
        self.log_dt = nn.Parameter(log_dt.to(real))
        self.log_a_real = nn.Parameter(torch.full((d_model, modes), math.log(0.5)))
        self.a_imag = nn.Parameter(s4d_initial_imag(d_state, init).to(real).repeat(d_model, 1))
        # complex normal of unit variance: real and imaginary parts of variance 1/2
        self.c = nn.Parameter(torch.randn(d_model, modes, 2) * math.sqrt(0.5))
        self.d = nn.Parameter(torch.randn(d_model))

    # -- the discretised system ---------------------------------------------------------
    def discrete(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(log Ā = ΔA, B̄, C)``, complex ``[H, N/2]`` each (ZOH, input matrix of ones)."""
        a = torch.complex(-torch.exp(self.log_a_real), self.a_imag)
        dt_a = a * torch.exp(self.log_dt).unsqueeze(-1)
        b_bar = torch.expm1(dt_a) / a
        return dt_a, b_bar, torch.view_as_complex(self.c)

    def _powers(self, dt_a: Tensor, length: int) -> Tensor:
        """The Vandermonde matrix ``Ā^k = exp(k ΔA)`` for ``k = 0 .. length-1``:
        ``[H, N/2, length]``. Written ``k = m q + r`` with ``m ≈ √length``, it is the
        product ``exp(m q ΔA) · exp(r ΔA)``: about ``2√length`` complex exponentials per
        mode instead of ``length`` (they were most of the layer's time)."""
        m = max(1, math.isqrt(length - 1) + 1)
        q = -(-length // m)
        real = self.log_dt.dtype
        r_steps = torch.arange(m, device=dt_a.device, dtype=real)
        q_steps = torch.arange(q, device=dt_a.device, dtype=real) * m
        small = torch.exp(dt_a.unsqueeze(-1) * r_steps)  # [H, N/2, m]
        big = torch.exp(dt_a.unsqueeze(-1) * q_steps)  # [H, N/2, q]
        return (big.unsqueeze(-1) * small.unsqueeze(-2)).flatten(-2)[..., :length]

    def kernel(self, length: int) -> Tensor:
        """The convolution kernel ``K[h, k] = 2 Re(Σ_n C B̄ Ā^k)``, ``[H, length]``."""
        check_int("length", length, 1)
        dt_a, b_bar, c = self.discrete()
        return 2 * torch.einsum("hn,hnl->hl", c * b_bar, self._powers(dt_a, length)).real

    # -- forward ------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise DTypeError(f"S4D expects a tensor, got {type(x).__name__}")
        dims, form = (3, "[T, B, d_model]") if self.step_mode == "m" else (2, "[B, d_model]")
        if x.dim() != dims or x.shape[-1] != self.d_model:
            raise ShapeError(
                f"S4D (step_mode={self.step_mode!r}) expects {form} with d_model = "
                f"{self.d_model}; got shape {tuple(x.shape)}"
            )
        if x.numel() == 0:  # the FFT has no empty form
            raise ShapeError(
                f"S4D needs at least one time step and one sample ({form}); got shape "
                f"{tuple(x.shape)}"
            )
        if not x.is_floating_point():  # also refuses complex tensors
            raise DTypeError(f"S4D expects a real floating-point input, got {x.dtype}")
        own = self.log_dt.dtype
        if own not in (torch.float32, torch.float64):  # complex32 has no exp/FFT here
            raise DTypeError(
                f"S4D: the layer's parameters are {own}; the SSM runs in float32 or "
                "float64 (keep it in float32, .float(), and pass half inputs as they are)"
            )
        if x.dtype == torch.float64 and own != torch.float64:
            raise DTypeError(
                f"S4D: the input is float64 but the layer's parameters are {own}; call "
                ".double() on the layer or cast the input"
            )
        seq = x if self.step_mode == "m" else x.unsqueeze(0)
        return seq.to(own)  # half inputs run in the parameters' precision

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, d_model]`` (or one step ``[B, d_model]``) → the same shape."""
        seq = self._check_input(x)
        steps = seq.shape[0]
        u = seq.permute(1, 2, 0)  # [B, H, T]
        start = self._carried_state(seq.shape[1:])
        dt_a, b_bar, c = self.discrete()
        powers = self._powers(dt_a, steps + 1)  # Ā^0 .. Ā^T
        kernel = 2 * torch.einsum("hn,hnl->hl", c * b_bar, powers[..., :steps]).real
        y = _causal_fft_conv(u, kernel) + self.d.unsqueeze(-1) * u
        x0 = None
        if start is not None:  # the start state's share: 2 Re(C Ā^{k+1} x0)
            x0 = torch.complex(start["x_real"], start["x_imag"]).permute(1, 2, 0)  # [B,H,N/2]
            y = y + 2 * torch.einsum("bhn,hnl->bhl", x0 * c, powers[..., 1:]).real
        if self._carrying:
            # x[T-1] = Ā^T x0 + Σ_j Ā^{T-1-j} B̄ u[j]
            drive = torch.einsum("bhl,hnl->bhn", u.to(powers.dtype), powers[..., :steps].flip(-1))
            end = drive * b_bar
            if x0 is not None:
                end = end + powers[..., steps] * x0
            end = end.permute(2, 0, 1)  # [N/2, B, H]: trailing dims are one step's
            self._keep_state({"x_real": end.real, "x_imag": end.imag})
        out = y.permute(2, 0, 1).to(x.dtype)
        return out if self.step_mode == "m" else out[0]

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, init={self.init!r}, "
            f"lr={self.lr}, step_mode={self.step_mode}"
        )


def _causal_fft_conv(u: Tensor, kernel: Tensor) -> Tensor:
    """``y[..., t] = Σ_{j<=t} kernel[..., t-j] u[..., j]`` by FFT over ``2T`` points (the
    zero padding keeps the circular convolution from wrapping the end onto the start)."""
    steps = u.shape[-1]
    n = 2 * steps
    spectrum = torch.fft.rfft(u, n=n) * torch.fft.rfft(kernel, n=n)
    return torch.fft.irfft(spectrum, n=n)[..., :steps]


def ssm_parameter_groups(
    model: nn.Module, lr: float, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """Optimiser parameter groups as S4's training code builds them: every parameter with
    ``lr`` and ``weight_decay``, except the SSM parameters of each :class:`S4D` layer
    (``log_dt``, ``log_a_real``, ``a_imag``), which get that layer's ``lr`` (``None``:
    ``lr``) and no weight decay. ``torch.optim.AdamW(ssm_parameter_groups(net, 1e-2, 0.05))``.

    Raises:
        ConfigurationError: ``model`` holds no :class:`S4D` layer.
    """
    special: dict[int, float] = {}
    for module in model.modules():
        if isinstance(module, S4D):
            for name in SSM_PARAMETERS:
                special[id(getattr(module, name))] = lr if module.lr is None else module.lr
    if not special:
        raise ConfigurationError(f"{type(model).__name__} holds no S4D layer")
    groups: list[dict[str, Any]] = [
        {"params": [p for p in model.parameters() if id(p) not in special],
         "lr": lr, "weight_decay": weight_decay},
    ]  # fmt: skip
    for rate in sorted(set(special.values())):
        chosen = _with_rate(model.parameters(), special, rate)
        groups.append({"params": chosen, "lr": rate, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def _with_rate(params: Iterable[nn.Parameter], rates: dict[int, float], rate: float) -> list:
    return [p for p in params if rates.get(id(p)) == rate]
