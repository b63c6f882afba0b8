"""torchvision's ImageNet ANN weights into the spiking ResNet, SEW ResNet and VGG zoo.

SpikingJelly's ``spiking_resnet18(pretrained=True)`` (and ``sew_resnet*``,
``spiking_vgg*``) downloads torchvision's ImageNet weights into the spiking network;
spikeflow downloads nothing: :func:`load_torchvision_weights` takes torchvision's
state dict (or a file of it, saved with ``torch.save`` on a machine with internet) and
maps its key layout onto the zoo model:

* ResNets (``resnet18`` ... ``152``, ``resnext50_32x4d``, ``resnext101_32x8d``,
  ``wide_resnet50_2``, ``wide_resnet101_2``) into ``spiking_*`` and ``sew_*`` models
  built with ``stem="imagenet"``: ``conv1``/``bn1`` go to ``stem.0``/``stem.1``, the
  blocks' ``conv*``/``bn*``/``downsample.*`` and ``fc`` keep their names;
* VGGs (``vgg11`` ... ``vgg19``, ``_bn``) into ``spiking_vgg*``: ``features.i`` keep
  their indices, ``classifier.0/3/6`` go to ``classifier.1/4/7`` (spikeflow's
  classifier starts with a Flatten);
* EfficientNets (``efficientnet_b0`` ... ``b7``) into ``efficientnet_b*`` (the float
  twin: the same names) and ``efficientnet_b*_sdnn``: a convolution inside a
  ``DeltaSynapse`` drops ``.layer``, a unit's batch norm ``.activation.0``, the
  squeeze-and-excitation unit ``.activation`` (``features.1.0.block.0.1.activation.0``
  is torchvision's ``features.1.0.block.0.1``); the classifier's bias sits on its synapse.

Every source tensor is used once, every shape is checked, and whatever the model keeps
(a skipped classifier, neuron parameters such as PLIF's ``w``) is in the returned
:class:`TorchvisionWeightsReport`. MS-ResNet, Max-ResNet and OTTT's VGG are refused:
their blocks differ from torchvision's (pre-activation membrane shortcuts, no batch
norm or weight standardisation), so its weights would load by shape but mean nothing.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from spikeflow.errors import ConfigurationError, DataFormatError, ShapeError
from spikeflow.layers.sigma_delta import DeltaSynapse
from spikeflow.models.efficientnet import EfficientNet, EfficientNetSDNN
from spikeflow.models.resnet import (
    GROUPED_VARIANTS,
    BasicBranch,
    BottleneckBranch,
    ResNetSkeleton,
)
from spikeflow.models.vgg import VGG_CONFIGS, SpikingVGG

__all__ = ["CLASSIFIER_CHOICES", "TorchvisionWeightsReport", "load_torchvision_weights"]

#: ``classifier=``: load the whole head, leave its last Linear, or leave every Linear.
CLASSIFIER_CHOICES = ("load", "skip_last", "skip_all")

_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
_OPTIONAL = "num_batches_tracked"  # absent from torchvision's older files
_SHOWN = 6  # keys listed in an error
_BASIC_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
_BOTTLENECK_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


@dataclass
class TorchvisionWeightsReport:
    """What :func:`load_torchvision_weights` did.

    Attributes:
        architecture: torchvision's name of the model's ANN (``"resnet18"``, ``"vgg11_bn"``).
        loaded: model key → torchvision key, for every tensor copied.
        skipped: torchvision keys left out on purpose (``classifier="skip_last"``/``"skip_all"``).
        kept: model keys left as they were: the skipped classifier's, the neurons'
            (PLIF's ``w``, ...), and ``num_batches_tracked`` when the file has none.
    """

    architecture: str
    loaded: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"torchvision {self.architecture}: {len(self.loaded)} tensors loaded, "
            f"{len(self.skipped)} skipped ({', '.join(self.skipped) or 'none'}), "
            f"{len(self.kept)} model tensors kept ({', '.join(self.kept) or 'none'})"
        )


def _weights_hint(architecture: str) -> str:
    return (
        "spikeflow downloads nothing: on a machine with internet save torchvision's weights "
        f"with torch.save(torchvision.models.{architecture}(weights='IMAGENET1K_V1')"
        f".state_dict(), '{architecture}.pth') and pass that file"
    )


def _resnet_architecture(model: ResNetSkeleton) -> str:
    """torchvision's name of the ANN the ResNet ``model`` has the layout of, else a
    ConfigurationError (a block, stem or width torchvision has not)."""
    blocks = model.blocks()
    if getattr(model, "stem_kind", None) != "imagenet":
        raise ConfigurationError(
            "torchvision's ResNets have the ImageNet stem (conv7x7/2, max pool): build the "
            f"model with stem='imagenet', not stem={getattr(model, 'stem_kind', None)!r}"
        )
    if not all(isinstance(b, (BasicBranch, BottleneckBranch)) for b in blocks):
        raise ConfigurationError(
            "load_torchvision_weights takes the zoo's spiking and SEW ResNet blocks; the "
            f"model has {sorted({type(b).__name__ for b in blocks})}"
        )
    depths = tuple(len(stage) for stage in (model.layer1, model.layer2, model.layer3, model.layer4))
    bottleneck = isinstance(blocks[0], BottleneckBranch)
    known = _BOTTLENECK_DEPTHS if bottleneck else _BASIC_DEPTHS
    depth = next((d for d, stages in known.items() if stages == depths), None)
    width = model.stem[0].out_channels
    name = None
    if depth is not None and width == 64:
        # stage 1's inner width is int(64 * width_per_group / 64) * groups
        grouping = (blocks[0].conv2.groups, blocks[0].conv1.out_channels)
        if not bottleneck or grouping == (1, 64):
            name = f"resnet{depth}"
        for variant, (d, groups, per_group) in GROUPED_VARIANTS.items():
            if bottleneck and (d, grouping) == (depth, (groups, per_group * groups)):
                name = variant
    if name is None:
        raise ConfigurationError(
            "the model is no torchvision ResNet: "
            f"{'bottleneck' if bottleneck else 'basic'} blocks, depths {list(depths)}, "
            f"base_width {width}"
        )
    return name


def _vgg_architecture(model: SpikingVGG) -> str:
    """torchvision's name of the VGG with ``model``'s convolution widths (pool positions
    are checked by the keys: ``features.i`` indices shift with them)."""
    convs = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    batch_norm = any(isinstance(m, nn.BatchNorm2d) for m in model.features)
    for depth, config in VGG_CONFIGS.items():
        if [c for c in config if c != "M"] == convs:
            return f"vgg{depth}{'_bn' if batch_norm else ''}"
    raise ConfigurationError(f"the model is no torchvision VGG: convolution widths {convs}")


def _warn_pooling(model: nn.Module, arch: str) -> None:
    """Warn when a VGG pools otherwise than torchvision's (max): its weights load by
    shape, but the network computes another function until fine-tuned."""
    if not isinstance(model, SpikingVGG):
        return
    pools = [m for m in model.features if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    if pools and not all(isinstance(m, nn.MaxPool2d) for m in pools):
        warnings.warn(
            f"torchvision's {arch} was trained with max pooling; the model pools with "
            f"{type(pools[0]).__name__} (pooling='avg' or 'sum'), so the loaded network "
            "is no longer the ImageNet one: fine-tune it, or build it with pooling='max'",
            UserWarning,
            stacklevel=3,
        )


def _key_map(model: nn.Module) -> tuple[str, dict[str, str], list[str]]:
    """``(architecture, {model module: torchvision module}, classifier modules)`` for a
    model of the zoo; ConfigurationError for any other."""
    if isinstance(model, ResNetSkeleton):
        arch = _resnet_architecture(model)
        modules = {"stem.0": "conv1", "stem.1": "bn1"}
        for name, module in model.named_modules():
            if isinstance(module, _LAYERS) and name.startswith(("layer", "fc")):
                modules[name] = name
        return arch, modules, ["fc"]
    if isinstance(model, SpikingVGG):
        arch = _vgg_architecture(model)
        modules = {
            f"features.{i}": f"features.{i}"
            for i, m in enumerate(model.features)
            if isinstance(m, _LAYERS)
        }
        linears = [i for i, m in enumerate(model.classifier) if isinstance(m, nn.Linear)]
        # spikeflow's classifier starts with a Flatten: one index after torchvision's.
        heads = {f"classifier.{i}": f"classifier.{i - 1}" for i in linears}
        return arch, {**modules, **heads}, list(heads)
    if isinstance(model, (EfficientNet, EfficientNetSDNN)):
        modules = {
            name: _efficientnet_name(name)
            for name, module in model.named_modules()
            if isinstance(module, (*_LAYERS, DeltaSynapse)) and name
        }
        return f"efficientnet_{model.variant}", modules, ["classifier.1"]
    raise ConfigurationError(
        "load_torchvision_weights takes the zoo's spiking_resnet*, sew_resnet* (ResNeXt and "
        "wide ones included), spiking_vgg* and efficientnet_b* models; "
        f"{type(model).__name__} has no torchvision counterpart (MS-ResNet, Max-ResNet and "
        "OTTT's VGG compute other functions)"
    )


def _efficientnet_name(name: str) -> str:
    """torchvision's module name of an EfficientNet module (the sigma-delta network's
    wrappers dropped: a synapse's ``.layer``, a unit's ``.activation`` and its ``.0``)."""
    name = re.sub(r"\.layer$", "", name)
    name = re.sub(r"\.activation\.0$", "", name)
    return name.replace(".activation.fc", ".fc")


def _source_architecture(state: Mapping[str, Tensor]) -> str:
    """torchvision's name of the architecture whose keys ``state`` has (for errors), or
    ``"unknown"``."""
    if "layer1.0.conv1.weight" in state:
        stages = tuple(
            sum(1 for k in state if k.startswith(f"layer{i}.") and k.endswith(".conv1.weight"))
            for i in range(1, 5)
        )
        bottleneck = "layer1.0.conv3.weight" in state
        known = _BOTTLENECK_DEPTHS if bottleneck else _BASIC_DEPTHS
        names = [f"resnet{d}" for d, depths in known.items() if depths == stages]
        kind = "bottleneck" if bottleneck else "basic"
        return names[0] if names else f"a ResNet of {kind} blocks, depths {list(stages)}"
    if "features.1.0.block.0.0.weight" in state:
        return "an EfficientNet"
    convs = [v.shape[0] for k, v in state.items() if k.startswith("features.") and v.dim() == 4]
    for depth, config in VGG_CONFIGS.items():
        if convs and [c for c in config if c != "M"] == convs:
            batch_norm = any(k.endswith("running_mean") for k in state)
            return f"vgg{depth}{'_bn' if batch_norm else ''}"
    return "unknown"


def _read_source(source: Mapping[str, Tensor] | str | os.PathLike[str]) -> dict[str, Tensor]:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"torchvision weights file {path!r} does not exist")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataFormatError(
                f"torchvision weights file {path!r} cannot be read as a tensors-only "
                f"torch.save file: {exc}"
            ) from exc
    if not isinstance(source, Mapping):
        raise DataFormatError(
            f"torchvision weights must be a state dict (a mapping of names to tensors), got "
            f"{type(source).__name__}"
        )
    if "state_dict" in source and isinstance(source["state_dict"], Mapping):
        raise DataFormatError(
            "the weights are a checkpoint holding a 'state_dict': pass ckpt['state_dict']"
        )
    state = dict(source)
    for prefix in ("module.", "_orig_mod."):  # saved from DataParallel, torch.compile
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise DataFormatError(
                f"torchvision weights: {key!r} holds a {type(value).__name__}, not a tensor"
            )
    return state


def _pairs(model: nn.Module, modules: dict[str, str]) -> tuple[dict[str, str], dict[str, Tensor]]:
    """``{model key: torchvision key}`` of every tensor of the mapped modules, and the
    model's tensors by key."""
    targets = model.state_dict(keep_vars=True)
    pairs = {}
    for ours, theirs in modules.items():
        prefix = f"{ours}."
        for key in targets:
            if key.startswith(prefix) and "." not in key[len(prefix) :]:
                pairs[key] = f"{theirs}.{key[len(prefix) :]}"
    return pairs, targets


