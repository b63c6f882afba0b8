"""Reading and supervising a classifier's output spikes (SpikingJelly's helpers).

* :func:`first_spike_index`: where each neuron fires first (a mask over time).
* :func:`redundant_one_hot`: one-hot targets with ``n`` neurons per class (for a
  population read out by :class:`~spikeflow.layers.VotingLayer`).
* :func:`kernel_dot_product`, :func:`spike_similar_loss`: the similarity of spike
  trains in a kernel space, and a loss that makes samples sharing a label fire alike.
* :func:`set_threshold_margin`: a lower threshold for the wrong classes and a higher one
  for the right class while training.
* :func:`spikes_to_times`, :class:`SpikesToTimesDecoder`: the times of each neuron's
  first spikes, differentiable as Norse's decoder of the same name.

All are re-exported by :mod:`spikeflow.functional` under SpikingJelly's names. Spike
tensors are time-major (``[T, B, ...]``); where SpikingJelly's helper takes time last,
a ``dim`` / ``batch_dim`` argument says where the axis is (see ``docs/functional.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow._checks import check_int, check_real
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError

__all__ = [
    "KERNELS",
    "SpikesToTimesDecoder",
    "first_spike_index",
    "kernel_dot_product",
    "redundant_one_hot",
    "set_threshold_margin",
    "spike_similar_loss",
    "spikes_to_times",
]

#: The kernels of :func:`kernel_dot_product` and what their parameter is.
KERNELS = {"linear": None, "polynomial": "d", "sigmoid": "alpha", "gaussian": "sigma"}
_LOSSES = ("mse", "l1", "bce")


def _check_tensor(owner: str, name: str, x: object, floating: bool = True) -> Tensor:
    if not isinstance(x, Tensor):
        raise DTypeError(f"{owner}: {name} must be a tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise DTypeError(f"{owner}: {name} must be a floating-point tensor, got {x.dtype}")
    return x


def _check_dim(owner: str, x: Tensor, dim: int, what: str) -> int:
    """``dim`` as a non-negative index of ``x``, or a ShapeError."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise ConfigurationError(f"{owner}: {what} must be an integer, got {dim!r}")
    if not -x.dim() <= dim < x.dim():
        raise ShapeError(
            f"{owner}: {what}={dim} is not a dimension of a tensor of shape {tuple(x.shape)}"
        )
    return dim % x.dim()


def first_spike_index(spikes: Tensor, dim: int = 0) -> Tensor:
    """A boolean mask, ``True`` where each neuron emits its first spike along ``dim``.

    ``out[t] = spikes[t] != 0`` and ``spikes[s] == 0`` for every ``s < t`` (along
    ``dim``): at most one ``True`` per neuron, none for a neuron that never fired.
    :func:`spikeflow.losses.first_spike_steps` gives the step numbers instead.

    Args:
        spikes: spikes, time-major ``[T, B, ...]`` by default (any values: nonzero is a
            spike).
        dim: the time dimension (default 0; SpikingJelly's ``[..., T]`` is ``dim=-1``).

    Returns:
        A bool tensor shaped like ``spikes``.

    Raises:
        DTypeError: ``spikes`` is not a tensor.
        ShapeError: ``dim`` is not a dimension of ``spikes``.

    Example::

        >>> first_spike_index(torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]))
        tensor([[False,  True],
                [ True, False],
                [False, False]])
    """
    spikes = _check_tensor("first_spike_index", "spikes", spikes, floating=False)
    dim = _check_dim("first_spike_index", spikes, dim, "dim")
    fired = spikes != 0
    # the count of spikes so far is 1 exactly from the first spike to the second
    return fired & (fired.to(torch.int32).cumsum(dim) == 1)


