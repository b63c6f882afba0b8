"""The monitors' fast sums (training/monitor_sums.py) equal their definitions bit for bit:
the spike magnitudes' C loop and float32 chunks vs ``abs().sum(dtype=float64)``, the
membrane's float64 buffer vs ``sum(dtype=float64)`` and ``to(float64).square().sum()``,
and a monitor using them vs the definitions on a real network's layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeflow import layers, neurons
from spikeflow.training import SpikeMonitor, monitor_sums
from spikeflow.training.monitor_sums import Float64Scratch, magnitude_sum_c, spike_magnitude_sum

needs_c = pytest.mark.skipif(not monitor_sums._c_usable(), reason="needs a C compiler")


def _spikes(kind: str, n: int, g: torch.Generator) -> torch.Tensor:
    if kind == "binary":
        return (torch.rand(n, generator=g) < 0.3).float()
    if kind == "ternary":
        return torch.randint(-1, 2, (n,), generator=g).float()
    if kind == "counts":  # I-LIF-like counts, and a -0.0
        x = torch.randint(0, 5, (n,), generator=g).float()
        x[n // 2] = -0.0
        return x
    # integers of every size float32 holds exactly, far above 2^24, signs mixed
    x = torch.randint(-(2**20), 2**20, (n,), generator=g).float() * 2.0**9
    return x


@needs_c
@pytest.mark.parametrize("kind", ["binary", "ternary", "counts", "large"])
@pytest.mark.parametrize("n", [1, 7, 64, 1000, 262_147])
def test_the_c_loop_sums_integer_magnitudes_exactly(kind: str, n: int) -> None:
    x = _spikes(kind, n, torch.Generator().manual_seed(n))
    got = magnitude_sum_c(x)
    assert got == x.abs().sum(dtype=torch.float64).item()
    assert got == sum(abs(int(v)) for v in x.tolist())  # the exact sum, by hand


@needs_c
def test_the_c_loop_is_exact_on_several_threads() -> None:
    x = _spikes("counts", 3_000_001, torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = magnitude_sum_c(x)
    finally:
        torch.set_num_threads(threads)
    assert got == x.abs().sum(dtype=torch.float64).item() == x.abs().long().sum().item()


@needs_c
@pytest.mark.parametrize("position", [0, 13, 4095])
@pytest.mark.parametrize(
    "value", [0.5, -2.25, 1.0 + 2.0**-23, 2.0**-149, float("nan"), float("inf"), -float("inf")]
)
def test_the_c_loop_refuses_anything_but_integer_magnitudes(value: float, position: int) -> None:
    """One fraction (however small), NaN or Inf anywhere (vector body or tail): None,
    so that the caller takes the float64 sum."""
    x = (torch.rand(4099, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    x[position] = value
    assert magnitude_sum_c(x) is None


def test_the_c_loop_takes_contiguous_float32_only() -> None:
    """Other tensors get None (the caller's torch paths), never a pointer misread."""
    x = (torch.rand(64, 33, generator=torch.Generator().manual_seed(6)) < 0.5).float()
    for other in (x.t(), x[:, ::2], x.double(), x.half(), x.bool()):
        assert magnitude_sum_c(other) is None
    assert magnitude_sum_c(x) in (None, x.sum().item())  # (None: no C compiler)


@needs_c
def test_the_c_loop_refuses_a_sum_float64_could_round() -> None:
    """Integer magnitudes whose sum passes 2^52: partial sums could round, so None."""
    x = torch.full((5000,), 2.0**40)
    assert magnitude_sum_c(x[:4096]) == 2.0**52  # (at the bound: exact)
    assert magnitude_sum_c(x) is None


@pytest.mark.parametrize("path", ["c", "float32 chunks"])
@pytest.mark.parametrize("kind", ["binary", "ternary", "counts", "large", "real", "nan"])
def test_spike_magnitude_sum_is_the_definition_on_either_path(
    kind: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "c" and not monitor_sums._c_usable():
        pytest.skip("needs a C compiler")
    if path != "c":  # as without a compiler
        monkeypatch.setitem(monitor_sums._C_STATE, "usable", False)
    g = torch.Generator().manual_seed(3)
    if kind == "real":
        x = torch.rand(5, 8, 3, 17, 17, generator=g) * 3
    else:
        x = _spikes("binary" if kind == "nan" else kind, 5 * 8 * 3 * 17 * 17, g)
        x = x.view(5, 8, 3, 17, 17)
    if kind == "nan":
        x[1, 2, 0, 4, 4] = float("nan")
    got, expected = spike_magnitude_sum(x, torch.float64), x.abs().sum(dtype=torch.float64)
    assert got.dtype == torch.float64 and got.dim() == 0
    assert torch.equal(got, expected) or (kind == "nan" and got.isnan() and expected.isnan())


@pytest.mark.parametrize("failure", ["no compiler", "build fails"])
def test_without_the_c_loop_the_sums_fall_back_as_the_other_c_kernels_do(
    failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No C compiler: the torch sums, silently (a performance path); a compiler whose
    build fails: the torch sums and one RuntimeWarning naming the fallback and the
    compiler's error (``_cbuild.library_or_fallback``, as the neuron kernels)."""
    import warnings

    from spikeflow._cbuild import BuildError, CompilerNotFoundError

    def broken() -> None:
        if failure == "no compiler":
            raise CompilerNotFoundError("found no C compiler")
        raise BuildError("cc -O3 ... failed: monitor_sums.c:3: error: bad flag")

    monkeypatch.setattr(monitor_sums, "_library", broken)
    monkeypatch.setattr(monitor_sums, "_C_STATE", {})
    monkeypatch.setattr(monitor_sums, "_WARNED", set())
    x = _spikes("ternary", 10_000, torch.Generator().manual_seed(4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert magnitude_sum_c(x) is None
            got = spike_magnitude_sum(x, torch.float64)
            assert torch.equal(got, x.abs().sum(dtype=torch.float64))
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if failure == "no compiler":
        assert messages == []
    else:
        assert len(messages) == 1 and "error: bad flag" in messages[0]
        assert "sum spikes with torch instead" in messages[0]


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int8, torch.int32, torch.int64])
def test_integer_and_boolean_spikes_sum_as_the_definition(dtype: torch.dtype) -> None:
    """Integer spikes by the definition; boolean ones (whose abs() torch lacks) by
    their count."""
    g = torch.Generator().manual_seed(5)
    x = torch.randint(-1 if dtype.is_signed else 0, 2, (3, 7, 11), generator=g).to(dtype)
    got = spike_magnitude_sum(x, torch.float64)
    want = x.long().abs().sum().double()
    assert got.dtype == torch.float64 and torch.equal(got, want)
    if dtype != torch.bool:
        assert torch.equal(got, x.abs().sum(dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_the_float64_buffer_gives_the_membrane_sums_bit_for_bit(dtype: torch.dtype) -> None:
    """Real-valued membranes (no exact shortcut): the buffer's sums are the definitions'
    bits, for sizes up and down (the buffer reused, larger than the tensor), 5-D
    [T, B, C, H, W] layouts and odd lengths; a non-contiguous tensor takes the
    definitions."""
    scratch = Float64Scratch()
    g = torch.Generator().manual_seed(4)
    for shape in [(4, 16, 8, 9, 9), (1_000_003,), (3, 5), (10, 16, 32, 34, 34), (7,)]:
        v = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.4 - 0.1).to(dtype)
        v_sum, v_sumsq = scratch.sums(v)
        assert torch.equal(v_sum, v.sum(dtype=torch.float64)), shape
        assert torch.equal(v_sumsq, v.to(torch.float64).square().sum()), shape
        # the float64 sum is not the float32 one: the test would see a float32 path
        if dtype == torch.float32 and v.numel() > 1000:
            assert v_sum.item() != v.sum().double().item()
    wide = torch.randn(6, 40, generator=g).t()  # non-contiguous
    assert torch.equal(scratch.sums(wide)[0], wide.sum(dtype=torch.float64))
    assert torch.equal(scratch.sums(wide)[1], wide.to(torch.float64).square().sum())
    scratch.release()
    assert scratch._buffer is None


def test_a_monitor_sums_a_conv_nets_spikes_and_membranes_as_the_definitions() -> None:
    """A PLIF conv net's layers through the monitor's hooks (C loop, float64 buffer):
    every running sum equals the definitions over the recorded outputs and membranes,
    bit for bit, after three batches."""
    torch.manual_seed(5)
    net = nn.Sequential(
        layers.Conv2d(2, 8, 3, padding=1), neurons.ParametricLIFNode(),
        layers.Flatten(), layers.Linear(8 * 12 * 12, 10),
        neurons.ParametricLIFNode(v_threshold=0.1),
    )  # fmt: skip
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"1": [], "4": []}
    # (registered first: they read v_seq before the monitor's claim drops it)
    keep = [net[int(k)].register_forward_hook(
        lambda m, i, o, k=k: seen[k].append((o.clone(), m.v_seq.clone()))
    ) for k in seen]  # fmt: skip
    with SpikeMonitor(net, membrane=True) as monitor, torch.no_grad():
        for _ in range(3):
            net(torch.rand(6, 4, 2, 12, 12) * 3)
        for handle in keep:
            handle.remove()
        for name, records in seen.items():
            acc = monitor._acc[name]
            spikes = torch.zeros((), dtype=torch.float64)
            v_sum = torch.zeros((), dtype=torch.float64)
            v_sumsq = torch.zeros((), dtype=torch.float64)
            for out, v in records:
                spikes = spikes + out.abs().sum(dtype=torch.float64)
                v_sum = v_sum + v.sum(dtype=torch.float64)
                v_sumsq = v_sumsq + v.to(torch.float64).square().sum()
            assert 0 < spikes.item() < sum(out.numel() for out, _ in records)  # it fired
            assert torch.equal(acc.spikes, spikes), name
            assert torch.equal(acc.v_sum, v_sum) and torch.equal(acc.v_sumsq, v_sumsq), name
            assert int(acc.samples) == 4 * 3 and int(acc.v_count) == sum(
                v.numel() for _, v in records
            )
