"""[[anchors.witnesses]] and [witness]: off by default; keys of the wrong type, bad URLs and
duplicates are refused at load, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import default_toml, load
from vault.errors import ConfigError
from verify.cosignature import Cosigner
from verify.note import Signer

WITNESS = Cosigner.generate("w.example/w1").key.vkey
LOG = Signer.generate("b.example/ledger").vkey


def write(tmp: Path, text: str) -> Path:
    p = tmp / "evault.toml"
    p.write_text(text)
    return p


def peer(url: str = "http://127.0.0.1:9/", vkey: str = WITNESS, name: str = "w1") -> str:
    return f'[[anchors.witnesses]]\nname = "{name}"\nurl = "{url}"\nvkey = "{vkey}"\n'


def test_off_by_default(tmp_path: Path) -> None:
    cfg = load(str(write(tmp_path, "")), environ={})
    assert cfg.anchors.witnesses == () and not cfg.witness.enabled and cfg.witness.logs == ()
    assert cfg.anchors.witness_export == (0, 5.0)


def test_both_directions_load(tmp_path: Path) -> None:
    text = (
        peer()
        + f'[witness]\nenabled = true\n[[witness.logs]]\norigin = "b.example/ledger"\nvkey = "{LOG}"\n'
    )
    cfg = load(str(write(tmp_path, text)), environ={})
    assert cfg.anchors.witnesses[0].key.vkey == WITNESS
    assert cfg.witness.enabled and cfg.witness.logs[0].verifier.vkey == LOG


def test_the_default_file_takes_appended_witness_tables(tmp_path: Path) -> None:
    cfg = load(str(write(tmp_path, default_toml() + "\n" + peer())), environ={})
    assert len(cfg.anchors.witnesses) == 1


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (peer(vkey=LOG), r"anchors\.witnesses\[0\]\.vkey: .*not a cosignature/v1 key"),
        (peer(url="ftp://w.example"), r"anchors\.witnesses\[0\]\.url"),
        (peer() + peer(), r"anchors\.witnesses\[1\]\.name: 'w1' is empty or appears twice"),
        (
            f'[[witness.logs]]\norigin = "b.example/ledger"\nvkey = "{WITNESS}"\n',
            r"witness\.logs\[0\]\.vkey",
        ),
        (
            f'[[witness.logs]]\norigin = "other.example/ledger"\nvkey = "{LOG}"\n',
            r"named 'b.example/ledger', not the origin",
        ),
    ],
    ids=["log-key-as-witness-key", "not-http", "duplicate", "witness-key-as-log-key", "origin"],
)
def test_refused_at_load(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load(str(write(tmp_path, text)), environ={})
