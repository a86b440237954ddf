"""The package check of ``timestamp.tsr``: the RFC 3161 time-stamp of the package's checkpoint.

Guarantees: with the TSA's CA certificates (``evault-verify --tsa-ca FILE``) the token must
verify completely (``verify.timestamp.verify_timestamp``) for the body of the package's
``checkpoint``; only then is its time reported as attested (``checked: true``). Without them
a present token is parsed and its claimed time shown, marked not checked (an ``info``
finding, the verdict is unaffected). Asking for the check (``--tsa-ca``) of a package without
a time-stamp is ``malformed`` (the package lacks what the check asked for).

Finding codes: ``timestamp-missing``, ``timestamp-invalid`` (malformed); ``timestamp-edited``
(the file differs from the manifest's hash), ``timestamp-imprint`` (a token for another
checkpoint), ``timestamp-signature`` (the token was altered) (tampered);
``timestamp-untrusted`` (signer not a valid time-stamping certificate under the CA given:
foreign, expired, wrong key usage) (wrong-key); ``timestamp-unchecked`` (info).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography import x509

from verify.errors import MalformedError
from verify.package import MANIFEST_PATH, Manifest
from verify.report import PackageReport
from verify.timestamp import (
    ImprintMismatch,
    TimeStamp,
    TimestampSignatureError,
    UntrustedTsa,
    parse_timestamp,
    tsa_name,
    verify_timestamp,
)

__all__ = ["check_timestamp"]

T, M, W = "tampered", "malformed", "wrong-key"


def _describe(ts: TimeStamp, cas: tuple[x509.Certificate, ...], checked: bool) -> dict[str, object]:
    return {
        "time": ts.gen_time.isoformat().replace("+00:00", "Z"),
        "tsa": tsa_name(ts, cas),
        "serial": ts.serial,
        "policy": ts.policy,
        "accuracy": ts.accuracy,
        "checked": checked,
    }


def check_timestamp(
    read: Callable[[str], bytes | None],
    m: Manifest,
    checkpoint: str,
    cas: tuple[x509.Certificate, ...] | None,
    r: PackageReport,
) -> None:
    """Check the package's time-stamp into ``r``; ``read(name)`` reads a member (recording a
    finding itself when it is missing), ``checkpoint`` is the package's checkpoint text."""
    if m.timestamp is None:
        if cas is not None:
            msg = "--tsa-ca was given but the package carries no time-stamp (timestamp.tsr)"
            r.add("timestamp-missing", M, MANIFEST_PATH, msg)
        return
    name, want_sha, want_size = m.timestamp
    if (data := read(name)) is None:
        return
    got = hashlib.sha256(data).hexdigest()
    if (got, len(data)) != (want_sha, want_size):
        msg = (
            f"{name} has SHA-256 {got} ({len(data)} bytes); the manifest lists {want_sha} "
            f"({want_size} bytes): altered after export"
        )
        r.add("timestamp-edited", T, name, msg)
    try:
        if cas is None:
            ts = parse_timestamp(data)
            r.timestamp = _describe(ts, (), checked=False)
            msg = (
                f"a time-stamp is present (it claims {r.timestamp['time']} by "
                f"{r.timestamp['tsa']}) but was not checked: give the TSA's CA with --tsa-ca"
            )
            r.add("timestamp-unchecked", "info", name, msg)
            return
        ts = verify_timestamp(data, checkpoint, cas)
        r.timestamp = _describe(ts, cas, checked=True)
    except ImprintMismatch as exc:
        r.add("timestamp-imprint", T, name, f"the time-stamp is for another checkpoint: {exc}")
    except TimestampSignatureError as exc:
        r.add("timestamp-signature", T, name, f"the time-stamp was altered: {exc}")
    except UntrustedTsa as exc:
        r.add("timestamp-untrusted", W, name, f"the time-stamp is not by the TSA given: {exc}")
    except MalformedError as exc:
        r.add("timestamp-invalid", M, name, f"the time-stamp cannot be read: {exc}")
