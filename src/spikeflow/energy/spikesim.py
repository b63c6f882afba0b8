"""SpikeSim's compute-in-memory energy model of a spiking network's convolutions.

Moitra, Bhattacharjee, Kuang, Krishnan, Cao, Panda, "SpikeSim: An End-to-End
Compute-in-Memory Hardware Evaluation Tool for Benchmarking Spiking Neural Networks"
(IEEE TCAD 2023, doi:10.1109/TCAD.2023.3274918) map each ``Conv2d`` of a network onto
tiles of ``X x X`` crossbars (``X = 64``, RRAM or SRAM, 65 nm): a layer of ``C_in``
input and ``C_out`` output channels takes ``p = ⌈C_in/X⌉`` crossbars along its inputs
and ``q = ⌈C_out/X⌉`` along its outputs per kernel tap. Their released code
(``ela_spikesim.py``, the costs below) prices one processing-element cycle per
(input tile, output tile, output position, step), whatever the spikes:

* **dense** (the released model): ``E = Σ cycles · E_cycle(k)``, with ``cycles =
  p·q·S`` for ``S`` output sites (output positions times steps) and ``E_cycle(k) =
  E_pc + E_neuron + (X/8)·k_h·k_w·E_xbar``; the patch control ``E_pc = E_htree +
  E_fetch + E_tile_buffer + (X/8)·16·E_sub + (X/8)·E_temp_buffer + (X/8)²·(E_adc +
  E_mux)``; ``E_xbar`` the crossbar array's read (RRAM 1.764 pJ, SRAM 671.1 pJ).

SpikingJelly 2.0 adds an event-driven reading of the same costs (its definition, not the
paper's), which spikeflow gives too:

* **event**: for an input of spikes, per input tile ``t`` (its ``c_t`` channels), the
  spikes that fall in each output site's receptive field, ``n_t(site)`` (the tile's
  spikes convolved with a ``k_h x k_w`` kernel of ones); a patch tile is active where
  ``n_t > 0`` (``A`` of them), a site where any tile is (``Z`` sites); then ``E = q·A·E_pc
  + q·Σ_t R_t·(E_xbar/8)·(⌈c_t/X⌉·X/c_t) + p·q·Z·E_neuron`` with ``R_t = Σ_site n_t`` the
  crossbar rows the spikes drive. An input of real values is dense (``A = p·S``, ``R_t =
  S·c_t·k_h·k_w``, ``Z = S``).

Only ``Conv2d`` layers with one group are mapped (as in SpikeSim and SpikingJelly);
linear layers, other convolutions and spiking layers other than IF and LIF neurons are
listed in the report's ``not_counted``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeflow.energy._pairs import is_spikes
from spikeflow.energy._shared import check_joules, hooked_forward
from spikeflow.errors import ConfigurationError, ShapeError

__all__ = ["SpikeSimCosts", "SpikeSimLayer", "SpikeSimReport", "spikesim_energy_report"]

_ROWS_PER_READ = 8.0  # the released code's divisor in its X/8 factors
#: Layers SpikeSim does not map (and a Conv2d of more than one group).
_UNMAPPED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
             nn.ConvTranspose2d, nn.ConvTranspose3d)  # fmt: skip


@dataclass(frozen=True)
class SpikeSimCosts:
    """SpikeSim's crossbar size and component energies in joules (defaults: the released
    ``ela_spikesim.py`` figures, 65 nm, as SpikingJelly's ``SpikeSimEnergyConfig``).

    Attributes:
        xbar_size: ``X``, the crossbar's rows and columns (64).
        device: ``"rram"`` or ``"sram"`` crossbars.
        tile_buffer, temp_buffer, sub, adc, htree, mux, mem_fetch: the peripheral
            circuits' energies per access.
        neuron: an IF/LIF neuron module's update (4 x 1.274 pJ).
        rram_xbar, sram_xbar: one crossbar array read.
    """

    xbar_size: int = 64
    device: str = "rram"
    tile_buffer: float = 397.0e-12
    temp_buffer: float = 0.2e-12
    sub: float = 1.15e-18
    adc: float = 2.03084e-12
    htree: float = 19.64e-12 * 8.0
    mux: float = 0.094245e-12
    mem_fetch: float = 4.64e-12
    neuron: float = 1.274e-12 * 4.0
    rram_xbar: float = 1.76423e-12
    sram_xbar: float = 671.089e-12

    def __post_init__(self) -> None:
        size = self.xbar_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(
                f"SpikeSimCosts: xbar_size must be a positive integer, got {size!r}"
            )
        if self.device not in ("rram", "sram"):
            raise ConfigurationError(
                f"SpikeSimCosts: device must be 'rram' or 'sram', got {self.device!r}"
            )
        for name in ("tile_buffer", "temp_buffer", "sub", "adc", "htree", "mux",
                     "mem_fetch", "neuron", "rram_xbar", "sram_xbar"):  # fmt: skip
            check_joules("SpikeSimCosts", name, getattr(self, name))

    @property
    def crossbar(self) -> float:
        """``E_xbar``: one read of a crossbar array of the chosen device."""
        return self.rram_xbar if self.device == "rram" else self.sram_xbar

    @property
    def patch_control(self) -> float:
        """``E_pc``: the H-tree, fetch, buffers, subtractors, ADCs and muxes of a patch."""
        rows = self.xbar_size / _ROWS_PER_READ
        return (self.htree + self.mem_fetch + self.tile_buffer + rows * 16.0 * self.sub
                + rows * self.temp_buffer + rows * rows * (self.adc + self.mux))  # fmt: skip

    def cycle(self, kernel: tuple[int, int]) -> float:
        """``E_cycle(k)``: one processing-element cycle of a ``k_h x k_w`` kernel."""
        k_h, k_w = kernel
        rows = self.xbar_size / _ROWS_PER_READ
        return self.patch_control + self.neuron + rows * k_h * k_w * self.crossbar

    def row(self, tile_channels: int) -> float:
        """One crossbar row driven in an input tile of ``tile_channels`` channels: a
        partly filled tile is priced as full (``⌈c_t/X⌉·X/c_t``)."""
        padded = math.ceil(tile_channels / self.xbar_size) * self.xbar_size / tile_channels
        return self.crossbar / _ROWS_PER_READ * padded


@dataclass
class SpikeSimLayer:
    """One ``Conv2d``'s activity, summed over its calls (all samples).

    Attributes:
        name: the module's name in the model.
        in_channels, out_channels, kernel: the layer.
        calls, event_calls: its calls, and those fed spikes.
        sites: output sites (output positions times steps, all samples).
        active_patches: ``A``, the active (site, input tile) patches (dense: ``p·S``
            for a call fed real values).
        active_rows: ``R_t`` per input tile: the crossbar rows driven.
        active_sites: ``Z``, the sites any tile drove.
    """

    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    calls: int = 0
    event_calls: int = 0
    sites: int = 0
    active_patches: int = 0
    active_rows: list[int] = field(default_factory=list)
    active_sites: int = 0

    def tile_channels(self, xbar_size: int) -> list[int]:
        """``c_t``: the input channels of each input tile."""
        c = self.in_channels
        return [min(xbar_size, c - start) for start in range(0, c, xbar_size)]

    def tiles(self, xbar_size: int) -> tuple[int, int]:
        """``(p, q)``: crossbars along the inputs and along the outputs."""
        return math.ceil(self.in_channels / xbar_size), math.ceil(self.out_channels / xbar_size)

    def pe_cycles(self, xbar_size: int) -> int:
        """The dense model's processing-element cycles, ``p·q·S``."""
        p, q = self.tiles(xbar_size)
        return p * q * self.sites

    def energy(self, costs: SpikeSimCosts, mode: str = "dense") -> dict[str, float]:
        """Joules of all its calls by component (``patch_control``, ``crossbar``,
        ``neurons``; dense: ``pe_cycles`` alone) and their ``total``."""
        if mode == "dense":
            total = self.pe_cycles(costs.xbar_size) * costs.cycle(self.kernel)
            return {"pe_cycles": total, "total": total}
        p, q = self.tiles(costs.xbar_size)
        tiles = self.tile_channels(costs.xbar_size)
        rows = sum(r * costs.row(c) for r, c in zip(self.active_rows, tiles, strict=True))
        parts = {
            "patch_control": q * self.active_patches * costs.patch_control,
            "crossbar": q * rows,
            "neurons": p * q * self.active_sites * costs.neuron,
        }
        return {**parts, "total": sum(parts.values())}


