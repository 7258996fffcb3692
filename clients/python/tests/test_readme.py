"""The README's Python example runs as written, against a real sidecar."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_python_example_runs_and_replays_the_second_time(sidecar, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "the README has a Python example"
    for block in blocks:
        code = block.replace("127.0.0.1:50051", sidecar)
        exec(compile(code, str(README), "exec"), {})
        exec(compile(code, str(README), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["sent sms-1", "already sent sms-1"]
