"""Ultralytics YOLO-pose (YOLOv8 / YOLO11, COCO-17 keypoints) as a PoseEstimator.

Optional: needs the `ultralytics` package (AGPL-3.0) from requirements-yolo.txt. It is imported
only here, and only when this model is built, so the default model never loads it. Before the
import its network features are switched off (see `import_ultralytics`).

Scales: box scores and keypoint scores are both probabilities in 0..1 (keypoint scores are the
sigmoid of the model's keypoint-visibility logit).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from workers.data import Detections
from workers.device import resolve_device
from workers.errors import ModelError
from workers.infer import PoseModel
from workers.skeleton import NUM_KEYPOINTS

if TYPE_CHECKING:
    from config import Config

#: Inference size (longer side, pixels) when the checkpoint does not name its training size.
DEFAULT_IMAGE_SIZE = 640
#: What the error messages tell the user to pass (there are no default weights).
WEIGHTS_HINT = "--weights path/to/yolo11n-pose.pt"

# Read by ultralytics once, when it is first imported.
_FORCED_ENV = {
    # No DNS probe at import (it otherwise resolves one.one.one.one and dns.google to decide
    # whether it is "online"); offline also disables its analytics, pip-update check and sentry.
    "YOLO_OFFLINE": "1",
    # Never `pip install` a missing requirement at run time.
    "YOLO_AUTOINSTALL": "0",
}
_DEFAULT_ENV = {
    # Logger at ERROR instead of INFO; set YOLO_VERBOSE=1 to debug.
    "YOLO_VERBOSE": "0",
    # Unpickle checkpoints with torch weights_only=True plus an allow-list of ultralytics
    # classes, so a .pt cannot run code; set to 0 for a trusted checkpoint that needs more.
    "ULTRALYTICS_SAFE_LOAD": "1",
}


def import_ultralytics() -> ModuleType:
    """Import ultralytics with its network features off and its settings file out of $HOME.

    Ultralytics writes a settings.json at import. Unless the user chose a place
    (YOLO_CONFIG_DIR), it goes to a private temporary directory that is removed at exit,
    instead of ~/.config/Ultralytics. The OpenCV thread count that ultralytics sets to 0
    at import is restored, so the other stages keep their OpenCV threads.

    Returns:
        The `ultralytics` module.

    Raises:
        ModelError: ultralytics is not installed.
    """
    if "ultralytics" not in sys.modules:
        os.environ.update(_FORCED_ENV)
        for name, value in _DEFAULT_ENV.items():
            os.environ.setdefault(name, value)
        if "YOLO_CONFIG_DIR" not in os.environ:
            config_dir = tempfile.mkdtemp(prefix="dancingskeletons-ultralytics-")
            atexit.register(shutil.rmtree, config_dir, ignore_errors=True)
            os.environ["YOLO_CONFIG_DIR"] = config_dir
    cv2_threads = cv2.getNumThreads()
    try:
        import ultralytics
        from ultralytics.utils import events
    except ImportError as error:
        raise ModelError(
            f"the yolo model needs the optional ultralytics package ({error}); install it with the "
            "two commands at the top of requirements-yolo.txt"
        ) from None
    finally:
        cv2.setNumThreads(cv2_threads)
    # Also off when something else imported ultralytics before us without YOLO_OFFLINE.
    events.events.enabled = False
    return ultralytics


def load_model(weights: str | None) -> Any:
    """Load an Ultralytics pose checkpoint and check that it is a 17-keypoint person model.

    Args:
        weights: Path to a .pt checkpoint (YOLOv8/YOLO11 n/s/m/l/x pose). There is no
            default and no random mode: the weights come from the user.

    Returns:
        The `ultralytics.YOLO` model, on the CPU.

    Raises:
        ModelError: weights is None, the file is missing or unreadable, or it is not a
            COCO-17 person pose model.
    """
    if weights is None:
        raise ModelError(f"the yolo model has no default weights; pass {WEIGHTS_HINT}")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found; pass {WEIGHTS_HINT}")
    if path.suffix != ".pt":
        raise ModelError(f"{path}: not a PyTorch checkpoint (.pt); pass an Ultralytics pose .pt")
    source = str(path)
    ultralytics = import_ultralytics()
    try:
        model = ultralytics.YOLO(source)
    except Exception as error:  # noqa: BLE001 - unpickling and checkpoint errors come in many types
        first = (str(error).strip().splitlines() or [""])[0]
        raise ModelError(
            f"{source}: not a readable Ultralytics checkpoint ({type(error).__name__}: {first})"
        ) from None
    kpt_shape = list(getattr(model.model, "kpt_shape", None) or [])
    if model.task != "pose" or kpt_shape != [NUM_KEYPOINTS, 3]:
        raise ModelError(
            f"{source}: a {model.task!r} model with keypoint shape {kpt_shape or None}, not a pose "
            f"model with {NUM_KEYPOINTS} keypoints and scores; pass a COCO pose checkpoint such as "
            "yolo11n-pose.pt"
        )
    if "person" not in model.names.values():
        raise ModelError(f"{source}: the model has no 'person' class (classes: {model.names})")
    return model


def trained_image_size(model: Any) -> int:
    """The image size (pixels) the checkpoint was trained at; DEFAULT_IMAGE_SIZE if unknown."""
    args = getattr(model.model, "args", None)
    size = args.get("imgsz") if isinstance(args, dict) else None
    if isinstance(size, (list, tuple)) and size:
        size = max(size)
    return size if isinstance(size, int) and size > 0 else DEFAULT_IMAGE_SIZE


class YoloPoseEstimator(PoseModel):
    """Batched YOLO-pose inference on uint8 RGB frames.

    Each frame is letterboxed to `image_size` on its longer side (padded to a multiple of the
    model's stride), as Ultralytics does.

    Args:
        model: An `ultralytics.YOLO` pose model (see `load_model`).
        device: torch device string, "cpu" or "cuda:N".
        image_size: Inference size in pixels (longer side), a multiple of the model's stride.
        person_threshold: Persons with a box score at or below this are not returned.
        half: Run in fp16 (CUDA only).
        max_persons: Most persons returned per frame.
    """

    name = "yolo"

    def __init__(
        self,
        model: Any,
        device: str,
        image_size: int = DEFAULT_IMAGE_SIZE,
        person_threshold: float = 0.5,
        half: bool = False,
        max_persons: int = 30,
    ) -> None:
        self.model = model
        self.device = device
        self.image_size = image_size
        self.person_threshold = person_threshold
        self.half = half and device.startswith("cuda")
        person = next(index for index, name in model.names.items() if name == "person")
        self._predict_args = {
            "imgsz": image_size,
            "conf": person_threshold,
            "classes": [person],
            "device": device,
            "max_det": max_persons,
            "verbose": False,
        }
        if self.half:
            # Ultralytics 8.4 reads fp16 from `quantize` and warns on every call given `half`.
            self._predict_args["quantize"] = 16

    @classmethod
    def from_config(cls, config: Config) -> YoloPoseEstimator:
        """Build the model from the config: weights, device, image size, person threshold.

        Persons at or below the person threshold are never scored or drawn, so the model's
        NMS drops them (the results for the others do not change: NMS never lets a weaker
        box suppress a stronger one).

        Raises:
            ModelError: See `load_model`.
            DeviceError: CUDA was asked for and is not available.
        """
        device = resolve_device(config.device)
        model = load_model(config.weights)
        stride = int(max(model.model.stride))
        size = config.model_min_size or trained_image_size(model)
        image_size = -(-size // stride) * stride
        # fp16 on CUDA: these models train under mixed precision (AMP), and fp16 is Ultralytics'
        # own GPU deployment mode; opt-in through config.half like the other models.
        return cls(
            model, device, image_size, config.person_threshold_in_effect, half=config.half,
            max_persons=config.max_persons,
        )

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """See `workers.infer.PoseEstimator.predict`.

        Returns:
            One Detections per image: boxes (n, 4) and keypoints (n, 17, 2) in pixels of
            that image, box_scores (n,) and keypoint_scores (n, 17) probabilities in 0..1.
        """
        if not images:
            return []
        shapes = {image.shape for image in images}
        if len(shapes) != 1:
            raise ValueError(f"images must all have one shape, got {sorted(shapes)}")
        bgr = [cv2.cvtColor(image, cv2.COLOR_RGB2BGR) for image in images]  # ultralytics wants BGR
        threads = torch.get_num_threads()
        try:
            results = self.model.predict(bgr, **self._predict_args)
        finally:
            # Ultralytics sets torch's CPU threads to (cores - 1) when it first picks a device.
            torch.set_num_threads(threads)
        detections = []
        for result in results:
            keypoints = result.keypoints.data.float().cpu().numpy()
            detections.append(
                Detections(
                    boxes=result.boxes.xyxy.float().cpu().numpy(),
                    box_scores=result.boxes.conf.float().cpu().numpy(),
                    keypoints=keypoints[..., :2],
                    keypoint_scores=keypoints[..., 2],
                )
            )
        return detections
