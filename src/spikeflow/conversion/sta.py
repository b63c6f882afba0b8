"""Spatio-Temporal Approximation (STA, Jiang et al., ICLR 2024): spike encoders for a
float Transformer, no quantisation-aware training.

``convert_transformer(model, encoders="sta", calibration=batches, steps=T)`` puts an
:class:`STAEncoder` after every LayerNorm, GELU and ``nn.MultiheadAttention`` output of
a float model (SpikingJelly 2.0's ``STATransformerRecipe(mode="spiking_encoder")``).
Each encoder is a signed multi-level integrate-and-fire neuron on the changes it gets::

    v_t = v_(t-1) + x_t,   s_t = θ · trunc(v_t / θ),   v_t ← v_t − s_t

one threshold ``θ`` per channel (last dim), found on calibration batches of the float
model's activations ``a`` (per channel ``m = max|a|``):

* ``"max"``: ``θ = m / T``;
* ``"mse"``: ``θ = c·m / T`` for the ``c`` of ``0.125, 0.1875, ..., 2`` (31 values) whose
  truncation ``θ · trunc(a / θ)`` has the smallest mean squared error (the first on ties);

per batch, then averaged over batches as a running mean ``θ ← (1 − μ)·θ + μ·θ_batch``
(μ = ``momentum``, the first batch taken as it is), and scaled by ``threshold_scale``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.conversion.report import ConversionError
from spikeflow.conversion.temporal import _Folding
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["STAEncoder", "sta_threshold", "traceable_encoders"]

#: Modules whose outputs get an encoder (an nn.MultiheadAttention: its first output).
STA_SITES = (nn.LayerNorm, nn.GELU, nn.MultiheadAttention)
_FACTORS = torch.linspace(0.125, 2.0, steps=31).tolist()


def sta_threshold(activations: Tensor, steps: int, mode: str = "mse", eps: float = 1e-6) -> Tensor:
    """Per-channel (last dim) STA thresholds ``θ`` ``[C]`` for one batch of activations.

    Args:
        activations: the float model's output at one site, ``[..., C]`` (at least 2 dims).
        steps: the number of time steps ``T`` the SNN runs.
        mode: ``"mse"`` (search ``c·max|a|``, see the module docstring) or ``"max"``.
        eps: the smallest ``max|a|`` used (a channel of zeros).

    Raises:
        ConfigurationError: an unknown ``mode`` or ``steps < 1``.
        ShapeError: fewer than 2 dims.
    """
    if mode not in ("mse", "max"):
        raise ConfigurationError(f"threshold must be 'mse' or 'max', got {mode!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigurationError(f"steps must be a positive int, got {steps!r}")
    if activations.dim() < 2:
        raise ShapeError(
            f"STA calibration needs activations of at least 2 dims, got {tuple(activations.shape)}"
        )
    a = activations.detach()
    if a.dtype in (torch.float16, torch.bfloat16):
        a = a.float()
    values = a.reshape(-1, a.shape[-1]).t()  # [C, N]
    peak = values.abs().amax(dim=1).clamp(min=eps)
    if mode == "max":
        return peak / steps
    best, best_err = peak, torch.full_like(peak, float("inf"))
    for factor in _FACTORS:
        full = (peak * factor).clamp(min=eps)
        theta = full[:, None] / steps
        err = (values - torch.trunc(values / theta) * theta).square().mean(1)
        better = err < best_err
        best = torch.where(better, full, best)
        best_err = torch.where(better, err, best_err)
    return best / steps


class _Observer:
    """Running mean of a site's per-batch thresholds (a forward hook)."""

    def __init__(self, steps: int, mode: str, momentum: float) -> None:
        self.steps, self.mode, self.momentum = steps, mode, momentum
        self.threshold: Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, (tuple, list)):
            output = output[0]
        batch = sta_threshold(output, self.steps, self.mode)
        if self.threshold is None:
            self.threshold = batch
        else:
            self.threshold = (1 - self.momentum) * self.threshold + self.momentum * batch


