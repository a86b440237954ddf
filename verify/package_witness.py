"""The package check of ``cosignatures``: witnesses' ``cosignature/v1`` lines on the package's
checkpoint (:mod:`verify.cosignature`).

Guarantees: with witness keys given (``evault-verify --witness VKEY … --witness-threshold N``)
the verdict is ``ok`` only if at least N *distinct* given witnesses have a valid cosignature of
the body of the package's ``checkpoint`` (lines in ``cosignatures`` and any in the checkpoint
file itself count; lines by keys not given are ignored, as the spec says). A line by a given
witness that does not verify is tampering even when enough others do. Without witness keys,
present cosignatures are listed by name and marked not checked (an ``info`` finding).

Finding codes: ``cosignatures-invalid`` (malformed: the file cannot be read as signature
lines); ``cosignatures-edited`` (the file differs from the manifest's hash),
``cosignature-invalid`` (a given witness's line does not verify for this checkpoint: edited,
or for another checkpoint) (tampered); ``cosignatures-threshold`` (fewer than N given
witnesses cosigned: wrong-key, or tampered when a given witness's line did not verify);
``cosignatures-unchecked`` (info).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from verify.cosignature import CosignerKey, check_cosignatures, signature_lines
from verify.errors import MalformedError
from verify.note import NoteSignature, parse_note
from verify.package import MANIFEST_PATH, Manifest
from verify.report import PackageReport

__all__ = ["check_witnesses"]

T, M, W = "tampered", "malformed", "wrong-key"


def _iso(t: int) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return str(t)


def check_witnesses(
    read: Callable[[str], bytes | None],
    m: Manifest,
    checkpoint: str,
    keys: Sequence[CosignerKey] | None,
    threshold: int,
    r: PackageReport,
) -> None:
    """Check the package's cosignatures into ``r``; ``checkpoint`` is the checkpoint file's
    text, ``keys`` the trusted witnesses (None: not checked), ``threshold`` how many must have
    cosigned."""
    try:
        note = parse_note(checkpoint)
    except MalformedError:
        return  # the checkpoint check reports it
    sigs: list[NoteSignature] = list(note.signatures)
    if m.cosignatures is not None:
        name, want_sha, want_size = m.cosignatures
        data = read(name)
        if data is not None:
            got = hashlib.sha256(data).hexdigest()
            if (got, len(data)) != (want_sha, want_size):
                msg = (
                    f"{name} has SHA-256 {got} ({len(data)} bytes); the manifest lists "
                    f"{want_sha} ({want_size} bytes): altered after export"
                )
                r.add("cosignatures-edited", T, name, msg)
            try:
                sigs.extend(signature_lines(note.text, data.decode("utf-8")))
            except (MalformedError, UnicodeDecodeError) as exc:
                msg = f"the cosignatures cannot be read as note signature lines: {exc}"
                r.add("cosignatures-invalid", M, name, msg)
    where = m.cosignatures[0] if m.cosignatures is not None else MANIFEST_PATH
    if keys is None:
        others = sorted({s.name for s in sigs} - {m.origin})
        if others:
            r.witnesses = [{"name": n, "checked": False} for n in others]
            msg = (
                f"signature lines by {', '.join(others)} are present but were not checked: "
                "give the witnesses' keys with --witness"
            )
            r.add("cosignatures-unchecked", "info", where, msg)
        return
    found = check_cosignatures(note.text, sigs, keys)
    for problem in found.invalid:
        r.add("cosignature-invalid", T, where, f"{problem}: edited or not for this checkpoint")
    r.witnesses = [
        {"name": label, "time": _iso(t), "checked": True}
        for label, t in sorted(found.valid.items())
    ]
    if len(found.valid) < threshold:
        got = ", ".join(sorted(found.valid)) or "none"
        msg = (
            f"{len(found.valid)} of the {len(keys)} witnesses given cosigned the checkpoint "
            f"({got}); --witness-threshold requires {threshold}"
        )
        # short because a given witness's line was edited: that is the verdict, not a wrong key
        r.add("cosignatures-threshold", T if found.invalid else W, where, msg)
