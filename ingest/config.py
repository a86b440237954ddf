"""The ingest layer's configuration sections: docks and media workers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vault.settings import setting

DEFAULT_PATTERN = (
    r"^(?P<device>[A-Za-z0-9-]+)_(?P<officer>[A-Za-z0-9-]+)_(?P<start>\d{14})"
    r"(?:_(?P<seq>\d+))?\.(?P<ext>[A-Za-z0-9]+)$"
)
#: What recorders and platforms write (each read by a demuxer the media sandbox allows):
#: MP4/MOV/3GP, AVI, Matroska, MPEG-TS (.ts, .m2ts/.mts), MPEG-PS (.mpg/.mpeg, .vob), and the
#: audio of voice recorders: WAV, AMR, AAC, M4A, MP3. Pictures (.jpg) are kept as evidence too.
DEFAULT_EXTENSIONS = (
    *("mp4", "mov", "3gp", "3g2", "avi", "mkv"),
    *("ts", "m2ts", "mts", "mpg", "mpeg", "vob"),
    *("wav", "amr", "aac", "m4a", "mp3"),
    "jpg",
)


@dataclass(frozen=True)
class DockConfig:
    """[[docks]]: one collection station folder."""

    id: str = setting(doc="Dock id (letters, digits, '-', '_').")
    path: Path = setting(doc="Folder the station offloads recorders into.")
    release: str = setting(
        "keep",
        "What happens to a source after its receipt is written: keep, move (to "
        "<path>/.released/), or delete.",
        choices=("keep", "move", "delete"),
    )
    settle_seconds: float = setting(
        5.0, "A file must keep its size and mtime this long before it is taken.", minimum=0.0
    )
    rescan_seconds: float = setting(
        30.0, "Periodic full rescan interval (events can be missed).", minimum=0.1
    )
    marker: str = setting(
        "",
        "Completion marker suffix (e.g. '.done': NAME.done must exist). Empty: no marker.",
    )
    extensions: tuple[str, ...] = setting(
        factory=lambda: DEFAULT_EXTENSIONS,
        doc="Allowed file extensions (lower case, no dot); others are quarantined.",
    )
    max_bytes: int = setting(
        64 << 30, "Largest file accepted; larger ones are quarantined.", minimum=1
    )
    pattern: str = setting(
        DEFAULT_PATTERN,
        "File-name regex with named groups device, officer, start (YYYYMMDDhhmmss), seq, ext.",
    )
    timezone: str = setting("Asia/Shanghai", "Time zone of the station's file-name times.")
    label: str = setting(
        "internal",
        "Label given to footage on arrival, e.g. 'internal' or 'secret+personal_privacy'.",
    )


@dataclass(frozen=True)
class MediaConfig:
    """[media]: ffmpeg and the media workers."""

    ffmpeg: str = setting("ffmpeg", "ffmpeg executable.")
    ffprobe: str = setting("ffprobe", "ffprobe executable.")
    workers: int = setting(0, "Concurrent media jobs; 0 means one per core.", minimum=0, maximum=64)
    proxy_height: int = setting(720, "Largest proxy height in pixels.", minimum=144, maximum=2160)
    segment_ms: int = setting(
        1000, "Fingerprint segment length in milliseconds.", minimum=100, maximum=60000
    )
    lease_seconds: float = setting(
        60.0, "A job's lease; a worker that stops heartbeating loses it.", minimum=5.0
    )
    max_attempts: int = setting(5, "Attempts before a job is failed.", minimum=1, maximum=100)
    memory_limit_mb: int = setting(
        2048, "Address-space limit of each ffmpeg child, MiB.", minimum=256
    )
