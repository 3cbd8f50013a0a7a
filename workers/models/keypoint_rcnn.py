"""torchvision's Keypoint R-CNN ResNet-50-FPN (COCO-17 keypoints) as a PoseEstimator."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights, keypointrcnn_resnet50_fpn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from workers.data import Detections
from workers.device import resolve_device
from workers.errors import ModelError
from workers.infer import PoseModel

if TYPE_CHECKING:
    from workers.models import ModelSettings

WEIGHTS = KeypointRCNN_ResNet50_FPN_Weights.DEFAULT
DEFAULT_MIN_SIZE = 800
DEFAULT_MAX_SIZE = 1333


def cached_weights_path() -> Path:
    """Where torchvision keeps the downloaded weights (under TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(WEIGHTS.url)


def load_state_dict(weights: str | None) -> dict[str, torch.Tensor] | None:
    """The model's weights: a local file, torchvision's cached download, or None for random.

    Args:
        weights: A file path; None for torchvision's COCO weights (downloaded into the cache
            on first use); "random" for random initialisation (tests only).

    Raises:
        ModelError: The file is missing or unreadable, or the weights can be neither found in
            the cache nor downloaded.
    """
    if weights == "random":
        return None
    if weights is None:
        path = cached_weights_path()
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(WEIGHTS.url, str(path), progress=True)
            except Exception as error:  # noqa: BLE001 - any network failure means the same to the user
                raise ModelError(
                    f"Keypoint R-CNN weights are not in {path} and could not be downloaded "
                    f"({type(error).__name__}: {error}); download {WEIGHTS.url} to that path "
                    "on a machine with internet, or pass --weights FILE"
                ) from None
    else:
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling errors come in many types
        raise ModelError(f"{path}: not a readable weights file ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict of Keypoint R-CNN weights, got {type(state).__name__}")
    return state


class KeypointRCNNEstimator(PoseModel):
    """Batched Keypoint R-CNN inference on uint8 RGB frames.

    Args:
        model: The torchvision model, in eval mode, on `device`.
        device: torch device string.
        half: Run under fp16 autocast (CUDA only).
    """

    name = "keypointrcnn"
    input_side = "short"
    #: torchvision pads each batch to a multiple of 32 whatever min_size is; 16 keeps sizes round.
    input_stride = 16

    def __init__(self, model: torch.nn.Module, device: str, half: bool = False) -> None:
        self.model = model
        self.device = device
        self.half = half and device.startswith("cuda")
        self.accepts_device_frames = device.startswith("cuda")  # the GPU decoder's frames, as they are
        self._transform = cast(GeneralizedRCNNTransform, model.transform)
        self.default_input_size = int(self._transform.min_size[0])
        self._staging: torch.Tensor | None = None

    def set_input_size(self, pixels: int) -> None:
        """See `workers.infer.PoseEstimator.set_input_size`: min_size (the shorter side), and
        max_size (the longer side's cap) in torchvision's default proportion (800 to 1333)."""
        self._transform.min_size = (int(pixels),)
        self._transform.max_size = math.ceil(pixels * DEFAULT_MAX_SIZE / DEFAULT_MIN_SIZE)

    @classmethod
    def from_config(cls, config: ModelSettings) -> KeypointRCNNEstimator:
        """Build the model from the config: weights, device, input size, detection floor.

        Persons at or below the person threshold are never scored or drawn, so the detector
        drops them before the keypoint head (the results for the others do not change: NMS
        never lets a weaker box suppress a stronger one).
        """
        device = resolve_device(config.device)
        state = load_state_dict(config.weights)
        min_size = config.model_min_size or DEFAULT_MIN_SIZE
        model = keypointrcnn_resnet50_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=2,
            num_keypoints=17,
            min_size=min_size,
            max_size=math.ceil(min_size * DEFAULT_MAX_SIZE / DEFAULT_MIN_SIZE),
            box_score_thresh=config.person_threshold_in_effect,  # torchvision's name for it
            box_detections_per_img=config.max_persons,
        )
        if state is not None:
            try:
                model.load_state_dict(state)
            except RuntimeError as error:
                first = str(error).strip().splitlines()[0]
                source = config.weights or cached_weights_path()
                raise ModelError(f"{source}: not Keypoint R-CNN ResNet-50-FPN weights ({first})") from None
        model.eval().to(device)
        if device == "cpu":
            torch.set_num_threads(config.cpu_threads or max(1, os.cpu_count() or 1))
        # cudnn.benchmark stays off: measured on an H200 it gave nothing (100.0 frames/s off,
        # 98.7 on, batch 8 at 1080p), and it tunes again for every new shape, with trial
        # workspaces of up to all free GPU memory (69.5 GB peak against 4.7 GB); the keypoint
        # head's shape changes with the number of persons in a batch (docs/BENCHMARKS.md).
        return cls(model, device, half=config.half)

    def _upload(self, images: Sequence[Any]) -> torch.Tensor:
        """The frames as one uint8 (n, h, w, 3) tensor on the device.

        Frames already in torch (the GPU decoder's) are stacked where they are. Others go on
        CUDA through one pinned staging buffer, allocated once and reused (a fresh pinned
        allocation per batch costs more than it saves), copied without blocking the host.
        Reusing it is safe: `predict` reads the results back, which waits for this copy.
        """
        if isinstance(images[0], torch.Tensor):
            return torch.stack([image.to(self.device) for image in images])
        if self.device == "cpu":
            return torch.from_numpy(np.stack(images))
        shape = (len(images), *images[0].shape)
        if self._staging is None or self._staging.shape[1:] != shape[1:] or self._staging.shape[0] < shape[0]:
            self._staging = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        staging = self._staging[: shape[0]]
        np.stack(images, out=staging.numpy())
        return staging.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def predict(self, images: Sequence[Any]) -> list[Detections]:
        """See `workers.infer.PoseEstimator.predict`; also takes RGB uint8 torch tensors (the GPU
        decoder's frames, `accepts_device_frames`)."""
        if not images:
            return []
        tensors = self._upload(images).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
            outputs = self.model(list(tensors))
        # One copy back to the host for the whole batch, not four per frame.
        counts = [len(out["scores"]) for out in outputs]
        packed = torch.cat([
            torch.cat([out["boxes"], out["scores"][:, None], out["keypoints"][..., :2].flatten(1),
                       out["keypoints_scores"]], dim=1).float()
            for out in outputs
        ]).cpu().numpy()
        detections = []
        for rows in np.split(packed, np.cumsum(counts)[:-1]):
            detections.append(Detections(
                boxes=rows[:, 0:4],
                box_scores=rows[:, 4],
                keypoints=rows[:, 5:39].reshape(-1, 17, 2),
                keypoint_scores=rows[:, 39:56],
            ))
        return detections
