"""Loading SpikeGPT's published checkpoints (ridgerchu/SpikeGPT) into ``spike_gpt``.

SpikeGPT's training model (``GPT`` in its ``src/model.py``) saves a plain state dict:

===============================================  ================  ==========================
official key                                     official shape    spikeflow
===============================================  ================  ==========================
``emb.weight``                                   ``[V, C]``        same key and shape
``blocks.0.ln0.{weight,bias}`` (block 0 only)    ``[C]``           same
``blocks.N.ln1/ln2.{weight,bias}``               ``[C]``           same
``blocks.N.att.time_decay``, ``.time_first``     ``[C]``           same (stored as trained)
``blocks.N.att.time_mix_{k,v,r}``                ``[1, 1, C]``     ``[C]``
``blocks.N.att.{key,value,receptance,output}``   ``[C, C]``        same
``blocks.N.ffn.time_mix_{k,r}``                  ``[1, 1, C]``     ``[C]``
``blocks.N.ffn.key.weight``                      ``[4C, C]``       same (``ffn_mult`` = 4)
``blocks.N.ffn.receptance.weight``               ``[C, C]``        same
``blocks.N.ffn.value.weight``                    ``[C, 4C]``       same
``ln_out.{weight,bias}``, ``head.weight``        ``[C]``, ``[V, C]``  same
===============================================  ================  ==========================

Its spiking neurons (SpikingJelly's ``MultiStepLIFNode``) and the arctangent of the
embedding hold no parameters, so nothing else is stored. The decay is stored as trained,
``time_decay``: their kernel uses ``w = -exp(time_decay)`` (added to the log scale),
spikeflow ``w = exp(time_decay)`` (subtracted), so it is copied as is; their inference
script's ``-exp`` is applied at load time there, to its own copy, not to the file.

:func:`convert_spikegpt_state_dict` maps such a state dict (the prefix that every key
carries removed, with a warning naming it: ``module.`` left by ``DataParallel`` or
Accelerate, ``model.`` by a PyTorch Lightning module holding the network as an
attribute, ``_orig_mod.`` by ``torch.compile``, or several nested; a whole training
checkpoint is refused, naming ``ckpt['state_dict']``) to spikeflow's keys and shapes,
refusing any other layout with the key at fault; :func:`load_spikegpt` builds the
matching ``spike_gpt`` (sizes read from the tensors) and loads it.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from spikeflow.errors import ConfigurationError, ShapeError
from spikeflow.models.spike_gpt import SpikeGPT

__all__ = ["convert_spikegpt_state_dict", "load_spikegpt", "spikegpt_sizes"]

_TOKEN_SHIFT = re.compile(r"blocks\.\d+\.(att|ffn)\.time_mix_[kvr]")
#: The first dotted component of SpikeGPT's own keys (never taken for a wrapper's prefix).
_OWN_NAMES = frozenset({"emb", "blocks", "ln_out", "head", "head_q", "head_k", "copy_mask"})
_UNSUPPORTED = {
    "head_q": "the head-QK copy mechanism (RWKV_HEAD_QK_DIM > 0), which SpikeGPT's "
    "released models leave off",
    "head_k": "the head-QK copy mechanism (RWKV_HEAD_QK_DIM > 0)",
    "copy_mask": "the head-QK copy mechanism (RWKV_HEAD_QK_DIM > 0)",
    "ffnPre": "the 'RWKV-ffnPre' first block (a channel mix in place of block 0's time "
    "mix), which SpikeGPT's released checkpoint does not use",
}


def _is_training_checkpoint(checkpoint: Any) -> bool:
    """A PyTorch Lightning-style checkpoint: a dict whose ``'state_dict'`` is a dict and
    that holds no tensor itself (``{'state_dict': {...}, 'epoch': ..., ...}``)."""
    return (
        isinstance(checkpoint, Mapping)
        and isinstance(checkpoint.get("state_dict"), Mapping)
        and not any(isinstance(value, Tensor) for value in checkpoint.values())
    )


def _strip_prefix(state: Mapping[str, Any]) -> dict[str, Tensor]:
    if _is_training_checkpoint(state):
        others = sorted(str(k) for k in state if k != "state_dict")[:4]
        raise ConfigurationError(
            "SpikeGPT checkpoint: got a training checkpoint (a dict holding the weights "
            f"under 'state_dict', as PyTorch Lightning saves; other entries: {others}), "
            "not a state dict: pass ckpt['state_dict'] (load_spikegpt unwraps it itself)"
        )
    if not isinstance(state, Mapping) or not state:
        raise ConfigurationError(
            f"SpikeGPT checkpoint: expected a non-empty state dict (str → tensor); got "
            f"{type(state).__name__}"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ConfigurationError(
                f"SpikeGPT checkpoint: entry {key!r} is not a tensor under a string key "
                f"({type(value).__name__})"
            )
    prefix = _common_prefix(list(state))
    if prefix is None:
        return dict(state)
    warnings.warn(
        f"SpikeGPT checkpoint: removed the prefix {prefix!r} that all {len(state)} keys "
        f"carry (e.g. {next(iter(state))!r}: a network saved inside a wrapper)",
        stacklevel=3,
    )
    return {key[len(prefix) :]: value for key, value in state.items()}


def _common_prefix(keys: list[str]) -> str | None:
    """The leading dotted components (``"model."``, ``"model._orig_mod."``) that every
    key carries and that are no names of SpikeGPT's own (``emb``, ``blocks``, ...),
    else None: the attributes wrappers kept the network in (a PyTorch Lightning
    module's ``model.``, ``DataParallel``'s or Accelerate's ``module.``,
    ``torch.compile``'s ``_orig_mod.``, one inside another). What remains must still
    be SpikeGPT's layout, key for key, or the conversion refuses it."""
    prefix = ""
    while True:
        heads = {key[len(prefix) :].split(".", 1)[0] for key in keys}
        if len(heads) != 1 or not all("." in key[len(prefix) :] for key in keys):
            break
        (head,) = heads
        if head in _OWN_NAMES:
            break
        prefix += f"{head}."
    return prefix or None


def spikegpt_sizes(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """``vocab_size``, ``d_model``, ``n_layers`` and ``ffn_mult`` of an official SpikeGPT
    state dict, read from ``emb.weight``, the block indices and
    ``blocks.0.ffn.key.weight``. A prefix on every key (``model.``, ``module.``) is
    removed, with a warning naming it."""
    return _sizes(_strip_prefix(state_dict))


def _sizes(state: dict[str, Tensor]) -> dict[str, int]:
    """:func:`spikegpt_sizes` of a state dict whose prefix is already removed."""
    for key, parts in _UNSUPPORTED.items():
        found = [k for k in state if key in k.split(".")]
        if found:
            raise ConfigurationError(
                f"SpikeGPT checkpoint: key {found[0]!r} belongs to {parts}; spikeflow's "
                "spike_gpt does not build it"
            )
    emb = state.get("emb.weight")
    if emb is None or emb.dim() != 2:
        nested = sorted(k for k in state if k.endswith(".emb.weight"))
        hint = ""
        if nested:  # a wrapper's prefix on the network's keys only: nothing was removed
            prefix = nested[0][: -len("emb.weight")]
            others = sorted(k for k in state if not k.startswith(prefix))[:3]
            hint = (
                f"; {nested[0]!r} looks like it under a prefix {prefix!r} that not every "
                f"key carries (not {others}), so none was removed: pass only the entries "
                f"under {prefix!r}"
            )
        raise ConfigurationError(
            "SpikeGPT checkpoint: no 2-D 'emb.weight' [vocab, d_model]; is this a SpikeGPT "
            f"(RWKV-4) state dict? first keys: {sorted(state)[:5]}{hint}"
        )
    vocab, width = emb.shape
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not blocks:
        raise ConfigurationError("SpikeGPT checkpoint: no 'blocks.N.' keys")
    hidden = state.get("blocks.0.ffn.key.weight")
    if hidden is None or hidden.dim() != 2 or hidden.shape[0] % width or not hidden.shape[0]:
        raise ConfigurationError(
            "SpikeGPT checkpoint: 'blocks.0.ffn.key.weight' must be [ffn_mult * d_model, "
            f"d_model] with d_model = {width}; got "
            f"{None if hidden is None else tuple(hidden.shape)}"
        )
    return {
        "vocab_size": int(vocab),
        "d_model": int(width),
        "n_layers": max(blocks) + 1,
        "ffn_mult": int(hidden.shape[0]) // int(width),
    }


def convert_spikegpt_state_dict(
    state_dict: Mapping[str, Any], model: SpikeGPT | None = None
) -> dict[str, Tensor]:
    """Map an official SpikeGPT state dict to ``spike_gpt``'s keys and shapes.

    The token-shift mixes ``time_mix_*`` go from ``[1, 1, C]`` to ``[C]``; every other
    tensor keeps its key and shape (module docstring). Each key is checked against
    ``model`` (by default a ``spike_gpt`` of the sizes :func:`spikegpt_sizes` reads):
    a missing key, an extra key or a tensor of the wrong shape is a
    ``ConfigurationError``/``ShapeError`` naming the key, and so is a NaN or infinite
    value. dtypes are kept (loading casts to the model's). A prefix that every key
    carries, and only such a one (a PyTorch Lightning module's ``model.``,
    ``DataParallel``'s ``module.``, ``torch.compile``'s ``_orig_mod.``, or several of
    them nested), is removed, with a warning naming it.
    """
    return _convert(_strip_prefix(state_dict), model)


def _convert(state: dict[str, Tensor], model: SpikeGPT | None) -> dict[str, Tensor]:
    """:func:`convert_spikegpt_state_dict` of a state dict whose prefix is removed."""
    if model is None:
        with torch.device("meta"):  # shapes only: nothing allocated
            model = SpikeGPT(**_sizes(state), context=1)
    else:
        _sizes(state)  # the unsupported-variant checks
    expected = model.state_dict()
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ConfigurationError(
            f"SpikeGPT checkpoint: unexpected key {extra[0]!r} ({len(extra)} unexpected in "
            f"all) for a spike_gpt of {model.n_layers} blocks, width {model.d_model}"
        )
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ConfigurationError(
            f"SpikeGPT checkpoint: missing key {missing[0]!r} ({len(missing)} missing in "
            f"all) for a spike_gpt of {model.n_layers} blocks, width {model.d_model}"
        )
    out: dict[str, Tensor] = {}
    for key, target in expected.items():
        value = state[key]
        if _TOKEN_SHIFT.fullmatch(key) and value.dim() == 3:
            if tuple(value.shape[:2]) != (1, 1):
                raise ShapeError(
                    f"SpikeGPT checkpoint: {key!r} must be [1, 1, {target.shape[0]}] (or "
                    f"[{target.shape[0]}]); got {tuple(value.shape)}"
                )
            value = value.reshape(-1)
        if tuple(value.shape) != tuple(target.shape):
            raise ShapeError(
                f"SpikeGPT checkpoint: {key!r} has shape {tuple(value.shape)}, expected "
                f"{tuple(target.shape)}"
            )
        if not value.is_floating_point():
            raise ConfigurationError(
                f"SpikeGPT checkpoint: {key!r} must be floating point; got {value.dtype}"
            )
        if value.device.type != "meta" and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ConfigurationError(
                f"SpikeGPT checkpoint: {key!r} holds {bad} non-finite value(s) (NaN/inf: "
                "a diverged or corrupted checkpoint); refusing to load it"
            )
        out[key] = value
    return out


def load_spikegpt(
    checkpoint: Mapping[str, Any] | str | os.PathLike,
    context: int = 1024,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> SpikeGPT:
    """A ``spike_gpt`` holding an official SpikeGPT checkpoint, in eval mode.

    Args:
        checkpoint: the state dict, or the path of the ``.pth`` file (read with
            ``torch.load(..., map_location="cpu", weights_only=True)``: tensors only; a
            file holding other Python objects is refused, naming how to load it).
            A PyTorch Lightning-style checkpoint (``{'state_dict': {...}, 'epoch': ...}``,
            no tensor outside ``'state_dict'``) is read from its ``'state_dict'``, and
            a prefix that all its keys carry (``model.``: the LightningModule's
            attribute) is removed with a warning naming it.
        context: the model's context (SpikeGPT's released model: 1024).
        dtype: the parameters' dtype (default: PyTorch's default, float32; the file's
            may be float16/bfloat16).
        kwargs: further :class:`~spikeflow.models.spike_gpt.SpikeGPT` arguments (not
            the sizes, which come from the tensors).
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ConfigurationError(
            f"load_spikegpt: dtype must be a floating-point torch.dtype; got {dtype!r}"
        )
    if isinstance(checkpoint, (str, os.PathLike)):
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"SpikeGPT checkpoint: no file {os.fspath(checkpoint)!r}")
        try:
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # e.g. Lightning's saved hyperparameters
            found = re.search(r"GLOBAL (\S+)", str(error))
            held = found.group(1) if found else "Python objects"
            raise ConfigurationError(
                f"SpikeGPT checkpoint: {os.fspath(checkpoint)!r} holds not only tensors "
                f"({held}, e.g. a training checkpoint's hyperparameters), which a "
                "tensors-only load refuses; if you trust the file, load it with "
                "torch.load(path, map_location='cpu', weights_only=False) and pass the "
                "loaded dict to load_spikegpt"
            ) from error
    if _is_training_checkpoint(checkpoint):
        checkpoint = checkpoint["state_dict"]
    state = _strip_prefix(checkpoint)  # (the prefix named once)
    sizes = _sizes(state)
    clash = sorted(set(sizes) & set(kwargs))
    if clash:
        raise ConfigurationError(
            f"load_spikegpt: {clash[0]!r} comes from the checkpoint's tensors "
            f"({sizes[clash[0]]}); do not pass it"
        )
    model = SpikeGPT(**sizes, context=context, **kwargs)
    if dtype is not None:
        model = model.to(dtype)
    model.load_state_dict(_convert(state, model))
    return model.eval()
