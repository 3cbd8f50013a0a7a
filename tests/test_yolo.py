"""The optional YOLO-pose estimator: real inference on ../shared footage, errors, import hygiene.

ultralytics is looked up with `find_spec`, never imported by the tests themselves: importing it
before `workers.models.yolo` does would skip the offline set-up (a DNS probe, a settings file in
$HOME), which is what `pytest.importorskip` would do.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from config import Config
from workers.data import Detections
from workers.errors import DeviceError, ModelError
from workers.skeleton import NUM_KEYPOINTS

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "models" / "yolo11n-pose.pt"
PARK = SHARED / "videos" / "park_two_people_vp9_audio.mp4"
PARK_SIZE = (1768, 994)  # width, height

needs_ultralytics = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None,
    reason="ultralytics is not installed (optional: requirements-yolo.txt)",
)
needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"{WEIGHTS} is absent")


def make_config(**changes: object) -> Config:
    """A config for the yolo model on the CPU with the shared weights."""
    values: dict[str, object] = {"weights": str(WEIGHTS), "device": "cpu", "batch_size": 2}
    values.update(changes)
    return Config(input=Path("in.mp4"), output=Path("out.mp4"), model="yolo", **values)


def decode_frame(path: Path, size: tuple[int, int], seconds: float) -> np.ndarray:
    """One RGB uint8 frame (height, width, 3) at `seconds`, decoded by imageio-ffmpeg's ffmpeg."""
    width, height = size
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-ss",
        str(seconds),
        "-i",
        str(path),
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter at the project root; fail with its stderr if it fails."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def estimator():
    from workers.models.yolo import YoloPoseEstimator

    return YoloPoseEstimator.from_config(make_config())


@pytest.fixture(scope="module")
def park_frame() -> np.ndarray:
    if not PARK.is_file():
        pytest.skip(f"{PARK} is absent")
    return decode_frame(PARK, PARK_SIZE, seconds=3.0)


@needs_ultralytics
@needs_weights
def test_finds_people_in_a_real_frame(estimator, park_frame: np.ndarray) -> None:
    (found,) = estimator.predict([park_frame])

    assert isinstance(found, Detections)
    n = len(found)
    assert n >= 1
    assert found.boxes.shape == (n, 4)
    assert found.keypoints.shape == (n, NUM_KEYPOINTS, 2)
    assert found.keypoint_scores.shape == (n, NUM_KEYPOINTS)
    width, height = PARK_SIZE
    x1, y1, x2, y2 = found.boxes.T
    assert np.all((0 <= x1) & (x1 < x2) & (x2 <= width)), found.boxes
    assert np.all((0 <= y1) & (y1 < y2) & (y2 <= height)), found.boxes
    # Probabilities, and only persons above the person threshold (0.5 here).
    assert np.all((found.box_scores > 0.5) & (found.box_scores <= 1.0)), found.box_scores
    assert np.all((found.keypoint_scores >= 0.0) & (found.keypoint_scores <= 1.0))
    # Confident keypoints lie on their person: inside the box, give or take 10 %.
    for box, points, scores in zip(found.boxes, found.keypoints, found.keypoint_scores):
        margin = 0.1 * (box[2:] - box[:2])
        sure = points[scores > 0.5]
        assert len(sure) >= 5
        assert np.all((sure >= box[:2] - margin) & (sure <= box[2:] + margin)), (box, sure)


@needs_ultralytics
@needs_weights
def test_the_input_size_changes_between_videos(estimator, park_frame: np.ndarray) -> None:
    assert (estimator.input_side, estimator.default_input_size, estimator.input_stride) == ("long", 640, 32)
    (default,) = estimator.predict([park_frame])
    try:
        estimator.set_input_size(1000)
        assert estimator.image_size == 1024  # rounded up to the stride
        (larger,) = estimator.predict([park_frame])
    finally:
        estimator.set_input_size(640)
    assert estimator.image_size == 640
    # The same people, in the frame's pixels either way.
    assert len(larger) >= len(default) >= 1
    best = larger.boxes[np.argmax(larger.box_scores)]
    assert np.abs(default.boxes - best).max(axis=1).min() < 20


@needs_ultralytics
@needs_weights
def test_a_batch_gives_what_single_frames_give(estimator, park_frame: np.ndarray) -> None:
    (single,) = estimator.predict([park_frame])
    batch = estimator.predict([park_frame, park_frame.copy()])

    assert len(batch) == 2
    for found in batch:
        assert len(found) == len(single)
        # Equal up to float rounding of a batched convolution (about 1e-4 pixels).
        np.testing.assert_allclose(found.boxes, single.boxes, atol=1e-2)
        np.testing.assert_allclose(found.keypoints, single.keypoints, atol=1e-2)
        np.testing.assert_allclose(found.box_scores, single.box_scores, atol=1e-4)
        np.testing.assert_allclose(found.keypoint_scores, single.keypoint_scores, atol=1e-4)


