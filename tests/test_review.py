"""Review pages without a browser: what the HTML says, and what rebuilds it."""

import json
import re
import shutil

import pytest

from config import Config
from pipeline.cli import get_args_parser, main
from pipeline.report import write_reports
from pipeline.resume import OutputFiles, remove_outputs
from pipeline.review import build_index, build_video_page
from pipeline.runner import run_video
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
    from pipeline import review

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
    shutil.rmtree(files.media)
    build_video_page(files.json)
    assert (files.media / f"person-{report['persons'][0]['id']}.jpg").is_file()
