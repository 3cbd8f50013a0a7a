"""Infer stage: batches of frames through a pose model.

A pose model is anything that satisfies `PoseEstimator`; `build_estimator` picks one from the
config. Models are imported lazily so that an optional one (and its packages) is only loaded
when asked for.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import traceback
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from workers.data import Detections
from workers.errors import DeviceError, ModelError

log = logging.getLogger("dancingskeletons")

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
        from workers.models.keypoint_rcnn import KeypointRCNNEstimator as model
    elif config.model == "yolo":
        from workers.models.yolo import YoloPoseEstimator as model
    else:
        raise ValueError(f"unknown model {config.model!r}; choose one of {', '.join(MODELS)}")
    return ModelThread(model.from_config(config))


class ModelThread:
    """A pose model whose batches all run on one long-lived thread, whichever thread asks.

    PyTorch keeps cuDNN's convolution plans per thread (its cuDNN v8+ plan cache is
    thread-local), and the pipeline starts a new infer thread for every video: called from
    there directly, the model plans every layer again (and tunes, under cudnn.benchmark) at the
    start of every video. Measured on an H200, Keypoint R-CNN at 1080p, batch 8: about 2 s per
    video, 128-frame clips ran at 36.7 frames/s end to end while the steady rate was 95.4
    (docs/BENCHMARKS.md). The model's own thread lives as long as the model, so its plans,
    and a warm-up, serve every video of a folder run. Attributes other than `predict` are the
    model's.

    Args:
        estimator: The pose model.
    """

    def __init__(self, estimator: PoseEstimator) -> None:
        self.estimator = estimator
        self.name = estimator.name
        self.device = estimator.device
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        # A daemon, like the stage threads: a batch still running at exit does not hold it up.
        self._thread = threading.Thread(target=self._serve, name=f"model-{estimator.name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            images, done = self._jobs.get()
            try:
                done.set_result(self.estimator.predict(images))
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                done.set_exception(error)
            # Held until the next batch otherwise: the frames, and a failed batch's error with
            # its tensors.
            images = done = None

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """See `PoseEstimator.predict`; runs on the model's thread, waits for the result."""
        done: Future = Future()
        self._jobs.put((images, done))
        try:
            return done.result()
        finally:
            # An error raised here keeps this frame in its traceback: without this the frame,
            # the future and the error would hold one another (and the batch's tensors) in a cycle.
            done = None

    def __getattr__(self, name: str):
        return getattr(self.estimator, name)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device out-of-memory error (torch's, or a CUDA message)."""
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower()


class AdaptiveBatches:
    """Runs an estimator, halving the batch on out-of-memory errors down to single frames.

    The smaller size is kept for the rest of the video (memory that ran out once will run
    out again); a single frame that does not fit fails.

    Args:
        estimator: The pose model.
        batch_size: The batch size to start with.
    """

    def __init__(self, estimator: PoseEstimator, batch_size: int) -> None:
        self.estimator = estimator
        self.batch_size = batch_size
        self.halvings = 0

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """One Detections per image, in as many calls as the current batch size needs."""
        out: list[Detections] = []
        start = 0
        while start < len(images):
            chunk = images[start : start + self.batch_size]
            try:
                out.extend(self.estimator.predict(chunk))
                start += len(chunk)
                continue
            except Exception as error:  # noqa: BLE001 - only out-of-memory is handled
                if not is_out_of_memory(error):
                    raise
                message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                # The error's traceback holds the failed batch's frames, and with them its tensors:
                # free them before trying again (seen on an H200: without this, four failed
                # halvings left batch 1 no room).
                traceback.clear_frames(error.__traceback__)
            _release_device_memory()
            if self.batch_size == 1:
                raise ModelError(
                    f"out of {self.estimator.device} memory even for one frame ({message}); "
                    "use a smaller --min-size or another device"
                )
            self.batch_size //= 2
            self.halvings += 1
            log.warning("out of %s memory: batch size halved to %d", self.estimator.device, self.batch_size)
        return out


def _release_device_memory() -> None:
    """Collect what only cycles still hold, and give the device's cached blocks back."""
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


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
