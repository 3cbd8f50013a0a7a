"""Review pages without a browser: what the HTML says, and what rebuilds it."""

import json
import re
import shutil

import pytest

from config import Config
from pipeline.cli import get_args_parser, main
from pipeline.resume import remove_outputs
from pipeline.runner import run_video
from reports.outputs import OutputFiles
from reports.report import write_reports
from reports.review import build_index, build_video_page
from tests.helpers import StandInEstimator, make_video

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """One real run (stand-in model) whose input has a hostile name, and its report."""
    folder = tmp_path_factory.mktemp("review-unit")
    source = make_video(folder / f"{HOSTILE} & \"q's\".mp4", seconds=1.5, fps="10", size="96x64")
    config = Config(input=source, output=folder / "out" / "clip.mp4", progress=False, end_card_seconds=0.5)
    result = run_video(config, StandInEstimator())
    write_reports(result, config)
    return config


def test_the_video_page_escapes_names_forbids_the_network_and_links_relatively(done):
    page = build_video_page(OutputFiles.of(done.output).json)
    html = page.read_text()
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in html
    assert not re.search(r"(src|href)=\"(https?:|file:|/)", html)
    assert 'src="clip.mp4"' in html and 'href="clip.csv"' in html and 'href="clip.json"' in html
    media = OutputFiles.of(done.output).media
    assert (media / "thumb.jpg").is_file() and sorted(p.name for p in media.glob("person-*.jpg"))


