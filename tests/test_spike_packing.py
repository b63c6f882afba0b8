"""Bit packing of spikes and Linear on packed or binary spikes
(spikeflow.memory.spike_linear, also in spikeflow.functional), against SpikingJelly 2.0:
the same bytes, the same outputs and gradients (float64), on the C kernel and the
unpacking path; bad input raises naming what was wrong."""

from __future__ import annotations

import pytest
import torch

from sj_checks import sj
from spikeflow import functional
from spikeflow.errors import ConfigurationError, DTypeError, ShapeError
from spikeflow.memory import spike_linear
from spikeflow.memory.spike_linear import (
    bit_pack_spike_dense,
    bit_spike_compress,
    bit_spike_decompress,
    packed_spike_linear,
    sparse_linear,
)

F64 = torch.float64


def _spikes(shape: tuple[int, ...], rate: float, seed: int, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < rate).to(dtype)


def _c_backend() -> str:
    """ "c" where a C compiler is found, else the test is skipped."""
    from spikeflow.kernels.cpu import CompilerNotFoundError, compiler

    try:
        compiler()
    except CompilerNotFoundError:
        pytest.skip("no C compiler")
    return "c"


def test_the_names_are_spikingjellys_in_functional():
    sjf = sj("functional")
    for name in spike_linear.__all__:
        if name.islower():
            assert getattr(functional, name) is getattr(spike_linear, name)
            assert hasattr(sjf, name)


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (9,), (3, 5, 7), (4, 16)])
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float32, F64])
def test_compress_gives_spikingjellys_bytes_and_round_trips(shape, dtype):
    sjf = sj("functional")
    x = _spikes(shape, 0.4, sum(shape), dtype)
    packed = bit_spike_compress(x)
    assert packed.dtype == torch.uint8 and packed.shape == (-(-x.numel() // 8),)
    assert torch.equal(packed, sjf.bit_spike_compress(x))
    for out_dtype in (torch.uint8, torch.float32, F64, torch.bool):
        back = bit_spike_decompress(packed, shape, out_dtype)
        assert back.dtype == out_dtype
        assert torch.equal(back, sjf.bit_spike_decompress(packed, shape, out_dtype))
        assert torch.equal(back, x.to(out_dtype))


def test_compress_by_hand_and_non_contiguous():
    # Element i is bit i % 8 of byte i // 8; the tail is padded with zeros.
    x = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0], dtype=torch.float32)
    assert bit_spike_compress(x).tolist() == [0b10000001, 0b011]
    y = _spikes((6, 5), 0.5, 3).t()  # read in row-major order of the transposed view
    assert torch.equal(bit_spike_compress(y), sj("functional").bit_spike_compress(y))
    assert torch.equal(bit_spike_decompress(bit_spike_compress(y), (5, 6), F64), y)