_MODES = ("dense", "event")


@dataclass
class SpikeSimReport:
    """SpikeSim's energy of a run, per sample (see :mod:`spikeflow.energy.spikesim`).

    ``layers`` hold the counts of all samples; ``not_counted`` the layers and neurons
    the model does not map, with the reason.
    """

    layers: list[SpikeSimLayer]
    samples: int
    costs: SpikeSimCosts
    not_counted: list[str] = field(default_factory=list)

    def _mode(self, mode: str) -> str:
        if mode not in _MODES:
            raise ConfigurationError(f"SpikeSim: mode must be one of {_MODES}, got {mode!r}")
        return mode

    def layer_energy(self, mode: str = "dense") -> dict[str, dict[str, float]]:
        """Joules per sample of each layer, by component, by the layer's name."""
        mode = self._mode(mode)
        return {layer.name: {k: v / self.samples for k, v in layer.energy(self.costs, mode).items()}
                for layer in self.layers}  # fmt: skip

    def energy(self, mode: str = "dense") -> float:
        """Joules per sample: ``"dense"`` (the released SpikeSim model: every PE cycle)
        or ``"event"`` (SpikingJelly's event-driven reading of its costs)."""
        return sum(parts["total"] for parts in self.layer_energy(mode).values())

    @property
    def pe_cycles(self) -> float:
        """The dense model's processing-element cycles per sample."""
        return sum(layer.pe_cycles(self.costs.xbar_size) for layer in self.layers) / self.samples

    def __str__(self) -> str:
        dense, event = self.layer_energy("dense"), self.layer_energy("event")
        width = max([len("layer"), *(len(layer.name) for layer in self.layers)])
        lines = [f"{'layer':<{width}} {'input':>7} {'PE cycles':>12} {'dense nJ':>10} "
                 f"{'event nJ':>10}"]  # fmt: skip
        for layer in self.layers:
            kind = "spikes" if layer.event_calls == layer.calls else (
                "real" if layer.event_calls == 0 else "mixed")  # fmt: skip
            lines.append(
                f"{layer.name:<{width}} {kind:>7} "
                f"{layer.pe_cycles(self.costs.xbar_size) / self.samples:>12,.0f} "
                f"{dense[layer.name]['total'] * 1e9:>10.4g} "
                f"{event[layer.name]['total'] * 1e9:>10.4g}"
            )
        lines.append(
            f"total: {self.energy('dense') * 1e6:.4g} µJ per sample dense, "
            f"{self.energy('event') * 1e6:.4g} µJ event-driven ({self.costs.device}, "
            f"{self.costs.xbar_size}x{self.costs.xbar_size} crossbars)"
        )
        if self.not_counted:
            lines.append(f"not counted: {', '.join(self.not_counted)}")
        return "\n".join(lines)


