"""Stand-in pose models that a `--jobs` worker process loads by name (they are pickled by
reference): one that works, one that kills its worker on a marked video, one that cannot load."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from config import Config
from tests.helpers import StandInEstimator
from workers.errors import ModelError

#: Frames this wide mark the video on which a dying model kills its worker process.
POISON_WIDTH = 88


def load_stand_in(config: Config) -> StandInEstimator:
    return StandInEstimator()


class _Dying(StandInEstimator):
    def __init__(self, marker: Path | None) -> None:
        super().__init__()
        self.marker = marker

    def predict(self, images):
        if images and images[0].shape[1] == POISON_WIDTH:
            if self.marker is None or not self.marker.exists():
                if self.marker is not None:
                    self.marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
        return super().predict(images)


def load_always_dying(config: Config) -> StandInEstimator:
    """Kills its worker whenever it sees the poison video."""
    return _Dying(None)


def load_dying_once(config: Config) -> StandInEstimator:
    """Kills its worker the first time it sees the poison video (a marker in the output folder)."""
    return _Dying(Path(config.output) / ".died-once")


def load_broken(config: Config) -> StandInEstimator:
    raise ModelError("stand-in weights that cannot be loaded")
