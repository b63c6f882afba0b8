"""Shared test fixtures and helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module", params=["numpy", "c"])
def decoder(request):
    """Run a module's tests once with each event-file decoder (numpy, compiled C); the
    environment variable carries the choice into worker processes too (read there at
    their first decode)."""
    import os

    from spikeflow._cbuild import CompilerNotFoundError
    from spikeflow.data.io import use_decoder

    old = os.environ.get("SPIKEFLOW_DECODER")
    os.environ["SPIKEFLOW_DECODER"] = request.param
    try:
        try:
            ctx = use_decoder(request.param)
            ctx.__enter__()
        except CompilerNotFoundError as exc:
            pytest.skip(f"compiled decoders unavailable: {exc}")
        yield request.param
        ctx.__exit__(None, None, None)
    finally:
        if old is None:
            os.environ.pop("SPIKEFLOW_DECODER", None)
        else:
            os.environ["SPIKEFLOW_DECODER"] = old


def kernel_device(backend: str) -> torch.device:
    """Where a backend's kernels run in the tests: Triton on the GPU when there is one
    (else through its CPU interpreter, see below), every other backend on the CPU."""
    if backend == "triton" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def require_shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the ../shared/data checkout is absent)")
    return path


# Without a GPU, run Triton kernels through Triton's CPU interpreter. This must be set
# before anything imports triton.
if not torch.cuda.is_available():
    import os

    os.environ.setdefault("TRITON_INTERPRET", "1")


def fused_backends(*extra: str) -> list:
    """The fused backends to parametrise kernel tests over (``extra`` first, e.g.
    ``"torch"``): the C kernels, and Triton when installed (on the GPU when there is
    one, else through its interpreter)."""
    from spikeflow.kernels.triton_backend import triton_available

    skip = pytest.mark.skipif(
        not triton_available(), reason="triton (the 'triton' extra) is not installed"
    )
    return [*extra, "cpu", pytest.param("triton", marks=skip)]
