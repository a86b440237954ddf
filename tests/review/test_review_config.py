"""[review], [publicity], [events] and [[subscribers]]: defaults, strict checks, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import default_toml, load
from vault.config_events import DEFAULT_RECORDING_REQUIRED, SubscriberConfig, subscriber_secret
from vault.errors import ConfigError

SUB = '[[subscribers]]\nid = "legal"\nurl = "https://review.example/hook"\nsecret = "k"\n'


def write(tmp: Path, text: str) -> Path:
    p = tmp / "evault.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = load(str(write(tmp_path, default_toml())), environ={})
    assert cfg.review.recording_required == DEFAULT_RECORDING_REQUIRED
    assert not cfg.publicity.public_statistics and cfg.subscribers == ()
    text = '[review]\nrecording_required = ["听证"]\n[publicity]\npublic_statistics = true\n' + SUB
    cfg = load(str(write(tmp_path, text)), environ={"EVAULT_EVENTS_MAX_ATTEMPTS": "7"})
    assert cfg.review.recording_required == ("听证",) and cfg.publicity.public_statistics
    assert cfg.events.max_attempts == 7
    assert cfg.subscribers[0].events == (
        "evidence.acquired", "evidence.linked", "media.ready", "integrity.failure",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (SUB, "appears twice"),
        ('[[subscribers]]\nid = "x"\nurl = "ftp://h/"\nsecret = "k"\n', "http:// or https://"),
        (
            '[[subscribers]]\nid = "x"\nurl = "https://h/"\nsecret = "k"\nevents = ["case.closed"]\n',
            "unknown event types",
        ),
        (
            '[[subscribers]]\nid = "x"\nurl = "https://h/"\n',
            "exactly one of secret and secret_file",
        ),
        (
            '[[subscribers]]\nid = "x"\nurl = "https://h/"\nsecret = "k"\nsecret_file = "f"\n',
            "exactly one",
        ),
        ('[[subscribers]]\nid = "a b"\nurl = "https://h/"\nsecret = "k"\n', "letters, digits"),
        ("[events]\nmax_attempts = 0\n", "below the minimum"),
    ],
)
def test_what_the_dispatcher_cannot_honour_is_refused(
    tmp_path: Path, extra: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load(str(write(tmp_path, SUB + extra)), environ={})


def test_secret_file_is_read_relative_to_the_data_folder(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "k").write_bytes(b"s3cret\n")
    sub = SubscriberConfig(id="a", url="https://h/", secret_file="keys/k")
    assert subscriber_secret(sub, tmp_path) == b"s3cret"
    for name, content in [("empty", b"\n"), ("absent", None)]:
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError):
            subscriber_secret(
                SubscriberConfig(id="a", url="https://h/", secret_file=name), tmp_path
            )
