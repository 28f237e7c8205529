"""Browse many runs: ``revseg report`` builds a page per trajectory and a paginated index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revseg.cli.options import _say


def report_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A folder tree of trajectory.json files (a segment output or an evaluation), a JSONL trajectory"
            " store or folder of shards, or one trajectory.json."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder for index.html, index-2.html, ... and runs/<run id>.html.")],
    failures_first: Annotated[
        bool, typer.Option("--failures-first", help="List failed runs (unparseable turns, errors) first.")
    ] = False,
    page_size: Annotated[int, typer.Option(min=1, help="Rows per index page.")] = 200,
    force: Annotated[bool, typer.Option("--force", help="Rewrite every trajectory page, even unchanged ones.")] = False,
    frame_backend: Annotated[
        str, typer.Option(help="Frame reader for the pages' frames: auto, folder, decord, pyav.")
    ] = "auto",
    title: Annotated[str | None, typer.Option(help="Index page title (default: from the source name).")] = None,
    self_contained: Annotated[
        bool,
        typer.Option(
            "--self-contained",
            help="Embed frames and overlay in every run page (bigger; pages stand alone) instead of shared files.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Build browsable HTML over many trajectories: a page per run and a sortable, paginated index.

    Pages of unchanged trajectories are kept from the last build, so rerunning on a
    growing store only renders the new runs. Open OUT/index.html in a browser.
    """
    from revseg.reports.index import build_index
    from revseg.reports.page import ReportOptions

    result = build_index(
        source,
        out,
        failures_first=failures_first,
        page_size=page_size,
        options=ReportOptions(frame_backend=frame_backend),
        force=force,
        title=title,
        self_contained=self_contained,
        progress=not quiet,
    )
    for skipped in result.skipped[:10]:
        _say(not quiet, f"skipped {skipped}")
    if len(result.skipped) > 10:
        _say(not quiet, f"... and {len(result.skipped) - 10} more unreadable records")
    typer.echo(
        f"{result.trajectories} trajectories: {result.pages_written} pages written,"
        f" {result.pages_up_to_date} up to date, {result.index_pages} index page(s)"
    )
    typer.echo(f"wrote {result.index}")
