"""Ultralytics YOLO-pose (YOLOv8 / YOLO11, COCO-17 keypoints) as a PoseEstimator.

Optional: needs the `ultralytics` package (AGPL-3.0) from requirements-yolo.txt. It is imported
only here, and only when this model is built, so the default model never loads it. Before the
import its network features are switched off (see `import_ultralytics`).

Scales: box scores and keypoint scores are both probabilities in 0..1 (keypoint scores are the
sigmoid of the model's keypoint-visibility logit).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from workers.data import Detections
from workers.device import resolve_device
from workers.errors import ModelError
from workers.export_cache import ExportKey, cached_export, file_sha256, read_meta
from workers.infer import PoseModel
from workers.models import get_model
from workers.runtimes import (
    INSTALL_HINT,
    Runtime,
    choose_runtime,
    distribution_version,
    get_runtime,
    is_exported,
    switch_off_telemetry,
)
from workers.skeleton import NUM_KEYPOINTS

if TYPE_CHECKING:
    from workers.models import ModelSettings

log = logging.getLogger("dancingskeletons")

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


def checkpoint_path(weights: str | None) -> Path:
    """The checkpoint file `weights` names, checked to exist and to be a .pt.

    Raises:
        ModelError: weights is None, the file is missing, or it is not a .pt.
    """
    if weights is None:
        raise ModelError(f"the yolo model has no default weights; pass {WEIGHTS_HINT}")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found; pass {WEIGHTS_HINT}")
    if path.suffix != ".pt":
        raise ModelError(f"{path}: not a PyTorch checkpoint (.pt); pass an Ultralytics pose .pt")
    return path


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
    source = str(checkpoint_path(weights))
    ultralytics = import_ultralytics()
    try:
        model = ultralytics.YOLO(source)
    except Exception as error:  # noqa: BLE001 - unpickling and checkpoint errors come in many types
        raise ModelError(f"{source}: not a readable Ultralytics checkpoint ({_one_line(error)})") from None
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


def _one_line(error: BaseException) -> str:
    """"Type: first line of the message"."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def trained_image_size(model: Any) -> int:
    """The image size (pixels) the checkpoint was trained at; DEFAULT_IMAGE_SIZE if unknown."""
    args = getattr(model.model, "args", None)
    size = args.get("imgsz") if isinstance(args, dict) else None
    if isinstance(size, (list, tuple)) and size:
        size = max(size)
    return size if isinstance(size, int) and size > 0 else DEFAULT_IMAGE_SIZE


#: Ultralytics' export settings by format (part of the cache key). Dynamic shapes keep
#: Ultralytics' rectangular letterbox (a static export pads every frame to a 640x640 square:
#: 1.67x the pixels of the park clip's 640x384); f32 weights (fp16 weights would change the
#: numbers); ONNX without onnxslim (not installed; the graph runs as traced).
EXPORT_SETTINGS: dict[str, dict[str, Any]] = {
    "openvino": {"dynamic": True, "half": False},
    "onnx": {"dynamic": True, "half": False, "simplify": False},
}
#: OpenVINO's compile settings. Its CPU default on processors with bfloat16 (e.g. AMD Zen 4) is
#: bf16, which measured slower than f32 there and moves keypoints by about 0.5 px
#: (docs/BENCHMARKS.md, "CPU runtimes").
OPENVINO_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def export_key(path: Path, runtime: Runtime) -> ExportKey:
    """The cache key of `path` exported for `runtime`.

    No image size: the export takes any (dynamic shapes); it is traced at the checkpoint's
    trained size, which the checkpoint (hence its hash) decides.
    """
    versions = {name: distribution_version(name) for name in ("ultralytics", "torch", *runtime.versions)}
    settings = {"format": runtime.export_format, **EXPORT_SETTINGS[str(runtime.export_format)]}
    return ExportKey(runtime=runtime.name, weights_sha256=file_sha256(path), settings=settings, versions=versions)


