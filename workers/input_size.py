"""The model's input size, chosen from the size of the people in the video.

A pose model sees each frame scaled to its input size: YOLO-pose's longer side (640 by
default), Keypoint R-CNN's shorter side (800). A class filmed wide puts each dancer at 150-300
pixels of a 1080p frame, and at YOLO's 640 they shrink to 50-100: the nano model then loses
them (measured on grids of copies of one dancer, YOLO11n-pose; docs/BENCHMARKS.md, "Small
people"):

| dancer's height at the model's input | frames in which each dancer is found |
| --- | --- |
| about 60 px | 0-8% |
| about 78 px | 75-87% |
| about 92 px | 96-99% |
| 112 px and more | 100% |

So before a video runs, a few frames spread over it are shown to the model at twice its default
size (the scout), and the input size becomes the smallest that puts the smaller people
(the 10th percentile of the heights found) at `MIN_PERSON_PIXELS` or more: never below the
model's default, never above `max_input_size`. Tiling the frame instead was measured and gives
nothing here: the models take any input shape, so tiles at the default size cost what the
larger input costs, and cut the people on their seams.

The arithmetic is here, pure; `scout_input_size` at the end reads the frames and runs the model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workers.data import Side

if TYPE_CHECKING:
    from workers.data import VideoInfo
    from workers.infer import PoseEstimator

log = logging.getLogger("dancingskeletons")

#: Height (pixels at the model's input) above which YOLO11n-pose finds a dancer in every frame:
#: about 92 px measured 96-99%, 118 px 100%; the margin covers people who crouch or are half hidden.
MIN_PERSON_PIXELS = 112
#: The heights' percentile that decides: the smaller people of a class, not the smallest box
#: (a far-away bystander, a half-hidden child) nor the typical one.
PERSON_PERCENTILE = 10
#: Frames the scout looks at, spread over the video.
SCOUT_FRAMES = 4
#: The largest input as a multiple of the model's default (the cost grows with its square).
MAX_SCALE_OF_DEFAULT = 3
#: The scout's input as a multiple of the default.
SCOUT_SCALE_OF_DEFAULT = 2

@dataclass(frozen=True)
class InputSize:
    """The input size a video ran at, and why.

    Attributes:
        pixels: The size: the frame's longer side (`side` "long") or shorter side ("short")
            at the model's input.
        side: Which side of the frame `pixels` measures.
        default: The model's default size.
        how: "asked" (`--min-size`), "default" (the people are large enough, or none was
            seen), "raised" (for small people), "not scouted" (the default already shows the
            frame at its own size or larger).
        person_pixels: The deciding height (pixels of the frame, the `PERSON_PERCENTILE`th
            percentile of those the scout found), or None.
        scout_seconds: Wall-clock seconds the scout took (0 without one).
    """

    pixels: int
    side: Side
    default: int
    how: str
    person_pixels: float | None = None
    scout_seconds: float = 0.0

    def describe(self) -> str:
        """One line for the log and the report."""
        what = f"input {self.pixels} px on the frame's {self.side}er side"
        if self.how == "raised":
            return (f"{what} (raised from {self.default}: the smaller people are about {self.person_pixels:.0f} px "
                    f"tall, {MIN_PERSON_PIXELS} px or more at the model's input keeps them found)")
        if self.how == "default" and self.person_pixels is not None:
            return f"{what} (the model's default: the smaller people are about {self.person_pixels:.0f} px tall)"
        if self.how == "default":
            return f"{what} (the model's default: the scout saw nobody)"
        if self.how == "asked":
            return f"{what} (--min-size)"
        return f"{what} (the model's default shows the frame at its own size)"


#: Keypoint R-CNN caps the longer side at this multiple of its size (torchvision: 1333 / 800).
SHORT_SIDE_LONG_CAP = 1333 / 800


def frame_side(width: int, height: int, side: Side) -> float:
    """The frame's length (pixels) that the model scales to its input size.

    "long": the longer side. "short": the shorter side, or for a frame wider than 5:3 the
    longer side over `SHORT_SIDE_LONG_CAP` (torchvision also caps the longer side, so a 16:9
    1080p frame at min_size 800 is scaled by 0.69, not 0.74).
    """
    if side == "long":
        return float(max(width, height))
    return max(float(min(width, height)), max(width, height) / SHORT_SIDE_LONG_CAP)


def round_up(pixels: float, stride: int) -> int:
    """`pixels` rounded up to a multiple of `stride`."""
    return int(math.ceil(pixels / stride - 1e-9) * stride)


def max_input_size(width: int, height: int, default: int, side: Side, stride: int) -> int:
    """The largest input the scout may choose: the frame's own size, at least twice the default
    (small frames are enlarged: the pedestrians of an old 768x576 clip need it), at most
    `MAX_SCALE_OF_DEFAULT` times the default."""
    wanted = max(frame_side(width, height, side), 2 * default)
    return round_up(min(wanted, MAX_SCALE_OF_DEFAULT * default), stride)


def needs_scout(width: int, height: int, default: int, side: Side) -> bool:
    """Whether the default might shrink people: it shows the frame smaller than its own size."""
    return default < frame_side(width, height, side)


def scout_times(duration: float, count: int = SCOUT_FRAMES) -> np.ndarray:
    """`count` times (seconds) spread over a video, away from its first and last moments."""
    return (np.arange(count) + 0.5) / count * max(0.0, duration)


def choose_input_size(
    heights: Sequence[float] | np.ndarray,
    width: int,
    height: int,
    default: int,
    side: Side,
    stride: int,
    largest: int,
    target: float = MIN_PERSON_PIXELS,
) -> InputSize:
    """The input size that shows the smaller people at `target` pixels or more.

    Args:
        heights: Heights (pixels of the frame) of the people the scout found.
        width, height: The frame's size in pixels.
        default: The model's default input size.
        side: Which side of the frame the model's size measures.
        stride: The model's input sizes are multiples of this.
        largest: The largest size allowed (`max_input_size`).
        target: The height (pixels at the model's input) the smaller people should have.

    Returns:
        The choice: the default when nobody was seen or the people are large enough.
    """
    values = np.asarray(heights, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return InputSize(default, side, default, "default")
    person = float(np.percentile(values, PERSON_PERCENTILE))
    wanted = round_up(target * frame_side(width, height, side) / person, stride)
    if wanted <= default:
        return InputSize(default, side, default, "default", person)
    return InputSize(min(wanted, largest), side, default, "raised", person)


def input_size_for(info: VideoInfo, estimator: PoseEstimator, asked: int | None) -> InputSize | None:
    """Set the input size `estimator` runs `info` at, and say why.

    Args:
        info: The probed video.
        estimator: The pose model (the same one serves every video of a folder).
        asked: `--min-size`, or None to choose (`scout_input_size`).

    Returns:
        The choice, or None for a model without an input size (a replay, a stand-in).
    """
    side = estimator.input_side
    if side is None:
        return None
    if asked is not None:
        estimator.set_input_size(asked)
        return InputSize(asked, side, estimator.default_input_size, "asked")
    return scout_input_size(info, estimator, side)


def scout_input_size(info: VideoInfo, estimator: PoseEstimator, side: Side) -> InputSize:
    """Choose the input size of `estimator` for the video `info`, and set it.

    Reads `SCOUT_FRAMES` frames spread over the video (one seek each) and runs the model on
    them at `SCOUT_SCALE_OF_DEFAULT` times its default size; then sets the chosen size for the whole video.

    Args:
        info: The probed video.
        estimator: A model that can change its input size (see `workers.infer.PoseModel`).
        side: Its `input_side`.

    Returns:
        The choice (also logged when it is not the default).
    """
    from workers.decode import keyframe_near

    default, stride = estimator.default_input_size, estimator.input_stride
    if not needs_scout(info.width, info.height, default, side):
        estimator.set_input_size(default)
        return InputSize(default, side, default, "not scouted")
    started = time.perf_counter()
    largest = max_input_size(info.width, info.height, default, side, stride)
    # Twice the default sees people down to about 2/3 of the target, enough to size the input
    # for them, at half the cost of the largest size on a 1080p frame.
    looking = min(largest, round_up(SCOUT_SCALE_OF_DEFAULT * default, stride))
    # A keyframe near each time is as good a sample, and decodes in a tenth of the time; but
    # not one from an earlier sample's share of the video (a short clip may have one keyframe).
    times = scout_times(info.duration)
    share = info.duration / max(1, len(times))
    frames = [frame for when in times if (frame := keyframe_near(info, when, when - share / 2)) is not None]
    heights: list[float] = []
    estimator.set_input_size(looking)
    for frame in frames:  # one at a time: a batch of large frames may not fit in a GPU's memory
        found = estimator.predict([frame])[0]
        heights.extend(found.boxes[:, 3] - found.boxes[:, 1])
    choice = choose_input_size(heights, info.width, info.height, default, side, stride, largest)
    estimator.set_input_size(choice.pixels)
    choice = InputSize(choice.pixels, side, default, choice.how, choice.person_pixels,
                       time.perf_counter() - started)
    if choice.how == "raised":
        log.info("%s: %s", info.path.name, choice.describe())
    return choice
