"""A running `evault serve` with seeded principals, tokens, cases and evidence, for the HTTP
API tests. Seeding uses the vault functions in this process (fast) against the service's own
database; evidence is pushed through the real HTTP upload route."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http.client
import io
import ipaddress
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import make_app
from api.cmd_setup import cmd_init
from api.config import Config, load
from api.keys import RUNTIME
from api.runtime import Runtime, open_runtime
from tests.api.service_fixtures import Service, free_port, running_service
from vault.access import principals, tokens
from vault.cases import links as cases
from vault.db import with_database
from vault.policy.decide import Role
from vault.policy.labels import Caveat, Label, Level

ALL_CAVEATS = frozenset(Caveat)
T = TypeVar("T")


@dataclass(frozen=True)
class Who:
    roles: tuple[str, ...]
    clearance: str = "internal"
    caveats: frozenset[Caveat] = frozenset()
    officer_id: str | None = None
    docks: tuple[str, ...] = ()
    cases: tuple[str, ...] = ()


# C1: an internal case; CS: a secret one. The reviewer and the officer are assigned to both
# but cleared for internal only: CS and everything linked to it must be invisible to them.
PEOPLE: dict[str, Who] = {
    "dock1": Who(("dock",), docks=("dock-01",)),
    "dock2": Who(("dock",), docks=("dock-02",)),
    "officer": Who(("officer",), officer_id="OFF1", cases=("C1", "CS")),
    "reviewer": Who(("reviewer",), cases=("C1", "CS")),
    "legal": Who(("legal_reviewer",), "secret", cases=("C1", "CS")),
    "casesys": Who(("case_system",), "confidential"),
    "auditor": Who(("auditor",), "top_secret", ALL_CAVEATS),
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def problem(self) -> dict[str, Any]:
        assert self.headers.get("content-type", "").startswith("application/problem+json"), (
            self.status,
            self.headers,
            self.body[:300],
        )
        body: dict[str, Any] = json.loads(self.body)
        body.pop("request_id", None)
        return body


@dataclass
class World:
    svc: Service
    tokens: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> receipt
    content: dict[str, bytes] = field(default_factory=dict)

    def call(
        self,
        method: str,
        path: str,
        *,
        who: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        if who is not None:
            hdrs["Authorization"] = f"Bearer {self.tokens[who]}"
        if params:
            path += "?" + urllib.parse.urlencode(params)
        parsed = urllib.parse.urlsplit(self.svc.url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def upload(
        self, who: str, name: str, data: bytes, dock: str = "dock-01", **headers: str
    ) -> Reply:
        hdrs = {"X-Content-SHA256": hashlib.sha256(data).hexdigest(), **headers}
        return self.call("PUT", f"/v1/docks/{dock}/files/{name}", who=who, body=data, headers=hdrs)


def make_video(path: Path, seconds: int = 2) -> bytes:
    """A small real MP4 (so media jobs make renditions and clips)."""
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
            "-i", f"testsrc2=s=160x120:r=10:d={seconds}",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path.read_bytes()


async def _create_db(admin_dsn: str) -> str:
    name = "evault_h_" + secrets.token_hex(6)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return name


async def _drop_db(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def seed_people(svc: Service) -> dict[str, str]:
    """Cases C1 (internal) and CS (secret), the PEOPLE, and a token for each and for admin."""
    cfg = load(None, str(svc.data), environ=svc.env)
    async with open_runtime(cfg) as rt:
        return await _seed(rt)


async def _seed(rt: Runtime) -> dict[str, str]:
    """Seed through ``rt``: see ``seed_people``."""
    out: dict[str, str] = {}
    db, ledger = rt.db.pool, rt.ledger
    admin = await principals.load(db, "admin")
    await cases.create(db, ledger, admin, "C1", "Case one", Label(Level.INTERNAL))
    await cases.create(db, ledger, admin, "CS", "Secret case", Label(Level.SECRET))
    for pid, who in PEOPLE.items():
        spec = principals.PrincipalSpec(
            id=pid,
            roles=frozenset(Role(r) for r in who.roles),
            clearance=Level.parse(who.clearance),
            caveats=who.caveats,
            officer_id=who.officer_id,
            dock_ids=frozenset(who.docks),
        )
        await principals.add(db, ledger, admin, spec)
        for case in who.cases:
            # forced: the reviewer and officer are assigned to CS below its label on purpose
            await principals.assign(db, ledger, admin, pid, case, force=True)
    for pid in [*PEOPLE, "admin"]:
        issued = await tokens.create(db, ledger, admin, pid, timedelta(days=1))
        out[pid] = issued.token
    return out


@contextmanager
def seeded_service(
    pg_admin_dsn: str, data: Path, extra_env: dict[str, str] | None = None
) -> Iterator[World]:
    """A running service on a fresh database with PEOPLE and their tokens (no evidence)."""
    name = asyncio.run(_create_db(pg_admin_dsn))
    try:
        with running_service(data, with_database(pg_admin_dsn, name), extra_env) as svc:
            world = World(svc)
            world.tokens = asyncio.run(seed_people(svc))
            yield world
    finally:
        asyncio.run(_drop_db(pg_admin_dsn, name))


# -- the same service in this process ------------------------------------------------------


@contextmanager
def inprocess_service(pg_admin_dsn: str, data: Path) -> Iterator[World]:
    """``seeded_service`` with the app in this process, for tests that call it over HTTP and
    need nothing of a separate process (no signals, no log file, no restart): ``make_app``
    with every part on a loopback port, served by an event loop in a thread of its own, so the
    tests stay as they are (``World.call``, ``svc.evault`` and the database from the test
    thread). ``svc.proc`` is None. Spares an `evault init` and an `evault serve` process.
    Not for tests that open a runtime of their own meanwhile (``open_runtime`` in the test):
    the verified access state is the process's, and closing that runtime unloads it."""
    name = asyncio.run(_create_db(pg_admin_dsn))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert cmd_init(argparse.Namespace(config=None, data=str(data)), None) == 0
        env = {**os.environ, "EVAULT_DATABASE_DSN": with_database(pg_admin_dsn, name)}
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="evault-app", daemon=True)
        thread.start()

        def run(coro: Coroutine[Any, Any, T]) -> T:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

        try:
            server = run(_start(load(None, str(data), environ=env)))
            try:
                url = str(server.make_url("")).rstrip("/")
                world = World(Service(url=url, data=data, env=env, proc=None))  # type: ignore[arg-type]
                world.tokens = run(_seed(server.app[RUNTIME]))
                yield world
            finally:
                run(server.close())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()
    finally:
        asyncio.run(_drop_db(pg_admin_dsn, name))