def redundant_one_hot(
    labels: Tensor, num_classes: int, n: int, dtype: torch.dtype | None = None
) -> Tensor:
    """One-hot targets with ``n`` ones per class: ``[...]`` → ``[..., num_classes * n]``.

    Class ``c`` is coded by ones at ``c*n`` to ``c*n + n − 1``, the neurons that
    :class:`~spikeflow.layers.VotingLayer` ``(n)`` averages into class ``c``.

    Args:
        labels: integer class labels (``[B]``, or any shape), each in ``[0, num_classes)``.
        num_classes: the number of classes (>= 1).
        n: neurons per class (>= 1).
        dtype: of the result (default: torch's default dtype).

    Raises:
        DTypeError: ``labels`` is not an integer tensor.
        ConfigurationError: ``num_classes`` or ``n`` is not a positive integer, or a
            label lies outside ``[0, num_classes)``.

    Example::

        >>> redundant_one_hot(torch.tensor([0, 2]), num_classes=3, n=2)
        tensor([[1., 1., 0., 0., 0., 0.],
                [0., 0., 0., 0., 1., 1.]])
    """
    owner = "redundant_one_hot"
    labels = _check_tensor(owner, "labels", labels, floating=False)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DTypeError(f"{owner}: labels must be integer class labels, got {labels.dtype}")
    num_classes = check_int(f"{owner}: num_classes", num_classes, 1)
    n = check_int(f"{owner}: n", n, 1)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ConfigurationError(
            f"{owner}: labels must lie in [0, {num_classes - 1}], "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )
    codes = F.one_hot(labels.long(), num_classes).repeat_interleave(n, dim=-1)
    return codes.to(torch.get_default_dtype() if dtype is None else dtype)


def _kernel_param(kernel: str, kernel_param: float | None, owner: str) -> float | None:
    if kernel not in KERNELS:
        raise ConfigurationError(
            f"{owner}: kernel must be one of {', '.join(map(repr, KERNELS))}, got {kernel!r}"
        )
    name = KERNELS[kernel]
    if name is None:
        return None
    if kernel_param is None:
        raise ConfigurationError(f"{owner}: the {kernel} kernel needs kernel_param ({name})")
    if kernel == "gaussian":
        return check_real(f"{owner}: kernel_param (sigma)", kernel_param, 0.0, low_open=True)
    return check_real(f"{owner}: kernel_param ({name})", kernel_param)