def calibrate_sta(
    model: nn.Module,
    sites: list[str],
    calibration: Iterable[Any],
    steps: int,
    mode: str,
    momentum: float,
    batches: int | None,
) -> dict[str, Tensor]:
    """The thresholds of the named ``sites`` (modules of ``model``, run in eval mode on
    the calibration batches: a tensor, or ``(input, ...)`` whose first item is the input)."""
    observers = {name: _Observer(steps, mode, momentum) for name in sites}
    handles = [model.get_submodule(n).register_forward_hook(o) for n, o in observers.items()]
    seen = 0
    try:
        with torch.no_grad():
            for batch in calibration:
                if batches is not None and seen >= batches:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if not isinstance(x, Tensor):
                    raise ConfigurationError(
                        f"calibration batch {seen} is {type(x).__name__}, not a tensor "
                        "(or a tuple whose first item is the input tensor)"
                    )
                try:
                    model(x)
                except ConversionError:  # a mask refused: as without calibration
                    raise
                except Exception as err:
                    raise ConfigurationError(
                        f"calibration batch {seen} (shape {tuple(x.shape)}, {x.dtype}) fails "
                        f"in the float model: {type(err).__name__}: {err}"
                    ) from err
                seen += 1
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ConfigurationError("calibration gave no batch: STA thresholds need data")
    # a site the forward never calls (an unused norm) gets no threshold and no encoder
    out = {name: obs.threshold for name, obs in observers.items() if obs.threshold is not None}
    if not out:
        raise ConfigurationError(
            f"none of {sites} was called on the calibration batches: no STA threshold"
        )
    return out


class STAEncoder(_Folding):
    """A signed multi-level IF neuron with per-channel threshold (see the module
    docstring): ``s_t = θ·trunc((v_(t-1) + x_t)/θ)``, soft reset. Input and output are
    changes ``[T, B, ..., C]`` (``[T*B, ..., C]`` inside a converted network); it
    streams (carries its membrane).

    Args:
        threshold: ``θ`` ``[C]`` (positive, finite).
    """

    def __init__(self, threshold: Tensor) -> None:
        super().__init__("STAEncoder")
        threshold = torch.as_tensor(threshold).detach().clone()
        if threshold.dim() != 1 or not torch.isfinite(threshold).all() or (threshold <= 0).any():
            raise ConfigurationError(
                "STAEncoder threshold must be a 1-d tensor of positive finite values, got "
                f"shape {tuple(threshold.shape)}"
            )
        self.register_buffer("threshold", threshold)

    def forward(self, x: Tensor) -> Tensor:
        """The spikes (multiples of ``θ``) at each step, in ``x``'s layout."""
        seq = self._unfold(x, "input")
        if seq.shape[-1] != self.threshold.numel():
            raise ShapeError(
                f"STAEncoder: input's last dim is {seq.shape[-1]}, its threshold has "
                f"{self.threshold.numel()} channels"
            )
        # as SpikingJelly: θ at least the dtype's eps (a zero channel's 1e-6/T is 0 in fp16)
        theta = self.threshold.to(seq.dtype).clamp(min=torch.finfo(seq.dtype).eps)
        state = self._start(seq.shape[1])
        v = torch.zeros_like(seq[0]) if state is None else self._state_tensor(state, "v", seq[0])
        out = []
        for x_t in seq:
            v = v + x_t
            s = torch.trunc(v / theta) * theta
            v = v - s
            out.append(s)
        self._keep_state({"v": v})
        return self._fold(torch.stack(out))

    def extra_repr(self) -> str:
        return f"channels={self.threshold.numel()}"