async def _start(cfg: Config) -> TestServer:
    server = TestServer(make_app(cfg), host="127.0.0.1")
    await server.start_server()
    return server


@dataclass
class AppWorld:
    """``World`` for a service in this process: ``make_app`` behind aiohttp's test client (real
    HTTP on a loopback port). For tests where a separate process adds nothing: no signals, no
    CLI, no crash or restart. ``rt`` is the app's own runtime; ``dsn`` its database."""

    client: TestClient[web.Request, web.Application]
    rt: Runtime
    dsn: str
    tokens: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> receipt
    content: dict[str, bytes] = field(default_factory=dict)

    async def call(
        self,
        method: str,
        path: str,
        *,
        who: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        if who is not None:
            hdrs["Authorization"] = f"Bearer {self.tokens[who]}"
        if params:
            path += "?" + urllib.parse.urlencode(params)
        async with self.client.request(method, path, data=body, headers=hdrs) as r:
            data = await r.read()
            return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, data)

    async def upload(
        self, who: str, name: str, data: bytes, dock: str = "dock-01", **headers: str
    ) -> Reply:
        hdrs = {"X-Content-SHA256": hashlib.sha256(data).hexdigest(), **headers}
        return await self.call(
            "PUT", f"/v1/docks/{dock}/files/{name}", who=who, body=data, headers=hdrs
        )


