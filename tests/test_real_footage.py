"""End to end on real footage from ../shared/videos with the real YOLO11n-pose model.

Skips cleanly without ../shared or without the optional ultralytics package.
"""

from __future__ import annotations

import importlib.util
import subprocess

import numpy as np
import pytest

from config import Config
from pipeline.runner import run_video
from tests.helpers import SHARED, need_shared, stream_facts
from workers.ffmpeg import ffmpeg_exe
from workers.poses import CachedPoses, load_poses
from workers.probe import probe

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None, reason="ultralytics is not installed (requirements-yolo.txt)"
)
WEIGHTS = SHARED / "models" / "yolo11n-pose.pt"


@pytest.fixture(scope="module")
def yolo():
    need_shared("models", "yolo11n-pose.pt")
    from workers.models import build_estimator

    return build_estimator(Config(input="in.mp4", output="out.mp4", model="yolo", weights=str(WEIGHTS), device="cpu"))


def _run(tmp_path, source, estimator, **changes):
    config = Config(input=source, output=tmp_path / "out.mp4", model="yolo", weights=str(WEIGHTS),
                    device="cpu", progress=False, **changes)
    return config, run_video(config, estimator)


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _check_output(config, result, audio: bool) -> None:
    info = result.info
    facts = stream_facts(config.output)
    assert facts["frames"] == len(result.frames) + round(config.end_card_seconds * float(info.fps))
    assert (facts["width"], facts["height"]) == (info.width, info.height)
    assert probe(config.output).fps == info.fps
    assert facts["audio"] is audio
    scored = [f.score for f in result.frames if f.score is not None]
    assert all(0.0 <= s <= 10.0 for s in scored)


def _replay_gives_identical_scores(tmp_path, config, result, monkeypatch) -> None:
    import workers.models

    monkeypatch.setattr(workers.models.ModelEntry, "load", lambda entry, config: pytest.fail("model loaded on replay"))
    meta, frames = load_poses(result.poses)
    replay_config = config.replace(output=tmp_path / "replay.mp4")
    replayed = run_video(replay_config, CachedPoses(result.poses, meta, frames))
    assert [f.score for f in replayed.frames] == [f.score for f in result.frames]
    assert [f.text for f in replayed.frames] == [f.text for f in result.frames]


def test_park_vp9_with_audio(tmp_path, yolo, monkeypatch):
    source = need_shared("videos", "park_two_people_vp9_audio.mp4")
    config, result = _run(tmp_path, source, yolo)
    assert len(result.frames) == 230
    _check_output(config, result, audio=True)
    two = np.mean([f.persons >= 2 for f in result.frames])
    assert two > 0.5, f"two persons in only {two:.0%} of frames"
    assert any(f.score is not None for f in result.frames)
    _replay_gives_identical_scores(tmp_path, config, result, monkeypatch)


def test_lab_portrait_60fps_without_audio(tmp_path, yolo):
    source = need_shared("videos", "lab_three_people_portrait_60fps.mp4")
    config, result = _run(tmp_path, source, yolo)
    assert len(result.frames) == 100
    _check_output(config, result, audio=False)
    assert np.mean([f.persons >= 2 for f in result.frames]) > 0.9


def test_pedestrians_old_codec_many_small_people(tmp_path, yolo):
    full = need_shared("videos", "pedestrians_msmpeg4_10fps.avi")
    source = tmp_path / "pedestrians_5s.avi"
    _ffmpeg("-i", str(full), "-t", "5", "-c", "copy", str(source))  # same codec and container
    from workers.models import build_estimator

    # People here are about 80 pixels tall: the nano model needs a larger input to see them.
    large = build_estimator(Config(input=source, output=tmp_path / "o.mp4", model="yolo", weights=str(WEIGHTS),
                                   device="cpu", model_min_size=1280))
    config, result = _run(tmp_path, source, large, model_min_size=1280)
    assert len(result.frames) == 50
    _check_output(config, result, audio=False)
    assert np.mean([f.persons for f in result.frames]) >= 3


def test_two_copies_side_by_side_score_near_the_maximum(tmp_path, yolo):
    """Known answer from real motion: one dancer beside an exact copy of themself."""
    full = need_shared("videos", "park_two_people_vp9_audio.mp4")
    source = tmp_path / "roof_twice.mp4"
    # The person on the roof (who dances in the first seconds), cropped, twice side by side.
    _ffmpeg("-i", str(full), "-t", "4", "-filter_complex",
            "[0:v]crop=520:480:330:0,split[a][b];[a][b]hstack", "-an",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", str(source))
    config, result = _run(tmp_path, source, yolo, end_card_seconds=0)
    scored = [f.score for f in result.frames if f.score is not None]
    assert len(scored) > 0.8 * len(result.frames)
    assert np.mean(np.array(scored) >= 9.0) > 0.9, sorted(scored)[:10]
    assert result.total > 9.5
