"""Short, human, path-free reasons for a failed ffmpeg/ffprobe run (pure).

Guarantee: :func:`explain` returns one line of at most about 180 characters that names the
cause when it is known (refused format or protocol, truncation, a limit, a signal) and
for a limit, its value and where it comes from (the memory limit's
:attr:`~ingest.media.sandbox.Limits.memory_origin`, the sandbox's stream limit), and
otherwise quotes ffmpeg's last error line, cut to 160 characters, with every path from the
argv replaced by ``<file>``. Such a line can echo a short string from the input's own headers,
never anything from another file (no other file is opened).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence

from ingest.media.limits import Limits

__all__ = ["explain"]

_FORMAT_REFUSED = re.compile(r"\[([A-Za-z0-9_]+) @ [^\]]*\] Format not on whitelist")
_PROTOCOL_REFUSED = re.compile(r"Protocol '([A-Za-z0-9_+.-]+)' not on whitelist")
# FFmpeg refuses the stream past -max_streams with ENOMEM ("Cannot allocate memory"): not a
# memory limit at all, so it is recognised before the memory patterns.
_TOO_MANY_STREAMS = re.compile(r"exceeds max_streams parameter \((\d{1,9})\)")
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("moov atom not found", "truncated (no moov atom)"),
    ("cannot allocate memory", "memory limit exceeded"),
    ("out of memory", "memory limit exceeded"),
    ("failed to map segment from shared object", "memory limit exceeded"),  # too low to start
    ("file too large", "output larger than the file-size limit"),
    ("invalid data found when processing input", "not a media file (invalid data)"),
    ("end of file", "truncated (unexpected end of file)"),
)


def explain(
    stderr: str, returncode: int, *, timed_out: bool, limits: Limits, argv: Sequence[str] = ()
) -> str:
    """A short human reason for a failed run, without paths (pure; used by :func:`run`)."""
    if timed_out:
        return f"timed out after {limits.wall_s:g} s"
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU:
            return f"CPU time limit exceeded ({limits.cpu_seconds()} s)"
        if sig == signal.SIGXFSZ:
            return "output larger than the file-size limit"
        return f"ffmpeg killed by {signal.Signals(sig).name}" if sig in _SIGNALS else "killed"
    if m := _FORMAT_REFUSED.search(stderr):
        return f"format {m.group(1)} not allowed"
    if m := _PROTOCOL_REFUSED.search(stderr):
        return f"refers to another resource ({m.group(1)} protocol not allowed)"
    if m := _TOO_MANY_STREAMS.search(stderr):
        return f"too many streams (more than {m.group(1)}: the media sandbox's stream limit)"
    low = stderr.lower()
    for needle, reason in _PATTERNS:
        if needle in low:
            if reason == "memory limit exceeded":
                return f"{reason} ({limits.memory_bytes >> 20} MiB: {limits.memory_origin})"
            return reason
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    last = _scrub(lines[-1], argv) if lines else f"exit status {returncode}"
    return f"ffmpeg failed: {last[:160]}"


_SIGNALS = {int(s) for s in signal.Signals}
_HEX_ADDR = re.compile(r" @ 0x[0-9a-f]+")


def _scrub(line: str, argv: Sequence[str]) -> str:
    """Remove paths (and pointer values) the line may repeat from our argv."""
    for arg in sorted(argv, key=len, reverse=True):
        if "/" in arg and len(arg) > 1:
            line = line.replace(arg, "<file>")
            if arg.startswith("file:"):
                line = line.replace(arg[5:], "<file>")
    return _HEX_ADDR.sub("", line)
