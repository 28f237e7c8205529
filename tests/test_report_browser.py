"""Reports opened in a real headless Chromium: what a person sees, read back from the rendered page.

Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them), driven by
selenium through ``/usr/bin/chromedriver``; nothing is downloaded. Pages are opened from
``file://`` only. Screenshots go to ``.test-artifacts/report/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from revseg.agents import SegmentationResult
from revseg.reports.index import build_index


def _find(*names: str) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


CHROMIUM = _find("chromium", "chromium-browser")
CHROMEDRIVER = _find("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver);"
        " .ci/run installs them",
    ),
]

ARTIFACTS = Path(__file__).resolve().parents[1] / ".test-artifacts" / "report"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module, with a fresh profile, logging the console."""
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    webdriver = pytest.importorskip("selenium.webdriver", reason="browser tests need selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="revseg-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, path: Path) -> list[str]:
    """Load a page from disk and return its console messages (CSP violations show up there)."""
    driver.get_log("browser")  # drop messages of earlier pages
    driver.get(path.resolve().as_uri())
    return [entry["message"] for entry in driver.get_log("browser")]


def screenshot(driver: Any, name: str) -> Path:
    """The whole page as a PNG in .test-artifacts/report/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 120, 8000))
    out = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(out))
    driver.set_window_size(1280, 900)
    return out


def wait_for(driver: Any, script: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_real_run_page_shows_the_chain_and_its_overlay_plays(browser: Any, real_report_run: SegmentationResult) -> None:
    result = real_report_run
    console = open_page(browser, result.out_dir / "report.html")
    assert not [m for m in console if "Content Security Policy" in m or "Refused" in m], console
    dom = browser.execute_script(
        """
        const frames = [...document.querySelectorAll('#sampled figure.frame')];
        const key = frames.filter(f => f.classList.contains('keyframe'));
        const style = el => getComputedStyle(el).borderTopColor;
        return {
          query: document.querySelector('h1').textContent,
          frames: frames.length,
          keyframes: key.map(f => Number(f.dataset.frameIndex)),
          keyBorder: key.length ? style(key[0]) : null,
          otherBorder: style(frames.find(f => !f.classList.contains('keyframe'))),
          keyTag: key.length ? key[0].querySelector('.tag').offsetHeight : 0,
          thumbsLoaded: [...document.querySelectorAll('#sampled img')]
            .filter(i => i.complete && i.naturalWidth > 0).length,
          turns: [...document.querySelectorAll('section.turn')].map(s => s.dataset.turn),
          box: !!document.querySelector('svg rect.box'),
          boxWidth: document.querySelector('svg rect.box').getBoundingClientRect().width,
          status: document.getElementById('status').textContent.trim(),
          tracker: document.getElementById('tracker').textContent,
        };
        """
    )
    assert dom["query"] == "the rider in front"
    assert dom["frames"] == 16 and dom["thumbsLoaded"] == 16
    assert dom["keyframes"] == [result.keyframe_index]
    assert dom["keyBorder"] == "rgb(242, 183, 5)" and dom["otherBorder"] != dom["keyBorder"]
    assert dom["keyTag"] > 0
    assert dom["turns"] == ["interpret", "ground"] and dom["box"] and dom["boxWidth"] > 20
    assert dom["status"] == "ok" and dom["tracker"].startswith("sam2:")
    browser.execute_script("const v = document.getElementById('overlay-video'); v.currentTime = 0; v.play();")
    assert wait_for(browser, "const v = document.getElementById('overlay-video'); return v.currentTime > 0.3;")
    video = browser.execute_script(
        """const v = document.getElementById('overlay-video');
        return {ready: v.readyState, t: v.currentTime, duration: v.duration, error: v.error && v.error.code,
                width: v.videoWidth, height: v.videoHeight, paused: v.paused};"""
    )
    assert video["error"] is None and video["ready"] >= 2 and not video["paused"]
    assert video["duration"] == pytest.approx(1.0, abs=0.05)  # 24 frames at 24 fps
    assert (video["width"], video["height"]) == (320, 180)
    browser.execute_script("const v = document.getElementById('overlay-video'); v.pause(); v.currentTime = 0.35;")
    assert screenshot(browser, "real-run").stat().st_size > 10_000


def test_hostile_model_text_renders_as_text_and_runs_nothing(
    browser: Any, report_runs: dict[str, SegmentationResult]
) -> None:
    open_page(browser, report_runs["hostile"].out_dir / "report.html")
    time.sleep(0.2)  # let any injected handler (onerror) fire if it could
    dom = browser.execute_script(
        """return {
          pwned: typeof window.__pwned,
          scripts: document.scripts.length,
          imgs: [...document.images].map(i => i.getAttribute('src').slice(0, 5)),
          query: document.querySelector('h1').textContent,
          reasoning: document.getElementById('reasoning').textContent,
          description: document.querySelector('#descriptions .description').textContent,
          answer: document.getElementById('ground-answer-1').textContent,
        };"""
    )
    assert dom["pwned"] == "undefined" and dom["scripts"] == 0
    assert set(dom["imgs"]) == {"data:"}
    assert dom["query"] == "the leader <script>window.__pwned=1</script>"
    assert "<script>window.__pwned=1</script>" in dom["reasoning"] and '<img src=x onerror="' in dom["reasoning"]
    assert "<script>" in dom["description"] and "<img src=x" in dom["answer"]
    screenshot(browser, "hostile")


@pytest.mark.parametrize(
    "case", ["no_target", "failed_select_frames", "failed_ground", "policy_error", "tracker_error"]
)
def test_each_failure_kind_renders_cleanly(browser: Any, report_runs: dict[str, SegmentationResult], case: str) -> None:
    run = report_runs[case]
    console = open_page(browser, run.out_dir / "report.html")
    assert console == [], console
    dom = browser.execute_script(
        """return {
          status: document.getElementById('status').dataset.status,
          banner: getComputedStyle(document.getElementById('outcome')).borderLeftColor,
          reason: (document.getElementById('reason') || {}).textContent,
          keyframes: document.querySelectorAll('figure.keyframe').length,
          video: !!document.querySelector('video'),
        };"""
    )
    assert dom["status"] == case and dom["reason"] == run.trajectory.reason
    assert dom["banner"] == ("rgb(168, 107, 0)" if case == "no_target" else "rgb(196, 50, 42)")
    assert dom["keyframes"] == len(run.trajectory.targets)
    assert dom["video"] == ("masks_json" in run.trajectory.outputs)
    if case == "failed_ground":
        screenshot(browser, case)


def test_index_sorts_filters_paginates_and_links_to_runs(
    browser: Any, report_runs: dict[str, SegmentationResult], tmp_path: Path
) -> None:
    root = next(iter(report_runs.values())).out_dir.parent
    site = tmp_path / "site"
    build_index(root, site, failures_first=True, page_size=5, title="Report test runs")
    console = open_page(browser, site / "index.html")
    assert console == [], console
    statuses = "return [...document.querySelectorAll('#runs tbody .badge')].map(b => b.textContent);"
    first = browser.execute_script(statuses)
    assert len(first) == 5 and set(first[:4]) == {
        "failed_select_frames", "failed_ground", "policy_error", "tracker_error",
    }  # fmt: skip
    browser.execute_script("document.querySelectorAll('#runs th button')[4].click();")
    assert browser.execute_script(statuses) == sorted(first)
    assert browser.execute_script("return document.querySelectorAll('#runs th')[4].getAttribute('aria-sort')") == (
        "ascending"
    )
    browser.execute_script("document.querySelectorAll('#runs th button')[4].click();")
    assert browser.execute_script(statuses) == sorted(first, reverse=True)
    browser.execute_script("const c = document.getElementById('failures-only'); c.click();")
    visible = browser.execute_script(
        "return [...document.querySelectorAll('#runs tbody tr')].filter(r => !r.hidden).length"
    )
    assert visible == 4
    screenshot(browser, "index")
    browser.execute_script("document.querySelector('a[rel=next]').click();")
    assert wait_for(browser, "return location.pathname.endsWith('/index-2.html')")
    assert browser.execute_script("return document.querySelectorAll('#runs tbody tr').length") == 2
    browser.execute_script("document.querySelector('#runs tbody a').click();")
    assert wait_for(browser, "return location.pathname.includes('/runs/') && !!document.getElementById('status')")
    assert browser.execute_script("return document.querySelectorAll('#sampled figure').length") == 16
    loaded = "return [...document.images].length === 16 && [...document.images].every(i => i.naturalWidth > 0);"
    assert wait_for(browser, loaded), "shared frame files load under the page's CSP"
    assert [m for m in browser.get_log("browser") if "Refused" in m["message"]] == []
    browser.execute_script("document.getElementById('overlay-video').play();")
    playing = "const v = document.getElementById('overlay-video'); return v.currentTime > 0.1 && !v.error;"
    assert wait_for(browser, playing), "the overlay linked from the source folder plays"
    browser.execute_script("document.querySelector('.eyebrow a').click();")
    assert wait_for(browser, "return location.pathname.endsWith('/index.html')")
