"""The README's quickstart runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_code() -> str:
    text = README.read_text()
    match = re.search(r"<!-- quickstart:.*?-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README has no quickstart block"
    return match.group(1)


def test_quickstart_is_short_and_runs():
    code = quickstart_code()
    assert len([line for line in code.splitlines() if line.strip()]) < 15
    namespace: dict = {}
    exec(compile(code, "README quickstart", "exec"), namespace)
    net, loss = namespace["net"], namespace["loss"]
    assert loss.ndim == 0
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_readme_starts_with_the_two_setup_commands():
    lines = README.read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert block[0].startswith("bash scripts/setup.sh examples")
    assert block[1].startswith("bash scripts/setup.sh test")
    ci = (README.parent / ".ci" / "run").read_text()
    assert "bash scripts/setup.sh test" in ci
    command = block[1].split(" && ", 1)[1]  # the README's test command is CI's
    assert command.startswith("python3 -m pytest -q") and command in ci.splitlines()
