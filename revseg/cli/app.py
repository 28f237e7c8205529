"""The ``revseg`` command: the app, the order its commands are listed in, and the entry point.

Each command group lives in its own module as plain functions (thin wrappers that parse options,
call the Python API and print); this module only registers them. A new command is a function in
the module of its group plus one line here.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from revseg.cli import evaluate, report, segment, training
from revseg.errors import RevsegError

app = typer.Typer(
    name="revseg",
    help="Reasoning video object segmentation: a VLM picks a keyframe and a box, SAM2 tracks it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from revseg import __version__

        typer.echo(f"revseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Reasoning video object segmentation: a VLM picks a keyframe and a box, SAM2 tracks it."""


# Listed in `revseg --help` in this order.
app.command()(segment.segment)
app.command()(segment.track)
app.command("segment-batch")(segment.segment_batch)
app.command("report")(report.report_command)
app.command("eval")(evaluate.eval_command)
app.command("score")(evaluate.score_command)
app.command("collect")(training.collect_command)
app.command("merge")(evaluate.merge_command)
app.command("curate")(training.curate_command)
app.command("train")(training.train_command)
app.command("replay")(training.replay_command)

rl_app = typer.Typer(help="Training loops (DESIGN.md 1.5).", no_args_is_help=True)
rl_app.command("loop")(training.rl_loop_command)
app.add_typer(rl_app, name="rl")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning revseg errors into one line and a non-zero exit."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv, prog_name="revseg", standalone_mode=True)
    except RevsegError as exc:
        typer.echo(f"revseg: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("revseg: interrupted", err=True)
        sys.exit(130)
