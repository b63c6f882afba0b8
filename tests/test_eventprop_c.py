"""EventProp's fused C kernels (``spikeflow/learn/_eventprop.c``) against the PyTorch
loop of :mod:`spikeflow.learn.eventprop` (``backend="torch"``, the reference): the same
spikes, the same voltages (bit for bit without W_rec, whose sums the kernels take over
the spikes), the same gradients within 1e-5 (float32) and 1e-12 (float64); the build
cache; the backend choice and its errors."""

from __future__ import annotations

import subprocess
import warnings

import pytest
import torch

from spikeflow import _cbuild
from spikeflow.errors import ConfigurationError
from spikeflow.learn import LIFAdjointParameters, _eventprop_c, lif_adjoint, lif_recurrent_adjoint
from spikeflow.learn.eventprop import EventPropLIF
from spikeflow.memory import pack_spikes

pytestmark = pytest.mark.skipif(
    not any(_cbuild._runnable(c) for c in ("cc", "gcc", "clang")), reason="no C compiler"
)

PARAMS = LIFAdjointParameters(v_leak=0.2, v_th=1.0, v_reset=-0.1)
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}
#: (jumps, spike_input): EventProp's jumps with the count or the spike-time derivative
#: for the input, Norse's adjoint
RULES = [("eventprop", False), ("eventprop", True), ("norse", False)]


def _run(backend, x, w_in, w_rec, jumps, spike_input, gz, gv):
    """Spikes, voltages and the gradients of ``Σ z gz + Σ v gv`` (a None term left out)."""
    x, w_in = x.detach().requires_grad_(), w_in.detach().requires_grad_()
    wrt = [x, w_in]
    if w_rec is not None:
        w_rec = w_rec.detach().requires_grad_()
        wrt.append(w_rec)
    z, v = lif_recurrent_adjoint(x, w_in, w_rec, PARAMS, jumps, spike_input, backend=backend)
    loss = sum((out * g).sum() for out, g in ((z, gz), (v, gv)) if g is not None)
    return z, v, torch.autograd.grad(loss, wrt)


def _compare(x, w_in, w_rec, jumps, spike_input, gz, gv, spikes_at_least=1):
    got = _run("c", x, w_in, w_rec, jumps, spike_input, gz, gv)
    want = _run("torch", x, w_in, w_rec, jumps, spike_input, gz, gv)
    assert torch.equal(got[0], want[0])
    assert int(want[0].sum()) >= spikes_at_least
    tol = TOLERANCE[x.dtype]
    if w_rec is None:
        assert torch.equal(got[1], want[1])
    else:  # W_rec z summed in another order: the last bit may differ
        torch.testing.assert_close(got[1], want[1], rtol=tol, atol=tol)
    for mine, reference in zip(got[2], want[2]):
        scale = float(reference.abs().max())
        torch.testing.assert_close(mine, reference, rtol=tol, atol=tol * max(scale, 1.0))
    return want


def _layer_inputs(dtype, steps=13, batch=3, inputs=5, n=7, recurrent=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, inputs, generator=gen) < 0.4).to(dtype)
    w_in = (torch.randn(n, inputs, generator=gen) * 3).to(dtype)
    w_rec = (torch.randn(n, n, generator=gen) * 2).to(dtype) if recurrent else None
    gz, gv = torch.randn(2, steps, batch, n, generator=gen).to(dtype)
    return x, w_in, w_rec, gz, gv


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize(("jumps", "spike_input"), RULES)
def test_c_equals_the_loop(dtype, recurrent, jumps, spike_input) -> None:
    # odd sizes; row 1 of the batch gets no input, so never fires
    x, w_in, w_rec, gz, gv = _layer_inputs(dtype, recurrent=recurrent)
    x[:, 1] = 0
    z, _, _ = _compare(x, w_in, w_rec, jumps, spike_input, gz, gv, spikes_at_least=15)
    assert z[:, 1].sum() == 0 and z[:, 0].sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("recurrent", [False, True])
