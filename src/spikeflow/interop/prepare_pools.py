"""Average pools that :func:`~spikeflow.interop.prepare_for_export` makes exportable:
an ``AdaptiveAvgPool2d`` becomes the ``AvgPool2d`` it equals on the sample input's
sizes, and a ``ceil_mode`` average pool becomes a floor-mode one where ceil adds no
window (NIR and netx take neither); others are named as problems."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from spikeflow.functional import reset_net
from spikeflow.layers import AvgPool2d

__all__ = ["fix_adaptive_pools"]


def _pool_input_sides(model: nn.Module, sample_input: Tensor) -> dict[int, tuple[int, int]]:
    """The ``(H, W)`` each adaptive average pool of ``model`` gets, from one run on
    ``sample_input`` (the state it leaves is reset)."""
    sides: dict[int, tuple[int, int]] = {}

    def hook(module: nn.Module, args: tuple, _out: object) -> None:
        sides.setdefault(id(module), tuple(int(n) for n in args[0].shape[-2:]))

    pools = [m for m in model.modules() if _needs_sides(m)]
    handles = [pool.register_forward_hook(hook) for pool in pools]
    reset_net(model)
    try:
        with torch.no_grad():
            model(sample_input)
    finally:
        for handle in handles:
            handle.remove()
        reset_net(model)
    return sides


def _fixed_pool(
    pool: nn.AdaptiveAvgPool2d, sides: tuple[int, int] | None
) -> tuple[nn.Module | None, str | None]:
    """``(the fixed module equal to pool, None)`` (an identity where it changes nothing),
    else ``(None, why not)``."""
    if sides is None:
        return None, (
            "NIR has no adaptive pooling; with its input size known (pass sample_input=) "
            "it exports as the average pool it is, when its sides divide the input's"
        )
    size = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
    out = tuple(sides[i] if n is None else int(n) for i, n in enumerate(size))
    if out == sides:
        return nn.Identity(), None
    if sides[0] % out[0] or sides[1] % out[1]:
        return None, (
            f"its output {out[0]}x{out[1]} does not divide its input {sides[0]}x{sides[1]}: "
            "windows of different sizes, which no NIR pooling has"
        )
    kernel = (sides[0] // out[0], sides[1] // out[1])
    mode = getattr(pool, "step_mode", "m")
    return AvgPool2d(kernel, kernel, step_mode=mode), None


def _needs_sides(module: nn.Module) -> bool:
    """An adaptive average pool, or an average pool with ``ceil_mode=True``: what each
    computes depends on its input's sides."""
    return isinstance(module, nn.AdaptiveAvgPool2d) or (
        isinstance(module, nn.AvgPool2d) and module.ceil_mode
    )


def _floor_pool(
    pool: nn.AvgPool2d, sides: tuple[int, int] | None
) -> tuple[nn.Module | None, str | None]:
    """``(the pool with ceil_mode=False, None)`` where no window is partial on ``sides``
    (torch's ceil mode adds a last window where the side minus the kernel, padding
    included, is no multiple of the stride, unless that window would start in the right
    padding: then it is the floor mode's), else ``(None, why not)``: NIR's pooling has
    no ceil mode."""
    if sides is None:
        return None, (
            "NIR pooling has no ceil_mode=True; with its input size known (pass "
            "sample_input=) it exports as the pool it is where no window is partial"
        )
    kernel, stride, padding = (
        nn.modules.utils._pair(v)
        for v in (pool.kernel_size, pool.stride or pool.kernel_size, pool.padding)
    )
    if any(
        _ceil_adds_a_window(n, k, st, p)
        for n, k, st, p in zip(sides, kernel, stride, padding, strict=True)
    ):
        return None, (
            f"ceil_mode=True on a {sides[0]}x{sides[1]} input leaves a partial last window "
            f"(kernel {kernel[0]}x{kernel[1]}, stride {stride[0]}x{stride[1]}), which NIR's "
            "pooling has not"
        )
    fixed = copy.deepcopy(pool)
    fixed.ceil_mode = False
    return fixed, None


def _ceil_adds_a_window(side: int, kernel: int, stride: int, padding: int) -> bool:
    """Whether ``ceil_mode=True`` gives a pool on ``side`` one more (partial) window
    than floor mode: torch's output sizes, the ceil mode's last window dropped where it
    would start in the right padding."""
    span = side + 2 * padding - kernel
    floor_out = span // stride + 1
    ceil_out = -(-span // stride) + 1
    if (ceil_out - 1) * stride >= side + padding:
        ceil_out -= 1
    return ceil_out != floor_out


def fix_adaptive_pools(model: nn.Module, sample_input: Tensor | None, problems: list[str]) -> None:
    """Replace (in place) each adaptive average pool of ``model`` by its fixed pool, and
    each average pool with ``ceil_mode=True`` by the same pool with ``ceil_mode=False``
    where that computes the same on ``sample_input``'s sizes."""
    found = [(path, m) for path, m in model.named_modules() if _needs_sides(m)]
    if not found:
        return
    sides = {} if sample_input is None else _pool_input_sides(model, sample_input)
    for path, pool in found:
        if isinstance(pool, nn.AvgPool2d):
            fixed, problem = _floor_pool(pool, sides.get(id(pool)))
        else:
            fixed, problem = _fixed_pool(pool, sides.get(id(pool)))
        if problem is not None:
            problems.append(f"'{path}' ({type(pool).__name__}): {problem}")
            continue
        parent, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent), name, fixed)
