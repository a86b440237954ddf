"""The checkpointer with cosigners: the SM2 line is in the note before it is stored anywhere
(checkpoints.log and ledger_checkpoints alike); a cosigner that fails is logged and left out,
and checkpoints go on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.anchors.sm2_fixtures import make_sm2_pki, needs_sm2
from tests.ledger.ledger_fixtures import ORIGIN, TEST_MAC
from vault.anchors.config import AnchorsConfig
from vault.anchors.sm2 import load_cosigner
from vault.config import DatabaseConfig, LedgerConfig
from vault.db import open_database
from vault.ledger import Ledger, make_entry
from verify import sm2
from verify.checkpoint import open_checkpoint
from verify.note import Signer, parse_note

pytestmark = needs_sm2


class BrokenCosigner:
    name = "broken.example/sm2"

    def cosign(self, note: str) -> str:
        raise RuntimeError("the HSM is unplugged")


async def test_cosigned_checkpoint_is_stored_and_logged_with_its_sm2_line(
    pg_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = make_sm2_pki(tmp_path / "pki")
    good = load_cosigner(AnchorsConfig(sm2_key="k"), pki.key, pki.cert, ORIGIN)
    signer = Signer.generate(ORIGIN)
    log_path = tmp_path / "checkpoints.log"
    async with open_database(DatabaseConfig(dsn=pg_dsn), tmp_path) as db:
        ledger = Ledger(
            db.pool,
            signer,
            LedgerConfig(origin=ORIGIN),
            log_path,
            mac=TEST_MAC,
            cosigners=(BrokenCosigner(), good),
        )
        try:
            with caplog.at_level(logging.ERROR, logger="evault.ledger"):
                await ledger.append([make_entry("note", {"text": "a"})], wait_checkpoint=True)
            cp = await ledger.latest()
        finally:
            await ledger.close()
    assert cp is not None and cp.size == 1
    assert "not cosigned by broken.example/sm2: the HSM is unplugged" in caplog.text
    open_checkpoint(cp.note, signer.verifier)
    names = [s.name for s in parse_note(cp.note).signatures]
    assert names == [ORIGIN, f"{ORIGIN}/sm2"]
    line = parse_note(cp.note).signatures[1]
    text = parse_note(cp.note).text.encode()
    assert sm2.verify(good.public, text, *sm2.decode_signature(line.signature))
    logged = [json.loads(x)["note"] for x in log_path.read_text().splitlines()]
    assert logged == [cp.note]