def test_one_step_no_spikes_and_one_output_gradient(dtype, recurrent) -> None:
    x, w_in, w_rec, gz, gv = _layer_inputs(dtype, steps=1, recurrent=recurrent, seed=1)
    w_in = w_in * 40  # one step: only a large current fires
    _compare(x, w_in, w_rec, "eventprop", True, gz, gv)
    _compare(x, w_in, w_rec, "norse", False, gz, gv)
    x, w_in, w_rec, gz, gv = _layer_inputs(dtype, recurrent=recurrent, seed=2)
    quiet = w_in * 0.01  # no spike anywhere: the exact adjoint between spikes only
    _compare(x, quiet, w_rec, "eventprop", False, gz, gv, spikes_at_least=0)
    _compare(x, w_in, w_rec, "eventprop", True, gz, None)  # the loss reads the spikes only
    _compare(x, w_in, w_rec, "norse", False, None, gv)  # ... the voltages only


def test_feed_forward_chunks_and_threads() -> None:
    """A plane of 2 x 300 neurons (chunks of 256 and a partial one, a spike count per
    chunk and step) on one and on two threads; a recurrent layer above the threads'
    grain (each thread accumulates its own W_rec gradient)."""
    gen = torch.Generator().manual_seed(3)
    current = (torch.rand(9, 2, 300, generator=gen, dtype=torch.float64) * 0.8).requires_grad_()
    gz, gv = torch.randn(2, 9, 2, 300, generator=gen, dtype=torch.float64)
    threads = torch.get_num_threads()
    try:
        results = []
        for count, backend in ((1, "torch"), (1, "c"), (2, "c")):
            torch.set_num_threads(count)
            z, v = lif_adjoint(current, PARAMS, backend=backend)
            g = torch.autograd.grad((z * gz).sum() + (v * gv).sum(), current)[0]
            results.append((z, v, g))
        for z, v, g in results[1:]:
            assert torch.equal(z, results[0][0]) and torch.equal(v, results[0][1])
            torch.testing.assert_close(g, results[0][2], rtol=1e-12, atol=1e-12)
        assert 0.05 < float(results[0][0].detach().mean()) < 0.5
        # the kernels' bits are spikeflow.memory.pack_spikes's (also for a partial byte)
        spikes = results[1][0].detach().reshape(-1)
        for part in (spikes, spikes[:-3]):
            assert torch.equal(_eventprop_c.c_pack(part), pack_spikes(part).bits)
        torch.set_num_threads(2)  # 8 x 33 x 257 neuron-steps: two threads
        x, w_in, w_rec, gz, gv = _layer_inputs(torch.float64, 8, 33, 4, 257, seed=4)
        _compare(x, w_in * 0.5, w_rec * 0.1, "eventprop", False, gz, gv, spikes_at_least=500)
    finally:
        torch.set_num_threads(threads)


def test_event_prop_lif_backend_and_errors(monkeypatch) -> None:
    launched = []
    real_forward = _eventprop_c.c_forward

    def spy(*args):
        launched.append(args[0].dtype)
        return real_forward(*args)

    monkeypatch.setattr(_eventprop_c, "c_forward", spy)
    torch.manual_seed(5)
    layer = EventPropLIF(5, 4, recurrent=True, p=PARAMS, weight_scale=3.0)
    assert layer.backend == "auto" and "backend='auto'" in repr(layer)
    x = (torch.rand(6, 2, 5) < 0.5).float()
    z = layer(x)
    assert launched == [torch.float32]  # "auto" on a CPU float32 tensor: the C kernels
    layer.backend = "torch"
    assert torch.equal(layer(x), z) and len(launched) == 1
    with pytest.raises(ConfigurationError, match="backend must be one of"):
        EventPropLIF(2, 2, backend="cpu")
    with pytest.raises(ConfigurationError, match="backend must be one of"):
        lif_adjoint(torch.zeros(2, 1, 3), backend="cuda")
    with pytest.raises(ConfigurationError, match=r"backend='c'.*bfloat16 on cpu"):
        lif_adjoint(torch.zeros(2, 1, 3, dtype=torch.bfloat16), backend="c")
    with pytest.raises(ConfigurationError, match=r"backend='c'.*on meta"):
        lif_recurrent_adjoint(
            torch.zeros(2, 1, 3, device="meta"), torch.zeros(2, 3, device="meta"), None,
            backend="c",
        )  # fmt: skip
    # other dtypes run the loop under "auto"
    spikes, _ = lif_adjoint(torch.full((3, 1, 2), 30.0, dtype=torch.bfloat16))
    assert spikes.dtype == torch.bfloat16 and spikes.sum() > 0 and len(launched) == 1


