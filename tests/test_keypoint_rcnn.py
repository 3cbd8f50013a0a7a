"""Keypoint R-CNN: the real torchvision model (random weights here) and its weights handling."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights

from config import Config
from pipeline.runner import run_video
from tests.helpers import make_video, stream_facts
from workers.errors import ModelError
from workers.models import build_estimator, keypoint_rcnn
from workers.skeleton import KEYPOINT_NAMES

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path, **changes):
    values = dict(input=tmp_path / "in.mp4", output=tmp_path / "out.mp4", weights="random", device="cpu",
                  model_min_size=96, person_threshold=0.0, max_persons=3, progress=False)
    values.update(changes)
    return Config(**values)


def test_keypoint_names_match_the_weights_metadata():
    assert tuple(KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.meta["keypoint_names"]) == KEYPOINT_NAMES


def test_the_real_model_runs_through_the_pipeline(tmp_path):
    make_video(tmp_path / "in.mp4", seconds=0.4, fps="10", size="128x96", audio=True)
    config = _config(tmp_path, batch_size=2, end_card_seconds=0.5)
    estimator = build_estimator(config)
    found = estimator.predict([np.zeros((96, 128, 3), np.uint8)] * 2)
    assert len(found) == 2 and found[0].keypoints.shape[1:] == (17, 2)
    assert len(found[0]) == 3  # threshold 0 and 3 persons at most: the keypoint head ran
    result = run_video(config, estimator)
    assert len(result.frames) == 4
    facts = stream_facts(config.output)
    assert facts["frames"] == 4 + 5 and facts["audio"]


def test_missing_weights_file_is_one_clear_error(tmp_path):
    with pytest.raises(ModelError, match=r"nope\.pth: weights file not found"):
        keypoint_rcnn.load_state_dict(str(tmp_path / "nope.pth"))


def test_weights_of_another_model_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ModelError, match="not Keypoint R-CNN ResNet-50-FPN weights"):
        build_estimator(_config(tmp_path, weights=str(path)))


def test_a_pickled_object_is_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": Path("/etc/passwd")}, path)  # not loadable with weights_only=True
    with pytest.raises(ModelError, match="not a readable weights file"):
        keypoint_rcnn.load_state_dict(str(path))


def test_a_saved_state_dict_loads_back(tmp_path):
    source = build_estimator(_config(tmp_path)).model
    path = tmp_path / "kprcnn.pth"
    torch.save(source.state_dict(), path)
    loaded = build_estimator(_config(tmp_path, weights=str(path))).model
    key = "roi_heads.keypoint_predictor.kps_score_lowres.weight"
    assert torch.equal(loaded.state_dict()[key], source.state_dict()[key])


def test_weights_neither_cached_nor_downloadable_say_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError) as caught:
        keypoint_rcnn.load_state_dict(None)
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in message
    assert "--weights" in message and KeypointRCNN_ResNet50_FPN_Weights.DEFAULT.url in message


def test_every_torch_load_uses_weights_only():
    calls = []
    for path in REPO.glob("[!.]*/**/*.py"):
        if ".venv" in path.parts:
            continue
        for line in path.read_text().splitlines():
            if re.search(r"torch\.load\(", line):
                calls.append((path, line))
                assert "weights_only=True" in line, f"{path}: {line.strip()}"
    assert calls  # the scan found the loader


def test_the_input_size_changes_between_videos(tmp_path):
    estimator = keypoint_rcnn.KeypointRCNNEstimator.from_config(_config(tmp_path))
    assert (estimator.input_side, estimator.default_input_size) == ("short", 96)
    estimator.set_input_size(160)
    transform = estimator.model.transform
    assert (transform.min_size, transform.max_size) == ((160,), 267)  # 160 * 1333 / 800, rounded up
    images, _ = transform([torch.zeros(3, 96, 128)])
    assert tuple(images.image_sizes[0]) == (160, 213)  # scaled by 160 / 96
    found = estimator.predict([np.zeros((96, 128, 3), np.uint8)])[0]
    assert found.boxes.shape[1] == 4 and np.all(found.boxes[:, 2] <= 128 + 1e-3)  # back in the frame's pixels
