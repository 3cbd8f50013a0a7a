"""The key-frame schedule of `--infer-every K`, without threads, video or model."""

from dataclasses import dataclass

import pytest

from tests.helpers import detections, pose
from workers.keyframes import detect_frames, interpolate_detections


@dataclass(frozen=True)
class Item:
    index: int


class Model:
    """Finds one person whose x is 10 * the frame index; records its batches."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, frames):
        self.batches.append([frame.index for frame in frames])
        return [detections([pose(100.0, dx=10.0 * frame.index)]) for frame in frames]


def run(count: int, every: int, batch_size: int):
    model = Model()
    out = list(detect_frames([Item(i) for i in range(count)], model, every, batch_size))
    return model, out


def x_of(found) -> float:
    return float(found.boxes[0, 0] - pose(100.0)[:, 0].min())


@pytest.mark.parametrize("every", [1, 2, 3])
def test_every_frame_comes_out_once_in_order_with_its_persons(every):
    model, out = run(10, every, batch_size=2)
    assert [frame.index for frame, _ in out] == list(range(10))
    inferred = [i for batch in model.batches for i in batch]
    assert inferred == sorted({*range(0, 10, every), 9})  # the multiples of K and the last frame
    assert all(len(batch) <= 2 for batch in model.batches)
    # Key frames carry the model's persons, the frames between the blend of their two keys:
    # here x moves linearly, so every frame's x is exact.
    assert [x_of(found) for _, found in out] == pytest.approx([10.0 * i for i in range(10)])


def test_k_1_runs_the_model_on_every_frame_in_batches():
    model, _ = run(5, every=1, batch_size=2)
    assert model.batches == [[0, 1], [2, 3], [4]]


def test_a_round_reads_only_up_to_its_last_key():
    model, _ = run(9, every=3, batch_size=1)
    assert model.batches == [[0], [3], [6], [8]]


def test_the_last_frame_closes_the_gap_after_the_last_multiple():
    model, out = run(8, every=3, batch_size=4)
    assert model.batches == [[0, 3, 6, 7]]
    assert x_of(out[7][1]) == pytest.approx(70.0)


def test_a_video_shorter_than_k():
    model, out = run(2, every=5, batch_size=4)
    assert model.batches == [[0, 1]]
    assert [x_of(found) for _, found in out] == pytest.approx([0.0, 10.0])
    model, out = run(1, every=5, batch_size=4)
    assert model.batches == [[0]] and len(out) == 1
    model, out = run(0, every=5, batch_size=4)
    assert model.batches == [] and out == []


def test_a_stream_that_starts_between_keys_takes_the_first_keys_persons():
    model = Model()
    out = list(detect_frames([Item(i) for i in (4, 5, 6, 7)], model, every=3, batch_size=4))
    assert model.batches == [[6, 7]]
    assert [x_of(found) for _, found in out] == pytest.approx([60.0, 60.0, 60.0, 70.0])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="every must be >= 1"):
        list(detect_frames([], Model(), every=0))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(detect_frames([], Model(), batch_size=0))


def test_interpolated_persons_are_blended_or_kept_from_the_nearer_frame():
    a = detections([pose(50, 100, 200), pose(50, 400, 200)])
    b = detections([pose(50, 420, 200), pose(50, 130, 200)])  # the same two, listed the other way round
    middle = interpolate_detections(a, b, 0.5)
    xs = sorted(middle.keypoints[:, 0, 0])
    assert xs == pytest.approx([115.0, 410.0])
    newcomer = detections([pose(50, 100, 200), pose(50, 700, 200)])
    assert len(interpolate_detections(detections([pose(50, 100, 200)]), newcomer, 0.25)) == 1
    assert len(interpolate_detections(detections([pose(50, 100, 200)]), newcomer, 0.75)) == 2
    assert len(interpolate_detections(detections([]), detections([]), 0.5)) == 0
