"""Package-level promises: a cheap import and a public API that resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ["torch", "transformers", "langgraph", "sam2", "openai", "cv2", "decord", "av", "numpy"]


def test_import_revseg_loads_no_heavy_library() -> None:
    code = f"import sys, revseg, revseg.testing; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


@pytest.mark.parametrize(
    "name", ["ReVSegAgent", "segment", "build_graph", "build_policy", "build_tracker", "Trajectory"]
)
def test_public_names_resolve_lazily(name: str) -> None:
    import revseg

    assert getattr(revseg, name) is not None
    assert name in revseg.__all__


def test_unknown_attribute_is_an_attribute_error() -> None:
    import revseg

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        revseg.nope  # noqa: B018
