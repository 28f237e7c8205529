"""The ``revseg`` command: thin wrappers that parse options, call the Python API and print.

``app.py`` registers the commands, which live one module per group: ``segment`` (segment,
segment-batch, track), ``evaluate`` (eval, score, merge), ``training`` (curate, collect, train,
rl loop, replay) and ``report``; ``options`` holds the flags they share.
"""

from revseg.cli.app import app, main
from revseg.cli.options import _read_ids as _read_ids  # the exclude-list format curate writes; tests read it back

__all__ = ["app", "main"]