@asynccontextmanager
async def app_world(pg_admin_dsn: str, data: Path) -> AsyncIterator[AppWorld]:
    """``seeded_service`` in this process: a fresh database, ``evault init``'s data folder,
    the app with every part, PEOPLE and their tokens seeded through the app's runtime."""
    name = await _create_db(pg_admin_dsn)
    dsn = with_database(pg_admin_dsn, name)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert cmd_init(argparse.Namespace(config=None, data=str(data)), None) == 0
        cfg = load(None, str(data), environ={**os.environ, "EVAULT_DATABASE_DSN": dsn})
        async with TestClient(TestServer(make_app(cfg))) as client:
            world = AppWorld(client, client.app[RUNTIME], dsn)
            world.tokens = await _seed(world.rt)
            yield world
    finally:
        await _drop_db(pg_admin_dsn, name)


# -- TLS with client certificates ----------------------------------------------------------


def _cert(
    cn: str, issuer: tuple[Any, Any] | None, *, ca: bool = False, server: bool = False
) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _write_pem(path: Path, cert: Any, key: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.with_suffix(".key").write_bytes(key_pem)


@dataclass
class TlsWorld:
    url: str
    tokens: dict[str, str]
    dir: Path  # ca.pem, server.pem, <cn>.pem/.key client certificates, rogue.pem/.key

    def context(self, cert: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.pem"))
        if cert is not None:
            ctx.load_cert_chain(self.dir / f"{cert}.pem", self.dir / f"{cert}.key")
        return ctx

    def call(
        self,
        method: str,
        path: str,
        *,
        cert: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        parsed = urllib.parse.urlsplit(self.url)
        conn = http.client.HTTPSConnection(
            parsed.hostname, parsed.port, timeout=30, context=self.context(cert)
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()


@contextmanager
def tls_service(pg_admin_dsn: str, data: Path) -> Iterator[TlsWorld]:
    """`evault serve` over HTTPS with client certificates from a test CA (CN = principal)."""
    tls = data / "tls"
    tls.mkdir(parents=True)
    ca = _cert("evault test CA", None, ca=True)
    _write_pem(tls / "ca.pem", *ca)
    _write_pem(tls / "server.pem", *_cert("127.0.0.1", ca, server=True))
    for cn in ("dock1", "reviewer"):
        _write_pem(tls / f"{cn}.pem", *_cert(cn, ca))
    _write_pem(tls / "rogue.pem", *_cert("dock1", _cert("rogue CA", None, ca=True)))
    name = asyncio.run(_create_db(pg_admin_dsn))
    env = dict(os.environ)
    env.update(
        EVAULT_DATABASE_DSN=with_database(pg_admin_dsn, name),
        EVAULT_SERVICE_TLS_CERT=str(tls / "server.pem"),
        EVAULT_SERVICE_TLS_KEY=str(tls / "server.key"),
        EVAULT_SERVICE_TLS_CLIENT_CA=str(tls / "ca.pem"),
    )
    cli = [sys.executable, "-m", "api.cli", "--data", str(data)]
    subprocess.run([*cli, "init"], check=True, capture_output=True, env=env, timeout=120)
    port = free_port()
    log = (data / "serve.log").open("w")
    proc = subprocess.Popen(
        [*cli, "serve", "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=log, env=env
    )
    world = TlsWorld(f"https://127.0.0.1:{port}", {}, tls)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (data / "serve.log").read_text()
            try:
                if world.call("GET", "/readyz").status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (data / "serve.log").read_text()
            time.sleep(0.2)
        svc = Service(url=world.url, data=data, env=env, proc=proc)  # type: ignore[arg-type]
        world.tokens = asyncio.run(seed_people(svc))
        yield world
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        asyncio.run(_drop_db(pg_admin_dsn, name))
