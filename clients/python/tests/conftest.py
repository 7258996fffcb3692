"""Starts a real sidecar (the built binary, embedded storage in a temp dir) once per
test session. The binary is $ONCEWARD_BIN, default ../../target/debug/onceward."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import uuid

import grpc
import pytest

from onceward.v1 import onceward_pb2_grpc as pb_grpc

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def sidecar(tmp_path_factory):
    """The address of a running sidecar."""
    binary = pathlib.Path(os.environ.get("ONCEWARD_BIN", PACKAGE_ROOT / "../../target/debug/onceward"))
    if not binary.exists():
        pytest.fail(f"no sidecar binary at {binary}: run `cargo build` or set ONCEWARD_BIN")
    listen = f"127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("sidecar") / "sidecar.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--listen",
                listen,
                "--metrics-listen",
                f"127.0.0.1:{free_port()}",
                "--data-dir",
                str(tmp_path_factory.mktemp("data")),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Only flags decide: an inherited ONCEWARD_DATABASE_URL must not redirect it.
            env={k: v for k, v in os.environ.items() if not k.startswith("ONCEWARD_")},
        )
    try:
        channel = grpc.insecure_channel(listen)
        try:
            grpc.channel_ready_future(channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            pytest.fail(f"the sidecar never listened on {listen}:\n{log.read_text()}")
        finally:
            channel.close()
        yield listen
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def key() -> str:
    """A key no other test uses."""
    return f"key-{uuid.uuid4().hex}"


@pytest.fixture
def unreachable() -> str:
    """An address nothing listens on."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def stub(sidecar):
    """The raw generated stub, to look behind the guard."""
    channel = grpc.insecure_channel(sidecar)
    yield pb_grpc.OncewardStub(channel)
    channel.close()