def kernel_dot_product(
    x: Tensor, y: Tensor, kernel: str = "linear", kernel_param: float | None = None
) -> Tensor:
    """Inner products in a kernel space of the rows of ``x`` ``[N, M]`` and ``y`` ``[K, M]``.

    ``out[i, j] = κ(x_i, y_j)`` (``[N, K]``) with, for ``kernel``:

    * ``"linear"``: ``x_iᵀ y_j``;
    * ``"polynomial"``: ``(x_iᵀ y_j)^d``, ``d = kernel_param``;
    * ``"sigmoid"``: ``sigmoid(α x_iᵀ y_j)``, ``α = kernel_param``;
    * ``"gaussian"``: ``exp(−‖x_i − y_j‖² / (2σ²))``, ``σ = kernel_param > 0``.

    The squared distance is computed as ``‖x_i‖² + ‖y_j‖² − 2 x_iᵀ y_j`` (one matrix
    product, no ``[N, K, M]`` tensor), clamped at 0 against rounding.

    Raises:
        DTypeError: ``x`` or ``y`` is not a floating-point tensor, or they differ in
            dtype or device.
        ShapeError: ``x`` or ``y`` is not 2-d, or their rows differ in length.
        ConfigurationError: an unknown kernel, or a missing or invalid ``kernel_param``.
    """
    owner = "kernel_dot_product"
    x = _check_tensor(owner, "x", x)
    y = _check_tensor(owner, "y", y)
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ShapeError(
            f"{owner}: x and y must be [N, M] and [K, M] (rows of the same length), got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.dtype != y.dtype or x.device != y.device:
        raise DTypeError(
            f"{owner}: x and y must have the same dtype and device, got {x.dtype} on "
            f"{x.device} and {y.dtype} on {y.device}"
        )
    param = _kernel_param(kernel, kernel_param, owner)
    product = x.mm(y.t())
    if kernel == "linear":
        return product
    if kernel == "polynomial":
        return product.pow(param)
    if kernel == "sigmoid":
        return torch.sigmoid(param * product)
    squared = x.square().sum(dim=1, keepdim=True) + y.square().sum(dim=1) - 2 * product
    return torch.exp(-squared.clamp_min(0) / (2 * param * param))


def spike_similar_loss(
    spikes: Tensor,
    labels: Tensor,
    kernel_type: str = "linear",
    loss_type: str = "mse",
    kernel_param: float | None = None,
    *,
    batch_dim: int = 1,
) -> Tensor:
    """A loss that makes the spike trains of samples sharing a label similar.

    Each sample's spikes (every dim but ``batch_dim``, flattened) form one vector
    ``s_i``. The output similarity ``p[i, j]`` is :func:`kernel_dot_product` of
    ``s_i`` and ``s_j`` (for ``"linear"`` normalised to a cosine,
    ``s_iᵀ s_j / (‖s_i‖ ‖s_j‖ + 1e-8)``); the target ``q[i, j]`` is 1 if samples ``i``
    and ``j`` share at least one label, else 0. The loss is the mean over all ``N × N``
    pairs of ``(p − q)²`` (``"mse"``), ``|p − q|`` (``"l1"``) or the binary cross-entropy
    of ``p`` against ``q`` (``"bce"``, for kernels with values in ``[0, 1]``).

    Args:
        spikes: output spikes, ``[T, N, ...]`` (time-major, the default
            ``batch_dim=1``); SpikingJelly's ``[N, M, T]`` is ``batch_dim=0``.
        labels: multi-hot labels ``[N, C]`` (``labels[i, k] = 1``: sample ``i`` has
            label ``k``).
        kernel_type: ``"linear"`` (default), ``"polynomial"``, ``"sigmoid"`` or
            ``"gaussian"``.
        loss_type: ``"mse"`` (default), ``"l1"`` or ``"bce"``.
        kernel_param: the kernel's parameter (SpikingJelly's ``*args[0]``).
        batch_dim: the sample dimension of ``spikes`` (keyword-only).

    Returns:
        A scalar tensor.

    Raises:
        DTypeError: ``spikes`` is not floating point, or ``labels`` not a tensor.
        ShapeError: ``labels`` is not ``[N, C]`` for the ``N`` samples of ``spikes``, or
            ``N = 0``.
        ConfigurationError: an unknown kernel or loss, or a bad ``kernel_param``.
    """
    owner = "spike_similar_loss"
    spikes = _check_tensor(owner, "spikes", spikes)
    labels = _check_tensor(owner, "labels", labels, floating=False)
    batch_dim = _check_dim(owner, spikes, batch_dim, "batch_dim")
    n = spikes.shape[batch_dim]
    if n == 0:
        raise ShapeError(
            f"{owner}: spikes has no samples (dim {batch_dim} of {tuple(spikes.shape)} is 0): "
            "the mean over pairs of samples is undefined"
        )
    if labels.dim() != 2 or labels.shape[0] != n:
        raise ShapeError(
            f"{owner}: labels must be multi-hot [N, C] for the N = {n} samples of spikes "
            f"(dim {batch_dim} of {tuple(spikes.shape)}), got {tuple(labels.shape)}"
        )
    if loss_type not in _LOSSES:
        raise ConfigurationError(
            f"{owner}: loss_type must be one of {', '.join(map(repr, _LOSSES))}, got {loss_type!r}"
        )
    vectors = spikes.movedim(batch_dim, 0).reshape(n, -1)
    similarity = kernel_dot_product(vectors, vectors, kernel_type, kernel_param)
    if kernel_type == "linear":
        norms = vectors.norm(p=2, dim=1, keepdim=True)
        similarity = similarity / (norms * norms.t() + 1e-8)
    labels = labels.to(similarity.dtype)
    target = labels.mm(labels.t()).clamp_max(1)  # 1 for pairs sharing a label
    if loss_type == "mse":
        return F.mse_loss(similarity, target)
    if loss_type == "l1":
        return F.l1_loss(similarity, target)
    return F.binary_cross_entropy(similarity, target)


def set_threshold_margin(
    output_layer: nn.Module,
    label_one_hot: Tensor,
    eval_threshold: float = 1.0,
    threshold0: float = 0.9,
    threshold1: float = 1.1,
) -> None:
    """Give the output neurons a margin: a threshold per sample and class while training.

    In training mode (``output_layer.training``) the threshold of output neuron ``c`` of
    sample ``b`` becomes ``threshold1`` where ``label_one_hot[b, c] == 1`` (the right
    class) and ``threshold0`` elsewhere; in eval mode every threshold is
    ``eval_threshold``. The threshold tensor has ``label_one_hot``'s shape, which
    broadcasts over the steps of a multi-step call (``[T, B, C]``), and torch's default
    dtype (not the labels': float64 labels would make a float32 network's spikes
    float64, half-precision ones would round the thresholds). Call it before each
    forward, with that batch's labels.

    Args:
        output_layer: the output neurons, a :class:`~spikeflow.neurons.BaseNode`
            created with a float threshold.
        label_one_hot: one-hot labels ``[B, C]`` (integer, bool or floating point).
        eval_threshold, threshold0, threshold1: the thresholds (finite, above the
            neuron's ``v_reset`` with a hard reset).

    Raises:
        ConfigurationError: ``output_layer`` is not a spikeflow neuron, its threshold is
            a parameter or a buffer (learnable or created as a tensor: it is part of the
            state dict and would take the batch's shape), or a threshold is not above
            ``v_reset``.
        DTypeError: ``label_one_hot`` is not a tensor.
    """
    from spikeflow.neurons.base import BaseNode

    owner = "set_threshold_margin"
    if not isinstance(output_layer, BaseNode):
        raise ConfigurationError(
            f"{owner}: output_layer must be a spikeflow neuron, got {type(output_layer).__name__}"
        )
    if "v_threshold" in output_layer._parameters or "v_threshold" in output_layer._buffers:
        raise ConfigurationError(
            f"{owner}: {type(output_layer).__name__}'s v_threshold is a "
            f"{'parameter' if 'v_threshold' in output_layer._parameters else 'buffer'} "
            "(learnable, or created as a tensor), part of its state dict; create the output "
            "neurons with a float v_threshold to set a margin"
        )
    label_one_hot = _check_tensor(owner, "label_one_hot", label_one_hot, floating=False)
    values = {
        name: check_real(f"{owner}: {name}", value)
        for name, value in (
            ("eval_threshold", eval_threshold),
            ("threshold0", threshold0),
            ("threshold1", threshold1),
        )
    }
    v_reset = output_layer.v_reset
    for name, value in values.items():
        if v_reset is not None and value <= v_reset:
            raise ConfigurationError(
                f"{owner}: {name} ({value}) must be above the neuron's v_reset ({v_reset})"
            )
    if not output_layer.training:
        output_layer.v_threshold = values["eval_threshold"]
        return
    # In torch's default dtype, whatever the labels' dtype: float64 labels (from numpy)
    # made a float32 network's spikes float64 (and its neuron leave the fused kernel);
    # half-precision labels rounded the thresholds (1.1 became 1.1016 in bfloat16).
    right = label_one_hot == 1
    threshold = torch.full(
        label_one_hot.shape,
        values["threshold0"],
        dtype=torch.get_default_dtype(),
        device=label_one_hot.device,
    )
    output_layer.v_threshold = threshold.masked_fill(right, values["threshold1"])


class _SpikesToTimes(torch.autograd.Function):
    """The steps of the first ``count`` spikes; backward ``-grad`` at those steps."""

    @staticmethod
    def forward(ctx, spikes: Tensor, count: int) -> Tensor:  # type: ignore[override]
        steps = spikes.shape[0]
        # At least float32: float16/bfloat16 hold whole numbers exactly only up to
        # 2048/256, and a later step index (257 in bfloat16) rounded to another step.
        dtype = torch.promote_types(spikes.dtype, torch.float32)
        index = torch.arange(steps, dtype=dtype, device=spikes.device)
        index = index.view(steps, *([1] * (spikes.dim() - 1)))
        times = torch.where(spikes != 0, index, float("inf"))
        times, order = times.sort(dim=0, stable=True)
        kept = min(count, steps)
        times, order = times[:kept], order[:kept]
        ctx.save_for_backward(order, torch.isfinite(times))
        ctx.shape = spikes.shape
        return times

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        order, fired = ctx.saved_tensors
        moved = torch.where(fired, -grad, torch.zeros_like(grad))
        return grad.new_zeros(ctx.shape).scatter_add_(0, order, moved), None


def spikes_to_times(spikes: Tensor, spike_count: int = 1, dt: float | None = None) -> Tensor:
    """The times of each neuron's first ``spike_count`` spikes, in ascending order (Norse's
    ``ToSpikeTimes``, the function behind its ``SpikesToTimesDecoder``).

    ``spikes`` is time-major ``[T, ...]``; a spike is a nonzero value. ``out[k]`` is the
    step (0-based) of the ``(k+1)``-th spike of each neuron, times ``dt`` if given, and
    ``inf`` where a neuron fired fewer than ``k+1`` times. The output has
    ``min(spike_count, T)`` rows (Norse's).

    Differentiable as Norse's decoder: the gradient of ``out[k]`` with respect to the
    spike it reads is ``-1`` (``-dt`` with ``dt``; an earlier spike is an earlier time),
    and zero at every other step and for an ``inf`` entry. Norse's backward fails where
    a neuron fired fewer than ``spike_count`` times, and in float64; this one does not.
    For Norse's 0/1 spikes the times equal Norse's (it reads a value ``s`` at step ``t``
    as ``s (t + 1) - 1``, so a graded spike there gives another time; here any nonzero
    value is a spike at ``t``). :func:`spikeflow.losses.spike_times` is the loss-side
    variant (``T - 1`` where a neuron did not fire).

    Args:
        spikes: floating spikes ``[T, ...]``, ``T >= 1``.
        spike_count: how many spikes per neuron, an integer ``>= 1`` (default 1).
        dt: the duration of a step, > 0; ``None`` (default) gives step indices.

    Returns:
        ``[min(spike_count, T), ...]`` in ``spikes``' dtype, or float32 for float16 /
        bfloat16 spikes (whose step indices past 2048 / 256 would be rounded).

    Raises:
        DTypeError: ``spikes`` is not a floating-point tensor.
        ShapeError: ``spikes`` has no time dimension, or ``T = 0``.
        ConfigurationError: ``spike_count`` is not an integer ``>= 1``, ``dt`` is not a
            finite number ``> 0``.

    Example::

        >>> spikes_to_times(torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]), 2)
        tensor([[1., 0.],
                [2., inf]])
    """
    owner = "spikes_to_times"
    spikes = _check_tensor(owner, "spikes", spikes)
    if spikes.dim() < 1 or spikes.shape[0] == 0:
        raise ShapeError(
            f"{owner}: spikes must be time-major [T, ...] with T >= 1, got {tuple(spikes.shape)}"
        )
    count = check_int(f"{owner}: spike_count", spike_count, 1)
    times = _SpikesToTimes.apply(spikes, count)
    if dt is None:
        return times
    return times * check_real(f"{owner}: dt", dt, 0.0, low_open=True)


class SpikesToTimesDecoder(nn.Module):
    """Norse's ``SpikesToTimesDecoder``: :func:`spikes_to_times` as a module.

    ``[T, ...]`` spikes in, ``[min(spike_count, T), ...]`` times out (step indices times
    ``dt``, or the indices with ``convert_indices_to_times=False``), ``inf`` where a
    neuron fired fewer times; gradients as :func:`spikes_to_times`. Norse's
    ``SpikesToTimesDecoder(spike_count=torch.as_tensor(k), convert_indices_to_times, dt)``
    maps argument for argument (an int ``spike_count`` here).

    Args:
        spike_count: spikes per neuron, an integer ``>= 1`` (default 1: first spikes).
        convert_indices_to_times: multiply the step indices by ``dt`` (default True).
        dt: the step duration, > 0 (default ``1e-3``, Norse's).

    Raises:
        ConfigurationError: a ``spike_count`` or ``dt`` out of range, a non-bool flag.
    """

    def __init__(
        self, spike_count: int = 1, convert_indices_to_times: bool = True, dt: float = 1e-3
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if isinstance(spike_count, Tensor) and spike_count.numel() == 1:
            spike_count = int(spike_count.item())  # Norse passes a 0-d tensor
        self.spike_count = check_int(f"{owner}: spike_count", spike_count, 1)
        if not isinstance(convert_indices_to_times, bool):
            raise ConfigurationError(
                f"{owner}: convert_indices_to_times must be a bool, "
                f"got {convert_indices_to_times!r}"
            )
        self.convert_indices_to_times = convert_indices_to_times
        self.dt = check_real(f"{owner}: dt", dt, 0.0, low_open=True)

    def forward(self, spikes: Tensor) -> Tensor:
        """The spike times (see the class docstring) of ``spikes`` ``[T, ...]``."""
        dt = self.dt if self.convert_indices_to_times else None
        return spikes_to_times(spikes, self.spike_count, dt)

    def extra_repr(self) -> str:
        return (
            f"spike_count={self.spike_count}, "
            f"convert_indices_to_times={self.convert_indices_to_times}, dt={self.dt:g}"
        )