def test_compiler_missing_or_failing(monkeypatch) -> None:
    current = torch.rand(5, 2, 3) * 30
    want = lif_adjoint(current, backend="torch")

    def missing():
        raise _cbuild.CompilerNotFoundError("no C compiler (test)")

    monkeypatch.setattr(_eventprop_c, "_library", missing)
    with pytest.raises(_cbuild.CompilerNotFoundError, match="no C compiler"):
        lif_adjoint(current, backend="c")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no compiler: the loop, silently
        assert torch.equal(lif_adjoint(current)[0], want[0])

    def failing():
        raise _cbuild.BuildError("compiling _eventprop.c failed (test)")

    monkeypatch.setattr(_eventprop_c, "_library", failing)
    monkeypatch.setattr("spikeflow.learn.eventprop._WARNED", set())
    with pytest.warns(RuntimeWarning, match="EventProp's C kernels could not be built"):
        got = lif_adjoint(current)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    with pytest.raises(_cbuild.BuildError, match="failed"):
        lif_adjoint(current, backend="c")


def test_kernels_are_built_once_and_cached(tmp_path, monkeypatch) -> None:
    """The library is cached on disk under a hash of its source: a new process (here:
    the loaded libraries forgotten) loads it without compiling; a changed source builds
    a new one, in the cache's ``kernels`` folder."""
    compiled: list[str] = []
    real_run = subprocess.run

    def spy(cmd, **kw):
        compiled.extend(a for a in cmd if a.endswith(".c"))
        return real_run(cmd, **kw)

    monkeypatch.setattr(_cbuild.subprocess, "run", spy)
    current = torch.rand(4, 2, 3, dtype=torch.float64) * 30
    want = lif_adjoint(current, backend="torch")[0]
    try:
        _eventprop_c._library()  # built now if this process has not yet
        _eventprop_c._library.cache_clear()
        monkeypatch.setattr(_cbuild, "_LIBS", {})
        compiled.clear()
        assert torch.equal(lif_adjoint(current, backend="c")[0], want)
        assert compiled == []  # loaded from the cache
        monkeypatch.setenv("SPIKEFLOW_CACHE_DIR", str(tmp_path))
        source = _eventprop_c._source()
        monkeypatch.setattr(_eventprop_c, "_source", lambda: source + "\n/* changed */\n")
        _eventprop_c._library.cache_clear()
        assert torch.equal(lif_adjoint(current, backend="c")[0], want)
        assert len(compiled) == 1
        built = list((tmp_path / "kernels").glob("eventprop_*.so"))
        assert len(built) == 1 and built[0].with_suffix(".c").read_text().endswith("changed */\n")
    finally:
        _eventprop_c._library.cache_clear()  # the next call loads the real source's build


