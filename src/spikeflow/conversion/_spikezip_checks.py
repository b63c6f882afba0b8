"""Why :func:`~spikeflow.conversion.spikezip.convert_spikezip_qann` cannot import a
model: its forward not callable as the SNN calls it, or not traceable (the module whose
forward failed named, and what a Hugging Face model needs when one is called whole)."""

from __future__ import annotations

import inspect
from typing import Any

from torch import fx, nn

from spikeflow.conversion.report import ConversionError
from spikeflow.conversion.spikezip_hf import is_hugging_face
from spikeflow.conversion.transformer import _Tracer


def check_call(model: nn.Module, mask_argument: str | None) -> None:
    """A :class:`ConversionError` when ``model.forward`` cannot be called as the SNN calls
    it: with the input and, given ``mask_argument``, one mask by that keyword."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # no signature to read: the trace will tell
        return
    keywords = {} if mask_argument is None else {mask_argument: None}
    try:
        signature.bind(None, **keywords)
    except TypeError as err:
        call = "its input" + ("" if mask_argument is None else f" and {mask_argument}=mask")
        raise ConversionError(
            f"{type(model).__name__}.forward{signature} cannot be called with {call} "
            f"({err}): the SNN passes the input and at most one mask, by mask_argument; "
            "give the other parameters (a second mask, encoder states) defaults, or wrap "
            "the model in a module whose forward takes only these"
        ) from err


def _hugging_face_advice(name: str, module: nn.Module) -> str:
    """Why a Hugging Face model called whole does not trace, and what converts."""
    return (
        f"{name} is a Hugging Face {type(module).__name__}: its forward does not trace with "
        "torch.fx (its input checks, mask preparation and attention dispatch branch on "
        "values; it returns a ModelOutput). A RobertaModel, BertModel or their "
        "...ForSequenceClassification converts when you pass it to convert_spikezip_qann "
        "itself (its parts are then called in a forward that traces); otherwise convert "
        "a module of your own whose forward calls its parts, returning one tensor"
    )


class _NamingTracer(_Tracer):
    """:class:`_Tracer` that remembers the modules it is inside (the innermost last),
    so that a failed trace can name where it failed."""

    def __init__(self) -> None:
        super().__init__()
        self.inside: list[tuple[str, str]] = []

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        self.inside.append((self.path_of_module(m), type(m).__name__))
        out = super().call_module(m, forward, args, kwargs)
        self.inside.pop()  # left in place when the call raises: the failure's module
        return out


def trace_named(wrapper: nn.Module) -> fx.Graph:
    """The wrapper's graph, or a :class:`ConversionError` naming the module (path and
    class) whose forward could not be traced."""
    tracer = _NamingTracer()
    try:
        return tracer.trace(wrapper)
    except Exception as err:
        where, advice = "", ""
        if tracer.inside:
            path, kind = tracer.inside[-1]
            own = path.removeprefix("model").removeprefix(".")  # "": the model's forward
            where = f" (in {own}, {kind})" if own else " (in its own forward)"
        for path, _ in tracer.inside:  # a Hugging Face model called whole
            module = wrapper.get_submodule(path)
            if is_hugging_face(module):
                own = path.removeprefix("model").removeprefix(".") or "the model"
                advice = ". " + _hugging_face_advice(own, module)
                break
        source = getattr(wrapper.model, "source", None)  # a Hugging Face model's class
        if source and tracer.inside and tracer.inside[-1][0].endswith("attention.self"):
            advice = (
                f". {source}'s layers call attention.self(hidden, attention_mask=mask); "
                "Hugging Face's own self-attention forward does not trace (it unpacks "
                "shapes, dispatches on the config): give each layer SpikeZIP-TF's quantised "
                "self-attention, whose forward calls its quantisers"
            )
        raise ConversionError(
            f"torch.fx could not trace {source or type(wrapper.model).__name__}{where}: "
            f"{type(err).__name__}: {err}. Its forward must trace with torch.fx: no branch "
            f"or loop on tensor values, no tensor-valued asserts, one tensor returned{advice}"
        ) from err