def load_torchvision_weights(
    model: nn.Module,
    source: Mapping[str, Tensor] | str | os.PathLike[str],
    classifier: str = "load",
) -> TorchvisionWeightsReport:
    """Copy torchvision's ImageNet ANN weights into a spiking ResNet, SEW ResNet or VGG.

    Args:
        model: a zoo model with torchvision's layout: ``spiking_resnet18`` ... ``152``,
            ``sew_resnet*`` (any ``cnf``), the ResNeXt and wide ResNets (``stem="imagenet"``,
            ``base_width=64``, 3 input channels), ``spiking_vgg11`` ... ``19`` (``_bn``).
        source: torchvision's state dict (``torchvision.models.resnet18(
            weights="IMAGENET1K_V1").state_dict()``) or the path of a file ``torch.save``
            wrote it to, read tensors-only (``weights_only=True``). Keys prefixed
            ``module.`` (DataParallel) or ``_orig_mod.`` (``torch.compile``) are taken
            without it; a ``torch.compile``'d ``model`` loads into its module.
        classifier: ``"load"`` (default) loads the head too, so ``num_classes`` must be
            1000 (and a VGG's ``pool_size`` 7, ``hidden_features`` 4096);
            ``"skip_last"`` leaves the last Linear (``fc``, the VGG's ``classifier.7``)
            at its initialisation, for other classes; ``"skip_all"`` leaves every Linear
            (the VGG's whole classifier, e.g. with ``pool_size=1`` for 32x32 images).

    Returns:
        A :class:`TorchvisionWeightsReport`: what was loaded, skipped and kept.

    Raises:
        ConfigurationError: a model without a torchvision counterpart, a bad
            ``classifier``, or weights of another architecture (missing or extra keys,
            both listed).
        ShapeError: a tensor whose shape differs (the keys and both shapes named).
        FileNotFoundError, DataFormatError: a missing file, or one that is no state dict.

    The copy is done only when everything fits: on an error the model is unchanged.
    """
    if classifier not in CLASSIFIER_CHOICES:
        raise ConfigurationError(
            f"classifier must be one of {', '.join(CLASSIFIER_CHOICES)}, got {classifier!r}"
        )
    model = getattr(model, "_orig_mod", model)  # a torch.compile'd model: its module
    arch, modules, heads = _key_map(model)
    heads_left = {"load": [], "skip_last": heads[-1:], "skip_all": heads}[classifier]
    # a head's modules with it (a sigma-delta classifier's synapse holds its layer)
    skip = [k for k in modules if any(k == h or k.startswith(f"{h}.") for h in heads_left)]
    pairs, targets = _pairs(model, {k: v for k, v in modules.items() if k not in skip})
    state = _read_source(source)
    skipped_pairs, _ = _pairs(model, {k: modules[k] for k in skip})
    skipped = sorted(k for k in state if k in set(skipped_pairs.values()))
    used = set(pairs.values())
    missing = [v for v in pairs.values() if v not in state and not v.endswith(_OPTIONAL)]
    extra = [k for k in state if k not in used and k not in skipped]
    if missing or extra:
        raise ConfigurationError(
            f"the weights ({_source_architecture(state)}) are not torchvision's {arch} layout "
            "the model has: "
            f"{len(missing)} key(s) the model needs are missing ({', '.join(missing[:_SHOWN])}"
            f"{', ...' if len(missing) > _SHOWN else ''}), {len(extra)} key(s) have no place "
            f"in it ({', '.join(extra[:_SHOWN])}{', ...' if len(extra) > _SHOWN else ''}); "
            + _weights_hint(arch)
        )
    wrong = [
        (ours, theirs)
        for ours, theirs in pairs.items()
        if theirs in state and state[theirs].shape != targets[ours].shape
    ]
    if wrong:
        ours, theirs = wrong[0]
        hint = (
            "; the classifier differs (num_classes, pool_size, hidden_features): pass "
            "classifier='skip_last' or 'skip_all' to leave it at its initialisation"
            if any(ours.startswith(f"{h}.") for h in heads)
            else ""
        )
        if ours in ("stem.0.weight", "features.0.weight"):
            hint = (
                f"; torchvision's {arch} takes RGB images: build the model with "
                "in_channels=3 (a dataset of other channels cannot use these weights)"
            )
        raise ShapeError(
            f"torchvision's {theirs!r} has shape {tuple(state[theirs].shape)}, the model's "
            f"{ours!r} {tuple(targets[ours].shape)} ({len(wrong)} tensor(s) differ){hint}"
        )
    _warn_pooling(model, arch)
    report = TorchvisionWeightsReport(arch, skipped=skipped)
    with torch.no_grad():
        for ours, theirs in pairs.items():
            if theirs in state:
                targets[ours].copy_(state[theirs])
                report.loaded[ours] = theirs
    report.kept = [k for k in targets if k not in report.loaded]
    return report


