"""Constant-rate frames from decoded frames' times, as ffmpeg's `-fps_mode cfr -r FPS` makes them.

The ffmpeg decoder (`workers.decode.VideoReader`) reads every video at its probed constant
rate: a variable-rate video gets frames repeated across its gaps and dropped where they
crowd, so that frame `i` is shown at `i / fps` and stays in sync with the audio. The GPU
decoder gives the stream's own frames with their timestamps; `constant_rate` turns those into
the same sequence, by ffmpeg's own rule (fftools, `video_sync_process`, VSYNC_CFR), so that
both decoders give the same frame count and the same frame at each index.

For each decoded frame, in output frames (1 / fps), with `next` the next output slot:
`delta0 = pts - next`, `delta = delta0 + duration`. A frame that starts before `next` but
ends after it is clipped to start there. Then it is dropped when `delta < -1.1`, written
`round(delta)` times when `delta > 1.1` (to nearest, halves to even, as C's llrint; the first
`round(delta0 - 0.6)` of them copies of the frame decoded before it, shown or not, when
`delta0 > 1.1`), once otherwise. After the
last frame, it is written again as often as the median of the last three frames' copies of
their predecessors (usually none).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction


class ConstantRate:
    """`constant_rate` one decoded frame at a time, for a decoder that streams.

        rate = ConstantRate(fps)
        for frame, time, duration in decoded:
            for shown in rate.push(time, duration):   # "previous" or "current", in order
                ...
        extra = rate.end()                            # copies of the last frame to add

    Args:
        fps: The output rate.
    """

    def __init__(self, fps: Fraction) -> None:
        self.rate = float(fps)
        self.next_slot = 0.0
        self.frames = 0
        self._history = [0, 0, 0]  # the last three frames' copies of the frame before them

    def push(self, time: float, duration: float) -> list[str]:
        """The output frames the next decoded frame makes: "previous" (the frame decoded before
        it, shown or dropped) or "current", in order; none when it is dropped.

        Args:
            time: Its presentation time in seconds from the file's start.
            duration: Its duration in seconds (0 or less: one output frame).
        """
        pts = time * self.rate
        length = duration * self.rate if duration > 0 else 1.0
        delta0 = pts - self.next_slot
        delta = delta0 + length
        if delta0 < 0 < delta:
            length += delta0
            delta0 = 0.0
            delta = length
        copies, previous = 1, 0
        if delta < -1.1:
            copies = 0
        elif delta > 1.1:
            copies = round(delta)
            if delta0 > 1.1:
                previous = min(round(delta0 - 0.6), copies)
        self._history = [previous, *self._history[:2]]
        if self.frames == 0:
            previous = 0  # nothing before the first frame: it fills those slots itself
        self.frames += 1
        self.next_slot += copies
        return ["previous"] * previous + ["current"] * (copies - previous)

    def end(self) -> int:
        """After the last frame: how many more copies of it to write (the median of the last
        three frames' copies of their predecessors; usually none)."""
        return sorted(self._history)[1] if self.frames else 0


def constant_rate(times: Sequence[float], durations: Sequence[float], fps: Fraction) -> list[int]:
    """Which decoded frame each constant-rate output frame shows.

    Args:
        times: Each decoded frame's presentation time in seconds from the file's start (its
            pts minus the container's start time, as ffmpeg counts it), in presentation order.
        durations: Each frame's duration in seconds, as the container gives it (the packet's
            duration: ffmpeg's `frame->duration`, which is not always the gap to the next frame).
        fps: The output rate.

    Returns:
        For output frame 0, 1, 2, ...: the index into `times` of the frame it shows.
    """
    rate = ConstantRate(fps)
    shown: list[int] = []
    for index, (time, duration) in enumerate(zip(times, durations)):
        shown += [index - 1 if which == "previous" else index for which in rate.push(time, duration)]
    return shown + [len(times) - 1] * rate.end()