def export_checkpoint(path: Path, runtime: Runtime, folder: Path) -> dict[str, Any]:
    """Export a checked pose checkpoint for `runtime` into `folder`, offline.

    Ultralytics writes an export beside its checkpoint, so the checkpoint is copied into
    `folder` first (the user's folder may be read-only).

    Returns:
        What the cache records: the model file's name in the folder, the model's stride,
        trained image size and class names.

    Raises:
        ModelError: The checkpoint is not a pose model (see `load_model`).
        Exception: The exporter's own errors.
    """
    log.info("%s: exporting it for %s, once (cached under %s)", path, runtime.name, folder.parent)
    source = folder / "checkpoint" / "model.pt"
    source.parent.mkdir()
    shutil.copyfile(path, source)
    model = load_model(str(source))
    size = trained_image_size(model)
    meta = {"stride": int(max(model.model.stride)), "image_size": size,
            "names": {str(index): name for index, name in model.names.items()}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's TracerWarnings and deprecation notices
        exported = Path(model.export(format=runtime.export_format, imgsz=size, device="cpu",
                                     **EXPORT_SETTINGS[str(runtime.export_format)]))
    meta["file"] = exported.name
    shutil.move(exported, folder / exported.name)
    shutil.rmtree(source.parent)
    return meta


def load_exported(config: ModelSettings, runtime: Runtime, path: Path) -> YoloPoseEstimator:
    """The estimator on `runtime`, from the export cache (exported first if needed).

    The model runs once on a small blank frame before it is returned, so that a runtime that
    cannot run here fails now, not in the middle of a video.

    Args:
        config: The run's settings (threshold, input size, most persons).
        runtime: An exported runtime.
        path: The checkpoint (see `checkpoint_path`).

    Raises:
        ModelError: The checkpoint is not usable, or the export or the runtime failed; the
            message says which.
    """
    switch_off_telemetry()  # before the export or the loading imports the runtime
    ultralytics = import_ultralytics()
    try:
        key = export_key(path, runtime)
        folder = cached_export(key, partial(export_checkpoint, path, runtime))
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - the exporters fail in many ways
        raise ModelError(f"{path}: could not export it for {runtime.name} ({_one_line(error)})") from None
    meta = read_meta(folder)
    try:
        model = ultralytics.YOLO(str(folder / meta["file"]), task="pose")
        names = {int(index): name for index, name in meta["names"].items()}
        size = config.model_min_size or meta["image_size"]
        estimator = YoloPoseEstimator(
            model, "cpu", -(-size // meta["stride"]) * meta["stride"], config.person_threshold_in_effect,
            max_persons=config.max_persons, names=names, runtime=runtime.name, stride=meta["stride"],
        )
        estimator.predict([np.zeros((64, 64, 3), np.uint8)])
        if runtime.name == "openvino":
            _compile_openvino(model, folder / meta["file"], config.cpu_threads)
            estimator.predict([np.zeros((64, 64, 3), np.uint8)])
        elif config.cpu_threads is not None:
            _limit_onnxruntime(model, folder / meta["file"], config.cpu_threads)
            estimator.predict([np.zeros((64, 64, 3), np.uint8)])
    except Exception as error:  # noqa: BLE001 - the runtimes fail in many ways
        raise ModelError(f"{folder}: {runtime.name} cannot run the exported model here "
                         f"({_one_line(error)})") from None
    return estimator


def _compile_openvino(model: Any, export: Path, threads: int | None = None) -> None:
    """Compile the OpenVINO model again with OPENVINO_CONFIG, in place of Ultralytics' own.

    Ultralytics compiles with a latency hint only, which leaves OpenVINO's precision default
    (bf16 where the CPU has it). Its backend runs `ov_compiled_model` on every batch.

    Args:
        threads: The CPU threads OpenVINO may use (several videos at once split the cores);
            None for its default (every core).
    """
    import openvino

    backend = model.predictor.model.backend
    if not hasattr(backend, "ov_compiled_model"):
        raise TypeError(f"expected Ultralytics' OpenVINO backend, got {type(backend).__name__}")
    core = openvino.Core()
    settings = dict(OPENVINO_CONFIG) if threads is None else {**OPENVINO_CONFIG, "INFERENCE_NUM_THREADS": threads}
    backend.compile_model = partial(core.compile_model, device_name="CPU", config=settings)
    backend.ov_compiled_model = backend.compile_model(core.read_model(next(export.glob("*.xml"))))


def _limit_onnxruntime(model: Any, export: Path, threads: int) -> None:
    """Open the ONNX Runtime session again with `threads` intra-op threads, in place of
    Ultralytics' own (which takes every core), so that several videos at once split the cores."""
    import onnxruntime

    backend = model.predictor.model.backend
    if not hasattr(backend, "session"):
        raise TypeError(f"expected Ultralytics' ONNX Runtime backend, got {type(backend).__name__}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    backend.session = onnxruntime.InferenceSession(str(export), options, providers=["CPUExecutionProvider"])


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
        names: The model's class names by index; None to ask the model.
        runtime: What runs the model: "torch", "openvino" or "onnxruntime" (workers.runtimes).
        stride: The model's largest stride: input sizes are multiples of it.
    """

    name = "yolo"
    input_side = "long"

    def __init__(
        self,
        model: Any,
        device: str,
        image_size: int = DEFAULT_IMAGE_SIZE,
        person_threshold: float = 0.5,
        half: bool = False,
        max_persons: int = 30,
        names: dict[int, str] | None = None,
        runtime: str = "torch",
        stride: int = 32,
    ) -> None:
        self.model = model
        self.device = device
        self.runtime = runtime
        # The GPU decoder's frames are taken as they are in torch on CUDA (`letterbox`).
        self.accepts_device_frames = runtime == "torch" and device.startswith("cuda")
        self.image_size = self.default_input_size = image_size
        self.input_stride = stride
        self.person_threshold = person_threshold
        self.half = half and device.startswith("cuda")
        person = next(index for index, name in (names or model.names).items() if name == "person")
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
    def from_config(cls, config: ModelSettings) -> YoloPoseEstimator:
        """Build the model from the config: weights, runtime, device, image size, threshold.

        Persons at or below the person threshold are never scored or drawn, so the model's
        NMS drops them (the results for the others do not change: NMS never lets a weaker
        box suppress a stronger one).

        With an exported runtime (see `workers.runtimes.choose_runtime`) the model runs from
        the export cache on the CPU. When `auto` chose it and it fails, the model runs in
        torch after one warning line; asked for by name, it fails.

        Raises:
            ModelError: See `load_model`; or the runtime asked for by name failed.
            DeviceError: CUDA was asked for and is not available.
        """
        exported = is_exported(config.runtime)
        device = resolve_device("cpu" if exported else config.device)
        runtime = choose_runtime(config.runtime, get_model(cls.name).runtimes, device)
        if runtime.exported:
            path = checkpoint_path(config.weights)  # a missing checkpoint or package is an error on any runtime
            import_ultralytics()
            try:
                return load_exported(config, runtime, path)
            except ModelError as error:
                if exported:
                    raise
                log.warning("%s; running the model in torch instead", error)
        elif device == "cpu" and config.runtime == "auto" and not get_runtime("openvino").installed():
            log.info("the yolo model runs in torch on the CPU; `%s` installs OpenVINO, which runs it faster "
                     "(docs/BENCHMARKS.md, \"CPU runtimes\")", INSTALL_HINT)
        model = load_model(config.weights)
        stride = int(max(model.model.stride))
        size = config.model_min_size or trained_image_size(model)
        image_size = -(-size // stride) * stride
        # fp16 on CUDA: these models train under mixed precision (AMP), and fp16 is Ultralytics'
        # own GPU deployment mode; opt-in through config.half like the other models.
        return cls(
            model, device, image_size, config.person_threshold_in_effect, half=config.half,
            max_persons=config.max_persons, stride=stride,
        )

    def set_input_size(self, pixels: int) -> None:
        """See `workers.infer.PoseEstimator.set_input_size`: the longer side, rounded up to the stride."""
        self.image_size = self._predict_args["imgsz"] = -(-pixels // self.input_stride) * self.input_stride

    def predict(self, images: Sequence[Any]) -> list[Detections]:
        """See `workers.infer.PoseEstimator.predict`.

        Args:
            images: RGB uint8 (height, width, 3), all of one size: numpy arrays, or torch
                tensors (the GPU decoder's frames, `accepts_device_frames`), letterboxed on
                their device (`letterbox`) instead of by Ultralytics on the host.

        Returns:
            One Detections per image: boxes (n, 4) and keypoints (n, 17, 2) in pixels of
            that image, box_scores (n,) and keypoint_scores (n, 17) probabilities in 0..1.
        """
        if not images:
            return []
        shapes = {tuple(image.shape) for image in images}
        if len(shapes) != 1:
            raise ValueError(f"images must all have one shape, got {sorted(shapes)}")
        threads = torch.get_num_threads()
        try:
            if isinstance(images[0], torch.Tensor):
                batch, box = letterbox(list(images), self.image_size, self.input_stride)
                results = self.model.predict(batch, **self._predict_args)
            else:
                box = None
                bgr = [cv2.cvtColor(image, cv2.COLOR_RGB2BGR) for image in images]  # ultralytics wants BGR
                results = self.model.predict(bgr, **self._predict_args)
        finally:
            # Ultralytics sets torch's CPU threads to (cores - 1) when it first picks a device.
            torch.set_num_threads(threads)
        detections = []
        for result in results:
            keypoints = result.keypoints.data.float().cpu().numpy()
            found = Detections(
                boxes=result.boxes.xyxy.float().cpu().numpy(),
                box_scores=result.boxes.conf.float().cpu().numpy(),
                keypoints=keypoints[..., :2],
                keypoint_scores=keypoints[..., 2],
            )
            detections.append(found if box is None else box.unletterbox(found, images[0].shape[:2]))
        return detections


@dataclass(frozen=True)
class Letterbox:
    """Where `letterbox` put the frames: a scale, then an offset (pixels of its output)."""

    scale: float
    left: int
    top: int

    def unletterbox(self, found: Detections, frame_shape: tuple[int, int]) -> Detections:
        """`found` in pixels of the frames given to `letterbox`, clipped to them as Ultralytics
        clips (boxes and keypoints inside the frame)."""
        height, width = frame_shape
        offset = np.array([self.left, self.top], np.float32)
        limit = np.array([width, height], np.float32)
        boxes = ((found.boxes.reshape(-1, 2, 2) - offset) / self.scale).clip(0, limit).reshape(-1, 4)
        keypoints = ((found.keypoints - offset) / self.scale).clip(0, limit)
        return Detections(boxes=boxes.astype(np.float32), box_scores=found.box_scores,
                          keypoints=keypoints.astype(np.float32), keypoint_scores=found.keypoint_scores)


def letterbox(images: list[torch.Tensor], size: int, stride: int) -> tuple[torch.Tensor, Letterbox]:
    """Ultralytics' predict-time letterbox (its `LetterBox` with `auto`, as it treats a batch of
    one size) on the frames' own device: the longer side scaled to `size`, the other padded with
    grey (114) to the next multiple of `stride`.

    Ultralytics resizes with OpenCV's bilinear (INTER_LINEAR) in uint8; here torch's bilinear
    (half-pixel centres, no antialiasing, the same sampling) in float: within a level.

    Args:
        images: RGB uint8 (height, width, 3) tensors of one size.
        size: The model's input size (the longer side).
        stride: The model's largest stride.

    Returns:
        The batch as Ultralytics takes a tensor (float RGB in 0..1, (n, 3, h, w)) and where the
        frames went in it.
    """
    height, width = images[0].shape[:2]
    scale = min(size / height, size / width)
    new_width, new_height = max(round(width * scale), 1), max(round(height * scale), 1)
    pad_width, pad_height = (size - new_width) % stride / 2, (size - new_height) % stride / 2
    top, bottom = round(pad_height - 0.1), round(pad_height + 0.1)
    left, right = round(pad_width - 0.1), round(pad_width + 0.1)
    batch = torch.stack(images).permute(0, 3, 1, 2).float()
    if (new_height, new_width) != (height, width):
        batch = torch.nn.functional.interpolate(batch, size=(new_height, new_width), mode="bilinear",
                                                align_corners=False)
    batch = torch.nn.functional.pad(batch, (left, right, top, bottom), value=114.0)
    return batch.div_(255.0), Letterbox(scale, left, top)
