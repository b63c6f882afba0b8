"""The registry of built-in surrogates: :data:`SURROGATES`, :func:`surrogate_class` and
:func:`get_surrogate` (names are case-insensitive and ignore ``_``/``-``)."""

from __future__ import annotations

import inspect
from typing import Any

from spikeflow.errors import ConfigurationError
from spikeflow.surrogate.arctan_spike import ArctanSpike
from spikeflow.surrogate.base import Surrogate
from spikeflow.surrogate.dspike import DSpike
from spikeflow.surrogate.gaussian_mixture import DoubleGaussian, MultiGaussian
from spikeflow.surrogate.multilevel import MultiLevelSpikeCount
from spikeflow.surrogate.norse_style import HeaviCirc, HeaviErfc, HeaviTanh, NorseTriangle
from spikeflow.surrogate.snntorch_style import (
    FastSigmoid,
    LeakySpikeOperator,
    SparseFastSigmoid,
    SpikeRateEscape,
    Triangular,
)
from spikeflow.surrogate.spikingjelly import (
    S2NN,
    ATan,
    DeterministicPass,
    Erf,
    FakeNumericalGradient,
    LeakyKReLU,
    LogTailedReLU,
    NonzeroSignLogAbs,
    PiecewiseExp,
    PiecewiseLeakyReLU,
    PiecewiseQuadratic,
    QPseudoSpike,
    Rect,
    Sigmoid,
    SoftSign,
    SquarewaveFourierSeries,
    SuperSpike,
    Triangle,
)

#: Every built-in surrogate, by class name.
SURROGATES: dict[str, type[Surrogate]] = {
    cls.__name__: cls
    for cls in (
        Sigmoid,
        ATan,
        PiecewiseQuadratic,
        PiecewiseExp,
        SoftSign,
        Erf,
        SuperSpike,
        NonzeroSignLogAbs,
        PiecewiseLeakyReLU,
        LeakyKReLU,
        QPseudoSpike,
        S2NN,
        SquarewaveFourierSeries,
        Rect,
        Triangle,
        FakeNumericalGradient,
        LogTailedReLU,
        DeterministicPass,
        MultiLevelSpikeCount,
        FastSigmoid,
        SpikeRateEscape,
        SparseFastSigmoid,
        Triangular,
        LeakySpikeOperator,
        DSpike,
        DoubleGaussian,
        MultiGaussian,
        ArctanSpike,
        HeaviTanh,
        HeaviErfc,
        HeaviCirc,
        NorseTriangle,
    )
}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def surrogate_class(name_or_class: str | type[Surrogate]) -> type[Surrogate]:
    """The :class:`Surrogate` subclass a name in :data:`SURROGATES` (as
    :func:`get_surrogate` reads it) or a class stands for, without building one.

    Raises:
        ConfigurationError: an unknown name, the abstract base class, or another object.
    """
    if isinstance(name_or_class, type) and issubclass(name_or_class, Surrogate):
        if name_or_class is Surrogate:
            raise ConfigurationError(
                "get_surrogate: Surrogate is the abstract base class; pass one of "
                + ", ".join(SURROGATES)
            )
        cls = name_or_class
    elif isinstance(name_or_class, str):
        by_name = {_normalise(key): value for key, value in SURROGATES.items()}
        found = by_name.get(_normalise(name_or_class))
        if found is None:
            raise ConfigurationError(
                f"get_surrogate: unknown surrogate {name_or_class!r}; valid names "
                "(case-insensitive): " + ", ".join(SURROGATES)
            )
        cls = found
    else:
        raise ConfigurationError(
            "get_surrogate: expected a surrogate name, a Surrogate subclass or instance, got "
            f"{type(name_or_class).__name__}; valid names: " + ", ".join(SURROGATES)
        )
    return cls


def get_surrogate(name_or_instance: str | type[Surrogate] | Surrogate, **kwargs: Any) -> Surrogate:
    """Build a surrogate from a name, a class or an instance.

    Args:
        name_or_instance: a :class:`Surrogate` instance (returned as is; ``kwargs`` must
            then be empty), a :class:`Surrogate` subclass (built with ``kwargs``), or the
            name of one in :data:`SURROGATES`, case-insensitive and ignoring ``_``/``-``
            (``"atan"``, ``"Sigmoid"``, ``"piecewise_quadratic"``).
        **kwargs: the constructor's arguments (``alpha``, ``spiking``, ...).

    Raises:
        ConfigurationError: for an unknown name (the message lists the valid ones), an
            object that is no surrogate, arguments the class does not take, or bad values.
    """
    if isinstance(name_or_instance, Surrogate):
        if kwargs:
            raise ConfigurationError(
                f"get_surrogate: got an instance of {type(name_or_instance).__name__}, so "
                f"the arguments {sorted(kwargs)} cannot be applied; pass the class or name"
            )
        return name_or_instance
    cls = surrogate_class(name_or_instance)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        accepted = ", ".join(inspect.signature(cls).parameters)
        raise ConfigurationError(
            f"get_surrogate: {cls.__name__} does not take {sorted(kwargs)} ({exc}); its "
            f"parameters are: {accepted}"
        ) from None
    return cls(**kwargs)