def test_the_index_covers_a_folder_without_a_summary_and_a_page_is_redone_with_its_outputs(done, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(done.output.parent, out)
    index = build_index(out)
    html = index.read_text()
    assert html.count('<tr class="video') == 1 and 'href="clip.html"' in html and HOSTILE not in html
    remove_outputs(out / "clip.mp4")
    assert not (out / "clip.html").exists() and not (out / "clip.review").exists()


def test_python_m_pipeline_review_rebuilds_the_pages(done, tmp_path, capsys):
    from reports import review

    out = tmp_path / "out"
    shutil.copytree(done.output.parent, out)
    (out / "clip.html").unlink(missing_ok=True)
    assert review.main([str(out)]) == 0
    assert (out / "index.html").is_file() and (out / "clip.html").is_file()
    assert review.main([str(out / "clip.json")]) == 0
    assert review.main([str(out / "nothing.json")]) == 2


def test_a_single_file_run_writes_its_page(tmp_path):
    source = make_video(tmp_path / "in.mp4", seconds=0.5, fps="10", size="96x64")
    code = main(get_args_parser().parse_args([str(source), str(tmp_path / "o.mp4"), "--weights", "random",
                                              "--device", "cpu", "--min-size", "64", "--no-progress"]))
    assert code == 0 and (tmp_path / "o.html").is_file()
    assert json.loads((tmp_path / "o.json").read_text())["files"]["video"] == "o.mp4"


def test_a_person_whose_box_lies_outside_the_frame_gets_a_crop(done, tmp_path):
    """Untrained weights found boxes past the frame's edge; the page was then not written."""
    out = tmp_path / "out"
    shutil.copytree(done.output.parent, out)
    files = OutputFiles.of(out / "clip.mp4")
    report = json.loads(files.json.read_text())
    report["persons"][0]["box"] = [500.0, 300.0, 640.0, 400.0]  # the frame is 96x64
    files.json.write_text(json.dumps(report))
    shutil.rmtree(files.media, ignore_errors=True)  # absent when no crop was written
    build_video_page(files.json)
    assert (files.media / f"person-{report['persons'][0]['id']}.jpg").is_file()


def test_the_track_timeline_and_the_heat_map_come_from_the_report():
    from reports.review import TIMELINE_WIDTH, _heat_map, _tracks

    join = {"gap_frames": 10, "cost": 0.42, "position": 0.3, "velocity": None, "shape": 0.5, "colour": 0.46}
    report = {
        "fps": 10.0, "duration_seconds": 10.0,
        "identity": {"scene_cuts": [{"frame": 80, "seconds": 8.0}]},
        "persons": [
            {"id": 1, "first_frame": 0, "last_frame": 79, "scored": True, "group": 1, "gaps": [],
             "tracklets": [{"start_frame": 0, "end_frame": 79, "frames": 80, "join": None}]},
            {"id": 2, "first_frame": 0, "last_frame": 49, "scored": True, "group": 1,
             "gaps": [{"start_frame": 20, "end_frame": 29, "start_s": 2.0, "end_s": 3.0}],
             "tracklets": [{"start_frame": 0, "end_frame": 19, "frames": 20, "join": None},
                           {"start_frame": 30, "end_frame": 49, "frames": 20, "join": join}]},
            {"id": 3, "first_frame": 5, "last_frame": 9, "scored": False, "group": None, "gaps": [],
             "tracklets": [{"start_frame": 5, "end_frame": 9, "frames": 5, "join": None}]},
        ],
        "sync": {"pairs": [
            {"ids": [1, 2], "score": 8.0, "likeness": 0.9, "lag_ms": 40.0, "moves_together": True},
            {"ids": [1, 3], "score": 0.0, "likeness": 0.1, "lag_ms": None, "moves_together": False},
            {"ids": [2, 3], "score": None, "likeness": None, "lag_ms": None, "moves_together": False},
        ]},
    }
    tracks = _tracks(report)
    second = tracks["rows"][1]
    assert [bar["x"] for bar in second["bars"]] == [0.0, TIMELINE_WIDTH * 0.3]
    assert second["bars"][1]["width"] == pytest.approx(TIMELINE_WIDTH * 0.2)
    assert second["breaks"] == [{"x": TIMELINE_WIDTH * 0.2, "width": pytest.approx(TIMELINE_WIDTH * 0.1)}]
    assert len(second["joins"]) == 1 and "join cost 0.42" in second["joins"][0]["title"]
    assert "after 1.00 s" in second["joins"][0]["title"]
    assert tracks["cuts"] == [{"x": TIMELINE_WIDTH * 0.8, "seconds": 8.0}]
    heat = _heat_map(report)
    assert [row["id"] for row in heat["rows"]] == [1, 2, 3]
    cell = heat["rows"][0]["cells"][1]
    assert cell["score"] == 8.0 and cell["together"] and "#1 and #2 move together" in cell["title"]
    assert heat["rows"][1]["cells"][0]["score"] == 8.0  # symmetric
    assert heat["rows"][0]["cells"][0]["title"] == ""  # the diagonal is empty
    assert _heat_map({**report, "sync": {"pairs": []}}) is None


def test_the_index_names_the_few_furthest_of_a_class_and_sums_up_the_others():
    from reports.review import MAX_CHIPS, Chip, _chips

    few = [Chip(i, "#000", 10.0 * i, 0.9) for i in range(1, MAX_CHIPS + 1)]
    assert _chips(few) == {"chips": few, "others": None}
    lags = [5.0, -40.0, 12.0, 210.0, -8.0, 30.0, 0.0, -95.0, 20.0, None]
    chips = [Chip(i + 1, "#000", lag, 0.9) for i, lag in enumerate(lags)]
    shown = _chips(chips)
    assert [chip.id for chip in shown["chips"]] == [4, 8, 2]  # 210, -95, -40 ms
    assert shown["others"] == "+7 more (6 within ±30 ms)"
    shown = _chips(chips[:-1])
    assert shown["others"] == "+6 more within ±30 ms"


def test_the_page_shows_the_class_against_the_teacher(tmp_path):
    from dataclasses import replace

    from tests.test_report import DancingPair, dancing_teacher, make_scene_video

    dancing = make_scene_video(tmp_path / "dancing.mp4", "96x64", ("color=c=gray:", 6))
    # The teacher's video is the same recording (its left dancer), so its frames can be shown.
    teacher = replace(dancing_teacher(), input=str(dancing))
    config = Config(input=dancing, output=tmp_path / "out" / "clip.mp4", progress=False, end_card_seconds=0.5)
    write_reports(run_video(config, DancingPair(), teacher=teacher), config)
    html = build_video_page(OutputFiles.of(config.output).json).read_text()
    section = html[html.index("<h2>Against the teacher</h2>"):html.index("<h2>Who was seen when</h2>")]
    assert "Teacher: <b>dancing.mp4</b>, #1" in section and "hand (--offset)" in section
    assert section.count('<path class="teacher-lag"') == 2
    assert section.count('class="limb shown"') == 6 and section.count('<path class="limb') == 12
    assert section.count('<tr data-person=') == 2 and "still" in section  # the legs do not move
    media = OutputFiles.of(config.output).media
    assert (media / "moment-1-class.jpg").is_file() and (media / "moment-1-teacher.jpg").is_file()
    assert 'src="clip.review/moment-1-teacher.jpg"' in section and "the teacher at 0." in section
    without = Config(input=dancing, output=tmp_path / "plain" / "clip.mp4", progress=False, end_card_seconds=0.5)
    write_reports(run_video(without, DancingPair()), without)
    assert "Against the teacher" not in build_video_page(OutputFiles.of(without.output).json).read_text()
