"""Resolve model references (local paths or hub ids) without hanging on a missing network.

``huggingface_hub`` retries an unreachable host for half a minute; a user without a hub
should learn within seconds how to point revseg at local weights instead. This module
is part of the core: it imports nothing else from revseg but errors.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from revseg.errors import ModelLoadError

_PROBE_TIMEOUT_S = 3.0


def hub_reachable(timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    """Return whether the Hugging Face endpoint accepts a TCP connection within ``timeout_s``."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_model_dir(ref: str, *, what: str, hint: str, allow_patterns: list[str] | None = None) -> Path:
    """Return a local folder for ``ref``: the path itself, a cached snapshot, or a fresh download.

    ``what`` names the model kind in messages ("policy", "tracker"); ``hint`` says how to
    pass local weights instead (for example "--policy hf:/path/to/Qwen2.5-VL-7B-Instruct").
    Raises ModelLoadError, fast, when the reference is neither local nor reachable.
    """
    path = Path(ref).expanduser()
    if path.exists():
        return path
    if ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        raise ModelLoadError(
            f"{what} weights '{ref}' not found: no such local path, and it is not a hub id (owner/name)"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref, local_files_only=True, allow_patterns=allow_patterns))
    except Exception:  # noqa: BLE001 - any cache miss means we must download
        pass
    if not hub_reachable():
        raise ModelLoadError(
            f"{what} '{ref}' is not in the local Hugging Face cache and the hub cannot be reached; "
            f"download it elsewhere and pass a local folder: {hint}"
        )
    try:
        return Path(snapshot_download(ref, allow_patterns=allow_patterns))
    except Exception as exc:
        raise ModelLoadError(f"could not download {what} '{ref}': {type(exc).__name__}: {exc}") from exc
