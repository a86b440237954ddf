"""A real RFC 3161 time-stamping authority on loopback: ``openssl ts -reply`` behind HTTP.

:func:`make_pki` writes a test CA and a TSA certificate (extendedKeyUsage critical
timeStamping) made with ``cryptography``; :class:`OpenSslTsa` serves
``application/timestamp-query`` POSTs by running OpenSSL's own TSA on each request, from a
``http.server`` thread. ``tsa.down = True`` makes it answer 503 (a TSA that is down) until set
back, ``tsa.hang = seconds`` makes it wait that long before answering (a TSA that hangs);
``tsa.requests`` counts what it answered.
"""

from __future__ import annotations

import datetime as dt
import http.server
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
NOW = dt.datetime.now(dt.UTC)

CONFIG = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
serial = {dir}/serial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
other_policies = 1.3.6.1.4.1.99999.2
digests = sha256, sha384, sha512
accuracy = secs:1, millisecs:500
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = {ess}
"""


@dataclass(frozen=True)
class Pki:
    """Files of one test PKI: the CA certificate (PEM) and the TSA's certificate and key."""

    ca_file: Path
    tsa_cert: Path
    tsa_key: Path
    ca: x509.Certificate
    cert: x509.Certificate


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Bureau"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_pki(
    folder: Path,
    *,
    name: str = "Test TSA",
    expired: bool = False,
    rsa_key: bool = True,
    eku: bool = True,
) -> Pki:
    """A CA and a TSA certificate under it in ``folder``. ``expired``: the TSA certificate
    ended yesterday; ``eku=False``: no time-stamping extendedKeyUsage."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{name} Root CA")
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(65537, 2048)
        if rsa_key
        else ec.generate_private_key(ec.SECP256R1())
    )
    end = NOW - dt.timedelta(days=1) if expired else NOW + dt.timedelta(days=365)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=10))
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "tsa.pem", folder / "tsa.key"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Pki(ca_file, cert_file, key_file, ca, cert)


class OpenSslTsa:
    """OpenSSL's TSA (``openssl ts -reply``) on a loopback HTTP port."""

    def __init__(self, pki: Pki, *, ess: str = "sha256") -> None:
        assert OPENSSL is not None
        self.pki = pki
        self.down = False
        self.hang = 0.0
        self.requests = 0
        self.refused = 0
        self.dir = Path(tempfile.mkdtemp(prefix="evault-tsa-"))
        (self.dir / "serial").write_text("01\n")
        self.config = self.dir / "tsa.cnf"
        self.config.write_text(CONFIG.format(dir=self.dir, ess=ess))
        self._lock = threading.Lock()
        tsa = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if tsa.hang:
                    time.sleep(tsa.hang)
                if tsa.down or self.headers.get("Content-Type") != "application/timestamp-query":
                    tsa.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                reply = tsa.reply(body)
                tsa.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsa"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reply(self, query: bytes) -> bytes:
        """OpenSSL's TimeStampResp for the DER TimeStampReq ``query``."""
        with self._lock:  # one serial file
            q = self.dir / "q.tsq"
            q.write_bytes(query)
            out = subprocess.run(
                [
                    str(OPENSSL), "ts", "-reply", "-config", str(self.config),
                    "-queryfile", str(q), "-signer", str(self.pki.tsa_cert),
                    "-inkey", str(self.pki.tsa_key),
                ],
                capture_output=True,
                check=True,
            )  # fmt: skip
        return out.stdout

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)


def openssl_query(data: bytes, folder: Path) -> bytes:
    """``openssl ts -query -sha256 -cert`` of ``data``: OpenSSL's own request (DER)."""
    src = folder / "data.bin"
    src.write_bytes(data)
    out = subprocess.run(
        [str(OPENSSL), "ts", "-query", "-data", str(src), "-sha256", "-cert"],
        capture_output=True,
        check=True,
    )
    return out.stdout
