"""Infer stage: batches of frames through a pose model.

A pose model is anything that satisfies `PoseEstimator`; `build_estimator` picks one from the
config. Models are imported lazily so that an optional one (and its packages) is only loaded
when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from workers.data import Detections
from workers.errors import DeviceError

if TYPE_CHECKING:
    from config import Config


class PoseEstimator(Protocol):
    """Frames in, one `Detections` per frame out.

    Attributes:
        name: Short model name, e.g. "keypointrcnn".
        device: The torch device string the model runs on, e.g. "cpu" or "cuda:0".
    """

    name: str
    device: str

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect persons and their keypoints.

        Args:
            images: RGB uint8 images, each (height, width, 3); all of one size.

        Returns:
            One Detections per image, coordinates in that image's pixels.
        """
        ...


MODELS = ("keypointrcnn", "yolo")


def build_estimator(config: Config) -> PoseEstimator:
    """Load the pose model that `config.model` names, on `config.device`.

    Raises:
        ModelError: The weights cannot be found or do not fit the model.
        DeviceError: The requested device is not available.
    """
    if config.model == "keypointrcnn":
        from workers.models.keypoint_rcnn import KeypointRCNNEstimator

        return KeypointRCNNEstimator.from_config(config)
    if config.model == "yolo":
        from workers.models.yolo import YoloPoseEstimator

        return YoloPoseEstimator.from_config(config)
    raise ValueError(f"unknown model {config.model!r}; choose one of {', '.join(MODELS)}")


def resolve_device(requested: str) -> str:
    """The torch device to run on.

    Args:
        requested: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".

    Raises:
        DeviceError: CUDA was asked for explicitly and is not available (no silent fallback).
    """
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {requested} was requested but CUDA is not available here; use --device cpu or auto")
    index = int(requested.split(":", 1)[1]) if ":" in requested else 0
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"--device {requested} was requested but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    return f"cuda:{index}"
