"""What snnTorch's ``SpikingNeuron`` gives its neurons, shared by spikeflow's ports
(:mod:`spikeflow.neurons.snntorch_style`): the threshold, reset mechanism, strict
firing, ``atan()`` surrogate, graded spikes, loading a snnTorch ``state_dict`` by name,
and the checks of snnTorch's numbers (:func:`snntorch_factor`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spikeflow._checks import check_flag
from spikeflow.base import StepMode
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.neurons.base import BaseNode, check_step_shape, refuse_state_inputs
from spikeflow.surrogate import ATan, Surrogate

__all__ = [
    "RESET_MECHANISMS",
    "SnnTorchNode",
    "check_inhibited_steps",
    "inhibition_backend",
    "show_value",
    "snntorch_factor",
]

#: snnTorch's reset mechanisms, in the order of its ``reset_mechanism_val``.
RESET_MECHANISMS = ("subtract", "zero", "none")


# -- checks ----------------------------------------------------------------------------------


def snntorch_factor(
    owner: str, name: str, value: object, low: float | None = None, high: float | None = None
) -> Tensor:
    """A decay (or other) factor as a floating tensor: a Python number becomes a scalar of
    the default dtype, as in snnTorch; a tensor keeps its dtype and shape. Checked
    finite and, where given, within ``[low, high]``."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise DTypeError(f"{owner}: {name} must be a floating-point tensor, got {value.dtype}")
        tensor = value.detach().clone()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{owner}: {name} must be a float or a tensor, got {value!r}")
    else:
        tensor = torch.tensor(float(value))
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigurationError(f"{owner}: {name} must be finite, got {value}")
    below = low is not None and bool((tensor < low).any())
    above = high is not None and bool((tensor > high).any())
    if below or above:
        raise ConfigurationError(
            f"{owner}: {name} must be in [{low:g}, {high:g}] (snnTorch clamps it there when "
            f"used), got {value}"
        )
    return tensor


def show_value(value: float | Tensor) -> str:
    """A factor for a repr: the number of a 0-dim tensor or float, else its shape."""
    if isinstance(value, Tensor):
        return f"{value.item():g}" if value.dim() == 0 else f"tensor{tuple(value.shape)}"
    return f"{value:g}"


def inhibition_backend(owner: str, backend: str) -> str:
    """The backend of an inhibited neuron: the reference loop (``"auto"`` and
    ``"torch"``); the fused ones are refused, naming why."""
    if backend in ("cpu", "triton"):
        raise ConfigurationError(
            f"{owner}: inhibition=True runs on the reference loop only (backend='torch' or "
            f"'auto'), got backend={backend!r}: only the neuron with the largest membrane "
            "of each sample may fire, an argmax across the neurons, where the fused "
            "kernels step each neuron alone"
        )
    return "torch" if backend == "auto" else backend


# -- the modules -----------------------------------------------------------------------------


def check_inhibited_steps(owner: str, x_seq: Tensor) -> None:
    """Raise a :class:`ShapeError` unless the steps of ``x_seq`` (``[T, ...]``) are
    ``[B, N]``, what an inhibited neuron (``inhibition=True``) takes."""
    if x_seq.dim() != 3:
        raise ShapeError(
            f"{owner}: inhibition=True takes steps of shape [B, N] (the neurons of each "
            f"sample compete along N, as snnTorch's fire_inhibition's argmax over dim 1), "
            f"got one step of shape {tuple(x_seq.shape[1:])}"
        )


