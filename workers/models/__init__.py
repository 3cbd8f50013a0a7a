"""The pose models: one registry, each model registered once with its defaults.

Importing this package loads no model code (no torch, no ultralytics): an entry names the
class that builds its model, and `build_estimator` imports it on first use. The rest of the
code asks the registry (`model_names`, `get_model`) instead of listing models itself, as
torchvision's `get_model(name, weights=...)` does. Replaying a pose cache (`--poses`) goes
through the same `build_estimator`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from workers.infer import PoseEstimator


class ModelSettings(Protocol):
    """What loading a pose model reads from the run's settings (`config.Config` has all of it).

    A protocol, so that the registry and the models need nothing from `config/`: the config
    knows the models (their defaults), the models do not know the config.
    """

    @property
    def model(self) -> str: ...
    @property
    def weights(self) -> str | None: ...
    @property
    def device(self) -> str: ...
    @property
    def runtime(self) -> str: ...
    @property
    def half(self) -> bool: ...
    @property
    def max_persons(self) -> int: ...
    @property
    def model_min_size(self) -> int | None: ...
    @property
    def person_threshold_in_effect(self) -> float: ...
    @property
    def poses(self) -> Path | None: ...
    @property
    def cpu_threads(self) -> int | None: ...


@dataclass(frozen=True)
class ModelDefaults:
    """Per-model defaults: score scales differ between models.

    Attributes:
        person_threshold: Keep persons whose box score is above this.
        keypoint_threshold: Draw keypoints whose score is above this.
        keypoint_weighting: How keypoint scores become the score's keypoint weights:
            "relu" (logits, negatives set to 0; the original method) or "logit"
            (probabilities turned into logits first, so that weights are on Keypoint
            R-CNN's scale).
    """

    person_threshold: float
    keypoint_threshold: float
    keypoint_weighting: str


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        name: The name `--model` takes.
        defaults: Its thresholds and weighting.
        builder: "module:Class" of the class whose `from_config(settings)` loads it.
        summary: One line for help texts.
        runtimes: What can run it (workers.runtimes), "torch" first.
    """

    name: str
    defaults: ModelDefaults
    builder: str
    summary: str
    runtimes: tuple[str, ...] = ("torch",)

    def load(self, settings: ModelSettings) -> PoseEstimator:
        """The model itself (on the caller's thread; see `build_estimator`)."""
        module, _, cls = self.builder.partition(":")
        return getattr(importlib.import_module(module), cls).from_config(settings)


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    """Add a model; a name is registered once."""
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def model_names() -> tuple[str, ...]:
    """The registered model names, in registration order (the first is the default)."""
    return tuple(_REGISTRY)


def get_model(name: str) -> ModelEntry:
    """The entry of a registered model.

    Raises:
        ValueError: Unknown name; the message lists the registered ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"model must be one of {', '.join(_REGISTRY)}, got {name!r}") from None


def build_estimator(config: ModelSettings) -> PoseEstimator:
    """The pose model `config.model` names on `config.device`, or the replay of `config.poses`.

    A model runs on its own long-lived thread (`workers.infer.ModelThread`); a replay reads
    its cache in the caller's thread.

    Raises:
        ModelError: The weights cannot be found or do not fit the model.
        DeviceError: The requested device is not available.
        PoseCacheError: The pose cache cannot be read.
    """
    if config.poses is not None:
        from workers.poses import CachedPoses

        return CachedPoses.open(config.poses)
    from workers.infer import ModelThread

    return ModelThread(get_model(config.model).load(config))



def load_estimator(config: ModelSettings) -> PoseEstimator:
    """`build_estimator`, with untrained weights (`weights="random"`, for tests) the same in
    every run, so that runs compare.

    A GPU decoder or encoder asked for by name (`--decoder nvdec`, `--encoder nvenc` or
    `h264_nvenc`) is checked here, on the model's device: one that does not work fails with the
    model, before any video, as every video would fail alike (DeviceError, EncodeError).
    """
    if config.weights == "random":
        import torch

        torch.manual_seed(0)
    estimator = build_estimator(config)
    decoder, encoder = getattr(config, "decoder", "auto"), getattr(config, "encoder", "auto")
    if decoder == "nvdec" or (encoder in ("nvenc", "h264_nvenc") and getattr(config, "video", True)):
        from workers.nvcodec import choose_decoder, choose_encoder

        choose_decoder(decoder, estimator.device)
        if getattr(config, "video", True):
            choose_encoder(encoder, estimator.device)
    return estimator

register(ModelEntry(
    name="keypointrcnn",
    # The original DancingSkeletons values (Keypoint R-CNN: box scores are probabilities,
    # keypoint scores are logits).
    defaults=ModelDefaults(person_threshold=0.9, keypoint_threshold=2.0, keypoint_weighting="relu"),
    builder="workers.models.keypoint_rcnn:KeypointRCNNEstimator",
    summary="torchvision Keypoint R-CNN ResNet-50-FPN, COCO-17",
))
register(ModelEntry(
    name="yolo",
    # YOLO-pose: both scores are probabilities. Its box scores for clear, whole people peak
    # around 0.83-0.93, so 0.9 would drop most of them; 0.5 keeps the performers and only
    # lets far-away bystanders in below it. Keypoints: 0.5 is the model's own "visible"
    # boundary (logit 0); "logit" weighting puts the score's weights on Keypoint R-CNN's scale.
    defaults=ModelDefaults(person_threshold=0.5, keypoint_threshold=0.5, keypoint_weighting="logit"),
    builder="workers.models.yolo:YoloPoseEstimator",
    summary="Ultralytics YOLOv8/YOLO11 pose checkpoint (optional package), COCO-17",
    # Exported by Ultralytics; OpenVINO and ONNX Runtime run it on the CPU (workers.runtimes).
    runtimes=("torch", "openvino", "onnxruntime"),
))
