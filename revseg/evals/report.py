"""Evaluation reports: a Markdown and a JSON table per benchmark, with the paper's row beside ours.

Numbers are percent. A report holds the benchmark's tables (per subset and per protocol),
the count of failed and missing predictions by kind with the samples listed, excluded
samples and why, and every sample's scores, so a number can always be traced to the
predictions behind it. Nothing in it depends on the order samples finished in: reports of
a resumed run and of an uninterrupted one are equal apart from the ``run`` block (paths,
dates).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from revseg.errors import OutputError
from revseg.evals.scoring import ERROR, INCOMPLETE, INVALID, MISSING, SampleScore

# the table types live in tables.py (base.py builds tables without importing the report); benchmark
# readers take them from here too
from revseg.evals.tables import PAPER_METHOD as PAPER_METHOD
from revseg.evals.tables import Row as Row
from revseg.evals.tables import Table as Table
from revseg.evals.tables import mean_of_rows as mean_of_rows
from revseg.evals.tables import mean_row as mean_row
from revseg.evals.tables import paper_rows as paper_rows
from revseg.trajectory import Status

REPORT_MD = "report.md"
REPORT_JSON = "report.json"

FAILURE_KINDS: dict[str, str] = {
    Status.FAILED_SELECT_FRAMES.value: "unparseable turn 1",
    Status.FAILED_GROUND.value: "unparseable turn 2",
    Status.NO_TARGET.value: "no target predicted",
    Status.TRACKER_ERROR.value: "tracker error",
    Status.POLICY_ERROR.value: "policy error",
    ERROR: "run error (exception)",
    MISSING: "missing prediction",
    INCOMPLETE: "incomplete prediction (frames missing)",
    INVALID: "invalid prediction (unreadable or wrong size)",
}
"""Every kind counted in a report, in the order shown; the first four are always shown, even at 0."""
ALWAYS_SHOWN = (*list(FAILURE_KINDS)[:4], MISSING)


NO_TARGET_PROTOCOL = (
    "GREx / gRefCOCO (adopted by MeViS v2 and the PVUW MeViS track): a sample answers 'no target' when its "
    "prediction is empty on every frame. N-acc. = no-target expressions answered 'no target' / no-target "
    "expressions; T-acc. = expressions with a target answered with a non-empty mask / expressions with a target; "
    "false 'no target' = expressions with a target answered 'no target' / expressions with a target. A failed or "
    "missing prediction is no answer: it counts as wrong in N-acc. and T-acc. and not as a 'no target' answer"
)
NO_TARGET_METRICS = ("N-acc.", "T-acc.", "false 'no target'", "J&F")


def no_target_table(title: str, scores: Sequence[SampleScore], *, no_target_subset: str = "no_target") -> Table:
    """No-target accuracy (N-acc.), target accuracy (T-acc.), false 'no target' rate and J&F with and without them.

    Rows: no-target expressions (N-acc.; their J&F, 100 for an empty answer), expressions with a
    target (T-acc., false 'no target' rate, J&F), and all expressions (J&F pooled over both).
    """
    no_target = [s for s in scores if s.subset == no_target_subset]
    target = [s for s in scores if s.subset != no_target_subset]

    def answered_empty(s: SampleScore) -> bool:
        return bool(s.empty) and not s.zero_by_rule

    def pct(count: int, total: int) -> float | None:
        return 100.0 * count / total if total else None

    def jf(group: Sequence[SampleScore]) -> float | None:
        return mean_row("", group).values["J&F"]

    n_right = sum(answered_empty(s) for s in no_target)
    t_right = sum(not s.zero_by_rule and s.empty is False for s in target)
    t_empty = sum(answered_empty(s) for s in target)
    rows = [
        Row("no-target expressions", len(no_target), {"N-acc.": pct(n_right, len(no_target)), "J&F": jf(no_target)}),
        Row(
            "expressions with a target",
            len(target),
            {"T-acc.": pct(t_right, len(target)), "false 'no target'": pct(t_empty, len(target)), "J&F": jf(target)},
        ),
        Row("all expressions (J&F with no-target)", len(scores), {"J&F": jf(scores)}),
    ]
    notes = [
        f"{n_right} of {len(no_target)} no-target expressions answered 'no target'; {t_empty} of {len(target)} "
        f"expressions with a target wrongly answered 'no target'; {len(target) - t_right - t_empty} of them failed "
        "or are missing.",
        "J&F of an empty answer on an empty ground truth is 100 (J = 1 and F = 1 by the DAVIS conventions).",
    ]
    return Table(title, NO_TARGET_PROTOCOL, rows, metrics=NO_TARGET_METRICS, notes=notes)


def failure_counts(scores: Sequence[SampleScore]) -> dict[str, list[str]]:
    """Keys of the samples per failure kind (the kinds of :data:`FAILURE_KINDS`), sorted."""
    kinds: dict[str, list[str]] = {kind: [] for kind in FAILURE_KINDS}
    for score in scores:
        if score.status in kinds:
            kinds[score.status].append(score.key)
    return {kind: sorted(keys) for kind, keys in kinds.items()}


@dataclass
class Report:
    """A benchmark's evaluation: tables, failures by kind, exclusions, per-sample scores."""

    benchmark: str
    title: str
    split: str
    tables: list[Table]
    samples: list[SampleScore]
    excluded: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    submission: str | None = None
    run: dict[str, Any] = field(default_factory=dict)
    setup: dict[str, str | None] = field(default_factory=dict)
    """Benchmark, version, split, protocol and how failures were scored (``Benchmark.describe()``)."""

    @property
    def failures(self) -> dict[str, list[str]]:
        """Sample keys per failure kind."""
        return failure_counts(self.samples)

    def table(self, title_part: str) -> Table:
        """The first table whose title contains ``title_part``."""
        for table in self.tables:
            if title_part in table.title:
                return table
        raise KeyError(f"no table titled like {title_part!r}; tables: {[t.title for t in self.tables]}")

    def row(self, label: str, table: int | str = 0) -> Row:
        """A row of one of the tables (by index or title part) by its label."""
        chosen = self.tables[table] if isinstance(table, int) else self.table(table)
        for row in chosen.rows:
            if row.label == label:
                return row
        raise KeyError(f"no row {label!r} in {chosen.title}; rows: {[r.label for r in chosen.rows]}")

    def to_json(self) -> dict[str, Any]:
        """Everything, JSON-ready; all but ``run`` is independent of where and when it ran."""
        failures = self.failures
        return {
            "benchmark": self.benchmark,
            "title": self.title,
            "split": self.split,
            "version": self.setup.get("version"),
            "setup": self.setup,
            "tables": [t.to_json() for t in self.tables],
            "counts": {
                "samples": len(self.samples),
                "scored_from_masks": sum(not s.zero_by_rule for s in self.samples),
                "zero_by_rule": sum(s.zero_by_rule for s in self.samples),
                "excluded": len(self.excluded),
                "failures": {kind: len(keys) for kind, keys in failures.items()},
            },
            "failures": failures,
            "excluded": self.excluded,
            "notes": self.notes,
            "submission": self.submission,
            "samples": [s.to_json() for s in self.samples],
            "run": self.run,
        }

    def to_markdown(self) -> str:
        """A readable report: tables, failure counts with the samples listed, exclusions, notes."""
        failures = self.failures
        scored = sum(not s.zero_by_rule for s in self.samples)
        version = self.setup.get("version")
        lines = [f"# {self.title}{f' {version}' if version else ''} {self.split}", ""]
        if self.setup:
            source = self.setup.get("version_source")
            lines += [
                f"- benchmark: {self.title} (`{self.benchmark}`)",
                f"- version: {version or 'single release'}{f' ({source})' if source else ''}",
                f"- split: {self.split}",
                f"- protocol: {self.setup.get('protocol')}",
                f"- failures: {self.setup.get('failures')}",
                "",
            ]
        lines += [
            f"{len(self.samples)} samples; {scored} scored from their masks, "
            f"{len(self.samples) - scored} scored 0 (failed or missing); {len(self.excluded)} excluded.",
            "",
        ]
        if self.submission:
            lines += [f"Submission for the benchmark server: `{self.submission}`", ""]
        for table in self.tables:
            lines.append(table.to_markdown())
        lines += ["### Failures by kind", "", "| kind | count |", "|---|---:|"]
        for kind, keys in failures.items():
            if keys or kind in ALWAYS_SHOWN:
                lines.append(f"| {FAILURE_KINDS[kind]} | {len(keys)} |")
        lines.append("")
        for kind, keys in failures.items():
            if keys:
                shown = ", ".join(f"`{k}`" for k in keys[:20])
                more = f" and {len(keys) - 20} more (see report.json)" if len(keys) > 20 else ""
                lines.append(f"- {FAILURE_KINDS[kind]}: {shown}{more}")
        if self.excluded:
            lines += ["", "### Excluded", ""]
            lines += [f"- `{e['key']}`: {e['reason']}" for e in self.excluded[:50]]
            if len(self.excluded) > 50:
                lines.append(f"- ... and {len(self.excluded) - 50} more (see report.json)")
        if self.notes:
            lines += ["", "### Notes", ""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``report.md`` and ``report.json`` into ``out_dir`` (atomically); return their paths."""
        out = Path(out_dir)
        self.run.setdefault("written_at", datetime.now(UTC).isoformat(timespec="seconds"))
        try:
            out.mkdir(parents=True, exist_ok=True)
            paths = []
            for name, text in ((REPORT_MD, self.to_markdown()), (REPORT_JSON, json.dumps(self.to_json(), indent=1))):
                tmp = out / f".{name}.tmp"
                tmp.write_text(text)
                tmp.replace(out / name)
                paths.append(out / name)
        except OSError as exc:
            raise OutputError(f"cannot write the report into {out}: {exc.strerror or exc}") from exc
        return paths[0], paths[1]


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a ``report.json`` (or the folder holding it) as a dict."""
    file = Path(path)
    if file.is_dir():
        file = file / REPORT_JSON
    result: dict[str, Any] = json.loads(file.read_text())
    return result


def comparable(report: Mapping[str, Any]) -> dict[str, Any]:
    """A report dict without its ``run`` block: what must be equal between two runs of the same evaluation."""
    return {k: v for k, v in report.items() if k != "run"}