def load_pretrained(model: nn.Module, pretrained: Any, classifier: str = "load") -> nn.Module:
    """The zoo builders' ``pretrained=`` and ``pretrained_classifier=`` arguments: None
    leaves ``model`` as built; a path loads that torchvision weights file
    (:func:`load_torchvision_weights` with ``classifier``, the whole network by default);
    anything else (``True``: there is no download) is a ConfigurationError."""
    if pretrained is None:
        if classifier != "load":
            raise ConfigurationError(
                f"pretrained_classifier={classifier!r} needs pretrained=<path of "
                "torchvision's weights file>"
            )
        return model
    if classifier not in CLASSIFIER_CHOICES:
        raise ConfigurationError(
            f"pretrained_classifier must be one of {', '.join(CLASSIFIER_CHOICES)}, got "
            f"{classifier!r}"
        )
    arch, _, _ = _key_map(model)
    if not isinstance(pretrained, (str, os.PathLike)):
        raise ConfigurationError(
            f"pretrained must be the path of torchvision's {arch} weights file, got "
            f"{pretrained!r}; " + _weights_hint(arch)
        )
    if not os.path.isfile(os.fspath(pretrained)):
        raise FileNotFoundError(
            f"pretrained file {os.fspath(pretrained)!r} does not exist; " + _weights_hint(arch)
        )
    try:
        load_torchvision_weights(model, pretrained, classifier)
    except ShapeError as exc:
        head = "the classifier differs" in str(exc)
        raise ShapeError(
            f"pretrained={os.fspath(pretrained)!r}: {exc}"
            + (
                " (as pretrained_classifier='skip_last', or 'skip_all' for a VGG's whole "
                "classifier; on the command line: --model-kwargs pretrained=PATH "
                "pretrained_classifier=skip_last)"
                if head
                else ""
            )
        ) from exc
    return model
