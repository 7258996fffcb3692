"""The README's Python examples run as written, against real sidecars: the plain one,
the one with tenants and mutual TLS (from the directory holding its ca.pem,
client.pem and client.key, with its token in ONCEWARD_AUTH_TOKEN), and the inbox."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_python_examples_run_and_replay_the_second_time(sidecar, secured, capsys, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert len(blocks) == 3, "the README has a plain, a secured and an inbox Python example"
    monkeypatch.chdir(secured.directory)
    monkeypatch.setenv("ONCEWARD_AUTH_TOKEN", secured.auth_token)
    for block in blocks:
        if "auth_token" in block:
            code = block.replace("localhost:50051", secured.target)
        else:
            code = block.replace("127.0.0.1:50051", sidecar)
        exec(compile(code, str(README), "exec"), {})
        exec(compile(code, str(README), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "sent sms-1",
        "already sent sms-1",
        "sent sms-2",
        "already sent sms-2",
        # The inbox: the batch holds order-1 twice; run again, both are duplicates.
        "order-1 Done ack",
        "order-1 Duplicate ack",
        "order-1 Duplicate ack",
        "order-1 Duplicate ack",
    ]
