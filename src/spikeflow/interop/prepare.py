"""Prepare a trained network for export (NIR, Lava-DL netx): its inference form.

The zoo's networks are built for training; at inference several of their modules are
fixed maps that NIR and netx can express once rewritten:

* batch norm with running statistics (torch's and spikeflow's ``BatchNorm1d/2d/3d``,
  and tdBN, ``ThresholdDependentBatchNorm*``, which is batch norm with an output scale)
  is an affine map per channel, folded into the convolution or linear layer before it
  (methods.md 7.1): ``W' = W·γ/sqrt(σ² + ε)``, ``b' = (b − μ)·γ/sqrt(σ² + ε) + β``;
* dropout and ``nn.Identity`` do nothing in evaluation and are removed;
* a ``VotingLayer(vs)`` (the mean of each group of ``vs`` neurons) after a linear
  layer is the fixed linear map ``W[n, n·vs + k] = 1/vs``, exported as NIR ``Linear``;
* an adaptive average pool (``AdaptiveAvgPool2d``) whose input sides are multiples of
  its output sides is the average pool with kernel and stride ``input // output``
  (removed where they are equal): the input sides come from one run on a
  ``sample_input``;
* an average pool with ``ceil_mode=True`` (MS-ResNet-104's shortcut) is the same pool
  with ``ceil_mode=False`` where no window is partial on ``sample_input``'s sizes;
* a zoo residual block (spiking ResNet, SEW ResNet, MS-ResNet) is
  :class:`ResidualBlockForExport`, its batch norms folded: a sum of two paths, which
  NIR expresses as two edges into one node (SEW's AND/IAND on spikes: a NIR
  ``Threshold`` of that sum);
* ``nn.Sequential`` containers and the zoo models whose ``forward`` only runs their
  children in order (:data:`PLAIN_SEQUENCE_MODELS`) are flattened into one
  ``nn.Sequential``;
* a sigma-delta unit's mean-only batch norm (``pilotnet_sdnn``) becomes the bias of its
  synapse (:mod:`~spikeflow.interop.prepare_sigma_delta`).

What has no such form is refused, every module named with its path: max pooling (NIR
has average and sum pooling only, netx none: Lava's netx runtime has no pooling
layer), BNTT and TEBN (per-time-step
statistics or scales: an affine map that changes with t, which no NIR or netx node
has), a batch norm with no convolution or linear layer right before it, and an
adaptive average pool whose windows differ in size (or with no ``sample_input``). Other
modules are left as they are, for the exporter to accept or name.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from spikeflow.base import MemoryModule
from spikeflow.conversion.fold import folded_weights
from spikeflow.errors import ConfigurationError
from spikeflow.interop.prepare_pools import fix_adaptive_pools
from spikeflow.interop.prepare_sigma_delta import fold_unit_norm, unit_norm
from spikeflow.layers import (
    Linear,
    VotingLayer,
)
from spikeflow.layers.dropout import _SequenceDropout
from spikeflow.layers.norm import (
    _BatchNormThroughTime,
    _TemporalEffectiveBatchNorm,
    _ThresholdDependentMixin,
)
from spikeflow.layers.sequence import SequenceLayerMixin

__all__ = ["PLAIN_SEQUENCE_MODELS", "ResidualBlockForExport", "prepare_for_export"]

#: Zoo model classes (by name) whose ``forward`` checks its input and then runs the
#: listed children in this order: at inference each is the sequence of what it holds.
PLAIN_SEQUENCE_MODELS: dict[str, tuple[str, ...]] = {
    "DigitsPLIFNet": ("features", "classifier"),
    "STBPNet": ("encoder", "features", "classifier"),
    "PLIFNet": ("conv", "fc", "voting"),
    "SpikingVGG": ("features", "avgpool", "classifier"),
    "ResNetSkeleton": ("stem", "layer1", "layer2", "layer3", "layer4", "avgpool", "flatten", "fc"),
    "MSResNet": (
        "stem", "layer1", "layer2", "layer3", "layer4", "sn", "avgpool", "flatten", "dropout", "fc",
    ),
    "SpikingMobileNetV2": ("features", "pool", "flatten", "classifier"),
    "PilotNetSDNN": ("blocks",),
    "PilotNetLIF": ("blocks",),
}  # fmt: skip

#: What a user can train instead of max pooling (named in the refusal).
AVERAGE_POOLING_MODELS = (
    "plif_digits --model-kwargs pooling=avg (or pooling=sum), "
    "plif_mnist/plif_fashion_mnist/plif_cifar10/plif_nmnist/plif_cifar10dvs/plif_dvsgesture "
    "--model-kwargs pooling=avg (or pooling=sum), "
    "spiking_vgg11/13/16/19(_bn) --model-kwargs pooling=avg (or pooling=sum), "
    "spiking_resnet*/sew_resnet* (SEW: cnf=ADD, AND or IAND) --model-kwargs stem=cifar "
    "(no max pool), ms_resnet18/34/104 (no max pool in any stem)"
)

_FOLD_INTO = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_MAX_POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


class ResidualBlockForExport(nn.Module):
    """A zoo residual block in its inference form, which NIR export traces into:
    ``neuron(branch(x) + shortcut(x))`` (spiking ResNet), ``branch(x) + shortcut(x)``
    (SEW ResNet with ``cnf="ADD"``, the branch ending with its neuron; MS-ResNet, the
    branch starting with its neuron: a sum of real values), or for SEW's AND and IAND
    on spikes ``A`` (branch) and ``S`` (shortcut) a NIR ``Threshold`` of a sum:
    ``A·S = Θ(A + S − 1.5)``, ``S·(1 − A) = Θ(S − A − 0.5)`` (exact for 0/1 values);
    the shortcut is the identity or ``downsample``. NIR sums a node's inputs: the sum
    is two edges (``−A`` through a ``Scale(−1)``).

    Args:
        branch: the residual branch.
        downsample: the shortcut's path, or None for the identity.
        neuron: the neuron after the sum (spiking ResNet), or None.
        connect: ``"ADD"`` (default), ``"AND"`` or ``"IAND"`` (SEW's connect function).
    """

    #: NIR export traces inside this module (a spikeflow module, so named explicitly).
    nir_trace_inside: bool = True

    def __init__(
        self,
        branch: nn.Sequential,
        downsample: nn.Module | None,
        neuron: nn.Module | None,
        connect: str = "ADD",
    ) -> None:
        from spikeflow.interop.nir_modules import Threshold

        super().__init__()
        if connect not in _CONNECT_THRESHOLDS:
            raise ConfigurationError(
                f"connect must be one of {sorted(_CONNECT_THRESHOLDS)}, got {connect!r}"
            )
        self.branch = branch
        self.downsample = downsample
        self.neuron = neuron
        self.connect = connect
        threshold = _CONNECT_THRESHOLDS[connect]
        self.spike = None if threshold is None else Threshold(threshold, strict=True)

    def forward(self, x: Tensor) -> Tensor:
        """The block's output (SEW ADD and MS-ResNet: the sum with the shortcut's)."""
        shortcut = x if self.downsample is None else self.downsample(x)
        branch = self.branch(x)
        if self.connect == "IAND":
            total = shortcut - branch
        else:
            total = branch + shortcut
        if self.spike is not None:
            total = self.spike(total)
        return total if self.neuron is None else self.neuron(total)

    def extra_repr(self) -> str:
        return f"connect={self.connect}"


#: The threshold on ``A + S`` (AND) or ``S - A`` (IAND) giving SEW's connect function on
#: 0/1 spikes (None: ADD, the sum itself).
_CONNECT_THRESHOLDS: dict[str, float | None] = {"ADD": None, "AND": 1.5, "IAND": 0.5}


def _spiking(module: nn.Module | None) -> bool:
    """Whether ``module``'s output is 0/1 spikes: a neuron with binary spikes, or an
    exported SEW AND / IAND block."""
    from spikeflow.neurons.base import BaseNode

    if isinstance(module, nn.Sequential) and len(module) > 0:
        return _spiking(module[-1])
    if isinstance(module, ResidualBlockForExport):
        return module.connect in ("AND", "IAND")
    if getattr(module, "cnf", None) in ("AND", "IAND"):  # a SEW block refused for its input
        return True
    return isinstance(module, BaseNode) and not getattr(module, "graded_spike", False)


def _residual_block(
    block: nn.Module, path: str, problems: list[str], previous: nn.Module | None = None
) -> tuple[bool, nn.Module | None]:
    """``(True, its export form or None on a problem)`` for a zoo residual block,
    ``(False, None)`` for any other module (``previous``: the module before it, whose
    output a SEW AND / IAND block needs to be spikes)."""
    from spikeflow.models.mobilenet import InvertedResidual
    from spikeflow.models.ms_resnet import MSBasicBlock
    from spikeflow.models.resnet import SpikingResidual
    from spikeflow.models.sew_resnet import _SEWBlockMixin

    if type(block) is InvertedResidual:
        return True, _inverted_residual(block, path, problems)
    sew = isinstance(block, _SEWBlockMixin)
    membrane = type(block) is MSBasicBlock
    if not (sew or membrane or isinstance(block, SpikingResidual)):
        return False, None
    if type(block).forward not in (SpikingResidual.forward, _SEWBlockMixin.forward) and not (
        membrane and _is_plain_ms_block(block)
    ):
        return False, None  # a subclass computing something else: left to the exporter
    if sew and block.cnf != "ADD" and not _spiking(previous):
        found = "nothing" if previous is None else type(previous).__name__
        if isinstance(previous, ResidualBlockForExport):  # an ADD (or MS-ResNet) block
            found = "a residual block adding its paths (values 0, 1, 2, ...)"
        problems.append(
            f"'{path}' ({type(block).__name__}): the SEW connect function "
            f"cnf={block.cnf!r} multiplies spikes (AND: A*S, IAND: S*(1-A)), which exports "
            "as a NIR Threshold of their sum only on 0/1 spikes; its input comes from "
            f"{found}, not a spiking neuron (or an AND/IAND block)"
        )
        return True, None
    last = None if membrane else block.last_neuron
    items = [
        (f"{path}.{name}", child)
        for name, child in block.named_children()
        if name != "downsample" and (sew or membrane or child is not last)
    ]
    before = len(problems)
    branch = nn.Sequential(_rewrite(items, problems, path))
    downsample = None
    if block.downsample is not None:
        inner = f"{path}.downsample"
        downsample = nn.Sequential(
            _rewrite(list(_flatten(block.downsample, inner)), problems, inner)
        )
    if sew and block.cnf != "ADD" and downsample is not None and not _spiking(downsample):
        problems.append(
            f"'{path}.downsample': SEW's cnf={block.cnf!r} exports on 0/1 spikes only, and "
            "this shortcut does not end with a spiking neuron"
        )
    if len(problems) > before:
        return True, None
    connect = block.cnf if sew else "ADD"
    return True, ResidualBlockForExport(branch, downsample, None if sew else last, connect)


def _inverted_residual(block: nn.Module, path: str, problems: list[str]) -> nn.Module | None:
    """A MobileNetV2 block's export form (None on a problem): its folded sequence, plus
    its input where it has the residual sum (a sum of real values, as it ends with BN)."""
    before = len(problems)
    inner = f"{path}.conv"
    branch = nn.Sequential(_rewrite(list(_flatten(block.conv, inner)), problems, inner))
    if len(problems) > before:
        return None
    return ResidualBlockForExport(branch, None, None) if block.use_residual else branch


def _is_plain_ms_block(block: nn.Module) -> bool:
    """Whether ``block`` computes MS-ResNet's ``shortcut(x) + residual(x)`` as defined."""
    from spikeflow.models.ms_resnet import MSBasicBlock

    cls = type(block)
    return all(
        getattr(cls, name) is getattr(MSBasicBlock, name)
        for name in ("forward", "residual", "shortcut")
    )


