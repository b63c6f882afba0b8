"""Monitors (firing rates, spike counts, membrane statistics) and the plots of a run."""

from __future__ import annotations

import gc
import math
import re
import sys
import warnings
import weakref

import pytest
import torch
from torch import nn

from spikeflow import functional as F
from spikeflow import layers, neurons
from spikeflow.errors import ConfigurationError, MissingExtraError, ShapeError
from spikeflow.training import SpikeMonitor, Trainer, record_spikes
from spikeflow.training.config import config_from_dict
from spikeflow.training.metric_logs import read_csv


def if_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IF neuron by hand (threshold 1, hard reset to 0): spikes and v after reset."""
    v = torch.zeros_like(x[0])
    spikes, vs = [], []
    for xt in x:
        h = v + xt
        s = (h >= 1.0).to(x.dtype)
        v = h * (1 - s)
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs)


def test_monitor_matches_hand_computed_statistics():
    net = nn.Sequential(layers.Linear(5, 6), neurons.IFNode(), layers.Linear(6, 3),
                        neurons.IFNode())  # fmt: skip
    batches = [torch.rand(7, 4, 5) * 2 for _ in range(3)]  # T=7, B=4
    ref_spikes = {"1": 0.0, "3": 0.0}
    ref_v: dict[str, list[torch.Tensor]] = {"1": [], "3": []}
    with SpikeMonitor(net, membrane=True) as monitor, torch.no_grad():
        for x in batches:
            net(x)
            h1 = net[0](x)
            s1, v1 = if_reference(h1)
            s3, v3 = if_reference(net[2](s1))
            for name, s, v in (("1", s1, v1), ("3", s3, v3)):
                ref_spikes[name] += float(s.sum())
                ref_v[name].append(v.flatten())
        stats = {s.name: s for s in monitor.summary()}
    assert set(stats) == {"1", "3"}
    for name, neurons_per_step in (("1", 6), ("3", 3)):
        s = stats[name]
        steps = 3 * 7 * 4 * neurons_per_step
        assert s.spikes == ref_spikes[name]
        assert s.firing_rate == pytest.approx(ref_spikes[name] / steps, abs=1e-12)
        assert s.spikes_per_sample == pytest.approx(ref_spikes[name] / 12, abs=1e-12)
        assert s.neurons == neurons_per_step
        v = torch.cat(ref_v[name]).double()
        assert s.v_mean == pytest.approx(float(v.mean()), abs=1e-6)
        assert s.v_std == pytest.approx(float(v.std(unbiased=False)), abs=1e-6)
    total = sum(ref_spikes.values()) / (3 * 7 * 4 * 9)
    assert monitor.mean_firing_rate() == pytest.approx(total, abs=1e-12)
    # removed: no hooks, store_v_seq restored, v_seq dropped
    assert not net[1]._forward_hooks and not net[1].store_v_seq and net[1].v_seq is None


def test_monitor_keeps_no_tensors_alive_and_does_not_grow():
    net = nn.Sequential(layers.Linear(8, 16), neurons.LIFNode(), layers.Linear(16, 4),
                        neurons.ParametricLIFNode())  # fmt: skip
    monitor = SpikeMonitor(net, membrane=True)
    refs = []

    def run(n: int) -> None:
        for _ in range(n):
            out = net(torch.rand(5, 3, 8))
            out.sum().backward()
            refs.append(weakref.ref(out))
            del out

    def live_tensors() -> int:
        gc.collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecated module attributes
            # type(), not isinstance: isinstance dereferences a weakref.proxy that another
            # test left behind, which raises once its object is gone.
            return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))

    run(3)
    tensors_before = live_tensors()
    run(50)
    tensors_after = live_tensors()
    assert all(r() is None for r in refs), "the monitor keeps layer outputs alive"
    assert tensors_after <= tensors_before, (tensors_before, tensors_after)
    for acc in monitor._acc.values():
        for value in (acc.spikes, acc.v_sum, acc.v_sumsq):
            assert not torch.is_tensor(value) or (value.dim() == 0 and value.grad_fn is None)
    assert all(m.v_seq is None for m in (net[1], net[3]))
    monitor.remove()
    assert all(not m._forward_hooks for m in net)


def test_spikes_per_sample_counts_a_streamed_sequence_once():
    # The same sequences (T=4, B=3, twice) run whole, step by step and in chunks of 2.
    torch.manual_seed(0)
    lin = nn.Linear(5, 6)  # per step or per sequence alike
    xs = [torch.rand(4, 3, 5) * 3 for _ in range(2)]
    results = {}
    for how in ("whole", "steps", "chunks"):
        node = neurons.LIFNode(step_mode="s" if how == "steps" else "m")
        net = nn.Sequential(lin, node)
        with SpikeMonitor(net) as monitor, torch.no_grad():
            total = 0.0
            for x in xs:
                if how == "whole":
                    total += float(net(x).sum())
                    continue
                with F.streaming(net):
                    parts = x.unbind(0) if how == "steps" else x.split(2)
                    total += sum(float(net(part).sum()) for part in parts)
            results[how] = monitor.summary()[0]
        assert results[how].spikes == total
        assert results[how].spikes_per_sample == pytest.approx(total / 6, abs=1e-12), how
    assert results["steps"] == results["whole"] == results["chunks"]
    # A monitor reset in the middle of a sequence counts that sequence from its next step.
    net = nn.Sequential(lin, neurons.LIFNode(step_mode="s"))
    with SpikeMonitor(net) as monitor, F.streaming(net), torch.no_grad():
        net(xs[0][0])
        monitor.reset()
        spikes = sum(float(net(x).sum()) for x in xs[0][1:])
        assert monitor.summary()[0].spikes_per_sample == pytest.approx(spikes / 3, abs=1e-12)


def test_a_sequence_begun_while_paused_counts_its_samples_when_recording_resumes():
    net = nn.Sequential(nn.Linear(5, 6), neurons.LIFNode(step_mode="s"))
    xs = [torch.rand(4, 2, 5) * 3 for _ in range(2)]
    with SpikeMonitor(net) as monitor, torch.no_grad():
        for x in xs:
            with F.streaming(net):
                monitor.enabled = False  # the first step of each sequence not recorded
                net(x[0])
                monitor.enabled = True
                for x_t in x[1:]:
                    net(x_t)
        assert monitor.state_dict()["1"]["samples"] == 4  # two sequences of batch 2


def test_a_copy_of_a_monitored_layer_does_not_keep_its_membrane():
    import copy

    net = nn.Sequential(layers.Linear(5, 3), neurons.LIFNode())
    with SpikeMonitor(net, membrane=True):
        twin = copy.deepcopy(net)  # store_v_seq on, and the dropping hook, copied
    with torch.no_grad():
        twin(torch.rand(4, 2, 5))
    assert twin[1].v_seq is None


def test_membrane_monitor_keeps_a_v_seq_the_model_asked_for():
    class MembraneReadout(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = layers.Linear(5, 3)
            self.lif = neurons.LIFNode(store_v_seq=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.lif(self.fc(x))
            return self.lif.v_seq

    net = MembraneReadout()
    x = torch.rand(4, 2, 5)
    with torch.no_grad():
        expected = net(x)
        with SpikeMonitor(net, membrane=True) as monitor:
            out = net(x)
            assert out is not None and torch.equal(out, expected)
            assert net.lif.v_seq is out
        assert monitor.summary()[0].v_mean == pytest.approx(float(expected.double().mean()))
    assert net.lif.store_v_seq and net.lif.v_seq is out  # the model's setting stays


def test_several_membrane_monitors_share_a_layer():
    net = nn.Sequential(layers.Linear(5, 3), neurons.LIFNode())
    x = torch.rand(4, 2, 5)
    a, b = SpikeMonitor(net, membrane=True), SpikeMonitor(net, membrane=True)
    with torch.no_grad():
        net(x)
        v_mean = a.summary()[0].v_mean
        assert not math.isnan(v_mean) and b.summary()[0].v_mean == v_mean
        assert net[1].v_seq is None  # dropped once both have read it
        a.remove()
        assert net[1].store_v_seq  # b still needs it
        c = SpikeMonitor(net, membrane=True)  # attached after b: both still read it
        net(x)
        assert c.summary()[0].v_mean == pytest.approx(v_mean, abs=1e-12)
        assert b.state_dict()["1"]["v_count"] == 48 and net[1].v_seq is None
        b.remove()
        a.remove()  # a second remove changes nothing
        assert net[1].store_v_seq
        c.remove()
    assert not net[1].store_v_seq and net[1].v_seq is None and not net[1]._forward_hooks
    assert not net[1]._forward_pre_hooks


def test_monitor_state_round_trip_and_layer_selection():
    net = nn.Sequential(layers.Linear(4, 4), neurons.LIFNode(), neurons.IFNode())
    monitor = SpikeMonitor(net, layers=["2"])
    net(torch.rand(3, 2, 4) * 3)
    state = monitor.state_dict()
    other = SpikeMonitor(net, layers=["2"])
    other.load_state_dict(state)
    assert other.summary() == monitor.summary()
    with pytest.raises(ValueError, match="no spiking layer named"):
        SpikeMonitor(net, layers=["0"])


def test_record_spikes_gives_one_sample():
    net = nn.Sequential(layers.Linear(4, 300), neurons.IFNode())
    x = torch.rand(6, 5, 4)
    recorded = record_spikes(net, x, max_neurons=100)
    full = net(x[:, :1])[:, 0]
    assert recorded["1"].shape == (6, 100)
    assert torch.equal(recorded["1"], full[:, :100])
    assert not net[1]._forward_hooks


def _tiny(tmp_path, **changes):
    values = {"train_samples": 96, "test_samples": 48, "T": 2, "epochs": 2, "progress": False,
              "model_kwargs": {"channels": 4, "hidden": 16}, "device": "cpu",
              "output_dir": str(tmp_path / "run"), **changes}  # fmt: skip
    return config_from_dict(values)


def test_plots_are_written_after_a_run(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the 'plot' extra)")
    pytest.importorskip("sklearn")
    result = Trainer(_tiny(tmp_path, plots="on"), log=None).fit()
    names = sorted(p.name for p in result.plots)
    assert names == ["firing_rates.png", "learning_curves.png", "raster.png"]
    for path in result.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


class _NoSpikes(nn.Module):
    """A model without spiking layers: a linear readout of every step's pixels."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.fc = nn.Linear(64 * in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(2))