def test_compress_and_decompress_refuse_bad_input():
    with pytest.raises(ConfigurationError, match=r"0s and 1s.*0\.5"):
        bit_spike_compress(torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ConfigurationError, match="holds 2"):
        bit_spike_compress(torch.tensor([0, 2], dtype=torch.uint8))
    with pytest.raises(DTypeError, match="complex"):
        bit_spike_compress(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(DTypeError, match="strided"):
        bit_spike_compress(torch.eye(3).to_sparse())
    with pytest.raises(DTypeError, match=r"torch\.Tensor"):
        bit_spike_compress([0, 1])
    packed = bit_spike_compress(torch.ones(10))
    with pytest.raises(ShapeError, match="20 elements, which take 3 bytes, but packed holds 2"):
        bit_spike_decompress(packed, (5, 4))
    with pytest.raises(ShapeError, match="1-D"):
        bit_spike_decompress(packed.view(1, 2), (10,))
    with pytest.raises(DTypeError, match="uint8"):
        bit_spike_decompress(packed.to(torch.int16), (10,))
    with pytest.raises(ShapeError, match="sizes >= 0"):
        bit_spike_decompress(packed, (-1, 10))
    with pytest.raises(DTypeError, match=r"torch\.dtype"):
        bit_spike_decompress(packed, (10,), "float32")


@pytest.mark.parametrize(("m", "k"), [(5, 13), (3, 8), (4, 1), (0, 9), (2, 0)])
def test_row_packing_packs_each_row_as_spikingjelly_packs_it(m, k):
    # SpikingJelly's own bit_pack_spike_dense runs on CUDA only; each of its rows is
    # the flat packing of that row (each row padded on its own), SpikingJelly's too.
    sjf = sj("functional")
    x = _spikes((m, k), 0.5, m + k, torch.float32)
    packed = bit_pack_spike_dense(x)
    assert packed.shape == (m, -(-k // 8)) and packed.dtype == torch.uint8
    for row, bits in zip(x, packed):
        assert torch.equal(bits, sjf.bit_spike_compress(row))
    with pytest.raises(ShapeError, match=r"\[M, K\]"):
        bit_pack_spike_dense(x.reshape(-1))
    with pytest.raises(ConfigurationError, match="0s and 1s"):
        bit_pack_spike_dense(torch.full((2, 3), 0.7))


def _linear_case(m: int, k: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    spike = _spikes((m, k), 0.3, seed)
    weight = torch.randn(n, k, generator=g, dtype=F64).requires_grad_()
    bias = torch.randn(n, generator=g, dtype=F64).requires_grad_()
    grad = torch.randn(m, n, generator=g, dtype=F64)
    return spike, weight, bias, grad


@pytest.mark.parametrize("backend", ["c", "torch", "auto"])
@pytest.mark.parametrize(("m", "k", "n"), [(6, 13, 5), (9, 64, 3), (1, 1, 1)])
def test_packed_linear_equals_spikingjellys_linear(backend, m, k, n):
    # SpikingJelly's packed_spike_linear needs CUDA; its sparse_linear (strategy "torch")
    # is the same Linear on the unpacked spikes, on any device.
    sjf = sj("functional")
    if backend == "c":
        _c_backend()
    spike, weight, bias, grad = _linear_case(m, k, n, m * k + n)
    want = sjf.sparse_linear(spike, weight, bias, strategy="torch")
    want_grads = torch.autograd.grad((want * grad).sum(), (weight, bias))
    packed = bit_pack_spike_dense(spike)
    got = packed_spike_linear(packed, weight, bias, backend=backend)
    assert got.dtype == F64 and got.shape == (m, n)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(torch.autograd.grad((got * grad).sum(), (weight, bias)), want_grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    no_bias = packed_spike_linear(packed, weight, backend=backend)
    torch.testing.assert_close(no_bias, want - bias, rtol=1e-12, atol=1e-12)


def test_packed_linear_ignores_padding_bits_and_gradchecks():
    backend = _c_backend()
    spike, weight, bias, _ = _linear_case(4, 11, 3, 1)
    packed = bit_pack_spike_dense(spike)
    dirty = packed.clone()
    dirty[:, -1] |= 0b11111000  # bits 11..15 of each row: past K, ignored
    for b in ("c", "torch"):
        torch.testing.assert_close(
            packed_spike_linear(dirty, weight, bias, backend=b),
            spike @ weight.detach().t() + bias.detach(),
            rtol=1e-12,
            atol=1e-12,
        )
    assert torch.autograd.gradcheck(
        lambda w, b: packed_spike_linear(dirty, w, b, backend=backend), (weight, bias)
    )


@pytest.mark.parametrize("backend", ["c", "torch"])
def test_sparse_linear_equals_spikingjellys_with_every_gradient(backend):
    sjf = sj("functional")
    if backend == "c":
        _c_backend()
    spike, weight, bias, _ = _linear_case(12, 21, 4, 5)
    spike = spike.reshape(3, 4, 21)  # [T, B, K]: leading dims are kept
    grad = torch.randn(3, 4, 4, dtype=F64)
    ours, theirs = spike.clone().requires_grad_(), spike.clone().requires_grad_()
    want = sjf.sparse_linear(theirs, weight, bias, strategy="torch")
    want_grads = torch.autograd.grad((want * grad).sum(), (theirs, weight, bias))
    got = sparse_linear(ours, weight, bias, "sparse", backend=backend)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    got_grads = torch.autograd.grad((got * grad).sum(), (ours, weight, bias))
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # (The spikes stay 0/1: gradcheck's perturbed spikes would be refused.)
    assert torch.autograd.gradcheck(
        lambda w, b: sparse_linear(spike, w, b, "sparse", backend=backend), (weight, bias)
    )
    # "torch" (the default) is torch's Linear, as SpikingJelly's.
    assert torch.equal(sparse_linear(spike, weight, bias), want)


def test_linear_refuses_bad_input():
    spike, weight, bias, _ = _linear_case(3, 10, 2, 0)
    packed = bit_pack_spike_dense(spike)
    with pytest.raises(ShapeError, match=r"10 inputs needs 2 bytes"):
        packed_spike_linear(packed[:, :1], weight)
    with pytest.raises(DTypeError, match="uint8"):
        packed_spike_linear(packed.to(torch.int32), weight)
    with pytest.raises(ShapeError, match="2-D"):
        packed_spike_linear(packed.reshape(-1), weight)
    with pytest.raises(ShapeError, match=r"bias must be \[N\] = \[2\]"):
        packed_spike_linear(packed, weight, bias[:1])
    with pytest.raises(DTypeError, match="weight's dtype"):
        packed_spike_linear(packed, weight, bias.float())
    with pytest.raises(DTypeError, match="floating-point"):
        packed_spike_linear(packed, weight.long())
    with pytest.raises(ConfigurationError, match="backend must be one of"):
        packed_spike_linear(packed, weight, backend="cuda")
    with pytest.raises(ConfigurationError, match="CPU float32/float64"):
        packed_spike_linear(packed, weight.detach().half(), backend="c")
    with pytest.raises(ConfigurationError, match="strategy must be one of"):
        sparse_linear(spike, weight, strategy="dense")
    with pytest.raises(ConfigurationError, match=r"binary spikes.*0\.5"):
        sparse_linear(spike * 0.5, weight, strategy="sparse")
    with pytest.raises(DTypeError, match="weight's dtype"):
        sparse_linear(spike.float(), weight, strategy="sparse")
    with pytest.raises(ShapeError, match="K = 10"):
        sparse_linear(spike[:, :9], weight, strategy="sparse")


def test_auto_runs_the_c_kernel_only_at_low_rates():
    _c_backend()
    weight = torch.zeros(2, 3)
    rate = spike_linear.AUTO_MAX_RATE
    assert spike_linear._use_c(weight, "auto", lambda: rate)
    assert not spike_linear._use_c(weight, "auto", lambda: rate + 0.01)
    assert not spike_linear._use_c(weight.half(), "auto", lambda: 0.0)
    assert not spike_linear._use_c(weight, "torch", lambda: 0.0)
    assert spike_linear._use_c(weight, "c", lambda: 1.0)
    # The bits counted for the rate: columns 0 and 2 of row 0, and of 0b11111100 in
    # row 1's second byte (columns 10 to 15) only column 10, the rest being padding.
    packed = bit_pack_spike_dense(torch.zeros(2, 11))
    packed[0, 0], packed[1, 1] = 0b101, 0b11111100
    assert spike_linear._set_bits(packed, 11) == 3
