"""The decoding libraries behind the frame readers, loaded once per process.

A backend whose library cannot load (not installed, or installed without the system
libraries it links: torchcodec without FFmpeg's shared libraries, a decord wheel whose
``.so`` fails to load) declines with :class:`BackendUnavailable` saying why and what to
install, and ``auto`` moves on to the next backend. The outcome is remembered, success
or failure: a library that failed to load once fails the same way for the rest of the
process without paying the load again (a failed torchcodec load costs about 0.6 s a
call), and a library that loaded is not imported again on every ``open_video``.

:func:`forget_libraries` drops what was remembered, for tests that fake a missing library.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from revseg.errors import VideoError
from revseg.tools.readers.base import one_line

logger = logging.getLogger(__name__)

FFMPEG_APT_PACKAGES = "libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8"
"""Debian 12's FFmpeg 5.1 shared libraries, which torchcodec loads at run time (`.ci/run` installs them)."""


class BackendUnavailable(VideoError):
    """A frame-reader backend cannot serve this file (not installed, or known to misread it).

    ``open_video(..., backend="auto")`` catches it and tries the next backend; asked for by
    name, it reaches the caller as a VideoError naming the backend and the reason.
    """


class BrokenLibrary(BackendUnavailable):
    """The backend's library is installed but cannot load (a system library is missing): logged once."""


def _load_decord() -> Any:
    try:
        import decord
    except ImportError as exc:
        raise BackendUnavailable("decord is not installed (pip install decord); use backend='pyav'") from exc
    except Exception as exc:  # an installed wheel whose shared library fails to load raises OSError
        raise BrokenLibrary(
            f"decord is installed but cannot load ({type(exc).__name__}: {one_line(exc)}); use backend='pyav'"
        ) from exc
    return decord


def _load_torchcodec() -> Any:
    """torchcodec's ``VideoDecoder``, once FFmpeg's shared libraries are known to load.

    torchcodec 0.17 no longer fails at import when FFmpeg is missing: its import still
    succeeds (for the image decoders, which need no FFmpeg) and every video decoder then
    fails when it is created. Its ``ffmpeg_major_version`` is None in that case, so the
    library is checked here, once, rather than at each file's first decoder. Older
    releases loaded FFmpeg at import and fail there.
    """
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder
    except ImportError as exc:
        raise BackendUnavailable("torchcodec is not installed (pip install torchcodec); use backend='pyav'") from exc
    except Exception as exc:  # older torchcodec raises RuntimeError/OSError at import without FFmpeg
        raise BrokenLibrary(_no_ffmpeg(one_line(exc))) from exc
    if getattr(torchcodec, "ffmpeg_major_version", 0) is None:
        raise BrokenLibrary(_no_ffmpeg("no FFmpeg 4-9 shared libraries found"))
    return VideoDecoder


def _no_ffmpeg(reason: str) -> str:
    return (
        f"torchcodec is installed but cannot load FFmpeg's shared libraries ({reason}); install them"
        f" (Debian 12: apt-get install {FFMPEG_APT_PACKAGES}) or use backend='pyav'"
    )


def _load_av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a hard dependency
        raise BackendUnavailable("PyAV is not installed: pip install av") from exc
    return av


LIBRARY_LOADERS: dict[str, Callable[[], Any]] = {
    "decord": _load_decord,
    "torchcodec": _load_torchcodec,
    "pyav": _load_av,
}
"""Backend name -> loader returning what the backend needs, or raising BackendUnavailable."""

_LOADED: dict[str, Any] = {}
_DECLINED: dict[str, str] = {}
_LOCK = threading.Lock()


def library(name: str) -> Any:
    """What backend ``name`` needs from its library; BackendUnavailable (remembered) when it cannot load."""
    with _LOCK:
        if name in _LOADED:
            return _LOADED[name]
        if name in _DECLINED:
            raise BackendUnavailable(_DECLINED[name])
        try:
            loaded = LIBRARY_LOADERS[name]()
        except BackendUnavailable as exc:
            _DECLINED[name] = str(exc)
            if isinstance(exc, BrokenLibrary):  # once per process (the decline is remembered); INFO, not a
                # warning: the fallback reads the same frames, and a warning on every CLI run would be noise
                logger.info("%s", exc)
            raise
        _LOADED[name] = loaded
        return loaded


def library_missing(name: str) -> str | None:
    """Why backend ``name``'s library cannot load in this process, or None when it loads."""
    try:
        library(name)
    except BackendUnavailable as exc:
        return str(exc)
    return None


def forget_libraries() -> None:
    """Forget every remembered load and decline, so the next call loads again (for tests)."""
    with _LOCK:
        _LOADED.clear()
        _DECLINED.clear()
