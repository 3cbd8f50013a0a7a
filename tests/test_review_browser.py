"""The review pages in a real browser: headless Chromium (Debian's `chromium`) through Playwright.

A real folder run (YOLO11n-pose on the lab clip from ../shared, under a plain name, under a name
that is an HTML tag with an onerror script, and under a name with quotes and an ampersand, plus
a broken file), then its index and a video page are opened from `file://`. Skips with the
reason when Chromium, Playwright, ultralytics or ../shared is missing (`.ci/run` installs
Chromium).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.cli import get_args_parser, main
from reports.review import build_index
from tests.helpers import need_shared
from workers.ffmpeg import ffmpeg_exe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="ultralytics is not installed"),
]
HOSTILE = "<img src=x onerror=alert(1)>.mp4"
QUOTED = 'tom & "jerry\'s".mp4'


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A folder run's output folder: three copies of a real clip (two hostile names), one broken file."""
    lab = need_shared("videos", "lab_three_people_portrait_60fps.mp4")
    weights = need_shared("models", "yolo11n-pose.pt")
    folder = tmp_path_factory.mktemp("review")
    source = folder / "in"
    (source / "sub").mkdir(parents=True)
    clip = source / "lab.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(lab), "-vf", "scale=-2:480",
                    "-c:v", "libx264", "-preset", "ultrafast", str(clip)], check=True)
    shutil.copyfile(clip, source / "sub" / HOSTILE)
    shutil.copyfile(clip, source / QUOTED)
    (source / "broken.mp4").write_bytes(clip.read_bytes()[:20000])
    out = folder / "out"
    code = main(get_args_parser().parse_args([str(source), str(out), "--model", "yolo", "--weights", str(weights),
                                              "--device", "cpu", "--no-progress"]))
    assert code == 1  # the broken file failed; the others are done
    return out


class Watched:
    """A page with every dialog (alert), console error and request recorded."""

    def __init__(self, browser, url: str) -> None:
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page = browser.new_page()
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url)
        self.page.wait_for_load_state("load")


def _rows(watched: Watched) -> list[dict]:
    return watched.page.eval_on_selector_all(
        "#videos tbody tr", "rows => rows.map(r => ({name: r.dataset.v0, status: r.dataset.status, "
                            "score: r.dataset.v2, hidden: r.hidden, text: r.innerText}))")


def test_the_index_lists_every_file_with_the_failure_and_sorts(browser, results):
    index = Watched(browser, (results / "index.html").as_uri())
    rows = _rows(index)
    assert sorted(row["name"] for row in rows) == sorted(["broken.mp4", "lab.mp4", f"sub/{HOSTILE}", QUOTED])
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) == 1 and "moov atom" in failed[0]["text"] and "broken.mp4" in failed[0]["text"]
    assert index.page.inner_text("#count-failed") == "1" and index.page.inner_text("#count-done") == "3"

    index.page.click("th button[data-key='2']")  # score, ascending; files without a score last
    scores = [row["score"] for row in _rows(index)]
    assert scores[-1] == "" and [float(s) for s in scores[:-1]] == sorted(float(s) for s in scores[:-1])
    index.page.click("th button[data-key='0']")  # file name
    names = [row["name"] for row in _rows(index)]
    assert names == sorted(names, key=str)
    index.page.check("#only-failed")
    assert [row["name"] for row in _rows(index) if not row["hidden"]] == ["broken.mp4"]
    assert index.dialogs == [] and index.errors == []
    assert all(url.startswith("file://") for url in index.requests), index.requests


def test_hostile_names_are_text_never_markup(browser, results):
    index = Watched(browser, (results / "index.html").as_uri())
    assert index.page.locator("#videos img[src='x']").count() == 0
    assert HOSTILE in index.page.inner_text("#videos") and QUOTED in index.page.inner_text("#videos")
    index.page.click(f"text=sub/{HOSTILE}")
    index.page.wait_for_load_state("load")
    assert index.page.inner_text("h1") == HOSTILE
    assert index.page.locator("img[src='x']").count() == 0
    quoted = Watched(browser, (results / QUOTED.replace(".mp4", ".html")).as_uri())
    assert quoted.page.inner_text("h1") == QUOTED
    for watched in (index, quoted):
        assert watched.dialogs == [] and watched.errors == []
        assert all(url.startswith("file://") for url in watched.requests), watched.requests


def _report(results: Path) -> dict:
    return json.loads((results / "lab.json").read_text())


def _wait_seeked(page, target: float) -> float:
    page.wait_for_function("t => Math.abs(document.getElementById('video').currentTime - t) < 0.05 "
                           "&& !document.getElementById('video').seeking", arg=target, timeout=10_000)
    return page.evaluate("document.getElementById('video').currentTime")


