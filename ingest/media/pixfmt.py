"""Size in bytes of one raw video frame, as ffmpeg's rawvideo encoder writes it.

Guarantee: for every pixel format in :data:`PLANES`, :func:`frame_size` equals FFmpeg's
``av_image_get_buffer_size(fmt, width, height, 1)`` (planes packed, no row padding; chroma
dimensions rounded up). For any other format it returns ``None`` and the caller must measure.
"""

from __future__ import annotations

__all__ = ["PLANES", "frame_size"]

# Per plane: (bytes per step, log2 horizontal subsampling, log2 vertical subsampling).
_Y8 = (1, 0, 0)
_Y16 = (2, 0, 0)


def _yuv(step: int, sw: int, sh: int, alpha: bool = False) -> tuple[tuple[int, int, int], ...]:
    planes = ((step, 0, 0), (step, sw, sh), (step, sw, sh))
    return (*planes, (step, 0, 0)) if alpha else planes


PLANES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "gray": (_Y8,),
    "gray10le": (_Y16,),
    "gray12le": (_Y16,),
    "gray16le": (_Y16,),
    "nv12": (_Y8, (2, 1, 1)),
    "nv21": (_Y8, (2, 1, 1)),
    "nv16": (_Y8, (2, 1, 0)),
    "p010le": (_Y16, (4, 1, 1)),
    "p016le": (_Y16, (4, 1, 1)),
    "yuyv422": ((4, 1, 0),),
    "uyvy422": ((4, 1, 0),),
    "yvyu422": ((4, 1, 0),),
    "rgb24": ((3, 0, 0),),
    "bgr24": ((3, 0, 0),),
    "rgb48le": ((6, 0, 0),),
    "gbrp": _yuv(1, 0, 0),
    "gbrp10le": _yuv(2, 0, 0),
    "gbrp12le": _yuv(2, 0, 0),
}
for _name in ("rgba", "bgra", "argb", "abgr", "rgb0", "bgr0", "0rgb", "0bgr"):
    PLANES[_name] = ((4, 0, 0),)
for _prefix, _sw, _sh in (
    ("420", 1, 1),
    ("422", 1, 0),
    ("444", 0, 0),
    ("440", 0, 1),
    ("411", 2, 0),
    ("410", 2, 2),
):
    PLANES[f"yuv{_prefix}p"] = _yuv(1, _sw, _sh)
    PLANES[f"yuvj{_prefix}p"] = _yuv(1, _sw, _sh)
    PLANES[f"yuva{_prefix}p"] = _yuv(1, _sw, _sh, alpha=True)
    for _depth in (9, 10, 12, 14, 16):
        PLANES[f"yuv{_prefix}p{_depth}le"] = _yuv(2, _sw, _sh)


def _ceil_shift(value: int, shift: int) -> int:
    return -((-value) >> shift)


def frame_size(pix_fmt: str, width: int, height: int) -> int | None:
    """Bytes of one ``width`` x ``height`` frame in ``pix_fmt``; None if the format is unknown."""
    planes = PLANES.get(pix_fmt)
    if planes is None or width <= 0 or height <= 0:
        return None
    return sum(step * _ceil_shift(width, sw) * _ceil_shift(height, sh) for step, sw, sh in planes)
