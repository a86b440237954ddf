"""A connection lost during an append's COMMIT: the caller is told it failed, and the log says
so. The connection runs through a TCP proxy that cuts it at the COMMIT, either after the server
answered (committed, the client never hears it) or before the server saw it (never committed).
A committed entry is followed by exactly one ``unserved`` entry naming it, whether the ledger
resolves the doubt while running, after a restart, or again after a crash that left the doubt
record behind; an entry never committed leaves nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from tests.ledger.ledger_fixtures import ORIGIN, TEST_MAC, open_ledger
from tests.ledger.test_ledger_pipeline import _check_tree
from vault.config import LedgerConfig
from vault.db import Database
from vault.ledger import Ledger, make_entry
from verify.merkle import leaf_hash
from verify.note import Signer

HOLD = 1.0
SIGNER = Signer.generate(ORIGIN)  # one log key for every (re)start of a test's ledger
COMMIT = b"Q\x00\x00\x00\x0cCOMMIT;\x00"  # asyncpg's COMMIT: a simple Query message


class CutAtCommit:
    """A TCP proxy to PostgreSQL that, once armed with (mode, marker), cuts the next connection
    sending a COMMIT after the marker bytes (an entry's text): ``"after"`` the server answered it
    (the answer is dropped), or ``"before"`` it reaches the server; or (``"hold"``) holds that
    COMMIT back for :data:`HOLD` seconds, then lets it through."""

    def __init__(self, dsn: str) -> None:
        u = urllib.parse.urlsplit(dsn)
        query = dict(urllib.parse.parse_qsl(u.query))
        self.host = query.get("host") or u.hostname or "127.0.0.1"
        self.port = int(query.get("port") or u.port or 5432)
        self.user = u.username or "postgres"
        self.database = u.path.lstrip("/")
        self.armed: tuple[str, bytes] | None = None
        self.cuts = 0
        self.server: asyncio.Server | None = None

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.host}/.s.PGSQL.{self.port}")
        return await asyncio.open_connection(self.host, self.port)

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await self._upstream()
        cut = asyncio.Event()
        marked = False

        async def client_to_server() -> None:
            nonlocal marked
            while data := await cr.read(65536):
                armed = self.armed
                marked = marked or (armed is not None and armed[1] in data)
                if armed is not None and marked and COMMIT in data:
                    mode = armed[0]
                    self.armed = None
                    if mode == "hold":
                        await asyncio.sleep(HOLD)
                        sw.write(data)
                        await sw.drain()
                        continue
                    self.cuts += 1
                    if mode == "after":
                        sw.write(data)
                        await sw.drain()
                        await sr.read(1)  # the server answered: it committed
                    cut.set()
                    return
                sw.write(data)
                await sw.drain()

        async def server_to_client() -> None:
            while not cut.is_set() and (data := await sr.read(65536)):
                if cut.is_set():
                    return
                cw.write(data)
                await cw.drain()

        tasks = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
        cut_wait = asyncio.create_task(cut.wait())
        await asyncio.wait([*tasks, cut_wait], return_when=asyncio.FIRST_COMPLETED)
        for t in [*tasks, cut_wait]:
            t.cancel()
        for w in (cw, sw):
            w.transport.abort()

    async def __aenter__(self) -> CutAtCommit:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def dsn(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"postgresql://{self.user}@127.0.0.1:{port}/{self.database}?sslmode=disable"


@contextlib.asynccontextmanager
async def proxied_ledger(
    proxy: CutAtCommit, db: Database, tmp: Path, *, start: bool
) -> AsyncIterator[Ledger]:
    """A ledger whose every session goes through ``proxy`` (its doubt records under ``tmp``)."""
    pool = await asyncpg.create_pool(
        proxy.dsn, min_size=1, max_size=4, server_settings={"role": db.app_role}
    )
    cfg = LedgerConfig(origin=ORIGIN)
    ledger = Ledger(pool, SIGNER, cfg, tmp / "checkpoints.log", mac=TEST_MAC)
    try:
        if start:
            ledger.start()
        yield ledger
    finally:
        await ledger.close()
        await pool.close()


async def _entries(db: Database) -> list[tuple[int, str, dict[str, object], bytes]]:
    rows = await db.pool.fetch("SELECT idx, kind, data FROM ledger_entries ORDER BY idx")
    return [(r["idx"], r["kind"], json.loads(bytes(r["data"])), bytes(r["data"])) for r in rows]


async def _until(check: object, seconds: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():  # type: ignore[operator]
        assert loop.time() < deadline, "not resolved in time"
        await asyncio.sleep(0.1)


async def _failed_appends(ledger: Ledger, texts: list[str]) -> list[BaseException]:
    """Append one note per text at once (one batch); every call must fail."""
    results = await asyncio.gather(
        *(ledger.append([make_entry("note", {"text": t})]) for t in texts), return_exceptions=True
    )
    assert all(isinstance(r, BaseException) for r in results), results
    assert not any(isinstance(r, TimeoutError) for r in results), results
    return [r for r in results if isinstance(r, BaseException)]


async def test_attack_commit_answer_lost_then_restarts_one_unserved_entry_each(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The server commits a batch of two calls but the connection dies before the client hears
    it: both callers get an error (the batch is not retried: each note is logged once), the
    doubt is on disk before they do, and after a restart, and again after a crash that left the
    record behind, each note is followed by exactly one ``unserved`` entry naming it."""
    async with (
        open_ledger(pg_dsn, tmp_path / "direct") as (_direct, db),
        CutAtCommit(pg_dsn) as proxy,
    ):
        async with proxied_ledger(proxy, db, tmp_path, start=False) as ledger:
            await ledger.append([make_entry("note", {"text": "before"})])
            proxy.armed = ("after", b"lost-a")
            await _failed_appends(ledger, ["lost-a", "lost-b"])
            assert proxy.cuts == 1
            pending = ledger.doubts.pending()  # recorded before the callers were answered
            assert len(pending) == 1 and len(pending[0].entries) == 2
            saved = pending[0].path.read_bytes(), pending[0].path.name
        entries = await _entries(db)
        texts = [e[2].get("text") for e in entries]
        assert texts == ["before", "lost-a", "lost-b"], "committed once, not retried"
        lost = {e[0]: e for e in entries[1:]}
        assert {(d.index, d.leaf) for d in pending[0].entries} == {
            (i, leaf_hash(e[3])) for i, e in lost.items()
        }

        async def resolved() -> bool:
            return not ledger.doubts.pending()

        for round_ in ("restart", "crash after resolving"):
            async with proxied_ledger(proxy, db, tmp_path, start=True) as ledger:
                await _until(resolved)
            unserved = [e for e in await _entries(db) if e[1] == "unserved"]
            assert len(unserved) == 2, (round_, unserved)
            for idx, _kind, body, _data in unserved:
                named = body["entry"]
                assert isinstance(named, int) and named in lost and idx > named
                assert body["leaf_hash"] == leaf_hash(lost[named][3]).hex()
                assert body["entry_kind"] == "note" and body["answered"] == "error"
            assert {e[2]["entry"] for e in unserved} == set(lost)
            # The crash: the record comes back as if the file had never been removed.
            (ledger.doubts.directory / saved[1]).write_bytes(saved[0])
        size = len(await _entries(db))
        assert size == 5
        await _check_tree(db, size)
        async with proxied_ledger(proxy, db, tmp_path, start=False) as ledger:
            assert (await ledger.checkpoint()).size == size  # every batch authenticated


async def test_attack_commit_cut_before_the_server_saw_it_leaves_no_unserved_entry(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The connection dies before the COMMIT reaches the server: nothing was committed, the
    running ledger's resolver drops the doubt without appending anything, and the next append
    takes the index the lost one would have had."""
    async with (
        open_ledger(pg_dsn, tmp_path / "direct") as (_direct, db),
        CutAtCommit(pg_dsn) as proxy,
    ):
        async with proxied_ledger(proxy, db, tmp_path, start=True) as ledger:
            await ledger.append([make_entry("note", {"text": "before"})])
            proxy.armed = ("before", b"never")
            await _failed_appends(ledger, ["never"])
            assert proxy.cuts == 1

            async def resolved() -> bool:
                return not ledger.doubts.pending()

            await _until(resolved)
            assert await ledger.append([make_entry("note", {"text": "after"})]) == [1]
        entries = await _entries(db)
        assert [(e[1], e[2].get("text")) for e in entries] == [
            ("note", "before"),
            ("note", "after"),
        ]
        await _check_tree(db, 2)


async def test_commit_answer_lost_while_running_one_unserved_entry(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The running ledger resolves a lost COMMIT answer by itself, once, and goes on appending."""
    async with (
        open_ledger(pg_dsn, tmp_path / "direct") as (_direct, db),
        CutAtCommit(pg_dsn) as proxy,
    ):
        async with proxied_ledger(proxy, db, tmp_path, start=True) as ledger:
            proxy.armed = ("after", b"lost")
            await _failed_appends(ledger, ["lost"])

            async def one_unserved() -> bool:
                kinds = [e[1] for e in await _entries(db)]
                return kinds.count("unserved") >= 1 and not ledger.doubts.pending()

            await _until(one_unserved)
            await ledger.append([make_entry("note", {"text": "next"})])
            await asyncio.sleep(0.3)  # a second resolution would come now
        entries = await _entries(db)
        assert [e[1] for e in entries] == ["note", "unserved", "note"]
        assert entries[1][2]["entry"] == 0
        await _check_tree(db, 3)


async def test_caller_gone_before_its_commit_answered_gets_an_unserved_entry(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A caller that gives up while its transaction is committing (its request answered with an
    error) leaves an entry that commits anyway: it is followed by one ``unserved`` entry."""
    async with (
        open_ledger(pg_dsn, tmp_path / "direct") as (_direct, db),
        CutAtCommit(pg_dsn) as proxy,
    ):
        async with proxied_ledger(proxy, db, tmp_path, start=True) as ledger:
            proxy.armed = ("hold", b"given-up")
            append = ledger.append([make_entry("note", {"text": "given-up"})])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(append, HOLD / 3)
                raise AssertionError("the COMMIT was held back longer than the caller waited")

            async def one_unserved() -> bool:
                kinds = [e[1] for e in await _entries(db)]
                return kinds.count("unserved") >= 1 and not ledger.doubts.pending()

            await _until(one_unserved)
            await asyncio.sleep(0.3)
        entries = await _entries(db)
        assert [e[1] for e in entries] == ["note", "unserved"]
        assert entries[1][2]["entry"] == 0 and entries[0][2]["text"] == "given-up"
        await _check_tree(db, 2)
