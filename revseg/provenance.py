"""What an exact rebuild of a run's model inputs depends on beyond the record's own fields.

A trajectory names its video by path and its model by spec; training later rebuilds
every turn's inputs from those names (``revseg.rl.sequences``). Whether that rebuild
sees what the behaviour policy saw depends on four things the names do not pin down:
the video file's bytes, the model's weights, the chat template that rendered the
prompt, and how images were encoded on the wire. This module computes the small
fingerprints the record keeps for each (DESIGN.md 2.2), the same way at record time
and at rebuild time, so a comparison means something. It is part of the core: it
imports nothing else from revseg.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

_SNAPSHOT = re.compile(r"^[0-9a-f]{40}$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_EDGE = 2**20  # bytes read from each end of a weights file for a local fingerprint


def video_stat(path: str | Path) -> tuple[int, int] | None:
    """(bytes, modification time in ns) of a video file, or of a folder of frames; None when unreadable.

    A folder counts the bytes of every file in it and the latest modification time among
    them and the folder itself, so rewriting one frame in place, adding or removing one
    all change it (a folder's own size and time do not see an in-place rewrite).
    """
    target = Path(path).expanduser()
    try:
        stat = target.stat()
        if not target.is_dir():
            return stat.st_size, stat.st_mtime_ns
        total, latest = 0, stat.st_mtime_ns
        with os.scandir(target) as entries:
            for entry in entries:
                if entry.is_file():
                    info = entry.stat()
                    total += info.st_size
                    latest = max(latest, info.st_mtime_ns)
    except OSError:
        return None
    return total, latest


def model_revision(folder: str | Path) -> str | None:
    """Which weights a model folder holds: ``hub:<commit>`` for a hub snapshot, else ``local:<digest>``.

    A folder inside the Hugging Face cache (``.../snapshots/<commit>``) is named by its
    commit. A local folder gets a SHA-256 over its weights index (when sharded) and, per
    weights file, its name, size and first and last MiB: cheap for a 7B checkpoint, and
    any training step changes it. None when the folder holds no weights file.
    """
    root = Path(folder).expanduser().resolve()
    if _SNAPSHOT.match(root.name) and root.parent.name == "snapshots":
        return f"hub:{root.name}"
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not files:
        return None
    digest = hashlib.sha256()
    for index in sorted(root.glob("*.index.json")):
        digest.update(index.name.encode() + b"\0" + index.read_bytes())
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}\0{size}\0".encode())
        with file.open("rb") as handle:
            digest.update(handle.read(_EDGE))
            if size > 2 * _EDGE:
                handle.seek(size - _EDGE)
                digest.update(handle.read(_EDGE))
    return f"local:{digest.hexdigest()[:16]}"


def template_sha256(template: str | dict[str, str] | None) -> str | None:
    """SHA-256 of a chat template (a processor's ``chat_template``; several named ones hash together)."""
    if not template:
        return None
    text = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
