"""spikeflow's torch.compile marks (spikeflow._compile_marks): ``import spikeflow`` does
not import Dynamo, and the marks take effect once Dynamo is imported."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spikeflow import _compile_marks

SRC = Path(__file__).resolve().parents[1] / "src"

FRESH = textwrap.dedent(
    """
    import importlib, sys
    import torch
    import spikeflow
    from spikeflow import _compile_marks
    from spikeflow.kernels import captures, registry

    hooks = lambda: [f for f in sys.meta_path if type(f).__name__ == "_DynamoImportHook"]
    assert "torch._dynamo" not in sys.modules, "import spikeflow imported Dynamo"
    assert len(hooks()) == 1
    marked = (registry._run_time_parameters, captures._code_names)
    assert not any(hasattr(fn, "_dynamo_marked_constant") for fn in marked)

    seen = []

    @_compile_marks.eager_under_compile
    def record(x):
        seen.append(torch.compiler.is_compiling())
        return x + 1

    importlib.reload(_compile_marks)  # the marks made before wait on

    @_compile_marks.assume_constant_result
    def after_reload():
        return 1

    def late():
        return 2

    # a mark made while the pending ones are applied (as a thread could)
    _compile_marks._when_dynamo_loads(lambda: _compile_marks.assume_constant_result(late))
    sys.modules["torch._dynamo.convert_frame"] = None  # the first import of Dynamo fails
    try:
        import torch._dynamo
    except ImportError:
        pass
    else:
        raise AssertionError("the import did not fail")
    del sys.modules["torch._dynamo.convert_frame"]
    assert len(hooks()) == 1, "the hook did not re-arm"

    out = torch.compile(lambda x: record(x) * 2, backend="eager")(torch.ones(3))
    assert out.tolist() == [4.0, 4.0, 4.0]
    assert seen == [False], seen  # run eagerly, not traced
    assert hooks() == [], "the import hook stayed"
    probe = torch.compiler.assume_constant_result(lambda: 0)
    for fn in (*marked, after_reload, late):
        for name, value in vars(probe).items():
            assert getattr(fn, name, None) == value, (fn, name)
    print("ok")
    """
)


def test_spikeflow_imports_without_dynamo_and_marks_once_it_loads():
    """One fresh interpreter: no Dynamo at import; the marks apply when torch.compile
    imports it, also those made before an importlib.reload, after a failed first
    import of Dynamo, or while the pending ones are applied."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", FRESH], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_a_mark_made_after_dynamo_loaded_applies_at_once():
    import torch._dynamo

    @_compile_marks.assume_constant_result
    def constant():
        return 3

    assert constant.__dict__ == torch.compiler.assume_constant_result(lambda: 0).__dict__

    @_compile_marks.eager_under_compile
    def eager(x):
        return x.sum().item()  # a graph break if traced; eager under compile

    assert eager.__name__ == "eager"
    torch._dynamo.reset()
    out = torch.compile(lambda x: x * eager(x), backend="eager")(torch.ones(2))
    assert out.tolist() == [2.0, 2.0]
    with pytest.raises(Exception, match=r"(?i)disable|skip"):
        torch.compile(lambda x: x * eager(x), backend="eager", fullgraph=True)(torch.ones(2))