def test_the_video_page_plays_and_seeks(browser, results):
    report = _report(results)
    watched = Watched(browser, (results / "lab.html").as_uri())
    page = watched.page
    page.wait_for_function("document.getElementById('video').readyState >= 1", timeout=10_000)
    duration = page.evaluate("document.getElementById('video').duration")
    # The annotated video is the input plus the end card.
    assert duration == pytest.approx(report["duration_seconds"] + report["settings"]["end_card_seconds"], abs=0.1)

    frame = 1 / report["fps"]
    moment = report["worst_moments"][0]
    page.click("button.moment >> nth=0")
    assert _wait_seeked(page, moment["start_s"]) == pytest.approx(moment["start_s"], abs=frame)

    page.locator("#timeline").scroll_into_view_if_needed()
    box = page.locator("#timeline").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    half = report["duration_seconds"] * 0.5
    assert _wait_seeked(page, half) == pytest.approx(half, abs=report["duration_seconds"] / box["width"] + frame)
    playhead = float(page.get_attribute("#playhead", "x1"))
    assert playhead == pytest.approx(500, abs=5)  # the playhead follows (viewBox is 1000 wide)

    # The track timeline: a row per person; a click there seeks too.
    assert page.locator("#tracks g.track").count() == len(report["persons"])
    page.locator("#tracks").scroll_into_view_if_needed()
    box = page.locator("#tracks").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    quarter = report["duration_seconds"] * 0.25
    assert _wait_seeked(page, quarter) == pytest.approx(quarter, abs=report["duration_seconds"] / box["width"] + frame)
    compared = {i for pair in report["sync"]["pairs"] for i in pair["ids"]}
    assert page.locator("#heatmap tbody td").count() == len(compared) ** 2

    persons = page.locator("#persons tbody tr")
    assert persons.count() == len(report["persons"])
    assert page.locator("#persons img").count() == len(report["persons"])  # a crop of each person
    links = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
    assert all(not link.startswith(("/", "http", "file:")) for link in links), links
    assert watched.dialogs == [] and watched.errors == []
    assert all(url.startswith("file://") for url in watched.requests), watched.requests


def test_a_thousand_video_index_opens_in_under_two_seconds(browser, results, tmp_path):
    # Generated reports: one real report copied 1,000 times under other names.
    report = _report(results)
    rows = []
    for k in range(1000):
        name = f"v{k:04d}"
        (tmp_path / f"{name}.json").write_text(json.dumps({**report, "input": f"{name}.mp4",
                                                           "score": {**report["score"], "mean": k % 97 / 9.7}}))
        rows.append({"input": f"{name}.mp4", "status": "done", "error": "", "report": f"{name}.json",
                     "processing_seconds": "12.5"})
    with open(tmp_path / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    started = time.perf_counter()
    index = build_index(tmp_path, build_pages=False)
    writing = time.perf_counter() - started
    page = browser.new_page()
    started = time.perf_counter()
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    opened = time.perf_counter() - started
    assert page.locator("#videos tbody tr").count() == 1000
    assert opened < 2.0, f"the index of 1,000 videos took {opened:.2f} s to open"
    assert writing < 10.0, f"writing it took {writing:.2f} s"


@pytest.fixture(scope="module")
def class_of_30(tmp_path_factory) -> Path:
    """The review page of a class: a real run of a generated clip where a stand-in model (no
    inference cost) returns 30 dancing people a frame, each 0-6 frames late."""
    from bench.stand_ins import CrowdModel
    from config import Config
    from pipeline.runner import run_video
    from reports.report import write_reports
    from reports.review import build_video_page
    from tests.helpers import make_video

    folder = tmp_path_factory.mktemp("class")
    clip = make_video(folder / "class.mp4", seconds=8.0, fps="30", size="640x360")
    config = Config(input=clip, output=folder / "out" / "class.mp4", progress=False, max_persons=30,
                    end_card_seconds=1.0)
    write_reports(run_video(config, CrowdModel(30)), config)
    return build_video_page(folder / "out" / "class.json")


def test_a_class_of_30_reads_on_one_screen(browser, class_of_30):
    report = json.loads(class_of_30.with_suffix(".json").read_text())
    assert sum(p["scored"] for p in report["persons"]) == 30
    watched = Watched(browser, class_of_30.as_uri())
    page = watched.page
    page.set_viewport_size({"width": 1280, "height": 900})

    # A compact row per person, sortable: the lag heading puts the furthest from the group first.
    rows = page.locator("#persons tbody tr")
    assert rows.count() == 30
    heights = page.eval_on_selector_all("#persons tbody tr", "rows => rows.map(r => r.getBoundingClientRect().height)")
    assert max(heights) <= 40, heights
    page.click("#persons th button[data-key=lag]")
    lags = [abs(v) for v in page.eval_on_selector_all(
        "#persons tbody tr", "rows => rows.map(r => parseFloat(r.dataset.lag))")]
    assert lags == sorted(lags, reverse=True) and lags[0] > lags[-1]
    page.click("#persons th button[data-key=id]")
    ids = page.eval_on_selector_all("#persons tbody tr", "rows => rows.map(r => +r.dataset.id)")
    assert ids == sorted(ids)

    # The heat map: 30 x 30 small cells, group by group, narrower than the page.
    assert page.locator("#heatmap.compact tbody td").count() == 30 * 30
    box = page.locator("#heatmap").bounding_box()
    assert box["width"] <= 1280 - 40, box
    group_of = {p["id"]: p["group"] or 10**6 for p in report["persons"]}
    order = page.eval_on_selector_all("#heatmap tbody tr", "rows => rows.map(r => +r.dataset.person)")
    assert [group_of[i] for i in order] == sorted(group_of[i] for i in order)

    # A row under the pointer lights its person's lag line and dims the others.
    first = ids[0]
    page.hover(f"#persons tbody tr[data-person='{first}']")
    assert page.locator(f"#timeline path.lag.hot[data-person='{first}']").count() == 1
    assert page.locator("#timeline.focus").count() == 1
    assert watched.dialogs == [] and watched.errors == []
