"""Starts real sidecars (the built binary, embedded storage in a temp dir) once per
test session: a plaintext one, and one run as SECURITY.md says to run it in production
(tenants with bearer tokens, mutual TLS with certificates from a CA made here with the
``openssl`` command). The binary is $ONCEWARD_BIN, default ../../target/debug/onceward."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pathlib
import shutil
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


@contextlib.contextmanager
def running_sidecar(tmp_path_factory, extra_args, channel_for):
    """Runs ``onceward serve`` on a free port with ``extra_args`` until the block ends;
    yields the port. ``channel_for(port)`` makes the channel that waits for it to listen."""
    binary = pathlib.Path(os.environ.get("ONCEWARD_BIN", PACKAGE_ROOT / "../../target/debug/onceward"))
    if not binary.exists():
        pytest.fail(f"no sidecar binary at {binary}: run `cargo build` or set ONCEWARD_BIN")
    port = free_port()
    log = tmp_path_factory.mktemp("sidecar") / "sidecar.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--metrics-listen",
                f"127.0.0.1:{free_port()}",
                "--data-dir",
                str(tmp_path_factory.mktemp("data")),
                *extra_args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Only flags decide: an inherited ONCEWARD_DATABASE_URL must not redirect it.
            env={k: v for k, v in os.environ.items() if not k.startswith("ONCEWARD_")},
        )
    try:
        channel = channel_for(port)
        try:
            grpc.channel_ready_future(channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            pytest.fail(f"the sidecar never listened on port {port}:\n{log.read_text()}")
        finally:
            channel.close()
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def sidecar(tmp_path_factory):
    """The address of a running sidecar."""
    with running_sidecar(tmp_path_factory, [], lambda port: grpc.insecure_channel(f"127.0.0.1:{port}")) as port:
        yield f"127.0.0.1:{port}"


@dataclasses.dataclass(frozen=True)
class Secured:
    """A sidecar with tenants and mutual TLS, and what a client is handed to reach it."""

    #: ``localhost:PORT``: the name its certificate was issued for.
    target: str
    #: The bearer token of a tenant that may use ``namespace`` only.
    auth_token: str
    namespace: str
    #: A namespace granted to another tenant only.
    not_granted: str
    #: The PEM of the CA that signed the sidecar's and the client's certificates.
    root_certificates: bytes
    #: The PEM of a CA that signed nothing here.
    other_ca: bytes
    #: The client certificate and its private key (PEM).
    certificate_chain: bytes
    private_key: bytes
    #: The directory holding the files: ``ca.pem``, ``client.pem``, ``client.key``.
    directory: pathlib.Path

    def credentials(self, **overrides) -> dict:
        """The keyword arguments of a client that gets in, with ``overrides``."""
        arguments = dict(
            auth_token=self.auth_token,
            root_certificates=self.root_certificates,
            certificate_chain=self.certificate_chain,
            private_key=self.private_key,
        )
        arguments.update(overrides)
        return arguments


def openssl(directory: pathlib.Path, *args: str) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("the TLS tests make their certificates with the openssl command; install it")
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def make_ca(directory: pathlib.Path, name: str) -> None:
    openssl(
        directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def make_leaf(directory: pathlib.Path, name: str, extensions: str) -> None:
    """``name.pem`` and ``name.key``, signed by ``ca``."""
    (directory / f"{name}.ext").write_text(f"basicConstraints=CA:FALSE\n{extensions}\n")
    openssl(
        directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
    )  # fmt: skip
    openssl(
        directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", str(uuid.uuid4().int >> 64), "-days", "2", "-out", f"{name}.pem",
        "-extfile", f"{name}.ext",
    )  # fmt: skip


@pytest.fixture(scope="session")
def secured(tmp_path_factory):
    """A running sidecar with tenants and mutual TLS (see ``Secured``)."""
    directory = tmp_path_factory.mktemp("pki")
    make_ca(directory, "ca")
    make_ca(directory, "other-ca")
    make_leaf(directory, "server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    make_leaf(directory, "client", "extendedKeyUsage=clientAuth")
    token = f"pytest-token-{uuid.uuid4().hex}"
    digest = hashlib.sha256(token.encode()).hexdigest()
    other = hashlib.sha256(b"another tenant's token").hexdigest()
    (directory / "tenants.toml").write_text(
        f'[[tenants]]\nname = "pytest"\ntoken_sha256 = "{digest}"\nnamespaces = ["pytest-secured", "sms"]\n\n'
        f'[[tenants]]\nname = "mail"\ntoken_sha256 = "{other}"\nnamespaces = ["mail"]\n'
    )
    read = lambda name: (directory / name).read_bytes()  # noqa: E731
    credentials = grpc.ssl_channel_credentials(read("ca.pem"), read("client.key"), read("client.pem"))
    arguments = [
        "--config", str(directory / "tenants.toml"),
        "--tls-cert", str(directory / "server.pem"),
        "--tls-key", str(directory / "server.key"),
        "--tls-client-ca", str(directory / "ca.pem"),
    ]  # fmt: skip
    with running_sidecar(
        tmp_path_factory, arguments, lambda port: grpc.secure_channel(f"localhost:{port}", credentials)
    ) as port:
        yield Secured(
            target=f"localhost:{port}",
            auth_token=token,
            namespace="pytest-secured",
            not_granted="mail",
            root_certificates=read("ca.pem"),
            other_ca=read("other-ca.pem"),
            certificate_chain=read("client.pem"),
            private_key=read("client.key"),
            directory=directory,
        )


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

