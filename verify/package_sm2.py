"""The check of a checkpoint's SM2 cosignature (``evault-verify --sm2-key FILE``), for packages
and dock receipts.

Guarantees: with the SM2 public key (or certificate) given, the checkpoint note must carry a
signature line whose key ID is that key's under the line's key name (:func:`verify.sm2.key_id`),
and every such line must be a valid SM2 signature (SM3, the user ID given, GM/T 0009's default
otherwise) of the note's text; only then is it reported as cosigned (``checked: true``). Without
a key nothing is checked and nothing is reported (an SM2 line is only identified by its key).

Finding codes: ``sm2-missing`` (no line by the key given: wrong-key), ``sm2-signature`` (a line
by the key does not verify: the checkpoint or the line was edited, or another user ID was used:
tampered), ``sm2-invalid`` (the line cannot be read: malformed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from verify import sm2
from verify.errors import MalformedError
from verify.note import parse_note

__all__ = ["Sm2Key", "check_sm2"]


@dataclass(frozen=True)
class Sm2Key:
    """The SM2 public key a verifier trusts, and the signer's user ID."""

    public: tuple[int, int]
    user_id: bytes = sm2.DEFAULT_USER_ID

    @property
    def fingerprint(self) -> str:
        return sm2.fingerprint(self.public)


class _Findings(Protocol):
    def add(self, code: str, severity: str, where: str, message: str) -> None: ...


def check_sm2(data: bytes | str, key: Sm2Key, where: str, r: _Findings) -> dict[str, Any] | None:
    """Check the SM2 cosignature of the checkpoint note ``data`` (at ``where``): findings go
    to ``r``; returns what the report shows (key name, fingerprint) once it verified."""
    try:
        note = parse_note(data)
    except MalformedError:
        return None  # the checkpoint check has reported it
    mine = [s for s in note.signatures if s.key_id == sm2.key_id(s.name, key.public)]
    if not mine:
        names = ", ".join(s.name for s in note.signatures)
        msg = (
            f"the checkpoint has no SM2 cosignature by the key given (fingerprint "
            f"{key.fingerprint}); signed by: {names}"
        )
        r.add("sm2-missing", "wrong-key", where, msg)
        return None
    text = note.text.encode("utf-8")
    for s in mine:
        try:
            rs = sm2.decode_signature(s.signature)
        except MalformedError as exc:
            r.add("sm2-invalid", "malformed", where, f"SM2 signature by {s.name}: {exc}")
            return None
        if not sm2.verify(key.public, text, *rs, user_id=key.user_id):
            msg = (
                f"the SM2 cosignature by {s.name} does not verify for this checkpoint text "
                f"(user ID {key.user_id.decode('utf-8', 'replace')!r}): the checkpoint was "
                "edited after it was signed, or the signer used another user ID (--sm2-id)"
            )
            r.add("sm2-signature", "tampered", where, msg)
            return None
    return {"key_name": mine[0].name, "fingerprint": key.fingerprint, "checked": True}