class _MaskFree(nn.Module):
    """Called as the torch module it replaces, refusing by name any mask (or
    ``is_causal=True``) given: only ``x`` reaches ``forward`` (and ``torch.fx``)."""

    _owner = ""
    _mask_args: tuple[str, ...] = ()

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) > len(self._mask_args):
            raise ConversionError(f"{self._owner} called with {1 + len(args)} positional args")
        given = dict(zip(self._mask_args, args)) | kwargs
        for name, value in given.items():
            if name not in self._mask_args:
                raise ConversionError(f"{self._owner} got an unknown argument {name}=")
            if value is not None and value is not False:
                raise ConversionError(
                    f"{self._owner} called with {name}=: masks are not supported by the "
                    "spiking conversion (call it without masks)"
                )
        return super().__call__(x)


class _TracedEncoderLayer(_MaskFree):
    """``nn.TransformerEncoderLayer``'s forward without masks, written so ``torch.fx``
    traces it (torch's own checks its fast path on concrete tensors); shares the
    layer's modules, a function activation made its module (``F.gelu`` -> ``nn.GELU``)."""

    _owner = "nn.TransformerEncoderLayer"
    _mask_args = ("src_mask", "src_key_padding_mask", "is_causal")

    def __init__(self, layer: nn.TransformerEncoderLayer) -> None:
        super().__init__()
        _check_batch_first(layer.self_attn, "nn.TransformerEncoderLayer")
        self.self_attn, self.norm1, self.norm2 = layer.self_attn, layer.norm1, layer.norm2
        self.linear1, self.linear2 = layer.linear1, layer.linear2
        self.dropout, self.dropout1, self.dropout2 = layer.dropout, layer.dropout1, layer.dropout2
        self.norm_first = layer.norm_first
        act = layer.activation
        if isinstance(act, nn.Module):
            self.activation = act
        elif act is torch.nn.functional.gelu:
            self.activation = nn.GELU()
        elif act is torch.nn.functional.relu:
            self.activation = nn.ReLU()
        else:
            raise ConfigurationError(
                f"TransformerEncoderLayer activation {act!r} is not a module, F.gelu or F.relu"
            )

    def _sa(self, x: Tensor) -> Tensor:
        out, _weights = self.self_attn(x, x, x, need_weights=False)
        return self.dropout1(out)

    def _ff(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        if self.norm_first:
            x = x + self._sa(self.norm1(x))
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x))
        return self.norm2(x + self._ff(x))


class _TracedEncoder(_MaskFree):
    """``nn.TransformerEncoder`` (no masks) over traceable layers."""

    _owner = "nn.TransformerEncoder"
    _mask_args = ("mask", "src_key_padding_mask", "is_causal")

    def __init__(self, encoder: nn.TransformerEncoder) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_TracedEncoderLayer(layer) for layer in encoder.layers)
        self.norm = encoder.norm

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x if self.norm is None else self.norm(x)


def _check_batch_first(attention: nn.Module, owner: str) -> None:
    """Refuse a sequence-first ``nn.MultiheadAttention``: time is folded into dim 0,
    which it reads as the tokens (the steps would attend to each other silently)."""
    if isinstance(attention, nn.MultiheadAttention) and not attention.batch_first:
        raise ConversionError(
            f"{owner} has batch_first=False: its dim 0 is the sequence, but the converted "
            "network folds time into dim 0 (the batch); build it with batch_first=True"
        )


def traceable_encoders(model: nn.Module) -> nn.Module:
    """``model`` (modified in place, and returned) with every ``nn.TransformerEncoder``
    and ``nn.TransformerEncoderLayer`` replaced by a traceable equivalent sharing its
    modules (called without masks), so that their LayerNorms, attention and activation
    are reached by the conversion."""
    if isinstance(model, nn.TransformerEncoder):
        return _TracedEncoder(model)
    if isinstance(model, nn.TransformerEncoderLayer):
        return _TracedEncoderLayer(model)
    for name, child in list(model.named_children()):
        setattr(model, name, traceable_encoders(child))
    return model
