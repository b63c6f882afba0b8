"""The STBP networks (Wu et al., Front. Neurosci. 2018; methods.md 5.1), with the
normalisations of their successors as options: NeuNorm (Wu et al., AAAI 2019; 5.2) and
tdBN (Zheng et al., AAAI 2021; 5.3).

The neuron is STBP's iterative LIF, ``u[t] = 0.2·u[t−1]·(1 − o[t−1]) + W·o_prev[t]``,
``o[t] = 1[u[t] > 0.5]``, rectangle surrogate (gradient 1 where ``|u − 0.5| < 0.5``), the
gradient flowing through the ``(1 − o)`` reset term: spikeflow's :class:`LIFNode` with
:data:`STBP_DEFAULTS`. The input is rate coded as in the authors' code: a static image
repeated over T (what ``spikeflow train`` feeds) becomes independent Bernoulli spikes with
the pixel intensity as probability, drawn afresh at every step (train and test alike;
with ``eval_seed`` the test draws are a fixed function of each sample).
The output is the last layer's spikes; their mean over T is the rate STBP's MSE loss
compares with the one-hot label (``spikeflow train --loss mse``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow import layers
from spikeflow.encoding import PoissonEncoder
from spikeflow.errors import ConfigurationError
from spikeflow.models.building import check_input, check_positive_int, image_sides
from spikeflow.models.common import NeuronFactory, NeuronSpec
from spikeflow.models.registry import register_model

__all__ = ["STBP_DEFAULTS", "STBP_NORMS", "STBPNet", "stbp_cnn", "stbp_mlp"]

#: STBP's neuron (methods.md 5.1) as LIFNode arguments: decay 1 − 1/tau = 0.2 with the
#: input not scaled (``decay_input=False``), θ = 0.5 fired on ``u > θ``, hard reset to 0
#: whose ``(1 − o)`` term is differentiated, rectangle surrogate of width 1 (alpha 1).
STBP_DEFAULTS: dict[str, Any] = {
    "tau": 1.25,
    "decay_input": False,
    "v_threshold": 0.5,
    "v_reset": 0.0,
    "strict_firing": True,
    "detach_reset": False,
    "surrogate_function": "rect",
}

#: The ``norm`` choices: none (STBP), per-step-folded batch norm, tdBN.
STBP_NORMS = ("none", "bn", "tdbn")
_ENCODINGS = ("bernoulli", "none")


def _one_threshold(value: Any) -> float | None:
    """The neurons' θ as one number (None: the neuron has no ``v_threshold``).

    Every layer's neurons get the same arguments, and the conv layers' ``[C, H, W]`` and
    the FC layers' ``[F]`` share no per-neuron shape: θ must be one number.
    """
    if value is None:
        return None
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ConfigurationError(
                f"STBPNet: v_threshold must be one number (a float or a one-element "
                f"tensor): the same neuron arguments go to the conv and the FC layers, "
                f"which share no per-neuron shape; got a tensor of shape {tuple(value.shape)}"
            )
        return float(value.detach())
    return float(value)


class STBPNet(nn.Module):
    """STBP's MLP or CNN: ``[T, B, C, H, W]`` → output spikes ``[T, B, num_classes]``.

    ``arch="mlp"``: Bernoulli input, FC ``hidden[0]``, LIF, ..., FC ``num_classes``, LIF
    (the authors' MNIST MLP is 784-800-10). ``arch="cnn"``: Bernoulli input, conv
    ``channels`` 3x3 (padding 1), LIF, 2x2 average pool, conv ``channels`` 3x3, LIF, 2x2
    average pool, FC ``hidden[0]``, LIF, FC ``num_classes``, LIF (the authors' code:
    32C3-AP2-32C3-AP2-128-10). With ``norm`` each conv is followed by batch norm
    (``"bn"``, statistics over the time-folded batch) or tdBN (``"tdbn"``, the same
    statistics, weight initialised to ``α·θ`` with α = 1 and θ the threshold the neurons
    hold: STBP's 0.5, the ``neuron_kwargs``' or the chosen neuron's own);
    with ``neunorm`` a :class:`~spikeflow.layers.NeuNorm` follows each conv LIF (after the
    spiking layer, before the pool and the next layer, as methods.md 5.2 places it).

    Args:
        num_classes: output classes.
        in_channels: input channels.
        input_size: ``(H, W)`` of the input or one side; the CNN needs both ≥ 4.
        arch: ``"cnn"`` or ``"mlp"``.
        channels: channels of both convs (CNN).
        hidden: sizes of the hidden FC layers (the MLP's; the CNN's after the convs).
        encoding: ``"bernoulli"`` (static intensities in ``[0, 1]`` become spikes,
            STBP's MNIST input) or ``"none"`` (the input is used as it is: event frames).
        norm: one of :data:`STBP_NORMS` (CNN only).
        neunorm: NeuNorm after each conv LIF (CNN only).
        neunorm_k: NeuNorm's decay ``k`` (SpikingJelly's 0.9).
        neuron: neuron class, factory or name (default ``"lif"``).
        neuron_kwargs: its arguments, over :data:`STBP_DEFAULTS` (``v_threshold`` one
            number: every layer's neurons get the same arguments).
        eval_seed: ``None`` (default): fresh draws in evaluation too, as the authors'
            code. An integer: in evaluation each sample's spikes are drawn from a
            generator seeded by it and the sample's values, so a checkpoint's test
            accuracy is reproducible (whatever the batch size or order); training
            draws are unchanged.

    Raises:
        ConfigurationError: a bad argument (named), e.g. a per-channel ``v_threshold``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int | tuple[int, int] | list[int] = (8, 8),
        arch: str = "cnn",
        channels: int = 32,
        hidden: int | list[int] | tuple[int, ...] = 128,
        encoding: str = "bernoulli",
        norm: str = "none",
        neunorm: bool = False,
        neunorm_k: float = 0.9,
        neuron: NeuronSpec = "lif",
        neuron_kwargs: Mapping[str, Any] | None = None,
        eval_seed: int | None = None,
    ) -> None:
        super().__init__()
        height, width = image_sides("STBPNet", input_size)
        for name, value in (
            ("num_classes", num_classes), ("in_channels", in_channels), ("channels", channels),
        ):  # fmt: skip
            check_positive_int(name, value)
        sizes = [hidden] if isinstance(hidden, int) else list(hidden)
        for size in sizes:
            check_positive_int("hidden", size)
        for name, value, choices in (
            ("arch", arch, ("cnn", "mlp")), ("encoding", encoding, _ENCODINGS),
            ("norm", norm, STBP_NORMS),
        ):  # fmt: skip
            if value not in choices:
                raise ConfigurationError(f"STBPNet: {name} must be one of {choices}, got {value!r}")
        if eval_seed is not None:
            if isinstance(eval_seed, bool) or not isinstance(eval_seed, int) or eval_seed < 0:
                raise ConfigurationError(
                    f"STBPNet: eval_seed must be None or an integer >= 0, got {eval_seed!r}"
                )
            if encoding != "bernoulli":
                raise ConfigurationError(
                    f"STBPNet: eval_seed seeds the Bernoulli input's draws in evaluation; "
                    f"encoding={encoding!r} draws none (leave eval_seed out)"
                )
        self.eval_seed = eval_seed
        if not isinstance(neunorm, bool):
            raise ConfigurationError(f"STBPNet: neunorm must be true or false, got {neunorm!r}")
        if arch == "mlp" and (norm != "none" or neunorm):
            raise ConfigurationError(
                f"STBPNet: norm={norm!r} and neunorm={neunorm} apply to the convs; arch='mlp' "
                "has none (use arch='cnn', or norm='none' and neunorm=false)"
            )
        if arch == "cnn" and (height < 4 or width < 4):
            raise ConfigurationError(
                f"STBPNet: the CNN's two 2x2 pools need input_size of at least 4x4, got "
                f"{height}x{width}"
            )
        spiking = NeuronFactory(neuron, neuron_kwargs, defaults=STBP_DEFAULTS)
        # θ as the neurons hold it (their own default where STBP's does not apply); read
        # on the CPU, as a meta-device tensor (a model built on "meta") has no value.
        with torch.device("cpu"):
            theta = _one_threshold(getattr(spiking(), "v_threshold", None))
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.arch = arch
        # One draw per element and step: a single-step call on the whole [T, B, ...].
        self.encoder = (
            PoissonEncoder(1, step_mode="s") if encoding == "bernoulli" else nn.Identity()
        )
        if arch == "mlp":
            self.features: nn.Module = layers.Flatten()
            features = in_channels * height * width
        else:
            stages: list[nn.Module] = []
            side_h, side_w, c_in = height, width, in_channels
            for _ in range(2):
                stages.append(layers.Conv2d(c_in, channels, 3, padding=1, bias=norm == "none"))
                if norm == "bn":
                    stages.append(layers.BatchNorm2d(channels))
                elif norm == "tdbn":
                    tdbn = layers.ThresholdDependentBatchNorm2d(channels, v_threshold=theta)
                    stages.append(tdbn)
                stages.append(spiking())
                if neunorm:
                    stages.append(layers.NeuNorm(channels, side_h, side_w, k=neunorm_k))
                stages.append(layers.AvgPool2d(2, 2))
                side_h, side_w, c_in = side_h // 2, side_w // 2, channels
            stages.append(layers.Flatten())
            self.features = nn.Sequential(*stages)
            features = channels * side_h * side_w
        fc: list[nn.Module] = []
        for size in [*sizes, num_classes]:
            fc += [layers.Linear(features, size), spiking()]
            features = size
        self.classifier = nn.Sequential(*fc)

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W]`` (intensities in ``[0, 1]`` with Bernoulli encoding) ->
        output spikes ``[T, B, num_classes]``."""
        check_input(x, type(self).__name__, "[T, B, C, H, W]", 5, self.in_channels)
        if self.training or self.eval_seed is None:
            spikes = self.encoder(x)
        else:
            spikes = torch.stack([self._fixed_draws(x[:, b]) for b in range(x.shape[1])], 1)
        return self.classifier(self.features(spikes))

    def _fixed_draws(self, sample: Tensor) -> Tensor:
        """One sample's Bernoulli spikes ``[T, C, H, W]`` from a generator seeded by
        ``eval_seed`` and the sample's values: the same spikes for the same sample in
        any batch, at any position, and the global generator left as it was."""
        values = sample.detach().to(torch.float32).cpu().numpy().tobytes()
        digest = hashlib.blake2b(f"{self.eval_seed}:".encode() + values, digest_size=8)
        generator = torch.Generator(device=sample.device)
        generator.manual_seed(int.from_bytes(digest.digest(), "little") >> 1)
        return PoissonEncoder(1, step_mode="s", generator=generator)(sample)


@register_model("stbp_cnn")
def stbp_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> STBPNet:
    """STBP's CNN, 32C3-AP2-32C3-AP2-128-10 (:class:`STBPNet`, ``arch="cnn"``); ``kwargs``
    are its other arguments (``input_size``, ``channels``, ``hidden``, ``encoding``,
    ``norm``, ``neunorm``, ...)."""
    return STBPNet(
        num_classes=num_classes, in_channels=in_channels, arch="cnn", neuron=neuron,
        neuron_kwargs=neuron_kwargs, **kwargs,
    )  # fmt: skip


@register_model("stbp_mlp")
def stbp_mlp(
    num_classes: int = 10,
    in_channels: int = 1,
    neuron: NeuronSpec = "lif",
    neuron_kwargs: Mapping[str, Any] | None = None,
    hidden: int | list[int] | tuple[int, ...] = 800,
    **kwargs: Any,
) -> STBPNet:
    """STBP's MLP, input-800-10 (:class:`STBPNet`, ``arch="mlp"``); ``kwargs`` are its
    other arguments (``input_size``, ``encoding``)."""
    return STBPNet(
        num_classes=num_classes, in_channels=in_channels, arch="mlp", hidden=hidden,
        neuron=neuron, neuron_kwargs=neuron_kwargs, **kwargs,
    )  # fmt: skip