def _plain_sequence(module: nn.Module) -> tuple[str, ...] | None:
    """The children ``module`` runs in order, if it is a plain sequence (else None)."""
    if type(module) is nn.Sequential:  # _modules: named_children skips a repeated module
        return tuple(name for name, child in module._modules.items() if child is not None)
    names = PLAIN_SEQUENCE_MODELS.get(type(module).__name__)
    if names is None or not type(module).__module__.startswith("spikeflow.models."):
        return None
    children = dict(module.named_children())
    if set(children) != set(names):  # another layout: not the model this entry means
        return None
    return names


def _flatten(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    """``(path, module)`` of the leaves of the plain sequences inside ``module``."""
    names = _plain_sequence(module)
    if names is None:
        yield prefix, module
        return
    for name in names:
        yield from _flatten(module.get_submodule(name), f"{prefix}.{name}" if prefix else name)


def _fold(layer: nn.Module, bn: _BatchNorm) -> nn.Module:
    """A copy of ``layer`` computing ``bn(layer(x))`` (bn in evaluation)."""
    fused = copy.deepcopy(layer)
    if parametrize.is_parametrized(fused):  # pruned, quantized: fold the weight it uses
        # (torch's remove_parametrizations would edit the class the original shares)
        fused.__class__ = type(layer).__bases__[0]
        del fused._modules["parametrizations"]
    with torch.no_grad():
        weight, bias = folded_weights(layer.weight, layer.bias, bn)
        if isinstance(bn, _ThresholdDependentMixin) and not bn.affine:
            scale = bn.alpha * bn.v_threshold  # tdBN without γ: a fixed output scale αθ
            weight, bias = weight * scale, bias * scale
        fused.weight = nn.Parameter(weight, requires_grad=layer.weight.requires_grad)
        fused.bias = nn.Parameter(bias.to(weight.dtype), requires_grad=True)
    if isinstance(fused, Linear):
        # BatchNorm1d scales the Linear's outputs only on [B, F] steps: on [B, C, L] it
        # normalises C, and the folded layer refuses such a step (a ShapeError)
        fused.step_ndim = (2, 2)
    return fused


def _norm_problem(layer: nn.Module | None, bn: nn.Module) -> str | None:
    """Why ``bn`` after ``layer`` cannot be folded (None: it can)."""
    if isinstance(bn, _BatchNormThroughTime):
        return "BNTT has statistics and a scale per time step, an affine map that changes with t"
    if isinstance(bn, _TemporalEffectiveBatchNorm):
        return "TEBN scales each time step by its own p[t], an affine map that changes with t"
    if not isinstance(bn, _BatchNorm):
        return None
    if bn.running_mean is None or bn.running_var is None:
        return "no running statistics (track_running_stats=False): it is no fixed map"
    if not isinstance(layer, _FOLD_INTO) or isinstance(layer, nn.modules.conv._ConvTransposeNd):
        found = "nothing" if layer is None else type(layer).__name__
        return f"no Conv1d/2d/3d or Linear right before it to fold it into (found {found})"
    if not _computes_its_weights(layer):
        return (
            f"the {type(layer).__name__} before it computes with another weight than the "
            "one it holds (its class overrides forward, e.g. weight standardisation), so "
            "scaling that weight does not scale its outputs"
        )
    if bn.num_features != layer.weight.shape[0]:
        return f"{bn.num_features} features, the layer before it has {layer.weight.shape[0]}"
    if isinstance(layer, nn.Linear) and not _takes_features(bn):
        return (
            "it normalises dim 1 of a [B, C, ...] step and the Linear before it maps the "
            "last dim: not the same features, so it is no per-output scale of the Linear"
        )
    return None


def _computes_its_weights(layer: nn.Module) -> bool:
    """Whether ``layer`` runs torch's own Linear/convolution forward on its ``weight``
    (spikeflow's sequence wrapper and a parametrization, which folds, aside)."""
    cls = type(layer).__bases__[0] if parametrize.is_parametrized(layer) else type(layer)
    for klass in cls.__mro__:
        if klass in _FOLD_INTO:
            return True
        if klass is not SequenceLayerMixin and (
            "forward" in vars(klass) or "_conv_forward" in vars(klass)
        ):
            return False
    return False


def _takes_features(bn: _BatchNorm) -> bool:
    """Whether ``bn`` takes a ``[B, F]`` step (BatchNorm1d), where dim 1 is the last."""
    try:
        bn._check_input_dim(torch.empty(2, bn.num_features))
    except ValueError:
        return False
    return True


def _voting_linear(voting: VotingLayer, layer: nn.Module | None) -> nn.Module | None:
    """The fixed Linear equal to ``voting`` on the output of ``layer`` (None: no Linear)."""
    if not isinstance(layer, nn.Linear) or layer.out_features % voting.voting_size:
        return None
    size = voting.voting_size
    groups = layer.out_features // size
    dtype, device = layer.weight.dtype, layer.weight.device
    weight = torch.kron(
        torch.eye(groups, dtype=dtype, device=device),
        torch.full((1, size), 1.0 / size, dtype=dtype, device=device),
    )
    mode = getattr(layer, "step_mode", "m")  # voting has none: it runs as the Linear did
    linear = Linear(groups * size, groups, bias=False, device=device, dtype=dtype, step_mode=mode)
    with torch.no_grad():
        linear.weight.copy_(weight)
    return linear.requires_grad_(False)


def _rewrite(items: list[tuple[str, nn.Module]], problems: list[str], prefix: str) -> OrderedDict:
    """The inference form of one flat sequence, problems appended to ``problems``; its
    modules named by their paths after ``prefix`` with ``_`` for ``.``."""
    out: list[tuple[str, nn.Module]] = []
    last_layer: nn.Module | None = None  # the last weight layer, through neurons
    seen: dict[int, str] = {}  # id of each module placed -> its first path
    refused: nn.Module | None = None  # a residual block just refused (no place in out)
    for path, module in items:
        where = f"'{path}' ({type(module).__name__})"
        first = seen.setdefault(id(module), path)
        if first != path:  # one module used at two places: an export node is one place
            if any(isinstance(inner, MemoryModule) for inner in module.modules()):
                problems.append(
                    f"{where} is the module at '{first}' used again: its (or its "
                    "neurons') state is shared between the two places, which no NIR or "
                    "netx node has; give each place its own module"
                )
                continue
            module = copy.deepcopy(module)  # stateless: a copy computes the same
        if isinstance(module, (*_DROPOUTS, _SequenceDropout, nn.Identity)):
            continue
        previous = out[-1][1] if out and refused is None else refused
        is_block, block = _residual_block(module, path, problems, previous)
        refused = module if is_block and block is None else None
        if is_block:
            if block is not None:
                out.append((path, block))
            continue
        if isinstance(module, _MAX_POOLS):
            problems.append(
                f"{where}: NIR has no max pooling (its pooling nodes are AvgPool2d and "
                f"SumPool2d) and netx none (Lava's netx runtime has no pooling layer); train "
                f"with average pooling: "
                f"{AVERAGE_POOLING_MODELS}"
            )
            continue
        if isinstance(module, (_BatchNorm, _BatchNormThroughTime, _TemporalEffectiveBatchNorm)):
            before = out[-1][1] if out else None
            problem = _norm_problem(before, module)
            if problem is not None:
                problems.append(f"{where}: {problem}")
                continue
            out[-1] = (out[-1][0], _fold(before, module))  # type: ignore[arg-type]
            continue
        if unit_norm(module) is not None:  # a sigma-delta unit's norm: its synapse's bias
            folded = fold_unit_norm(out[-1][1] if out else None, module, where)  # type: ignore[arg-type]
            if isinstance(folded, str):
                problems.append(folded)
                continue
            out[-1], module = (out[-1][0], folded[0]), folded[1]
        if isinstance(module, VotingLayer):
            linear = _voting_linear(module, last_layer)
            if linear is None:
                problems.append(
                    f"{where}: a voting layer is exported as the Linear map it is, which "
                    "needs a Linear before it (through neurons) with a multiple of "
                    f"voting_size={module.voting_size} outputs"
                )
                continue
            module = linear
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            last_layer = module
        out.append((path, module))
    skip = len(prefix) + 1 if prefix else 0
    return OrderedDict((path[skip:].replace(".", "_"), module) for path, module in out)


def _prepare_inside(
    module: nn.Module, prefix: str, problems: list[str], top: bool = True
) -> nn.Module:
    """``module`` with its plain sequences (and those nested inside others) prepared: the
    top one flattened, those inside other modules with their children's names (which
    their parent's ``forward`` may use)."""
    if _plain_sequence(module) is not None and (top or type(module) is nn.Sequential):
        items = list(_flatten(module, prefix))
        return nn.Sequential(_rewrite(items, problems, "" if top else prefix))
    for name, child in list(module.named_children()):
        path = f"{prefix}.{name}" if prefix else name
        setattr(module, name, _prepare_inside(child, path, problems, top=False))
    return module


def _hook_problems(model: nn.Module) -> list[str]:
    """The modules of ``model`` with forward hooks, which change what a module computes
    from its weights (an exporter reads the weights) and which flattening or folding
    would drop or apply to the wrong module."""
    from torch.nn.utils.prune import BasePruningMethod
    from torch.nn.utils.weight_norm import WeightNorm

    problems = []
    for path, module in model.named_modules():
        hooks = [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]
        if not hooks:
            continue
        where = f"'{path or type(model).__name__}' ({type(module).__name__})"
        if any(isinstance(hook, BasePruningMethod) for hook in hooks):
            fix = "make the pruning permanent first: torch.nn.utils.prune.remove(module, name)"
        elif any(isinstance(hook, WeightNorm) for hook in hooks):
            fix = (
                "use torch.nn.utils.parametrizations.weight_norm (folded) or "
                "torch.nn.utils.remove_weight_norm first"
            )
        else:
            fix = "remove them first (handle.remove(); a monitor: its remove_hooks())"
        problems.append(f"{where} has forward hooks, which export cannot carry: {fix}")
    return problems


def prepare_for_export(model: nn.Module, sample_input: Tensor | None = None) -> nn.Module:
    """The inference form of ``model``, for :func:`~spikeflow.interop.export_to_nir` and
    :func:`~spikeflow.interop.export_netx` (``model`` itself is not changed).

    Folds batch norm (plain and tdBN, with running statistics) into the convolution or
    linear layer before it, removes dropout and identities, turns a ``VotingLayer`` into
    its fixed ``Linear`` map (no bias, ``1/voting_size`` per group) and flattens
    ``nn.Sequential`` containers and plain-sequence zoo models
    (:data:`PLAIN_SEQUENCE_MODELS`) into one ``nn.Sequential`` (names: paths with ``_``).
    A zoo residual block becomes a :class:`ResidualBlockForExport` (batch norms
    folded; a MobileNetV2 block without the residual sum, its folded sequence). An
    ``AdaptiveAvgPool2d`` becomes the ``AvgPool2d`` it is on ``sample_input``'s size
    (kernel and stride ``input // output``; removed where input and output are equal).

    Args:
        model: the network (not changed).
        sample_input: an input of the size the network will be exported for (one run
            of a copy on it gives every adaptive pool's input size); needed only if
            ``model`` has adaptive average pools.
    In evaluation mode the result computes what ``model`` computes (float rounding of the
    folded weights aside; tested in float64 with identical spikes).

    Returns:
        A copy in evaluation mode: an ``nn.Sequential`` where ``model`` is a plain
        sequence, else ``model``'s type with its plain sequences prepared.

    Raises:
        ConfigurationError: naming every module with no inference form NIR or netx can
            express: max pooling (with the zoo's average-pooling alternatives), BNTT and
            TEBN (per-step maps), a batch norm without running statistics or without a
            Conv/Linear before it, a voting layer without a Linear before it, a neuron
            used at two places of a sequence (a stateless module used twice is copied),
            forward hooks (``torch.nn.utils.prune``, old-style ``weight_norm``, user
            hooks: what they compute export cannot carry), an adaptive average pool
            with no ``sample_input`` or whose output sides do not divide its input's,
            an average pool with ``ceil_mode=True`` and a partial window (or no
            ``sample_input``), a SEW AND / IAND block whose inputs are not spikes,
            attention layers (each named with the product of signals it computes).
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    hooked = _hook_problems(model)
    if hooked:
        raise ConfigurationError(
            f"{type(model).__name__} cannot be prepared for export: " + "; ".join(hooked)
        )
    from spikeflow.interop.nir_attention import attention_layers

    # attention has no inference form either: named with the rest, so that a run is
    # not retrained (e.g. without max pooling) to meet this refusal only afterwards
    problems = [
        f"{layer}, which no NIR node (nor netx) computes: a node sums its inputs and "
        "maps each element of one signal"
        for layer in attention_layers(model)
    ]
    copied = copy.deepcopy(model).eval()
    fix_adaptive_pools(copied, sample_input, problems)
    prepared = _prepare_inside(copied, "", problems)
    if problems:
        raise ConfigurationError(
            f"{type(model).__name__} cannot be prepared for export: " + "; ".join(problems)
        )
    return prepared.eval()
