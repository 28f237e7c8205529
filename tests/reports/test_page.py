"""report.html and the index over many runs, checked on the HTML itself (the browser tests check the rendering)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape
from typer.testing import CliRunner

from revseg.agents import ReVSegAgent, SegmentationResult
from revseg.cli import app
from revseg.reports.index import build_index, iter_trajectories
from revseg.reports.page import ReportOptions, render_report, score_from, write_report
from revseg.testing.fakes import BoxTracker, ScriptedPolicy
from revseg.trajectory import Status, Trajectory
from tests.reports.report_cases import PWN_IMG, PWN_SCRIPT, TURN1, TURN2


class Page(HTMLParser):
    """Every start tag with its attributes, the text of <style>/<script>, and the CSP, from one HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.inline: dict[str, list[str]] = {"style": [], "script": []}
        self._open: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in self.inline:
            self._open = tag
            self.inline[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.inline[self._open][-1] += data

    def all(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and (cls is None or cls in a.get("class", "").split())]

    @property
    def csp(self) -> dict[str, str]:
        meta = next(a for t, a in self.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
        return dict(part.strip().split(" ", 1) for part in meta["content"].split(";"))


def page_of(result: SegmentationResult) -> tuple[str, Page]:
    html = Path(result.trajectory.outputs["report"]).read_text()
    return html, Page(html)


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_real_run_writes_a_self_contained_report_beside_the_trajectory(real_report_run: SegmentationResult) -> None:
    result = real_report_run
    report = result.out_dir / "report.html"
    assert result.trajectory.outputs["report"] == str(report) and report.is_file()
    saved = Trajectory.load(result.out_dir / "trajectory.json")
    assert saved.outputs["report"] == str(report) and saved.timings["report"] > 0
    html, page = page_of(result)
    assert "the rider in front" in html
    strip = page.all("figure", "frame")
    assert [int(f["data-frame-index"]) for f in strip] == result.trajectory.sampled_indices
    assert [int(f["data-frame-index"]) for f in page.all("figure", "keyframe")] == [result.keyframe_index] == [8]
    sources = [a["src"] for t, a in page.tags if "src" in a] + [a["href"] for t, a in page.tags if t == "image"]
    assert len(sources) == 16 + 1 + 1  # thumbnails, keyframe, overlay
    assert all(s.startswith("data:") for s in sources), "the page must not need any other file"
    assert page.all("source")[0]["src"].startswith("data:video/mp4;base64,")
    assert len(page.all("rect", "box")) == 1
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "no network resources"


@pytest.mark.parametrize(
    ("case", "headline", "turns", "keyframes", "has_box", "has_video"),
    [
        ("ok", "Masks for every frame", 2, 1, True, True),
        ("no_target", "found no object", 1, 0, False, True),
        ("failed_select_frames", "Turn 1 did not parse", 1, 0, False, False),
        ("failed_ground", "Turn 2 did not give a usable box", 2, 1, False, False),
        ("policy_error", "policy backend failed", 1, 0, False, False),
        ("tracker_error", "tracker failed", 2, 1, True, False),
    ],
)
def test_each_way_a_run_ends_gets_its_own_page(
    report_runs: dict[str, SegmentationResult],
    case: str,
    headline: str,
    turns: int,
    keyframes: int,
    has_box: bool,
    has_video: bool,
) -> None:
    result = report_runs[case]
    html, page = page_of(result)
    assert page.all("span", "badge")[0]["data-status"] == case
    assert headline in html
    if result.trajectory.reason:
        assert f'id="reason">{escape(result.trajectory.reason)}<' in html
    assert len(page.all("section", "turn")) == turns == len(result.trajectory.turns)
    assert len(page.all("figure", "keyframe")) == keyframes
    assert len(page.all("rect", "box")) == int(has_box)
    assert bool(page.all("video")) == has_video
    assert len(page.all("figure", "frame")) == 16


def test_failed_turns_show_why_and_the_raw_answer(report_runs: dict[str, SegmentationResult]) -> None:
    html, _ = page_of(report_runs["failed_select_frames"])
    assert "I am not sure &lt;b&gt;what&lt;/b&gt; you mean." in html
    assert escape(report_runs["failed_select_frames"].trajectory.turns[0].parse_reason or "?") in html
    html, _ = page_of(report_runs["failed_ground"])
    assert "The cyclist is somewhere on the left." in html and "no usable box" in html
    html, _ = page_of(report_runs["tracker_error"])
    assert "out of memory while tracking" in html and "this run produced no masks" in html


def test_model_text_is_escaped_and_no_inline_script_is_allowed(report_runs: dict[str, SegmentationResult]) -> None:
    html, page = page_of(report_runs["hostile"])
    assert PWN_SCRIPT not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert page.inline["script"] == [] and len(page.inline["style"]) == 1
    assert all(a["src"].startswith("data:") for a in page.all("img"))
    assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs)
    csp = page.csp
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'none'"
    assert csp["style-src"] == sha256(page.inline["style"][0])
    assert "unsafe-inline" not in str(csp)


def test_index_csp_allows_exactly_its_own_script_and_style(
    report_runs: dict[str, SegmentationResult], tmp_path: Path
) -> None:
    root = next(iter(report_runs.values())).out_dir.parent
    result = build_index(root, tmp_path / "site")
    page = Page(result.index.read_text())
    assert len(page.inline["script"]) == 1 and len(page.inline["style"]) == 1
    assert page.csp["script-src"] == sha256(page.inline["script"][0])
    assert page.csp["style-src"] == sha256(page.inline["style"][0])


def test_a_missing_video_still_gives_a_page_that_says_why(
    report_runs: dict[str, SegmentationResult], tmp_path: Path
) -> None:
    trajectory = report_runs["ok"].trajectory.model_copy(deep=True)
    trajectory.video = trajectory.video.model_copy(update={"path": str(tmp_path / "gone.mp4")})
    html = render_report(trajectory, tmp_path / "report.html", base_dir=report_runs["ok"].out_dir)
    page = Page(html)
    assert "The video is not available here" in html and "gone.mp4" in html
    assert page.all("img") == [] and len(page.all("figure", "keyframe")) == 1
    assert page.all("source")[0]["src"].startswith("data:video/mp4")  # the overlay does not need the video


def test_a_large_overlay_is_linked_relatively_with_the_keyframe_as_poster(
    report_runs: dict[str, SegmentationResult], tmp_path: Path
) -> None:
    run = report_runs["ok"]
    options = ReportOptions(embed_video_max_bytes=0)
    beside = Page(Path(write_report(run.trajectory, run.out_dir / "linked.html", options=options)).read_text())
    assert beside.all("source")[0]["src"] == "overlay.mp4"
    assert beside.all("video")[0]["poster"].startswith("data:image/jpeg")
    elsewhere = tmp_path / "site" / "runs"
    elsewhere.mkdir(parents=True)
    page = Page(write_report(run.trajectory, elsewhere, base_dir=run.out_dir, options=options).read_text())
    href = page.all("source")[0]["src"]
    assert not href.startswith(("/", "data:")) and (elsewhere / href).resolve() == (run.out_dir / "overlay.mp4")


def test_agent_and_cli_can_turn_the_report_off(small_clip: Path, tmp_path: Path) -> None:
    agent = ReVSegAgent(ScriptedPolicy([TURN1, TURN2]), BoxTracker(), report=False, overlay=False)
    result = agent.run(small_clip, "the leader", tmp_path / "off")
    assert "report" not in result.trajectory.outputs and not (tmp_path / "off" / "report.html").exists()
    assert "--no-report" in CliRunner().invoke(app, ["segment", "--help"], terminal_width=200).output


def test_scores_come_from_rewards_or_sidecars() -> None:
    assert score_from({"format": 1.0, "J&F": 0.5}) == 0.5
    assert score_from({"JF_mean": "0.25"}) == 0.25
    assert score_from({"jf": 0.75}) == 0.75
    assert score_from({"total": 2.0}) is None and score_from(None) is None


def copy_runs(report_runs: dict[str, SegmentationResult], root: Path) -> Path:
    for name, run in report_runs.items():
        shutil.copytree(run.out_dir, root / name)
    return root


def test_index_over_a_folder_tree_lists_every_run_failures_first_and_paginates(
    report_runs: dict[str, SegmentationResult], tmp_path: Path
) -> None:
    tree = copy_runs(report_runs, tmp_path / "eval")
    (tree / "ok" / "scores.json").write_text(json.dumps({"J&F": 0.731, "J": 0.7, "F": 0.762}))
    site = tmp_path / "site"
    result = build_index(tree, site, failures_first=True, page_size=3)
    assert (result.trajectories, result.index_pages, result.pages_written) == (7, 3, 7)
    assert [p.name for p in sorted(site.glob("index*.html"))] == ["index-2.html", "index-3.html", "index.html"]
    rows = [
        (a["data-key"], "failed" in a["class"])
        for n in ["index.html", "index-2.html", "index-3.html"]
        for a in Page((site / n).read_text()).all("tr")
        if "data-key" in a
    ]
    assert [failed for _, failed in rows] == [True] * 4 + [False] * 3
    first = Page((site / "index.html").read_text())
    links = [a["href"] for a in first.all("a") if a.get("href", "").startswith("runs/")]
    assert len(links) == 3 and all((site / link).is_file() for link in links)
    assert ">73.1<" in (site / ("index-2.html")).read_text() + (site / "index-3.html").read_text()
    assert build_index(tree, site, page_size=3).pages_up_to_date == 7
    assert build_index(tree, site, page_size=10, force=True).pages_written == 7
    assert not (site / "index-2.html").exists(), "pages beyond the new count are removed"


def test_index_pages_share_frame_files_per_video_and_link_overlays(
    report_runs: dict[str, SegmentationResult], tmp_path: Path
) -> None:
    tree = copy_runs(report_runs, tmp_path / "eval")
    site = tmp_path / "site"
    build_index(tree, site)
    frames = sorted((site / "runs" / "frames").rglob("*.jpg"))
    assert len({f.parent for f in frames}) == 1, "all runs share one video, so one set of frame files"
    assert len([f for f in frames if f.name.endswith("-thumb.jpg")]) == 16
    stamps = {f: f.stat().st_mtime_ns for f in frames}
    page = Page((site / "runs" / f"{report_runs['ok'].trajectory.run_id}.html").read_text())
    assert all(a["src"].startswith("frames/") for a in page.all("img"))
    assert page.csp["img-src"] == "'self' data:"
    overlay = page.all("source")[0]["src"]
    assert (site / "runs" / overlay).resolve() == (tree / "ok" / "overlay.mp4").resolve()
    assert (site / "runs" / f"{report_runs['ok'].trajectory.run_id}.html").stat().st_size < 60_000
    build_index(tree, site, force=True)
    assert {f: f.stat().st_mtime_ns for f in frames} == stamps, "a rebuild reuses the frame files"
    alone = tmp_path / "alone"
    build_index(tree, alone, self_contained=True)
    page = Page((alone / "runs" / f"{report_runs['ok'].trajectory.run_id}.html").read_text())
    assert all(a["src"].startswith("data:") for a in page.all("img")) and not (alone / "runs" / "frames").exists()
    assert page.all("source")[0]["src"].startswith("data:video/mp4") and page.csp["img-src"] == "data:"


def test_index_over_a_jsonl_store_skips_bad_lines_and_keeps_duplicates_apart(
    report_runs: dict[str, SegmentationResult], tmp_path: Path
) -> None:
    records = [run.trajectory.model_dump_json() for run in report_runs.values()]
    store = tmp_path / "store" / "trajectories-00000.jsonl"
    store.parent.mkdir()
    store.write_text("\n".join([*records, records[0], '{"not": "a trajectory"}', records[1][:50]]) + "\n")
    ok_id = report_runs["ok"].trajectory.run_id
    (store.parent / "scores.jsonl").write_text(json.dumps({"run_id": ok_id, "jf": 0.5}) + "\n")
    skipped: list[str] = []
    assert len(list(iter_trajectories(store.parent, skipped))) == 8 and len(skipped) == 2
    result = build_index(store.parent, tmp_path / "site")
    assert result.trajectories == 8 and len(result.skipped) == 2
    keys = [a["data-key"] for a in Page(result.index.read_text()).all("tr") if "data-key" in a]
    assert len(set(keys)) == 8 and f"{ok_id}-2" in keys
    assert ">50.0<" in result.index.read_text()


def test_index_of_a_large_store_keeps_pages_small(report_runs: dict[str, SegmentationResult], tmp_path: Path) -> None:
    base = report_runs["failed_ground"].trajectory
    store = tmp_path / "big.jsonl"
    with store.open("w") as handle:
        for i in range(450):
            record = base.model_copy(update={"run_id": f"r{i:04d}", "query": f"query {i} {PWN_IMG}"})
            handle.write(record.model_dump_json() + "\n")
    result = build_index(store, tmp_path / "site")
    assert (result.trajectories, result.index_pages) == (450, 3)
    assert max(p.stat().st_size for p in (tmp_path / "site").glob("index*.html")) < 250_000
    assert len(list((tmp_path / "site" / "runs").glob("*.html"))) == 450


def test_report_command_builds_the_index(report_runs: dict[str, SegmentationResult], tmp_path: Path) -> None:
    tree = copy_runs(report_runs, tmp_path / "eval")
    done = CliRunner().invoke(app, ["report", str(tree), "--out", str(tmp_path / "site"), "--failures-first", "-q"])
    assert done.exit_code == 0, done.output
    assert "7 trajectories" in done.output and (tmp_path / "site" / "index.html").is_file()
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0


def test_every_status_has_a_page(report_runs: dict[str, SegmentationResult], tmp_path: Path) -> None:
    base = report_runs["failed_select_frames"].trajectory
    headlines = {}
    for status in Status:  # the scripted runs reach all but a paused review; render each status on one record
        html = render_report(base.model_copy(update={"status": status}), tmp_path / "r.html")
        (badge, *_) = Page(html).all("span", "badge")
        assert badge["data-status"] == status.value
        found = re.search(r"<p><b>(.+?)</b></p>", html)
        assert found is not None, status
        headlines[status] = found.group(1)
    # each status says what it means for the output in its own words, none in the fallback for unknown statuses
    assert len(set(headlines.values())) == len(Status)
    assert not any(status.value in headline for status, headline in headlines.items()), headlines
