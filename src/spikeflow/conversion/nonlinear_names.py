"""The names of the nonlinear functions a conversion cannot turn into spikes.

:func:`is_nonlinear_name` tells whether a traced call (``torch.sigmoid``, ``F.gelu``,
``x.tanh_()``, ``torch.special.expit``, an operator such as ``x ** y``) is one; the
call classifier of :mod:`spikeflow.conversion.classify` (which re-exports both names)
reports such calls as unconverted.
"""

from __future__ import annotations

__all__ = ["NONLINEAR_WORDS", "is_nonlinear_name"]


#: Short names of nonlinear functions (``torch.sigmoid``, ``F.gelu``, ``x.tanh_()``...).
NONLINEAR_WORDS = (
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "softmax",
    "softmin",
    "elu",
    "selu",
    "celu",
    "relu6",
    "leaky_relu",
    "prelu",
    "rrelu",
    "hardtanh",
    "hardswish",
    "hardsigmoid",
    "mish",
    "softplus",
    "softsign",
    "logsigmoid",
    "glu",
    "threshold",
    "layer_norm",
    "group_norm",
    "instance_norm",
    "normalize",
    "exp",
    "log",
    "abs",
    "clamp",
    "clip",
    "maximum",
    "minimum",
    "max",
    "min",
    "pow",
    "sqrt",
    "scaled_dot_product_attention",
    # Pooling that is not a per-sample linear map (plain max pooling is gated instead).
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d_with_indices",
    "adaptive_max_pool3d_with_indices",
    "max_pool1d_with_indices",
    "max_pool2d_with_indices",
    "max_pool3d_with_indices",
    "fractional_max_pool2d",
    "fractional_max_pool3d",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    # Rounding, sign and order statistics.
    "floor",
    "ceil",
    "round",
    "trunc",
    "sign",
    "heaviside",
    "sort",
    "topk",
    "logsumexp",
    # Elementwise functions (the method forms are refused too).
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "asinh",
    "acosh",
    "atanh",
    "square",
    "rsqrt",
    "reciprocal",
    "erf",
    "erfc",
    "erfinv",
    "expm1",
    "exp2",
    "log1p",
    "log2",
    "log10",
    "amax",
    "amin",
    "norm",
    # Integer division, remainders, elementwise max/min, products of a signal's entries.
    "floordiv",
    "floor_divide",
    "remainder",
    "mod",
    "fmod",
    "fmax",
    "fmin",
    "prod",
    "cumprod",
    # More elementwise functions, order statistics and distances.
    "clamp_min",
    "clamp_max",
    "log_softmax",
    "tanhshrink",
    "softshrink",
    "hardshrink",
    "logit",
    "sinc",
    "xlogy",
    "frac",
    "atan2",
    "arctan2",
    "hypot",
    "logaddexp",
    "logaddexp2",
    "lgamma",
    "digamma",
    "polygamma",
    "float_power",
    "copysign",
    "sgn",
    "logcumsumexp",
    "cummax",
    "cummin",
    "median",
    "nanmedian",
    "quantile",
    "nanquantile",
    "kthvalue",
    "argmax",
    "argmin",
    "argsort",
    "var",
    "std",
    "var_mean",
    "std_mean",
    "cosine_similarity",
    "pairwise_distance",
    "cdist",
    "dist",
)
_NONLINEAR = frozenset(NONLINEAR_WORDS)
#: Other spellings of nonlinear functions (the names calls trace to).
_ALIASES = {"log_sigmoid": "logsigmoid"}


def _short_name(name: str) -> str:
    """The bare function name: ``torch._C._nn.log_sigmoid`` -> ``logsigmoid``,
    ``tanh_`` -> ``tanh``, ``Tensor.__rpow__`` -> ``pow``."""
    short = name.rsplit(".", 1)[-1]
    if short.startswith("__") and short.endswith("__"):  # operators: x ** y, y // x, x %= 2
        short = short[2:-2]
        if short[:1] in ("r", "i") and short[1:] in _NONLINEAR:
            short = short[1:]
    short = short.rstrip("_")
    return _ALIASES.get(short, short)


def is_nonlinear_name(name: str) -> bool:
    """Whether a function name (``torch.sigmoid``, ``gelu``, ``tanh_``, ``x.clamp_min``,
    ``torch.special.expit``) is a known nonlinearity. Every ``torch.special`` function
    is (they trace to ``torch._C._special.special_*``)."""
    if name.startswith(("torch.special.", "torch._C._special.")):
        return True
    return _short_name(name) in _NONLINEAR or name.rsplit(".", 1)[-1].startswith("special_")