@needs_ultralytics
@needs_weights
def test_ultralytics_gets_bgr(estimator, monkeypatch: pytest.MonkeyPatch) -> None:
    received = []
    predict = estimator.model.predict

    def spy(images, **kwargs):
        received.extend(images)
        return predict(images, **kwargs)

    monkeypatch.setattr(estimator.model, "predict", spy)
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 255

    estimator.predict([red])

    assert received[0][..., 2].min() == 255 and received[0][..., :2].max() == 0


@needs_ultralytics
@needs_weights
def test_an_empty_batch_and_mixed_sizes(estimator) -> None:
    assert estimator.predict([]) == []
    with pytest.raises(ValueError, match="one shape"):
        estimator.predict([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 96, 3), np.uint8)])


@needs_ultralytics
def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    from workers.models.yolo import YoloPoseEstimator

    missing = tmp_path / "nowhere" / "yolo11n-pose.pt"
    with pytest.raises(ModelError, match="weights file not found") as caught:
        YoloPoseEstimator.from_config(make_config(weights=str(missing)))
    assert str(missing) in str(caught.value)
    assert "\n" not in str(caught.value)


@needs_ultralytics
def test_no_weights_asks_for_them() -> None:
    from workers.models.yolo import YoloPoseEstimator

    with pytest.raises(ModelError, match="--weights path/to/yolo11n-pose.pt"):
        YoloPoseEstimator.from_config(make_config(weights=None))


@needs_ultralytics
def test_a_detection_checkpoint_is_rejected(tmp_path: Path) -> None:
    from workers.models.yolo import YoloPoseEstimator, import_ultralytics

    detector = tmp_path / "yolo11n-detect.pt"
    import_ultralytics().YOLO("yolo11n.yaml").save(detector)  # random weights, built offline

    with pytest.raises(ModelError, match="not a pose model") as caught:
        YoloPoseEstimator.from_config(make_config(weights=str(detector)))
    assert str(detector) in str(caught.value)


@needs_ultralytics
@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_when_unavailable_is_an_error(device: str) -> None:
    from workers.models.yolo import YoloPoseEstimator

    with pytest.raises(DeviceError, match="CUDA is not available"):
        YoloPoseEstimator.from_config(make_config(device=device))


def test_the_default_model_never_imports_ultralytics() -> None:
    modules = ["workers.infer", "workers.models.yolo"]
    if (ROOT / "workers" / "models" / "keypoint_rcnn.py").is_file():
        modules.append("workers.models.keypoint_rcnn")
    result = run_python(
        f"""
        import importlib, sys
        for name in {modules!r}:
            importlib.import_module(name)
        print("ultralytics" in sys.modules)
        """
    )
    assert result.stdout.strip() == "False"


@needs_ultralytics
@needs_weights
def test_yolo_stays_offline_and_out_of_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "XDG_", "ULTRALYTICS_"))}
    env["HOME"] = str(home)
    result = run_python(
        f"""
        import json, os, sys
        network = []
        def audit(event, args):
            if event.startswith(("socket.", "urllib.", "http.")):
                network.append(event)
        sys.addaudithook(audit)
        import numpy as np
        from config import Config
        from workers.models.yolo import YoloPoseEstimator
        config = Config(input="in.mp4", output="out.mp4", model="yolo", weights={str(WEIGHTS)!r},
                        device="cpu", batch_size=1, model_min_size=64)
        YoloPoseEstimator.from_config(config).predict([np.zeros((48, 64, 3), np.uint8)])
        print(json.dumps({{"network": network, "config_dir": os.environ.get("YOLO_CONFIG_DIR")}}))
        """,
        env=env,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["network"] == []
    assert list(home.iterdir()) == []
    # Its settings went to a private directory, removed at exit.
    assert report["config_dir"] and not Path(report["config_dir"]).exists()


class _ArgsOnly:
    """A stand-in Ultralytics model that records the predict arguments."""

    names = {0: "person"}

    def __init__(self) -> None:
        self.kwargs: dict = {}

    def predict(self, images, **kwargs):
        self.kwargs = kwargs
        return []


@pytest.mark.parametrize("device,half,quantize", [("cuda:0", True, 16), ("cuda:0", False, None), ("cpu", True, None)])
def test_fp16_is_asked_through_quantize_which_ultralytics_reads(device, half, quantize) -> None:
    """Ultralytics 8.4 reads fp16 from `quantize`; given `half` it warns on every call."""
    from workers.models.yolo import YoloPoseEstimator

    model = _ArgsOnly()
    YoloPoseEstimator(model, device, half=half).predict([np.zeros((8, 8, 3), np.uint8)])
    assert "half" not in model.kwargs and model.kwargs.get("quantize") == quantize
