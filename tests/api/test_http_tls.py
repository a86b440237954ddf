"""HTTPS with client certificates: a dock authenticates by its certificate (uploads only)."""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Iterator

import pytest

from tests.api.http_fixtures import TlsWorld, tls_service


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsWorld]:
    with tls_service(pg_admin_dsn, tmp_path_factory.mktemp("tls") / "data") as w:
        yield w


def test_dock_uploads_with_its_client_certificate(world: TlsWorld) -> None:
    data = os.urandom(500)
    headers = {"X-Content-SHA256": hashlib.sha256(data).hexdigest()}
    path = "/v1/docks/dock-01/files/a.mp4"
    r = world.call("PUT", path, cert="dock1", body=data, headers=headers)
    assert r.status == 201, r.body
    assert world.call("PUT", path, body=data, headers=headers).status == 401  # no credentials
    # A certificate of a principal without the dock role authenticates nobody.
    assert world.call("PUT", path, cert="reviewer", body=data, headers=headers).status == 401
    # The certificate grants the dock role only: nothing else of the principal.
    assert world.call("GET", "/v1/evidence", cert="dock1").json()["items"] == []


def test_tokens_still_work_and_foreign_certificates_are_refused(world: TlsWorld) -> None:
    auth = {"Authorization": f"Bearer {world.tokens['reviewer']}"}
    assert world.call("GET", "/v1/cases", headers=auth).status == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        world.call("GET", "/v1/cases", cert="rogue", headers=auth)
