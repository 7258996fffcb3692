"""Both clients against a sidecar with tenants and mutual TLS: the bearer token and the
certificates as constructor arguments, and the clear failures without them."""

from __future__ import annotations

import grpc
import pytest

import onceward
import onceward.aio

# One attempt: a refusal must be clear at once, not after a round of retries.
ONE_TRY = onceward.ClientConfig(max_attempts=1)


def test_with_the_token_and_certificates_once_runs_the_effect_once_and_then_replays(secured, key):
    runs = []
    with onceward.Client(secured.target, **secured.credentials()) as client:
        first = client.once(secured.namespace, key, b"fp", lambda token: runs.append(token) or b"receipt")
        again = client.once(secured.namespace, key, b"fp", lambda token: runs.append(token) or b"other")
    assert first == onceward.Once(b"receipt", replayed=False)
    assert again == onceward.Once(b"receipt", replayed=True)
    assert len(runs) == 1


async def test_the_asyncio_client_takes_the_same_token_and_certificates(secured, key):
    async def charge(token):
        return b"receipt"

    async with onceward.aio.Client(secured.target, **secured.credentials()) as client:
        first = await client.once(secured.namespace, key, b"fp", charge)
        again = await client.once(secured.namespace, key, b"fp", charge)
    assert first == onceward.Once(b"receipt", replayed=False)
    assert again == onceward.Once(b"receipt", replayed=True)


def test_without_the_token_once_raises_unauthorized_and_runs_nothing(secured, key):
    runs = []
    with onceward.Client(secured.target, ONE_TRY, **secured.credentials(auth_token=None)) as client:
        with pytest.raises(onceward.Unauthorized) as raised:
            client.once(secured.namespace, key, b"", lambda token: runs.append(token) or b"")
    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert isinstance(raised.value, onceward.Rejected)
    assert runs == []


async def test_the_asyncio_client_without_the_token_raises_unauthorized(secured, key):
    async def never(token):
        raise AssertionError("the effect must not run")

    async with onceward.aio.Client(secured.target, ONE_TRY, **secured.credentials(auth_token=None)) as client:
        with pytest.raises(onceward.Unauthorized) as raised:
            await client.once(secured.namespace, key, b"", never)
    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_a_wrong_token_or_a_namespace_not_granted_raises_unauthorized(secured, key):
    wrong = secured.credentials(auth_token="not-the-tenants-token")
    with onceward.Client(secured.target, ONE_TRY, **wrong) as client:
        with pytest.raises(onceward.Unauthorized) as raised:
            client.once(secured.namespace, key, b"", lambda token: b"")
    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "not-the-tenants-token" not in str(raised.value)

    with onceward.Client(secured.target, ONE_TRY, **secured.credentials()) as client:
        with pytest.raises(onceward.Unauthorized) as raised:
            client.once(secured.not_granted, key, b"", lambda token: b"")
    assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_tls_that_does_not_trust_the_sidecar_or_lacks_the_client_certificate_fails_in_tls(secured, key):
    # grpc reports TLS failures as UNAVAILABLE; what failed is in the message, and it is
    # the TLS layer ("TSI"), not a plaintext connection the sidecar hung up on.
    for arguments, failure in (
        (secured.credentials(root_certificates=secured.other_ca), "handshake failed"),
        # tls=True without a CA of its own trusts the system's roots, which did not sign it.
        (secured.credentials(root_certificates=None, tls=True), "handshake failed"),
        (secured.credentials(certificate_chain=None, private_key=None), "TSI_"),
    ):
        with onceward.Client(secured.target, ONE_TRY, **arguments) as client:
            with pytest.raises(onceward.Unavailable) as raised:
                client.once(secured.namespace, key, b"", lambda token: b"")
        assert failure in raised.value.last_error, raised.value.last_error


def test_arguments_that_cannot_work_are_refused_when_the_client_is_made(secured):
    with pytest.raises(ValueError, match="go together"):
        onceward.Client(secured.target, **secured.credentials(private_key=None))
    with pytest.raises(ValueError, match="printable ASCII") as raised:
        onceward.Client(secured.target, auth_token="two words")
    assert "two words" not in str(raised.value)
    with pytest.raises(ValueError, match="either channel"):
        onceward.Client(
            secured.target,
            channel=grpc.insecure_channel(secured.target),
            root_certificates=secured.root_certificates,
        )
