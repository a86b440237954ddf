"""How an input is opened: the one confined form every ffmpeg/ffprobe command uses.

Guarantees: :func:`input_args` / :func:`input_options` open a path only as
``file:<absolute path>`` (so no file name is read as an option or a protocol), with
``-protocol_whitelist file,pipe`` and ``-format_whitelist`` limited to
:data:`ALLOWED_DEMUXERS`, and at most :data:`MAX_STREAMS` streams. The format whitelist is
what stops playlists and scripts (``hls``, ``concat``/``ffconcat``, ``image2`` patterns,
``dash``, ``tee``…) from opening any file but the input: FFmpeg refuses those demuxers right
after probing, before they read a line, whatever the file is called. Forcing ``-f`` to a
demuxer outside the list raises :class:`MediaError` here, before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ingest.media.errors import MediaError

__all__ = [
    "ALLOWED_DEMUXERS",
    "GLOBAL_ARGS",
    "INPUT_PROTOCOLS",
    "MAX_STREAMS",
    "file_url",
    "input_args",
    "input_options",
]

#: Demuxers (FFmpeg short names) that may open an input. Each reads only the one input file.
#: Together they read what recorders and platforms write: MP4/MOV/3GP (body cameras, phones,
#: feature phones), AVI and MPEG-PS (.mpg/.vob, DVRs), MPEG-TS (.ts/.m2ts, GB/T 28181
#: platforms and DVR exports), Matroska, WAV/AMR/AAC/MP3 (voice recorders).
ALLOWED_DEMUXERS: tuple[str, ...] = (
    "mov",  # mov,mp4,m4a,3gp,3g2,mj2 (external data references stay disabled: enable_drefs=0)
    "matroska",  # matroska,webm
    "avi",
    "wav",
    "mp3",
    "aac",  # ADTS
    "amr",  # 3GPP AMR-NB/WB with its "#!AMR" header
    "flac",
    "ogg",
    "mpegts",  # .ts and .m2ts/.mts (192-byte packets)
    "mpeg",  # MPEG-PS: .mpg/.mpeg, DVD .vob (one file; no IFO or other title is opened)
    "h264",
    "hevc",
)
#: Options before every ffmpeg output/input list: quiet, never read the terminal.
GLOBAL_ARGS: tuple[str, ...] = ("-nostdin", "-hide_banner", "-nostats", "-loglevel", "error")
INPUT_PROTOCOLS = "file,pipe"
MAX_STREAMS = 64


def file_url(path: str | os.PathLike[str]) -> str:
    """``file:`` URL of an absolute path, so a name like ``-i`` or ``http:x`` stays a file."""
    return "file:" + str(Path(path).absolute())


def input_options(
    *,
    demuxer: str | None = None,
    allowed: Sequence[str] = ALLOWED_DEMUXERS,
    threads: int | None = None,
) -> dict[str, str]:
    """The confining input options as a mapping (for ``ffmpeg.input(url, **options)``).

    ``demuxer`` forces the format (it must be allowed; otherwise :class:`MediaError`).
    """
    if demuxer is not None and demuxer not in allowed:
        raise MediaError(f"format {demuxer} not allowed")
    options = {
        "protocol_whitelist": INPUT_PROTOCOLS,
        "format_whitelist": ",".join(allowed),
        "max_streams": str(MAX_STREAMS),
    }
    if demuxer is not None:
        options["f"] = demuxer
    if threads is not None:
        options["threads"] = str(threads)
    return options


def input_args(
    path: str | os.PathLike[str],
    *,
    demuxer: str | None = None,
    allowed: Sequence[str] = ALLOWED_DEMUXERS,
    threads: int | None = None,
    before: Sequence[str] = (),
) -> list[str]:
    """Arguments that open ``path`` as the next input, confined as the module describes.

    See :func:`input_options`; ``before`` are further input options (e.g. ``-ss``) placed
    just before ``-i``.
    """
    options = input_options(demuxer=demuxer, allowed=allowed, threads=threads)
    args = [item for key, value in options.items() for item in (f"-{key}", value)]
    return [*args, *before, "-i", file_url(path)]
