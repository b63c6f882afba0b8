"""The compiled-C cache shared by the CPU kernels and the event decoders: private build
folders, damaged entries, an unusable cache folder, ``$CC`` with arguments."""

from __future__ import annotations

import subprocess
import uuid
import warnings
from pathlib import Path

import pytest

from conftest import fork_server_context
from spikeflow import _cbuild

pytestmark = pytest.mark.skipif(
    not any(_cbuild._runnable(c) for c in ("cc", "gcc", "clang")), reason="no C compiler"
)


def _source(tag: str) -> str:
    return f"/* {tag} */\nint answer(void) {{ return 42; }}\n"


def _build(source: str, cc: str | None = None):
    cc = cc or _cbuild.find_compiler("the test compiles C", "install gcc")
    return _cbuild.build_library(source, cc=cc, subdir="t", prefix="t", units=[["-O1", "-fPIC"]])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEFLOW_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "t"


def test_sources_are_compiled_in_a_private_folder(cache, monkeypatch):
    # A builder must never compile a file another process may be rewriting: the source
    # it compiles lives in its own temporary folder, and lands in the cache only whole.
    compiled: list[Path] = []
    real_run = subprocess.run

    def spy(cmd, **kw):
        compiled.extend(Path(a) for a in cmd if a.endswith(".c"))
        return real_run(cmd, **kw)

    monkeypatch.setattr(_cbuild.subprocess, "run", spy)
    assert _build(_source(uuid.uuid4().hex)).answer() == 42
    assert compiled and all(p.parent != cache for p in compiled)
    assert len(list(cache.glob("*.c"))) == 1 and len(list(cache.glob("*.so"))) == 1


def _build_in_child(args: tuple[str, str]) -> int:
    import os

    os.environ["SPIKEFLOW_CACHE_DIR"] = args[0]
    return _build(args[1]).answer()


def test_concurrent_first_builds_all_load(cache):
    # 4 new processes (forked from the session's fork server: they start within
    # milliseconds of each other, where spawned ones spent seconds each on imports).
    source = _source(uuid.uuid4().hex)
    with fork_server_context().Pool(4) as pool:
        assert pool.map(_build_in_child, [(str(cache.parent), source)] * 4) == [42] * 4


def test_a_damaged_cached_library_is_rebuilt(cache):
    source = _source(uuid.uuid4().hex)
    assert _build(source).answer() == 42
    (so,) = cache.glob("*.so")
    # Truncated, as by a full disk (a new file: this process still maps the old one).
    damaged = so.with_suffix(".tmp")
    damaged.write_bytes(so.read_bytes()[:100])
    damaged.replace(so)
    _cbuild._LIBS.clear()  # a new process
    assert _build(source).answer() == 42


