"""The charge wrappers of the membrane quantizers, shared by
:class:`~spikeflow.quant.MembraneQuantizer` (a fixed-point register) and
:class:`~spikeflow.quant.state_levels.LevelQuantizer` (a list of levels).

A quantizer replaces a neuron declaration's ``charge`` by a wrapper that rounds the
membrane it returns. Each quantizer kind registers how it builds the wrapper
(:func:`register_wrapper`); :func:`quantized_declaration` gives the declaration with it:

* the wrapper is built once per (kind, charge, ``returns_aux``, the charge's code, the
  quantizer's constants), so the fused kernels' caches (keyed on the declaration's
  functions) build each once; a charge whose code is replaced in place (IPython's
  autoreload, which may change its signature) gets a new one;
* while Dynamo traces, the wrapper is made outside the trace by a constant function of
  the graph (:func:`_compiled_charge_name`) and read back by name from :data:`_NAMED`,
  as the eager cache returns it (one made inside the trace loses its ``__signature__``
  and ``__wrapped__``), and the declaration is built without reading signatures
  (Dynamo refuses to read a ``__signature__``'s parameters, a mappingproxy, after the
  traced code mutated a dict: a container's parameter cache).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from spikeflow._compile_marks import assume_constant_result
from spikeflow.neurons.declaration import NeuronDeclaration, _codes, declare

__all__ = ["quantized_declaration", "register_wrapper", "wrapped_charge"]

#: ``build(charge, returns_aux, *constants)`` -> the wrapper, by quantizer kind.
Builder = Callable[..., Callable[..., object]]
_BUILDERS: dict[str, Builder] = {}
#: (kind, charge, returns_aux, its code, constants) -> the wrapper.
_CHARGES: dict[tuple, Callable[..., object]] = {}
#: The wrappers by a name, for code Dynamo traces (see _compiled_charge_name).
_NAMED: dict[str, Callable[..., object]] = {}


def register_wrapper(kind: str, build: Builder) -> None:
    """Register how quantizers of ``kind`` wrap a charge: ``build(charge, returns_aux,
    *constants)`` returns the wrapper (with ``__signature__`` and ``__wrapped__`` set)."""
    _BUILDERS[kind] = build


def wrapped_charge(kind: str, charge: Callable[..., object], returns_aux: bool,
                   constants: tuple = ()) -> Callable[..., object]:  # fmt: skip
    """The ``kind`` quantizer's wrapper of ``charge`` with ``constants`` (cached: the same
    function for the same charge, code and constants)."""
    key = (kind, charge, returns_aux, _codes((charge,)), constants)
    cached = _CHARGES.get(key)
    if cached is not None:
        return cached
    wrapper = _BUILDERS[kind](charge, returns_aux, *constants)
    _CHARGES[key] = wrapper
    return wrapper


@assume_constant_result
def _compiled_charge_name(kind: str, fn: object, instance: object, bound: tuple | None,
                          returns_aux: bool, constants: tuple) -> str:  # fmt: skip
    """:func:`wrapped_charge` while Dynamo traces, run as a constant of the graph (the
    charge as :func:`~spikeflow.kernels.registry._function_parts`): the wrapper is made
    and kept outside the trace, and its name in :data:`_NAMED` returned."""
    from spikeflow.kernels.registry import _function_of

    charge = wrapped_charge(kind, _function_of(fn, instance, bound), returns_aux, constants)  # type: ignore[arg-type]
    name = f"{charge.__qualname__}@{id(charge):x}"
    _NAMED[name] = charge
    return name


def quantized_declaration(decl: NeuronDeclaration, kind: str, suffix: str,
                          added_params: tuple[str, ...] = (),
                          constants: tuple = ()) -> NeuronDeclaration:  # fmt: skip
    """``decl`` named ``{decl.name}_{suffix}`` with its charge replaced by the ``kind``
    quantizer's wrapper (with ``constants``), whose keyword parameters are the charge's
    plus ``added_params``; eager or under ``torch.compile`` (module docstring)."""
    if torch.compiler.is_compiling():
        from spikeflow.kernels.registry import _function_parts

        parts = _function_parts(decl.charge)
        name = _compiled_charge_name(kind, *parts, decl.charge_returns_aux, constants)
        # What declare() would build from the signatures, which Dynamo is not made to read.
        return NeuronDeclaration(
            name=f"{decl.name}_{suffix}",
            charge=_NAMED[name],
            update=decl.update,
            state_names=decl.state_names,
            charge_params=(*decl.charge_params, *added_params),
            update_params=decl.update_params,
            charge_returns_aux=decl.charge_returns_aux,
            threshold=decl.threshold,
            threshold_params=decl.threshold_params,
            reset_membrane=decl.reset_membrane,
            reset_params=decl.reset_params,
        )
    charge = wrapped_charge(kind, decl.charge, decl.charge_returns_aux, constants)
    return declare(
        charge, decl.update, f"{decl.name}_{suffix}", decl.charge_returns_aux,
        decl.threshold, decl.reset_membrane,
    )  # fmt: skip
