"""C2SP tlog-proof@v1 offline inclusion proofs (https://c2sp.org/tlog-proof).

Text format, lines separated by ``\\n``::

    c2sp.org/tlog-proof@v1
    extra <base64 opaque data>          (optional line; NOT authenticated)
    index <decimal, no leading zeros>
    <base64 hash>                       (zero or more: RFC 6962 PATH, leaf sibling first)
    <empty line>
    <the signed checkpoint note, verbatim>

Guarantees:

* :func:`parse_tlog_proof` accepts exactly what :func:`format_tlog_proof` produces for a
  well-formed value: canonical decimal and base64, 32-byte hashes, and a checkpoint that is
  a structurally valid signed note with a valid checkpoint body.
* :func:`verify_tlog_proof` returns the checkpoint only if it is signed by the trusted key,
  its origin is that key's name, and ``leaf_hash(entry)`` is leaf ``index`` of its tree.
  ``extra`` is never used in verification.
"""

from __future__ import annotations

from dataclasses import dataclass

from verify.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from verify.encoding import b64decode_strict, b64encode, parse_decimal
from verify.errors import MalformedError
from verify.merkle import HASH_SIZE, leaf_hash, verify_inclusion
from verify.note import Verifier, parse_note

__all__ = [
    "HEADER",
    "TlogProof",
    "format_tlog_proof",
    "parse_tlog_proof",
    "verify_tlog_proof",
    "verify_tlog_proof_hash",
]

HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class TlogProof:
    """An offline proof: leaf index, inclusion proof hashes, signed checkpoint note text, and
    optional unauthenticated extra data."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None


def format_tlog_proof(p: TlogProof) -> str:
    """The tlog-proof text. Raises :class:`ValueError` for a negative index or bad hash."""
    if p.index < 0:
        raise ValueError(f"negative leaf index {p.index}")
    lines = [HEADER]
    if p.extra is not None:
        lines.append(f"extra {b64encode(p.extra)}")
    lines.append(f"index {p.index}")
    for i, h in enumerate(p.proof):
        if len(h) != HASH_SIZE:
            raise ValueError(f"proof hash [{i}] is {len(h)} bytes, want {HASH_SIZE}")
        lines.append(b64encode(h))
    return "".join(line + "\n" for line in lines) + "\n" + p.checkpoint


def parse_tlog_proof(text: str | bytes) -> TlogProof:
    """Parse a tlog-proof strictly; raises :class:`MalformedError` naming the line."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError(f"tlog-proof: not valid UTF-8 at byte {exc.start}") from exc
    pos = 0
    lineno = 0

    def next_line() -> str:
        nonlocal pos, lineno
        end = text.find("\n", pos)
        if end < 0:
            raise MalformedError(f"tlog-proof: line {lineno + 1} is missing or unterminated")
        line = text[pos:end]
        pos = end + 1
        lineno += 1
        return line

    if next_line() != HEADER:
        raise MalformedError(f"tlog-proof: line 1 is not {HEADER!r}")
    line = next_line()
    extra: bytes | None = None
    if line.startswith("extra "):
        extra = b64decode_strict(line.removeprefix("extra "), f"tlog-proof line {lineno} extra")
        line = next_line()
    if not line.startswith("index "):
        raise MalformedError(f"tlog-proof: line {lineno} is not 'index <n>'")
    index = parse_decimal(line.removeprefix("index "), f"tlog-proof line {lineno} index")
    hashes: list[bytes] = []
    while (line := next_line()) != "":
        h = b64decode_strict(line, f"tlog-proof line {lineno} proof hash")
        if len(h) != HASH_SIZE:
            raise MalformedError(
                f"tlog-proof line {lineno}: proof hash is {len(h)} bytes, want {HASH_SIZE}"
            )
        hashes.append(h)
    checkpoint = text[pos:]
    try:
        note = parse_note(checkpoint)
        parse_checkpoint(note.text)
    except MalformedError as exc:
        raise MalformedError(f"tlog-proof: checkpoint from line {lineno + 1}: {exc}") from exc
    return TlogProof(index, tuple(hashes), checkpoint, extra)


def verify_tlog_proof_hash(p: TlogProof, entry_leaf_hash: bytes, verifier: Verifier) -> Checkpoint:
    """Like :func:`verify_tlog_proof`, for an already computed RFC 6962 leaf hash."""
    cp = open_checkpoint(p.checkpoint, verifier)
    verify_inclusion(entry_leaf_hash, p.index, cp.size, p.proof, cp.root_hash)
    return cp


def verify_tlog_proof(p: TlogProof, entry: bytes, verifier: Verifier) -> Checkpoint:
    """Verify that ``entry`` is leaf ``p.index`` of the log checkpointed in ``p``.

    Returns the verified checkpoint. Raises :class:`MalformedError` (bad checkpoint),
    :class:`WrongKeyError` (not signed by ``verifier``, or origin differs from its name),
    :class:`SignatureError` (bad signature) or :class:`ProofError` (inclusion fails, or the
    index is not below the checkpoint size).
    """
    return verify_tlog_proof_hash(p, leaf_hash(entry), verifier)
