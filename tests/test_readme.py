"""The README's code examples run and print what the README says."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_ops_example_runs_and_shapes_match_its_comments(capsys):
    block = next(b for b in _python_blocks() if "check_vjp" in b)
    exec(compile(block, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "(8, 3, 32, 32) (16, 3, 3, 3)" in out
    assert "rel err vs finite diff" in out


def test_readme_layers_example_runs():
    block = next(b for b in _python_blocks() if "from fconv.layers import serial" in b)
    scope: dict = {}
    exec(compile(block, str(README), "exec"), scope)
    assert scope["out_shape"] == (-1, 10)
    assert scope["logits"].shape == (2, 10)
