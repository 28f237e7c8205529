"""``python -m revseg.cli``: the same as the ``revseg`` command (``accelerate launch -m revseg.cli train``)."""

from revseg.cli.app import main

main()
