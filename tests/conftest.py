"""Shared test fixtures and helpers."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import multiprocessing
import multiprocessing.context
import os
import subprocess
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _share_the_cores_among_workers() -> None:
    """Under pytest-xdist, give each worker its share of the cores (torch's intra-op
    threads and OpenMP's, children included): n workers of torch's default thread count
    each oversubscribe the machine, and small operations then wait on spinning threads
    (on 2 cores, 2 workers x 2 threads made the suite ~10-40% slower). Tests that need
    several threads set them themselves (``tests/test_kernels_blocks.py``,
    ``tests/test_kernel_threads.py``)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers or not workers.isdigit() or int(workers) < 2:
        return
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    if threads < torch.get_num_threads():
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


_share_the_cores_among_workers()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def float64():
    """float64 as the default dtype for the test (SpikingJelly builds its states and
    parameters in it), the old default restored afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


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


def _drop_dead_overflow_checks() -> None:
    """Triton's interpreter builds an overflow condition for every 32-bit integer
    ``+``, ``-`` and ``*`` (pointer offsets: about a quarter of a launch's time) and
    hands it to ``device_assert``, which drops it: assertions exist only in debug mode,
    which the interpreter never enables. Switch that work off (nothing else reads the
    option): the kernels compute the same."""
    import dataclasses

    try:
        from triton.runtime import interpreter
    except ImportError:
        return
    builder = getattr(interpreter, "interpreter_builder", None)
    options = getattr(builder, "options", None)
    fields = {f.name for f in dataclasses.fields(options)} if options is not None else set()
    if {"debug", "sanitize_overflow"} <= fields and not options.debug:
        builder.options = dataclasses.replace(options, sanitize_overflow=False)


if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    _drop_dead_overflow_checks()


def fused_backends(*extra: str) -> list:
    """The fused backends to parametrise kernel tests over (``extra`` first, e.g.
    ``"torch"``): the C kernels, and Triton when installed (on the GPU when there is
    one, else through its interpreter)."""
    from spikeflow.kernels.triton_backend import triton_available

    skip = pytest.mark.skipif(
        not triton_available(), reason="triton (the 'triton' extra) is not installed"
    )
    return [*extra, "cpu", pytest.param("triton", marks=skip)]


#: What the fork server of :func:`fork_server_context` imports once. (Not Dynamo, though
#: each forked process that builds an optimizer imports it, ~5 s: with it preloaded two
#: gloo tests hung or failed once each in loaded runs, 2026-12-07; unproven, kept out.)
FORK_SERVER_PRELOAD = ["pytest", "sklearn.datasets", "spikeflow", "spikeflow.training",
                       "torch.distributed", "torch.multiprocessing"]  # fmt: skip


def fork_server_context() -> multiprocessing.context.BaseContext:
    """A multiprocessing context whose processes fork from a fork server: a fresh
    interpreter that imported :data:`FORK_SERVER_PRELOAD` and ran nothing else, started
    once per session. Its processes are new processes that ran nothing of the tests', as
    ``spawn``'s are, without the ~5 s each of those spends importing torch, spikeflow and
    scikit-learn. (Python's ``random`` reseeds itself in each fork and torch's generator
    holds its default seed, as in a new interpreter; numpy's global generator is the
    server's in all of them. spikeflow's C kernels run on one thread there, as in any
    forked child. They inherit the server's environment, the session's when it started,
    not this process's: pass them what they need.) ``spawn`` where the platform has no
    fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # Read when the session first starts the server. Python 3.11's server does not take
    # this process's sys.path: modules of the tests folder load in each process.
    ctx.set_forkserver_preload(FORK_SERVER_PRELOAD)
    return ctx


def _exec_to(code: str, output: str) -> None:
    """:func:`run_forked`'s target: ``code``, with file descriptors 1 and 2 (Python's
    output, a C library's, a crash's report) going to the file ``output``."""
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    exec(compile(code, "<forked>", "exec"), {"__name__": "__main__"})


def run_forked(code: str, timeout: float = 600) -> tuple[int, str]:
    """Run Python source ``code`` in a new process from the session's fork server (see
    :func:`fork_server_context`; it inherits the server's environment, and spikeflow's C
    kernels run on one thread there, as in any forked child): a crash there fails one
    test. Returns its exit code (minus the signal that killed it; 1 for an exception,
    whose traceback is in the output) and its standard output and error."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "output.txt"
        proc = fork_server_context().Process(target=_exec_to, args=(code, str(output)))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            pytest.fail(f"the forked process did not finish within {timeout} s")
        return proc.exitcode, output.read_text() if output.exists() else ""


def run_in_fresh_interpreters(code: str, hash_seeds: Sequence[str]) -> list[str]:
    """The standard output of Python source ``code`` run in one fresh interpreter per
    ``PYTHONHASHSEED`` in ``hash_seeds`` (for values that must not depend on the process:
    set orders, addresses). The interpreters run at the same time: each spends seconds
    importing spikeflow."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONHASHSEED": seed},
        )
        for seed in hash_seeds
    ]  # fmt: skip
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-4000:]
        outputs.append(out)
    return outputs


