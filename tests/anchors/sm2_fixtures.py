"""SM2 keys and certificates made by OpenSSL (``openssl genpkey -algorithm SM2``), as a bureau's
CA would hand them out: a CA, and a cosigning key with its certificate issued by that CA.

``needs_sm2`` skips where OpenSSL cannot make SM2 keys or GmSSL (``gmssl-pyx``, the service's
signer) is not installed.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

OPENSSL = shutil.which("openssl")
DEFAULT_ID = "1234567812345678"


def _openssl_sm2() -> bool:
    if OPENSSL is None:
        return False
    out = subprocess.run([OPENSSL, "genpkey", "-algorithm", "SM2"], capture_output=True)
    return out.returncode == 0


HAVE_OPENSSL_SM2 = _openssl_sm2()
HAVE_GMSSL = importlib.util.find_spec("gmssl_pyx") is not None
needs_openssl_sm2 = pytest.mark.skipif(not HAVE_OPENSSL_SM2, reason="openssl without SM2")
needs_sm2 = pytest.mark.skipif(
    not (HAVE_OPENSSL_SM2 and HAVE_GMSSL), reason="openssl without SM2 or gmssl-pyx missing"
)


def openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    out = subprocess.run(
        [str(OPENSSL), *map(str, args)], input=stdin, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


@dataclass(frozen=True)
class Sm2Pki:
    """A CA (cert), and a cosigning key with its certificate and its public key (PEM files)."""

    ca_cert: Path
    key: Path
    cert: Path
    pub: Path


def make_sm2_key(d: Path, name: str, ca: tuple[Path, Path] | None = None) -> Sm2Pki:
    """An SM2 key ``name.key`` and its certificate, issued by ``ca`` (cert, key) or self-signed."""
    d.mkdir(parents=True, exist_ok=True)
    key, cert, pub = d / f"{name}.key", d / f"{name}.pem", d / f"{name}.pub"
    openssl("genpkey", "-algorithm", "SM2", "-out", key)
    key.chmod(0o600)
    openssl("pkey", "-in", key, "-pubout", "-out", pub)
    sig = ("-sm3", "-sigopt", f"distid:{DEFAULT_ID}")
    subj = f"/C=CN/O=Test Public Security Bureau/CN={name}"
    if ca is None:
        openssl(
            "req", "-new", "-x509", "-key", key, *sig, "-subj", subj, "-days", "2", "-out", cert
        )
        return Sm2Pki(cert, key, cert, pub)
    csr = d / f"{name}.csr"
    openssl("req", "-new", "-key", key, *sig, "-subj", subj, "-out", csr)
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        *sig, "-vfyopt", f"distid:{DEFAULT_ID}", "-days", "2", "-out", cert,
    )  # fmt: skip
    return Sm2Pki(ca[0], key, cert, pub)


def make_sm2_pki(d: Path) -> Sm2Pki:
    """A bureau CA and a cosigning key certified by it."""
    ca = make_sm2_key(d, "bureau-ca")
    return make_sm2_key(d, "checkpoint-cosigner", (ca.cert, ca.key))
