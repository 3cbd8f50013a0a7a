"""Infer stage: batches of frames through a pose model.

A pose model is anything that satisfies `PoseEstimator` (most inherit `PoseModel`'s
defaults); `workers.models.build_estimator` picks one from the registry. `ModelThread` runs a
model on its own thread, `AdaptiveBatches` halves the batch when device memory runs out.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

import numpy as np

from workers.data import Detections
from workers.device import is_out_of_memory, release_device_memory
from workers.errors import ModelError

if TYPE_CHECKING:
    from workers.data import Side

log = logging.getLogger("dancingskeletons")

class PoseEstimator(Protocol):
    """Frames in, one `Detections` per frame out.

    Attributes:
        name: Short model name, e.g. "keypointrcnn" (a replay: the cached model's).
        device: The torch device string the model runs on, e.g. "cpu" or "cuda:0".
        runtime: What runs the model: "torch", "openvino" or "onnxruntime"
            (workers.runtimes); None for a replay, where no model runs.
        replays_cache: Whether it replays a pose cache (`--poses`) instead of detecting:
            then every frame is read (no `--infer-every`) and no new cache is saved.
        input_side: Which side of the frame the model's input size measures: "long"
            (YOLO's imgsz) or "short" (Keypoint R-CNN's min_size); None when it has no input
            size to choose (a replay, a stand-in model).
        default_input_size: The model's own input size, pixels.
        input_stride: Input sizes are multiples of this.
        accepts_device_frames: `predict` also takes the GPU decoder's frames as they are: RGB
            uint8 torch tensors on the model's device (`workers.nvcodec`), no host round trip.
    """

    name: str
    device: str
    runtime: str | None
    replays_cache: bool
    input_side: Side | None
    default_input_size: int
    input_stride: int
    accepts_device_frames: bool

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect persons and their keypoints.

        Args:
            images: RGB uint8 images, each (height, width, 3); all of one size.

        Returns:
            One Detections per image, coordinates in that image's pixels.
        """
        ...

    def check_complete(self, frames_decoded: int) -> None:
        """Called once the video has been read: a replay refuses a cache longer than it."""
        ...

    def set_input_size(self, pixels: int) -> None:
        """Run at this input size from the next batch on (see `input_side`); between videos only."""
        ...


class PoseModel:
    """Defaults of a `PoseEstimator` for a model that detects (not a replay)."""

    name: str = ""
    device: str = "cpu"
    runtime: str | None = "torch"
    replays_cache: bool = False
    input_side: Side | None = None
    default_input_size: int = 0
    input_stride: int = 1
    accepts_device_frames: bool = False

    def check_complete(self, frames_decoded: int) -> None:
        """Nothing to check after a video."""

    def set_input_size(self, pixels: int) -> None:
        """A model without an input size to choose ignores it."""


class ModelThread(PoseModel):
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
        self.runtime = estimator.runtime
        self.input_side = estimator.input_side
        self.default_input_size = estimator.default_input_size
        self.input_stride = estimator.input_stride
        self.accepts_device_frames = estimator.accepts_device_frames
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

    def set_input_size(self, pixels: int) -> None:
        """See `PoseEstimator.set_input_size` (no batch runs between videos)."""
        self.estimator.set_input_size(pixels)

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """See `PoseEstimator.predict`; runs on the model's thread, waits for the result."""
        done: Future = Future()
        self._jobs.put((images, done))
        try:
            return done.result()
        finally:
            # An error raised here keeps this frame in its traceback: without this the frame,
            # the future and the error would hold one another (and the batch's tensors) in a cycle.
            del done

    def __getattr__(self, name: str):
        return getattr(self.estimator, name)


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
            release_device_memory()
            if self.batch_size == 1:
                raise ModelError(
                    f"out of {self.estimator.device} memory even for one frame ({message}); "
                    "use a smaller --min-size or another device"
                )
            self.batch_size //= 2
            self.halvings += 1
            log.warning("out of %s memory: batch size halved to %d", self.estimator.device, self.batch_size)
        return out