def _event_counts(module: nn.Conv2d, x: Tensor, xbar_size: int) -> tuple[int, list[int], int]:
    """``(A, R_t per tile, sites with any active tile)`` of one call fed spikes ``x``
    ``[N, C_in, H, W]``."""
    n, c, h, w = x.shape
    tiles = math.ceil(c / xbar_size)
    spikes = (x != 0).to(torch.float32)
    spikes = F.pad(spikes, (0, 0, 0, 0, 0, tiles * xbar_size - c))
    per_tile = spikes.reshape(n, tiles, xbar_size, h, w).sum(dim=2)
    padding = module.padding
    if module.padding_mode != "zeros":  # (its own padding of the input, as its forward)
        per_tile = F.pad(per_tile, module._reversed_padding_repeated_twice, module.padding_mode)
        padding = 0
    ones = per_tile.new_ones(tiles, 1, *module.kernel_size)
    with torch.autocast(x.device.type, enabled=False):
        occupancy = F.conv2d(per_tile, ones, None, module.stride, padding,  # type: ignore[arg-type]
                             module.dilation, tiles)  # fmt: skip
    active = occupancy > 0
    rows = occupancy.sum(dim=(0, 2, 3), dtype=torch.float64)
    return int(active.sum()), [round(float(r)) for r in rows], int(active.any(dim=1).sum())