def test_an_unusable_cache_folder_falls_back_to_a_temporary_one(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SPIKEFLOW_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    with pytest.warns(RuntimeWarning, match="SPIKEFLOW_CACHE_DIR"):
        folder = _cbuild.cache_folder("t")
    assert folder.is_dir() and str(blocker) not in str(folder)
    assert _build(_source(uuid.uuid4().hex)).answer() == 42


def test_cc_may_carry_arguments(cache, monkeypatch):
    cc = next(c for c in ("cc", "gcc", "clang") if _cbuild._runnable(c))
    monkeypatch.setenv("CC", f"env {cc}")  # a wrapper, as ccache is
    assert _cbuild.find_compiler("the test compiles C", "install gcc") == f"env {cc}"
    assert _build(_source(uuid.uuid4().hex), cc=f"env {cc}").answer() == 42


def test_a_cc_that_does_not_exist_is_reported(monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-" + uuid.uuid4().hex)
    with pytest.warns(RuntimeWarning, match="is not an executable"):
        found = _cbuild.find_compiler("the test compiles C", "install gcc")
    assert found in ("cc", "gcc", "clang")


def test_the_fallback_folder_is_private(tmp_path, monkeypatch, request):
    # A predictable folder in a shared temporary directory that someone else could
    # write must not be used: a library planted there would be loaded.
    import os
    import stat
    import tempfile

    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    _cbuild._private_temp_root.cache_clear()  # chosen afresh here, and again after
    _cbuild._fresh_temp_root.cache_clear()
    request.addfinalizer(_cbuild._private_temp_root.cache_clear)
    planted = shared / f"spikeflow-cache-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)  # writable by anyone, as an attacker would leave it
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SPIKEFLOW_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning):
        folder = _cbuild.cache_folder("t")
    assert planted not in folder.parents
    root = folder.parent
    assert stat.S_IMODE(root.stat().st_mode) & 0o077 == 0 and root.stat().st_uid == os.getuid()


def test_our_read_only_fallback_folder_is_made_private_and_reused(tmp_path, monkeypatch, request):
    # Left mode 0755 by an older run, the per-user folder was passed over for a fresh
    # temporary folder in every process (never reused, never removed).
    import os
    import stat
    import tempfile

    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    _cbuild._private_temp_root.cache_clear()
    request.addfinalizer(_cbuild._private_temp_root.cache_clear)
    ours = shared / f"spikeflow-cache-{os.getuid()}"
    ours.mkdir()
    ours.chmod(0o755)
    assert _cbuild._private_temp_root() == ours
    assert stat.S_IMODE(ours.stat().st_mode) == 0o700


def test_a_fresh_fallback_folder_is_removed_at_exit(tmp_path):
    # A folder others can write is not used; the fresh one that replaces it is not kept.
    import os
    import subprocess
    import sys

    shared = tmp_path / "tmp"
    shared.mkdir()
    (shared / f"spikeflow-cache-{os.getuid()}").mkdir(mode=0o777)
    (shared / f"spikeflow-cache-{os.getuid()}").chmod(0o777)
    code = "from spikeflow import _cbuild; print(_cbuild._private_temp_root())"
    env = {**os.environ, "TMPDIR": str(shared)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    fresh = out.stdout.strip()
    assert out.returncode == 0 and fresh.startswith(str(shared / "spikeflow-cache-")), out.stderr
    assert not os.path.exists(fresh)


def test_a_subfolder_others_can_write_is_not_trusted(tmp_path, monkeypatch, request):
    # Our per-user folder is private, but its subfolder was left writable by all (a
    # umask of 0): a library planted there would be loaded.
    import os
    import tempfile

    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    for cached in (_cbuild._private_temp_root, _cbuild._fresh_temp_root):
        cached.cache_clear()
        request.addfinalizer(cached.cache_clear)
    ours = shared / f"spikeflow-cache-{os.getuid()}"
    (ours / "t").mkdir(parents=True)
    ours.chmod(0o700)
    (ours / "t").chmod(0o777)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SPIKEFLOW_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning):
        folder = _cbuild.cache_folder("t")
    assert ours not in folder.parents and folder.name == "t"
    assert folder.stat().st_mode & 0o077 == 0


def _compiler_without_openmp(tmp_path: Path) -> str:
    """A compiler that rejects -fopenmp, as Apple clang without libomp does."""
    cc = next(c for c in ("cc", "gcc", "clang") if _cbuild._runnable(c))
    script = tmp_path / "cc-noomp"
    script.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do if [ "$a" = "-fopenmp" ]; then '
        "echo \"error: unsupported option '-fopenmp'\" >&2; exit 1; fi; done\n"
        f'exec {cc} "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def test_a_failed_build_names_the_compiler_output_and_is_not_retried(cache, tmp_path):
    cc = _compiler_without_openmp(tmp_path)
    source = _source(uuid.uuid4().hex)

    def build():
        return _cbuild.build_library(source, cc=cc, subdir="t", prefix="t", units=[["-fopenmp"]])

    with pytest.raises(_cbuild.BuildError, match="unsupported option '-fopenmp'") as first:
        build()
    assert first.value.detail == "error: unsupported option '-fopenmp'"
    with pytest.raises(_cbuild.BuildError) as second:
        build()
    assert second.value is first.value
    assert not list(cache.glob("*.so"))  # nothing half-built was left to load


def _broken_compiler(tmp_path: Path) -> str:
    """A compiler that fails on every source (a broken toolchain)."""
    script = tmp_path / "cc-broken"
    script.write_text('#!/bin/sh\necho "error: this toolchain is broken" >&2\nexit 1\n')
    script.chmod(0o755)
    return str(script)


def _fresh_neuron():
    from spikeflow.neurons import BaseNode

    class FreshIF(BaseNode):  # a new declaration: its kernels are not built yet
        @staticmethod
        def charge(x, v):
            return v + 0.5 * x

    return FreshIF


def test_auto_falls_back_to_the_reference_when_the_compiler_fails(cache, tmp_path, monkeypatch):
    import torch

    from spikeflow import kernels

    fresh = _fresh_neuron()
    monkeypatch.setenv("CC", _broken_compiler(tmp_path))
    monkeypatch.setattr(kernels, "_WARNED", set())
    x = torch.rand(5, 3, 7) * 2
    with pytest.warns(UserWarning, match="(?s)C compiler could not build.*toolchain is broken"):
        out = fresh()(x)  # backend="auto"
    assert torch.equal(out, fresh(backend="torch")(x))
    assert out.sum() > 0
    with pytest.raises(_cbuild.BuildError, match="toolchain is broken"):
        fresh(backend="cpu")(x)


def test_a_compiler_without_openmp_builds_single_threaded_kernels(cache, tmp_path, monkeypatch):
    import torch

    from spikeflow.kernels import cpu

    fresh = _fresh_neuron()
    cc = _compiler_without_openmp(tmp_path)
    monkeypatch.setenv("CC", cc)
    monkeypatch.setattr(cpu, "_NO_OPENMP", set())
    x = (torch.rand(6, 4, 300) * 2).requires_grad_()
    with pytest.warns(RuntimeWarning, match="cannot build with OpenMP.*one thread"):
        out = fresh(backend="cpu")(x)
    assert cc in cpu._NO_OPENMP
    out.sum().backward()
    grad, x.grad = x.grad, None
    ref = fresh(backend="torch")(x)
    ref.sum().backward()
    assert torch.equal(out, ref)
    torch.testing.assert_close(grad, x.grad)


def test_auto_falls_back_inside_torch_compile_when_the_compiler_fails(cache, tmp_path, monkeypatch):
    import torch

    from spikeflow import kernels

    fresh = _fresh_neuron()
    monkeypatch.setenv("CC", _broken_compiler(tmp_path))
    monkeypatch.setattr(kernels, "_WARNED", set())
    torch._dynamo.reset()
    x = torch.rand(5, 3, 7) * 2
    node = fresh()
    with pytest.warns(UserWarning, match="(?s)C compiler could not build.*toolchain is broken"):
        out = torch.compile(node, backend="aot_eager", fullgraph=True)(x)
    assert torch.equal(out, fresh(backend="torch")(x))
    torch._dynamo.reset()


def test_library_or_fallback_warns_once_and_falls_back():
    from spikeflow._cbuild import BuildError, CompilerNotFoundError, library_or_fallback

    def failed_build():
        raise BuildError("no OpenMP")

    def no_compiler():
        raise CompilerNotFoundError("no cc")

    warned: set[str] = set()
    with pytest.warns(RuntimeWarning, match=r"^the kernel could not be built: no OpenMP$"):
        assert library_or_fallback(failed_build, "the kernel could not be built", warned) is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per set: no second warning
        assert library_or_fallback(failed_build, "the kernel could not be built", warned) is False
        assert library_or_fallback(no_compiler, "unused", set()) is False
    assert library_or_fallback(lambda: None, "unused", set()) is True
