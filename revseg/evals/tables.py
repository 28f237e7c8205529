"""Result tables: rows of metric means (percent), the paper's published rows beside ours.

The types a benchmark builds its tables from and a report prints; they depend on nothing
else in ``evals``, so readers (``base``) and the report (``report``) both import them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

PAPER_METHOD = "ReVSeg-7B (paper)"


class Scored(Protocol):
    """What a table row needs of a sample's score (:class:`~revseg.evals.scoring.SampleScore` is one)."""

    J: float
    F: float
    extra: dict[str, float]


@dataclass(frozen=True)
class PaperRow:
    """The ReVSeg paper's published numbers (percent) for one row of a table, for comparison."""

    label: str
    J: float | None = None
    F: float | None = None
    JF: float | None = None
    note: str = ""


@dataclass
class Row:
    """One row of a table: a label, the number of samples behind it and metric values (percent)."""

    label: str
    n: int | None
    values: dict[str, float | None]
    source: str = "ours"
    note: str = ""


@dataclass
class Table:
    """A titled table under one named protocol."""

    title: str
    protocol: str
    rows: list[Row]
    metrics: tuple[str, ...] = ("J", "F", "J&F")
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "title": self.title,
            "protocol": self.protocol,
            "metrics": list(self.metrics),
            "rows": [asdict(r) for r in self.rows],
            "notes": list(self.notes),
        }

    def to_markdown(self) -> str:
        """A Markdown table preceded by its title and protocol."""
        header = ["", "n", *self.metrics]
        lines = [f"### {self.title}", "", f"_{self.protocol}_", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---", "---:", *(["---:"] * len(self.metrics))]) + "|")
        for row in self.rows:
            label = f"**{row.label}**" if row.source == "ours" else row.label
            cells = [label, "" if row.n is None else str(row.n)]
            cells += [_fmt(row.values.get(m)) for m in self.metrics]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def _fmt(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.1f}"


def mean_row(label: str, scores: Sequence[Scored], extra_metrics: Iterable[str] = ()) -> Row:
    """The mean over samples of J, F and the extra metrics (percent); J&F = (J + F) / 2."""
    if not scores:
        return Row(label, 0, {"J": None, "F": None, "J&F": None, **dict.fromkeys(extra_metrics)})
    j = 100.0 * float(np.mean([s.J for s in scores]))
    f = 100.0 * float(np.mean([s.F for s in scores]))
    values: dict[str, float | None] = {"J": j, "F": f, "J&F": (j + f) / 2}
    for name in extra_metrics:
        values[name] = 100.0 * float(np.mean([s.extra.get(name, 0.0) for s in scores]))
    return Row(label, len(scores), values)


def mean_of_rows(label: str, rows: Sequence[Row], metrics: Sequence[str]) -> Row:
    """The unweighted mean of several rows' values (ReVOS overall: mean of the subset means)."""
    values: dict[str, float | None] = {}
    for name in metrics:
        parts = [r.values.get(name) for r in rows]
        values[name] = None if any(p is None for p in parts) else float(np.mean([p for p in parts if p is not None]))
    total = sum(r.n or 0 for r in rows)
    return Row(label, total, values)


def paper_rows(paper: Sequence[PaperRow], labels: Iterable[str] | None = None) -> list[Row]:
    """The paper's rows (all, or those whose label is in ``labels``) as table rows."""
    wanted = None if labels is None else set(labels)
    return [
        Row(f"{PAPER_METHOD}: {p.label}", None, {"J": p.J, "F": p.F, "J&F": p.JF}, source="paper", note=p.note)
        for p in paper
        if wanted is None or p.label in wanted
    ]