def test_a_run_without_spiking_layers_draws_no_empty_firing_plots(tmp_path, monkeypatch):
    """Nothing to record: the firing-rate plot and raster would be empty axes, so they
    are left out, and the log says why."""
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the 'plot' extra)")
    pytest.importorskip("sklearn")
    from spikeflow.models import registry

    monkeypatch.setitem(registry._REGISTRY, "no_spikes_test_net", _NoSpikes)
    messages: list[str] = []
    config = _tiny(tmp_path, plots="on", epochs=1, model="no_spikes_test_net",
                   model_kwargs={}, train_samples=32, test_samples=16)  # fmt: skip
    result = Trainer(config, log=messages.append).fit()
    assert [p.name for p in result.plots] == ["learning_curves.png"]
    assert math.isnan(result.history[-1]["test_rate"])
    assert not (tmp_path / "run" / "raster.png").exists()
    assert any("no firing-rate plot or raster" in m for m in messages)


def test_plots_without_matplotlib(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    # asked for: an error naming the extra, before any training
    with pytest.raises(MissingExtraError, match=r"spikeflow\[plot\]"):
        Trainer(_tiny(tmp_path, plots="on"), log=None).fit()
    assert not (tmp_path / "run" / "last.pt").exists()
    # not asked for ("auto"): the run finishes without plots and says so
    lines: list[str] = []
    result = Trainer(_tiny(tmp_path, plots="auto", epochs=1), log=lines.append).fit()
    assert result.plots == [] and result.epochs_completed == 1
    assert any("matplotlib is not installed" in line for line in lines)


def test_tensorboard_needs_its_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(MissingExtraError, match=r"spikeflow\[tensorboard\]"):
        Trainer(_tiny(tmp_path, tensorboard=True), log=None).fit()


def test_firing_rate_of_the_epoch_is_logged(tmp_path):
    pytest.importorskip("sklearn")
    result = Trainer(_tiny(tmp_path, plots="off", epochs=1), log=None).fit()
    row = result.history[0]
    assert 0.0 < row["train_rate"] < 1.0 and 0.0 <= row["test_rate"] < 1.0
    assert not math.isnan(row["test_loss"])
    # the epoch's rate is all spikes / all neuron-steps of the per-layer rows
    layer_rows = read_csv(tmp_path / "run" / "layers.csv")
    for split in ("train", "test"):
        rows = [r for r in layer_rows if r["split"] == split]
        assert len(rows) == 4
        spikes = sum(float(r["spikes_per_sample"]) for r in rows)
        neuron_steps = 2 * sum(int(r["neurons"]) for r in rows)  # T = 2
        assert row[f"{split}_rate"] == pytest.approx(spikes / neuron_steps, rel=1e-9, abs=1e-12)


def test_tensorboard_scalars_are_written(tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard logging needs the 'tensorboard' extra")
    pytest.importorskip("sklearn")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(_tiny(tmp_path, tensorboard=True, plots="off", epochs=2), log=None).fit()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    layers = [r for r in read_csv(tmp_path / "run" / "layers.csv") if r["split"] == "test"]
    expected = {
        "loss/train": "train_loss", "accuracy/train": "train_acc",
        "firing_rate/train": "train_rate", "loss/test": "test_loss",
        "accuracy/test": "test_acc", "firing_rate/test": "test_rate", "lr": "lr",
    }  # fmt: skip
    for tag, column in expected.items():
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert logged == [(int(r["epoch"]), pytest.approx(float(r[column]))) for r in rows], tag
    names = {r["layer"] for r in layers}
    assert len(names) == 4
    for name in names:
        logged = [(e.step, e.value) for e in events.Scalars(f"layer_rate_test/{name}")]
        want = [(int(r["epoch"]), pytest.approx(float(r["firing_rate"])))
                for r in layers if r["layer"] == name]  # fmt: skip
        assert logged == want, name


def test_merging_over_processes_keeps_the_layer_size_when_a_process_saw_nothing():
    # With 2 processes and 1 test sample, one process's monitor saw no sample
    # (neurons = 0): the merged size is the layer's, not the last process's.
    from spikeflow.training.loop import reduce_monitor

    net = nn.Sequential(layers.Linear(6, 4), neurons.LIFNode())
    seen = SpikeMonitor(net)
    with seen, torch.no_grad():
        net(torch.rand(4, 2, 6))
    idle = SpikeMonitor(net)

    class TwoProcesses:
        distributed = True

        def all_gather_object(self, obj):
            return [seen.state_dict(), idle.state_dict()]

    merged = SpikeMonitor(net)
    reduce_monitor(merged, TwoProcesses())
    assert merged.state_dict() == seen.state_dict()
    assert all(v["neurons"] > 0 for v in merged.state_dict().values())


def test_a_spike_tap_passes_its_input_and_names_a_wrong_shape():
    tap = neurons.SpikeTap(3)
    z = (torch.rand(2, 4, 3) > 0.5).float()
    assert tap(z) is z and tap(z.view(2, 4, 3, 1)).shape == (2, 4, 3, 1)
    for bad in (torch.rand(2, 4, 5), torch.rand(4, 3)):
        wanted = f"SpikeTap: expected the spikes [T, B, ...] of 3 neurons, got {tuple(bad.shape)}"
        with pytest.raises(ShapeError, match=re.escape(wanted)):
            tap(bad)
    with pytest.raises(ConfigurationError, match="SpikeTap: neurons"):
        neurons.SpikeTap(0)


def test_an_empty_batch_is_counted_without_an_error():
    from spikeflow.neurons import LIFNode

    net = nn.Sequential(nn.Linear(8, 16), LIFNode())
    with SpikeMonitor(net) as mon:
        net(torch.zeros(5, 0, 8))  # was an IndexError in the hook
        net(torch.rand(5, 2, 8) * 3)
    (layer,) = mon.summary()
    assert layer.neurons == 16 and 0.0 < layer.firing_rate <= 1.0


@pytest.mark.parametrize("cls", [neurons.DSRIFNode, neurons.DSRLIFNode])
def test_dsr_spikes_are_counted_as_spikes_not_their_worth(cls):
    """DSR neurons output spikes worth θ (θ/Δt for the LIF): the monitor, the raster
    and LayerSpikes read 1 per spike. By hand for the IF, θ = 2, α = 0.5 (fires at
    V >= 1, soft reset by 2): x = 0.6 per step fires at step 1 only (V = 0.6, 1.2); x =
    1.5 fires at steps 0, 1, 3 (V = 1.5, 1.0, 0.5, 2.0): 4 spikes in 8 neuron-steps."""
    from spikeflow.losses import LayerSpikes

    node = cls(T=4, v_threshold=2.0, alpha=0.5)
    x = torch.tensor([0.6, 1.5]).repeat(4, 1, 1)  # [T, B = 1, 2 neurons]
    if cls is neurons.DSRLIFNode:  # spikes worth θ/Δt = 40; whatever fires, 1 each
        x = x * 20.0
    net = nn.Sequential(node)
    with SpikeMonitor(net) as monitor, LayerSpikes(net) as kept:
        out = net(x)
        (stats,) = monitor.summary()
        spikes = kept.spikes["0"]
    fired = out != 0
    assert fired.any() and not fired.all()
    assert set(out.unique().tolist()) == {0.0, float(node.spike_value(out.dtype))} != {0.0, 1.0}
    assert torch.equal(spikes, fired.float()) and spikes.grad_fn is not None
    assert stats.spikes == fired.sum().item() and stats.firing_rate == fired.float().mean().item()
    assert torch.equal(record_spikes(net, x)["0"], fired[:, 0].float())
    if cls is neurons.DSRIFNode:
        assert fired[:, 0].T.tolist() == [[False, True, False, False], [True, True, False, True]]
        assert (stats.spikes, stats.firing_rate, stats.spikes_per_sample) == (4.0, 0.5, 4.0)


def test_monitor_sums_are_float32_where_the_device_has_no_float64(monkeypatch):
    from spikeflow.training import monitors as monitor_module

    assert monitor_module.sum_dtype(torch.device("mps")) == torch.float32  # no float64 there
    assert monitor_module.sum_dtype(torch.device("cpu")) == torch.float64
    # what an MPS run does, on the CPU: every running sum in float32, same statistics
    monkeypatch.setattr(monitor_module, "sum_dtype", lambda device: torch.float32)
    net = nn.Sequential(layers.Linear(5, 6), neurons.IFNode())
    x = torch.rand(7, 4, 5) * 2
    with SpikeMonitor(net, membrane=True) as monitor, torch.no_grad():
        net(x)
        s1, v1 = if_reference(net[0](x))
        sums = monitor._acc["1"]
        assert {sums.spikes.dtype, sums.v_sum.dtype, sums.v_sumsq.dtype} == {torch.float32}
        stats = monitor.summary()[0]
    assert stats.spikes == float(s1.sum())
    assert stats.v_mean == pytest.approx(float(v1.double().mean()), abs=1e-5)


@pytest.mark.parametrize(
    "kind", ["binary", "ternary", "counts", "bfloat16", "real", "nan", "empty"]
)
def test_spike_magnitude_sum_is_the_float64_sum_bit_for_bit(kind: str) -> None:
    """The monitors' spike sum equals ``abs().sum(dtype=float64)`` exactly: integer
    magnitudes summed in float32 chunks that stay below 2^24 (counts of 1,000 whose odd
    total, ~4e7, float32 cannot hold in one sum), anything else in float64."""
    from spikeflow.training.monitors import spike_magnitude_sum

    g = torch.Generator().manual_seed(0)
    shape = (4, 8, 3, 17, 17)
    if kind == "binary":
        x = (torch.rand(shape, generator=g) < 0.3).float()
    elif kind == "ternary":
        x = torch.randint(-1, 2, shape, generator=g).float()
    elif kind == "counts":
        x = torch.full((40_000,), 1000.0)
        x[7] = -1.0
    elif kind == "bfloat16":
        x = (torch.rand(shape, generator=g) < 0.3).to(torch.bfloat16)
    elif kind == "real":
        x = torch.rand(shape, generator=g) * (torch.rand(shape, generator=g) < 0.5)
    elif kind == "nan":
        x = (torch.rand(shape, generator=g) < 0.3).float()
        x[0, 0, 0, 0, 0] = float("nan")
    else:
        x = torch.zeros(0, 5)
    expected = x.abs().sum(dtype=torch.float64)
    got = spike_magnitude_sum(x, torch.float64)
    assert got.dtype == torch.float64 and got.dim() == 0
    assert torch.equal(got, expected) or (kind == "nan" and got.isnan() and expected.isnan())
    if kind == "counts":
        assert float(got) == 39_999_001 and float(x.abs().sum()) != 39_999_001
    assert torch.equal(spike_magnitude_sum(x, torch.float32), x.abs().sum(dtype=torch.float32)) or (
        kind == "nan"
    )


@pytest.mark.parametrize("top", [2.0**20, 2.0**24])
def test_spike_magnitude_sum_of_large_integer_magnitudes_is_exact_in_few_ops(top: float) -> None:
    """Large integer magnitudes (graded spikes, counts; mixed signs that cancel in a
    plain sum) make the float32 chunks short (2^24 / top elements): the sum stays the
    float64 sum bit for bit, and the chunks are summed by a few tensor operations, not
    one per chunk (a Python loop of 4,096 sums here, 2^16 at top = 2^24: seconds for a
    real layer)."""
    from torch.overrides import TorchFunctionMode

    from spikeflow.training.monitors import spike_magnitude_sum

    x = torch.full((2**16 + 3,), top)
    x[1::2] = -top  # ternary-like graded spikes: the signed sum is ~0
    x[5], x[8] = 3.0, -7.0  # odd magnitudes, so every chunk's sum matters
    calls = []

    class Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            calls.append(func)
            return func(*args, **(kwargs or {}))

    with Count():
        got = spike_magnitude_sum(x, torch.float64)
    assert torch.equal(got, x.abs().sum(dtype=torch.float64))
    assert float(got) == (x.numel() - 2) * top + 10  # by hand
    assert len(calls) < 50