def spikesim_energy_report(
    model: nn.Module,
    x: Tensor,
    costs: SpikeSimCosts | None = None,
    samples: int | None = None,
) -> SpikeSimReport:
    """Run ``model(x)`` once (no gradients) and price its ``Conv2d`` layers with
    SpikeSim's model (:mod:`spikeflow.energy.spikesim`); ``report.energy("dense")`` is
    the released model, ``report.energy("event")`` the event-driven reading.

    ``x`` is time-major ``[T, B, ...]``; ``samples`` defaults to ``B``. A call is read
    as spikes when its input's nonzero entries share one magnitude (each nonzero entry
    drives its crossbar rows), otherwise as real values (dense). The model's state is
    reset before and after; its train/eval mode is kept.

    Raises:
        ShapeError: ``x`` has fewer than 2 dims.
        ConfigurationError: ``samples`` is not a positive integer or ``costs`` not a
            :class:`SpikeSimCosts`.
    """
    from spikeflow.neurons import IFNode, LIFNode
    from spikeflow.training.monitors import SPIKING_LAYER_TYPES  # (imports layers)

    if not isinstance(x, Tensor) or x.dim() < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"spikesim_energy_report: x must be time-major [T, B, ...], got {shape}")
    samples = x.shape[1] if samples is None else samples
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigurationError(f"samples must be a positive integer, got {samples!r}")
    costs = SpikeSimCosts() if costs is None else costs
    if not isinstance(costs, SpikeSimCosts):
        raise ConfigurationError(
            f"spikesim_energy_report: costs must be SpikeSimCosts, got {type(costs).__name__}"
        )
    records: dict[nn.Module, SpikeSimLayer] = {}
    not_counted: list[str] = []

    def hook(module: nn.Conv2d, args: tuple, out: object) -> None:
        if not args or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
            return
        x_in = args[0].reshape(-1, *args[0].shape[-3:])
        record = records[module]
        p = math.ceil(module.in_channels / costs.xbar_size)
        sites = out.numel() // module.out_channels
        record.calls += 1
        record.sites += sites
        if not record.active_rows:
            record.active_rows = [0] * p
        if is_spikes(x_in):
            record.event_calls += 1
            active, rows, active_sites = _event_counts(module, x_in, costs.xbar_size)
        else:  # dense: every patch, every row of every tap, every site
            taps = module.kernel_size[0] * module.kernel_size[1]
            channels = record.tile_channels(costs.xbar_size)
            active, rows, active_sites = p * sites, [sites * c * taps for c in channels], sites
        record.active_patches += active
        record.active_rows = [a + b for a, b in zip(record.active_rows, rows, strict=True)]
        record.active_sites += active_sites

    handles = []
    for name, module in model.named_modules():
        label = name or "(model)"
        if isinstance(module, nn.Conv2d) and module.groups == 1:
            records[module] = SpikeSimLayer(label, module.in_channels, module.out_channels,
                                            tuple(module.kernel_size))  # type: ignore[arg-type]  # fmt: skip
            handles.append(module.register_forward_hook(hook))
        elif isinstance(module, _UNMAPPED):
            groups = getattr(module, "groups", 1)
            why = f"{groups} groups" if groups != 1 else type(module).__name__
            not_counted.append(f"{label} ({why}: SpikeSim maps Conv2d layers of one group)")
        elif isinstance(module, SPIKING_LAYER_TYPES) and type(module) not in (IFNode, LIFNode):
            not_counted.append(f"{label} ({type(module).__name__}: SpikeSim prices IF/LIF "
                               "neurons; priced as one)")  # fmt: skip
    hooked_forward(model, x, handles)
    layers = [r for r in records.values() if r.calls]
    not_counted += [f"{r.name} (its forward never ran)" for r in records.values() if not r.calls]
    return SpikeSimReport(layers, samples, costs, not_counted)