@pytest.mark.parametrize("backend", ["c", "torch"])
def test_empty_batch_or_layer(backend) -> None:
    """A batch of 0 samples, a layer of 0 neurons or of 0 inputs: empty spikes and
    gradients of the right shapes (the C kernels' blocks were ``min(256, B·N) = 0`` wide,
    a division by zero; ``_input_gradients`` reshaped to ``[-1, 0]``)."""
    for shape in ((3, 0, 4), (3, 2, 0)):
        current = torch.rand(shape, dtype=torch.float64).requires_grad_()
        z, v = lif_adjoint(current, PARAMS, backend=backend)
        assert z.shape == v.shape == shape
        (grad,) = torch.autograd.grad(z.sum() + v.sum(), current)
        assert grad.shape == shape
    for batch, inputs, n in ((0, 3, 4), (2, 3, 0), (2, 0, 4)):
        x = torch.rand(3, batch, inputs).requires_grad_()
        w_in = torch.randn(n, inputs).requires_grad_()
        w_rec = torch.randn(n, n).requires_grad_()
        z, v = lif_recurrent_adjoint(x, w_in, w_rec, PARAMS, backend=backend)
        assert z.shape == v.shape == (3, batch, n)
        grads = torch.autograd.grad(z.sum() + v.sum(), (x, w_in, w_rec), allow_unused=True)
        assert [tuple(g.shape) for g in grads] == [(3, batch, inputs), (n, inputs), (n, n)]
        assert not any(g.abs().sum() for g in grads)  # no sample, no neuron or no input


def test_forward_slopes_allocation_error_propagates() -> None:
    """An allocation that raises after the C forward ran (the slopes) reaches the caller
    as itself, the chunks' lists freed (was: an UnboundLocalError from the cleanup)."""

    class NoRoom(torch.Tensor):
        def new_empty(self, *args, **kwargs):
            raise MemoryError("no room for the slopes (test)")

    current = (torch.rand(4, 2, 3, dtype=torch.float64) * 30).as_subclass(NoRoom)
    constants = (100.0, 0.1, -0.2, 0.0, 1.0, 0.0, 0.0)
    with pytest.raises(MemoryError, match="no room for the slopes"):
        _eventprop_c.c_forward(current, None, constants, False)


@pytest.mark.parametrize("jumps", ["eventprop", "norse"])
def test_recurrent_weight_gradient_independent_of_the_threads(jumps) -> None:
    """The W_rec gradient sums into one [N, N] buffer whose rows the threads share out
    (was: one buffer per thread, summed at the end: threads x N² floats): the same bits
    on one and on two threads, and the loop's gradient within the tolerance."""
    x, w_in, w_rec, gz, gv = _layer_inputs(torch.float64, 8, 33, 4, 257, seed=5)
    threads = torch.get_num_threads()
    grads = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)  # 8 x 33 x 257 neuron-steps: two threads
            grads.append(_run("c", x, w_in * 0.5, w_rec * 0.1, jumps, False, gz, gv)[2][2])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(grads[0], grads[1])
    want = _run("torch", x, w_in * 0.5, w_rec * 0.1, jumps, False, gz, gv)
    assert int(want[0].sum()) >= 500
    scale = float(want[2][2].abs().max())
    torch.testing.assert_close(grads[0], want[2][2], rtol=1e-12, atol=1e-12 * max(scale, 1.0))


def test_slope_gathering_allocation_failure_is_a_memory_error(monkeypatch) -> None:
    """ep_gather's cursors not allocated (it returns 1, the lists still freed): a
    MemoryError naming them, not slopes left unwritten."""
    real = _eventprop_c._library()

    class FailingGather:
        def __getattr__(self, name):
            function = getattr(real, name)
            if not name.startswith("ep_gather_"):
                return function
            return lambda *args: function(*args) or 1

    monkeypatch.setattr(_eventprop_c, "_library", lambda: FailingGather())
    current = torch.rand(4, 2, 3, dtype=torch.float64) * 30
    constants = (100.0, 0.1, -0.2, 0.0, 1.0, 0.0, 0.0)
    with pytest.raises(MemoryError, match="could not allocate the cursors"):
        _eventprop_c.c_forward(current, None, constants, False)