#: The server behind run_compiler_child: an interpreter started with Triton's
#: interpreter off, which imports what the children import once, then forks a child per
#: request (argv[1]: the tests folder; a request is a JSON line {"id", "code", "output"};
#: the answer, a line with the request's id and the child's exit code).
_COMPILER_SERVER = """
import json, os, sys, traceback
import torch, triton  # noqa: F401
import spikeflow.event_driven.gpu, spikeflow.kernels.triton_aot  # noqa: F401
TESTS = sys.argv[1]
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            exec(compile(request["code"], "<compiler child>", "exec"),
                 {"__name__": "__main__", "TESTS": TESTS})
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(request["id"], os.waitstatus_to_exitcode(status), flush=True)
"""
_compiler_server: subprocess.Popen | None = None


def _stop_compiler_server() -> None:
    """End the server (at exit): it returns when its input closes."""
    server = _compiler_server
    if server is not None and server.stdin is not None and server.stdout is not None:
        with contextlib.suppress(BrokenPipeError):
            server.stdin.close()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()


#: Cache keys that must not depend on the process, for two tests: a set literal in a
#: representation's method (test_data_cache, its order varied with the hash seed) and a
#: bound method of an object holding a numpy generator, whose repr has an address, and a
#: set (test_data_datasets_cache_keys).
_KEYS_ACROSS_PROCESSES = """
import json
import numpy as np
from spikeflow.data.representations import Representation, callable_key

class Named(Representation):
    def __init__(self, s):
        self.s = s
    def __call__(self, rec):
        return 1 if self.s in {"alpha", "beta", "gamma", "delta", "epsilon"} else 0

class R:
    def __init__(self):
        self.rng = np.random.default_rng(0)
        self.s = {"a", "b", "c"}
    def rep(self, r):
        return r

print(json.dumps({"set_literal": repr(Named("beta").cache_key()["code"]),
                  "address_and_set": repr(callable_key(R().rep))}))
"""


@pytest.fixture(scope="session")
def keys_across_processes() -> list[dict[str, str]]:
    """The keys of :data:`_KEYS_ACROSS_PROCESSES` computed in two fresh interpreters
    with hash seeds 1 and 2 (which order both its sets differently), once a session."""
    outputs = run_in_fresh_interpreters(_KEYS_ACROSS_PROCESSES, ("1", "2"))
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def run_compiler_child(child: str) -> dict:
    """Run ``child`` (Python source; ``TESTS`` is this folder) in a new process with
    Triton's interpreter off (so that Triton compiles for a GPU, which needs none), and
    return the JSON object it prints last.

    The process forks from a server started once per session with the environment of
    that moment (TRITON_INTERPRET=0), which has imported torch, triton and spikeflow's
    GPU compilers: a fresh interpreter spent ~4 s on those imports in every call."""
    global _compiler_server
    import select
    import tempfile
    import time
    import uuid

    if _compiler_server is None or _compiler_server.poll() is not None:
        if _compiler_server is None:
            atexit.register(_stop_compiler_server)
        else:
            _stop_compiler_server()  # it died: close its pipes
        _compiler_server = subprocess.Popen(
            [sys.executable, "-c", _COMPILER_SERVER, str(Path(__file__).parent)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
            env={**os.environ, "TRITON_INTERPRET": "0"},
        )  # fmt: skip
    server = _compiler_server
    assert server.stdin is not None and server.stdout is not None
    request = uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "output.txt"
        message = {"id": request, "code": child, "output": str(output)}
        server.stdin.write(json.dumps(message).encode() + b"\n")
        deadline = time.monotonic() + 600
        received, code = b"", None
        while code is None:
            left = max(0.0, deadline - time.monotonic())
            if not select.select([server.stdout], [], [], left)[0]:
                server.kill()
                pytest.fail("the compiler child did not finish within 600 s")
            chunk = os.read(server.stdout.fileno(), 4096)
            if not chunk:
                pytest.fail(f"the compiler server exited (code {server.wait()})")
            *lines, received = (received + chunk).split(b"\n")  # whole lines
            for line in lines:  # an interrupted request's answer may come first
                if line.startswith(f"{request} ".encode()):
                    code = line.split()[1].decode()
        text = output.read_text() if output.exists() else ""
    assert code == "0", f"exit code {code}:\n{text[-4000:]}"
    return json.loads(text.strip().splitlines()[-1])


def load_example(name: str):
    """The module ``examples/<name>.py``, imported from its file (examples are scripts,
    not a package)."""
    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def spikingjelly_models(monkeypatch):
    """SpikingJelly 2.0's ``neuron`` module and model zoo (``sew_resnet``,
    ``spiking_resnet``, ``spiking_vgg``), importable without torchvision: only its
    download helper imports torchvision, and nothing in the tests downloads."""
    pytest.importorskip("spikingjelly")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        fake = types.ModuleType("torchvision")
        fake_models = types.ModuleType("torchvision.models")
        fake_utils = types.ModuleType("torchvision.models.utils")

        def _no_download(*args, **kwargs):
            raise RuntimeError("no downloads in tests")

        fake_utils.load_state_dict_from_url = _no_download
        fake.models, fake_models.utils = fake_models, fake_utils
        monkeypatch.setitem(sys.modules, "torchvision", fake)
        monkeypatch.setitem(sys.modules, "torchvision.models", fake_models)
        monkeypatch.setitem(sys.modules, "torchvision.models.utils", fake_utils)
    try:
        from spikingjelly.activation_based import neuron
        from spikingjelly.activation_based.model import sew_resnet, spiking_resnet, spiking_vgg
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        pytest.skip(f"SpikingJelly's model zoo cannot be imported: {exc}")
    return types.SimpleNamespace(
        neuron=neuron, sew_resnet=sew_resnet, spiking_resnet=spiking_resnet,
        spiking_vgg=spiking_vgg,
    )  # fmt: skip
