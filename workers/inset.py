"""The picture-in-picture of a `--reference` run: the teacher at this moment, with its skeleton.

A second `VideoReader` reads the teacher's video, scaled down by ffmpeg to the picture's size,
as this video's frames come: frame k of this video shows the teacher's frame nearest the
reference time that the alignment maps k's time to (`workers.reference.Alignment`). Both clocks
only go forwards, so the teacher's video is read once, front to back; where several of this
video's frames map to one of the teacher's (a 60 fps class, a 30 fps teacher) it is shown again,
where the teacher's rate is higher frames are skipped. Before the teacher's recording starts and
after it ends there is no picture.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from workers.data import Frame, VideoInfo
from workers.decode import VideoReader
from workers.draw import Inset
from workers.reference import Alignment, TeacherPoses

#: The picture's width as a share of the frame's.
INSET_SHARE = 0.28
#: Caption of the picture.
INSET_LABEL = "Teacher"


def inset_size(frame_size: tuple[int, int], teacher_size: tuple[int, int], share: float = INSET_SHARE
               ) -> tuple[int, int]:
    """(width, height) of the picture: `share` of the frame's width (of its height for a
    portrait frame showing a landscape teacher, so that it never covers half the frame), the
    teacher's aspect kept, both even (what ffmpeg's scaler and the encoders like)."""
    frame_width, frame_height = frame_size
    teacher_width, teacher_height = teacher_size
    width = share * frame_width
    height = width * teacher_height / teacher_width
    if height > share * 1.5 * frame_height:
        height = share * 1.5 * frame_height
        width = height * teacher_width / teacher_height
    return max(2, int(width) // 2 * 2), max(2, int(height) // 2 * 2)


class TeacherInset:
    """The teacher's picture for each frame of this video, read as this video is (owns an ffmpeg).

        with TeacherInset(video, teacher, alignment, fps, (1920, 1080)) as inset:
            picture = inset.at(frame_index)      # an `Inset`, or None

    Args:
        video: The teacher's video.
        teacher: Its poses (for the skeleton), on its own frames.
        alignment: Where its clock falls on this video's.
        fps: This video's frame rate.
        frame_size: (width, height) of this video's frames.
        nice: Niceness of the ffmpeg process.
    """

    def __init__(self, video: VideoInfo, teacher: TeacherPoses, alignment: Alignment, fps: float,
                 frame_size: tuple[int, int], nice: int = 0) -> None:
        self.teacher, self.alignment, self.fps = teacher, alignment, float(fps)
        self.size = inset_size(frame_size, (video.width, video.height))
        self.scale = np.array([self.size[0] / video.width, self.size[1] / video.height])
        self.teacher_fps = float(video.fps)
        self.reader = VideoReader(video, nice=nice, size=self.size)
        self._frames: Iterator[Frame] | None = None
        self._current: Frame | None = None
        self._ended = False

    def at(self, index: int) -> Inset | None:
        """The picture for this video's frame `index` (frames asked for in increasing order), or
        None outside the teacher's recording."""
        seconds = float(self.alignment.reference_seconds(index / self.fps))
        wanted = int(round(seconds * self.teacher_fps))
        if wanted < 0 or seconds > self.teacher.duration:
            return None
        frame = self._advance_to(wanted)
        if frame is None:
            return None
        keypoints = None
        if frame.index < len(self.teacher.keypoints):
            keypoints = self.teacher.keypoints[frame.index] * self.scale
        return Inset(frame.image, keypoints, INSET_LABEL)

    def _advance_to(self, wanted: int) -> Frame | None:
        if self._frames is None:
            self._frames = iter(self.reader)
        while not self._ended and (self._current is None or self._current.index < wanted):
            self._current = next(self._frames, None)
            if self._current is None:
                self._ended = True
        return None if self._ended else self._current

    def close(self) -> None:
        """Stop the teacher's ffmpeg."""
        self.reader.close()

    def __enter__(self) -> TeacherInset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
