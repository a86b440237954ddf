"""The ingest layer's configuration sections: docks and media workers."""

from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta

from vault.settings import Section

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


class DockConfig(Section, frozen=True):
    """[[docks]]: one collection station folder."""

    id: Annotated[str, Meta(description="Dock id (letters, digits, '-', '_').")]
    path: Annotated[Path, Meta(description="Folder the station offloads recorders into.")]
    release: Annotated[
        Literal["keep", "move", "delete"],
        Meta(
            description="What happens to a source after its receipt is written: keep, move (to "
            "<path>/.released/), or delete."
        ),
    ] = "keep"
    settle_seconds: Annotated[
        float,
        Meta(
            ge=0.0, description="A file must keep its size and mtime this long before it is taken."
        ),
    ] = 5.0
    rescan_seconds: Annotated[
        float, Meta(ge=0.1, description="Periodic full rescan interval (events can be missed).")
    ] = 30.0
    marker: Annotated[
        str,
        Meta(
            description="Completion marker suffix (e.g. '.done': NAME.done must exist). Empty: "
            "no marker."
        ),
    ] = ""
    extensions: Annotated[
        tuple[str, ...],
        Meta(description="Allowed file extensions (lower case, no dot); others are quarantined."),
    ] = DEFAULT_EXTENSIONS
    max_bytes: Annotated[
        int, Meta(ge=1, description="Largest file accepted; larger ones are quarantined.")
    ] = 64 << 30
    pattern: Annotated[
        str,
        Meta(
            description="File-name regex with named groups device, officer, start "
            "(YYYYMMDDhhmmss), seq, ext."
        ),
    ] = DEFAULT_PATTERN
    timezone: Annotated[str, Meta(description="Time zone of the station's file-name times.")] = (
        "Asia/Shanghai"
    )
    label: Annotated[
        str,
        Meta(
            description="Label given to footage on arrival, e.g. 'internal' or "
            "'secret+personal_privacy'."
        ),
    ] = "internal"


class MediaConfig(Section, frozen=True):
    """[media]: ffmpeg and the media workers."""

    ffmpeg: Annotated[str, Meta(description="ffmpeg executable.")] = "ffmpeg"
    ffprobe: Annotated[str, Meta(description="ffprobe executable.")] = "ffprobe"
    workers: Annotated[
        int, Meta(ge=0, le=64, description="Concurrent media jobs; 0 means one per core.")
    ] = 0
    proxy_height: Annotated[
        int, Meta(ge=144, le=2160, description="Largest proxy height in pixels.")
    ] = 720
    segment_ms: Annotated[
        int, Meta(ge=100, le=60000, description="Fingerprint segment length in milliseconds.")
    ] = 1000
    lease_seconds: Annotated[
        float, Meta(ge=5.0, description="A job's lease; a worker that stops heartbeating loses it.")
    ] = 60.0
    max_attempts: Annotated[
        int, Meta(ge=1, le=100, description="Attempts before a job is failed.")
    ] = 5
    memory_limit_mb: Annotated[
        int, Meta(ge=256, description="Address-space limit of each ffmpeg child, MiB.")
    ] = 2048
