"""This service as a C2SP tlog-witness (https://c2sp.org/tlog-witness) of other logs.

``POST /add-checkpoint`` bodies are ``old <size>\\n``, up to 63 base64 consistency-proof lines,
a blank line and a signed checkpoint note; the answer is a ``cosignature/v1`` line by the
witness key (``verify.cosignature``).

Guarantees:

- A checkpoint is cosigned only if its origin is in ``witness.logs`` (else 404), a signature by
  that log's key verifies (else 403), its old size equals the size this witness last cosigned
  for the log (else 409 with that size, ``text/x.tlog.size``), and the consistency proof from
  that checkpoint verifies (else 422); at equal sizes the roots must be equal (else 409). So it
  never cosigns two inconsistent checkpoints of one log, nor a smaller after a larger one.
- The check and the new state are one transaction under a per-log advisory lock (no race rolls
  the state back), and the state is durable before the answer: a row in append-only
  ``witness_cosigned`` (checkpoint body and our own cosignature) and the highest size per log
  in ``witness.state_file`` outside the database. The newest row is re-verified with the
  witness key before use, and must not be below the file: a database edit that forges, moves
  or deletes state is refused (503, ``evault_witness_state_failures_total``), never cosigned over.
- A validly signed checkpoint that is refused as a fork (same size, other root) or for a proof
  that does not verify is kept in ``witness_refusals`` as evidence, logged at error level and
  counted in ``evault_witness_refusals_total`` (the alarm).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fcntl
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import asyncpg
from prometheus_client import Counter

from vault.db import Conn
from vault.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    Forbidden,
    IntegrityError,
    NotFound,
    Unavailable,
)
from vault.keys.files import create_once
from verify.checkpoint import Checkpoint, parse_checkpoint
from verify.cosignature import Cosigner, signature_lines, verify_cosignature
from verify.encoding import parse_decimal
from verify.errors import MalformedError, ProofError, SignatureError, WrongKeyError
from verify.merkle import verify_consistency
from verify.note import Verifier, parse_note, verify_note

__all__ = ["Witness", "WitnessConflict", "load_cosigner", "parse_request"]

MAX_PROOF = 63
LOCK_CLASS = 0x65767774  # "evwt"
TEXT_SIZE = "text/x.tlog.size"

REFUSALS = Counter(
    "evault_witness_refusals",
    "Validly signed checkpoints this witness refused, by reason (fork: same size, other root; "
    "proof: the consistency proof does not verify). Each is evidence against that log.",
    ["origin", "reason"],
)
STATE_FAILURES = Counter(
    "evault_witness_state_failures",
    "Requests refused because the witness state in the database does not verify or is below "
    "witness.state_file (an edit of the database).",
)
COSIGNED = Counter("evault_witness_cosigned", "Checkpoints this witness cosigned.", ["origin"])

log = logging.getLogger("evault.witness")


class WitnessConflict(Conflict):
    """The old size is not the size this witness last cosigned (``size``), or a fork."""

    def __init__(self, size: int, detail: str) -> None:
        super().__init__(detail)
        self.size = size


def load_cosigner(path: Path, name: str) -> Cosigner:
    """The witness key at ``path``, created there once (0600) if absent; ConfigError if it is
    unreadable, malformed or named otherwise than ``name``."""
    create_once(path, Cosigner.generate(name).to_skey() + "\n")
    try:
        cosigner = Cosigner.from_skey(path.read_text(encoding="utf-8").strip())
    except (OSError, MalformedError) as exc:
        raise ConfigError(f"{path}: not a witness key: {exc}") from exc
    if cosigner.name != name:
        raise ConfigError(
            f"{path}: the witness key is named {cosigner.name!r}, not witness.name {name!r}"
        )
    return cosigner


@dataclass(frozen=True)
class Request:
    """A parsed add-checkpoint body."""

    old: int
    proof: tuple[bytes, ...]
    note: str


def parse_request(body: bytes) -> Request:
    """Parse an add-checkpoint body strictly; BadRequest names what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("add-checkpoint: the body is not UTF-8") from exc
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise BadRequest("add-checkpoint: no blank line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise BadRequest("add-checkpoint: the first line is not 'old <size>'")
    try:
        old = parse_decimal(lines[0][4:], "old size")
    except MalformedError as exc:
        raise BadRequest(f"add-checkpoint: {exc}") from exc
    if len(lines) - 1 > MAX_PROOF:
        raise BadRequest(f"add-checkpoint: {len(lines) - 1} proof lines, at most {MAX_PROOF}")
    proof = []
    for i, line in enumerate(lines[1:], start=2):
        try:
            h = base64.b64decode(line, validate=True)
        except binascii.Error as exc:
            raise BadRequest(f"add-checkpoint: line {i} is not base64") from exc
        if len(h) != 32:
            raise BadRequest(f"add-checkpoint: line {i} is {len(h)} bytes, want a 32-byte hash")
        proof.append(h)
    return Request(old, tuple(proof), note)


def _read_floor(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def _raise_floor(path: Path, origin: str, size: int, root: bytes) -> None:
    """Record (size, root) for ``origin`` in the state file unless it holds a larger size
    (one writer at a time: flock; replaced atomically; fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _read_floor(path)
        have = state.get(origin)
        if isinstance(have, dict) and int(str(have.get("size", -1))) >= size:
            return
        state[origin] = {"size": size, "root": base64.b64encode(root).decode()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(state, sort_keys=True, indent=1).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(lock)


class Witness:
    """Cosigns checkpoints of the configured logs (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        cosigner: Cosigner,
        logs: Mapping[str, Verifier],
        state_file: Path,
    ) -> None:
        self._pool = pool
        self.cosigner = cosigner
        self._logs = dict(logs)
        self._state_file = state_file

    def _open(self, req: Request) -> tuple[Checkpoint, str]:
        """The checkpoint and its note body, once signed by the trusted key of its origin."""
        try:
            text = parse_note(req.note).text
            cp = parse_checkpoint(text)
        except MalformedError as exc:
            raise BadRequest(f"add-checkpoint: not a signed checkpoint: {exc}") from exc
        verifier = self._logs.get(cp.origin)
        if verifier is None:
            raise NotFound(f"this witness does not witness the log {cp.origin!r}")
        try:
            verify_note(req.note, verifier)
        except (WrongKeyError, SignatureError) as exc:
            raise Forbidden(f"no valid signature by the key of {cp.origin!r}: {exc}") from exc
        if req.old > cp.size:
            raise BadRequest(f"old size {req.old} exceeds the checkpoint's size {cp.size}")
        return cp, text

    async def _state(self, conn: Conn, origin: str) -> tuple[int, bytes]:
        """(size, root) last cosigned for ``origin`` ((0, b"") if never), after checking the
        newest row's own cosignature and the state file (module docstring)."""
        row = await conn.fetchrow(
            "SELECT size, root, body, line FROM witness_cosigned WHERE origin = $1"
            " ORDER BY size DESC LIMIT 1",
            origin,
        )
        size, root = 0, b""
        if row is not None:
            try:
                body = row["body"]
                cp = parse_checkpoint(body)
                (sig,) = signature_lines(body, row["line"])
                verify_cosignature(sig, body, self.cosigner.key)
            except (MalformedError, SignatureError, ValueError) as exc:
                self._state_alarm(origin, f"its newest row does not verify: {exc}")
            if (cp.origin, cp.size, cp.root_hash) != (origin, row["size"], bytes(row["root"])):
                self._state_alarm(origin, "its newest row differs from the checkpoint it cosigned")
            size, root = cp.size, cp.root_hash
        try:
            floor = (await asyncio.to_thread(_read_floor, self._state_file)).get(origin)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"witness state file {self._state_file}: {exc}") from exc
        if isinstance(floor, dict):
            fsize = int(str(floor.get("size", 0)))
            froot = base64.b64decode(str(floor.get("root", "")))
            if fsize > size or (fsize == size and froot != root):
                self._state_alarm(
                    origin, f"the database says size {size}, the state file {fsize}: rolled back"
                )
        return size, root

    def _state_alarm(self, origin: str, why: str) -> NoReturn:
        STATE_FAILURES.inc()
        msg = f"witness state of {origin!r} in the database is not this witness's: {why}"
        log.error("%s; refusing to cosign", msg)
        raise Unavailable(msg)

    async def _refuse(self, cp: Checkpoint, reason: str, body: bytes, detail: str) -> None:
        REFUSALS.labels(cp.origin, reason).inc()
        log.error("witness: refused a checkpoint signed by %s: %s", cp.origin, detail)
        try:
            await self._pool.execute(
                "INSERT INTO witness_refusals (origin, size, reason, request)"
                " VALUES ($1, $2, $3, $4)",
                cp.origin,
                cp.size,
                reason,
                body.decode("utf-8", "replace"),
            )
        except (asyncpg.PostgresError, OSError) as exc:
            log.error("witness: could not keep the refused checkpoint: %r", exc)

    async def add_checkpoint(self, body: bytes) -> str:
        """Check and cosign one add-checkpoint request; returns the cosignature line(s)."""
        req = parse_request(body)
        cp, text = self._open(req)
        refusal: tuple[str, str] | None = None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_CLASS, cp.origin
            )
            size, root = await self._state(conn, cp.origin)
            if req.old != size:
                raise WitnessConflict(
                    size, f"old size {req.old} is not {size}, the size last cosigned"
                )
            if req.old == cp.size and size > 0:
                if cp.root_hash != root:
                    refusal = ("fork", f"size {size} was cosigned with another root: a fork")
            elif req.old == 0:
                if req.proof:
                    raise IntegrityError("the consistency proof from size 0 must be empty")
            else:
                try:
                    verify_consistency(req.old, cp.size, req.proof, root, cp.root_hash)
                except ProofError as exc:
                    refusal = ("proof", f"the consistency proof does not verify: {exc}")
            if refusal is None:
                line = self.cosigner.cosign(text)
                await conn.execute(
                    "INSERT INTO witness_cosigned (origin, size, root, body, line)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (origin, size) DO NOTHING",
                    cp.origin,
                    cp.size,
                    cp.root_hash,
                    text,
                    line,
                )
        if refusal is not None:
            reason, detail = refusal
            await self._refuse(cp, reason, body, detail)
            if reason == "fork":
                raise WitnessConflict(size, detail)
            raise IntegrityError(detail)
        await asyncio.to_thread(_raise_floor, self._state_file, cp.origin, cp.size, cp.root_hash)
        COSIGNED.labels(cp.origin).inc()
        return line