class SnnTorchNode(BaseNode):
    """What snnTorch's ``SpikingNeuron`` gives its neurons: the threshold (learnable), the
    reset mechanism, strict firing and its ``atan()`` surrogate by default, graded spikes,
    loading a snnTorch ``state_dict`` by name, and ``inhibition`` (only the neuron with
    the largest membrane of each sample may fire, on the reference loop:
    :func:`~spikeflow.neurons.snntorch_equations.inhibited_spikes`). Subclasses declare
    the equations, passing ``self.inhibition`` to their declaration."""

    #: The decay factors the subclass keeps (tensors, checked against the step shape).
    _factors: tuple[str, ...] = ()

    def __init__(
        self,
        threshold: float | Tensor,
        reset_mechanism: str,
        learn_threshold: bool,
        surrogate_function: Surrogate | None,
        strict_firing: bool,
        graded_spikes_factor: float | Tensor,
        learn_graded_spikes_factor: bool,
        step_mode: StepMode,
        backend: str,
        store_v_seq: bool,
        inhibition: bool = False,
    ) -> None:
        owner = type(self).__name__
        inhibited = check_flag(owner, "inhibition", inhibition)
        if inhibited:
            backend = inhibition_backend(owner, backend)
        super().__init__(
            v_threshold=threshold,
            v_reset=None,
            surrogate_function=ATan() if surrogate_function is None else surrogate_function,
            detach_reset=False,
            strict_firing=strict_firing,
            learnable_threshold=check_flag(owner, "learn_threshold", learn_threshold),
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
        )
        if reset_mechanism not in RESET_MECHANISMS:
            raise ConfigurationError(
                f"{owner}: reset_mechanism must be one of {RESET_MECHANISMS} (snnTorch's), "
                f"got {reset_mechanism!r}"
            )
        self.reset_mechanism = reset_mechanism
        learn = check_flag(owner, "learn_graded_spikes_factor", learn_graded_spikes_factor)
        if learn or isinstance(graded_spikes_factor, Tensor):
            factor = snntorch_factor(owner, "graded_spikes_factor", graded_spikes_factor)
            if learn:
                self.graded_spikes_factor: float | Tensor = nn.Parameter(factor)
            else:
                self.register_buffer("graded_spikes_factor", factor)
        else:
            self.graded_spikes_factor = float(
                snntorch_factor(owner, "graded_spikes_factor", graded_spikes_factor)
            )
        if inhibited and (learn or isinstance(graded_spikes_factor, Tensor)
                                or self.graded_spikes_factor != 1.0):  # fmt: skip
            raise ConfigurationError(
                f"{owner}: inhibition=True takes no graded spikes (graded_spikes_factor="
                f"{show_value(graded_spikes_factor)}, learn_graded_spikes_factor={learn}): "
                "snnTorch 1.0's fire_inhibition drops the factor from its output but its "
                "reset_delay=False reset divides by it, which is not reproduced"
            )
        self.inhibition = inhibited

    def _set_factor(self, name: str, value: object, learn: bool) -> None:
        """Keep a decay factor in ``[0, 1]`` as a buffer, or a parameter if ``learn``."""
        tensor = snntorch_factor(type(self).__name__, name, value, 0.0, 1.0)
        if check_flag(type(self).__name__, f"learn_{name}", learn):
            setattr(self, name, nn.Parameter(tensor))
        else:
            self.register_buffer(name, tensor)

    @property
    def threshold_params(self) -> dict[str, Tensor | float]:
        """``{"theta": θ}`` where the charge reads the threshold (a reset), else empty."""
        return {} if self.reset_mechanism == "none" else {"theta": self.v_threshold}

    def forward(self, x: Tensor, *state: object) -> Tensor:
        """Spikes for ``x`` (``[T, B, ...]``, or ``[B, ...]`` in single-step mode), times
        ``graded_spikes_factor`` as in snnTorch (``lif(x, mem)`` is refused: the
        neuron carries its state; :meth:`run` takes and returns it)."""
        refuse_state_inputs(self, state)
        spikes = super().forward(x)
        factor = self.graded_spikes_factor
        if isinstance(factor, Tensor) or factor != 1.0:
            spikes = spikes * factor
        return spikes

    def _check_input(self, x: Tensor) -> Tensor:
        x_seq = super()._check_input(x)
        if self.inhibition:
            check_inhibited_steps(type(self).__name__, x_seq)
        for name in self._factors:
            check_step_shape(type(self).__name__, name, getattr(self, name), x_seq.shape[1:])
        return x_seq

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Read snnTorch's names too: ``threshold`` is ``v_threshold``; its
        ``reset_mechanism_val``, and a threshold or graded spikes factor that is a
        constant float here, must equal this neuron's (a mismatch is an error naming
        both)."""
        errors: list[str] = args[-1]
        theirs = prefix + "threshold"
        if theirs in state_dict and prefix + "v_threshold" not in state_dict:
            value = state_dict.pop(theirs)
            if isinstance(self.v_threshold, Tensor):
                state_dict[prefix + "v_threshold"] = value
            else:
                self._compare_constant(errors, prefix, "threshold", value, self.v_threshold)
        mechanism = state_dict.pop(prefix + "reset_mechanism_val", None)
        if mechanism is not None:
            index = int(mechanism)
            if not 0 <= index < len(RESET_MECHANISMS) or (
                RESET_MECHANISMS[index] != self.reset_mechanism
            ):
                saved = RESET_MECHANISMS[index] if 0 <= index < len(RESET_MECHANISMS) else index
                errors.append(
                    f"{prefix}reset_mechanism_val: the state dict's neuron resets by "
                    f"{saved!r} (snnTorch's reset_mechanism_val={index}), this "
                    f"{type(self).__name__} by {self.reset_mechanism!r}"
                )
        factor = self.graded_spikes_factor
        theirs = prefix + "graded_spikes_factor"
        if not isinstance(factor, Tensor) and theirs in state_dict:
            self._compare_constant(
                errors, prefix, "graded_spikes_factor", state_dict.pop(theirs), factor
            )
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _compare_constant(
        self, errors: list[str], prefix: str, name: str, saved: object, mine: float | Tensor
    ) -> None:
        """Append an error unless ``saved`` equals ``mine`` (rounded to ``saved``'s dtype:
        snnTorch keeps its numbers as float32 tensors)."""
        if not isinstance(saved, Tensor):
            errors.append(f"{prefix}{name}: expected a tensor, got {type(saved).__name__}")
            return
        want = torch.as_tensor(mine).detach().to(saved.dtype).cpu()
        try:
            same = bool(torch.all(torch.broadcast_to(want, saved.shape) == saved.cpu()))
        except RuntimeError:
            same = False
        if not same:
            errors.append(
                f"{prefix}{name}: the state dict holds {show_value(saved)}, this "
                f"{type(self).__name__} was built with {name}={show_value(mine)} (a constant "
                "here: build the neuron with the saved value)"
            )

    def extra_repr(self) -> str:
        parts = [f"{name}={show_value(getattr(self, name))}" for name in self._factors]
        parts += [
            f"threshold={show_value(self.v_threshold)}",
            f"reset_mechanism={self.reset_mechanism!r}",
        ]
        parts += self._extra_flags()
        if self.inhibition:
            parts.append("inhibition=True")
        if not self.strict_firing:
            parts.append("strict_firing=False")
        if isinstance(self.v_threshold, nn.Parameter):
            parts.append("learn_threshold=True")
        factor = self.graded_spikes_factor
        if isinstance(factor, Tensor) or factor != 1.0:
            parts.append(f"graded_spikes_factor={show_value(factor)}")
        parts += [f"step_mode={self.step_mode!r}", f"backend={self.backend!r}"]
        return ", ".join(parts)

    def _extra_flags(self) -> list[str]:
        return []
