"""Per-person timing: known lags recovered from synthetic dances, and the parts that make them."""

import numpy as np
import pytest

from tests.helpers import pose
from tests.reference import peak_shift, pose_distance, shift_correlations
from workers.moments import pose_partners, worst_moments
from workers.motion import (
    MIRROR_PERMUTATION,
    analysis_windows,
    mirror_poses,
    motion_features,
    normalise_poses,
    torso_centres,
    vertical_features,
)
from workers.score import pose_distances
from workers.skeleton import KEYPOINT_NAMES
from workers.timing import TimingParams, analyse_timing, solve_group_lags, timing_score

FPS = 30.0
FRAME_MS = 1000.0 / FPS
# Amplitude of each moving keypoint's motion, in units of `pose(1.0)` (3.3 tall).
AMPLITUDES = {"left_elbow": 0.45, "right_elbow": 0.45, "left_wrist": 0.9, "right_wrist": 0.9,
              "left_knee": 0.3, "right_knee": 0.3, "left_ankle": 0.4, "right_ankle": 0.4}


def dance(seconds=10.0, delay_s=0.0, scale=100.0, dx=300.0, dy=300.0, noise_px=2.0, seed=1):
    """One dancer's (T, 17, 2) keypoints: the same choreography for every dancer.

    Each moving keypoint follows a sum of three sines of random frequencies in 0.3..1.8 Hz
    (incommensurate, so the motion does not repeat and the lag cannot alias); the base pose
    has the left arm up so that it differs from its mirror image. `delay_s` > 0 makes the
    dancer do every move that much later. `seed` picks the pose model's jitter, not the dance.
    """
    t = np.arange(round(seconds * FPS)) / FPS - delay_s
    choreography = np.random.default_rng(0)
    unit = pose(1.0)
    unit[KEYPOINT_NAMES.index("left_elbow")] = [-0.75, -1.6]
    unit[KEYPOINT_NAMES.index("left_wrist")] = [-0.8, -2.1]
    frames = np.repeat(unit[None], len(t), axis=0)
    for name, amplitude in AMPLITUDES.items():
        for axis in range(2):
            frequency = choreography.uniform(0.3, 1.8, 3)[:, None]
            phase = choreography.uniform(0, 2 * np.pi, 3)[:, None]
            frames[:, KEYPOINT_NAMES.index(name), axis] += amplitude / 3 * np.sin(
                2 * np.pi * frequency * t + phase).sum(axis=0)
    frames += 0.1 * np.sin(2 * np.pi * 0.23 * t)[:, None, None]  # the whole body sways
    jitter = np.random.default_rng(seed).normal(0.0, noise_px, frames.shape)
    return frames * scale + np.array([dx, dy]) + jitter


def seen_from(azimuth_deg: float, seconds=10.0, delay_s=0.0, scale=100.0, dx=300.0, noise_px=2.0, seed=1):
    """One dancer's (T, 17, 2) keypoints as a level camera turned `azimuth_deg` about the
    vertical axis sees them: the same 3-D choreography for every view.

    The arms and legs move sideways (x) and forwards (z) twice as much as up and down (y),
    each coordinate a sum of three sines as in `dance`. Seen from 90 degrees, the sideways
    motion is hidden and the forward motion shows as x, so only the heights are shared.
    """
    t = np.arange(round(seconds * FPS)) / FPS - delay_s
    choreography = np.random.default_rng(7)
    base = pose(1.0)
    points = np.zeros((len(t), 17, 3))
    points[..., :2] = base
    for name, amplitude in AMPLITUDES.items():
        for axis, gain in ((0, 1.0), (1, 0.5), (2, 1.0)):
            frequency = choreography.uniform(0.3, 1.8, 3)[:, None]
            phase = choreography.uniform(0, 2 * np.pi, 3)[:, None]
            points[:, KEYPOINT_NAMES.index(name), axis] += gain * amplitude / 3 * np.sin(
                2 * np.pi * frequency * t + phase).sum(axis=0)
    turn = np.radians(azimuth_deg)
    image = np.stack([points[..., 0] * np.cos(turn) + points[..., 2] * np.sin(turn), points[..., 1]], axis=-1)
    jitter = np.random.default_rng(seed).normal(0.0, noise_px, image.shape)
    return image * scale + np.array([dx, 300.0]) + jitter


def trio(delay_frames: float) -> dict[int, np.ndarray]:
    """Three dancers of different sizes and places; dancer 3 is late by `delay_frames`."""
    return {
        1: dance(scale=100, dx=200, seed=1),
        2: dance(scale=80, dx=500, dy=250, seed=2),
        3: dance(delay_s=delay_frames / FPS, scale=120, dx=800, seed=3),
    }


def test_mirror_permutation_swaps_left_and_right_by_name():
    names = KEYPOINT_NAMES
    assert sorted(MIRROR_PERMUTATION) == list(range(17))
    assert all(MIRROR_PERMUTATION[MIRROR_PERMUTATION[k]] == k for k in range(17))
    assert names[MIRROR_PERMUTATION[names.index("left_wrist")]] == "right_wrist"
    assert names[MIRROR_PERMUTATION[names.index("right_ankle")]] == "left_ankle"
    assert MIRROR_PERMUTATION[names.index("nose")] == names.index("nose")


def test_mirror_twice_is_the_identity_and_keeps_the_torso_in_place():
    poses = dance(seconds=1)
    mirrored = mirror_poses(poses)
    assert np.allclose(mirror_poses(mirrored), poses)
    assert not np.allclose(mirrored, poses)
    assert np.allclose(torso_centres(mirrored), torso_centres(poses))
    nose = KEYPOINT_NAMES.index("nose")
    assert np.allclose(mirrored[:, nose, 0] - torso_centres(poses)[:, 0],
                       torso_centres(poses)[:, 0] - poses[:, nose, 0])


def test_normalised_poses_ignore_place_and_size():
    a = dance(seconds=2, scale=100, dx=100, noise_px=0)
    b = dance(seconds=2, scale=250, dx=900, dy=50, noise_px=0)
    assert np.allclose(normalise_poses(a), normalise_poses(b))
    assert np.isnan(normalise_poses(np.full((5, 17, 2), np.nan))).all()


def test_motion_features_are_velocities_in_torso_lengths_per_second():
    frames = np.repeat(pose(50.0)[None], 30, axis=0)
    wrist = KEYPOINT_NAMES.index("left_wrist")
    frames[:, wrist, 0] += 50.0 * 1.2 * np.arange(30) / FPS  # 1.2 torso lengths per second
    features = motion_features(normalise_poses(frames), FPS, velocity_span_s=0.1)
    assert features.shape == (30, 24)
    assert np.isnan(features[0]).all() and np.isnan(features[-1]).all()
    column = 2 * (wrist - 5)  # body keypoints start at the left shoulder, x then y
    assert np.allclose(features[5:-5, column], 1.2 / 1.2)  # torso of pose() is 1.2 long


def test_peak_shift_finds_a_parabola_vertex_between_frames():
    shifts = np.arange(-10, 11)
    shift, value = peak_shift(0.9 - 0.01 * (shifts - 2.3) ** 2)
    assert shift == pytest.approx(2.3)
    assert value == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("curve, why", [
    (np.cos(2 * np.pi * np.arange(-10, 11) / 8), "periodic: equal peaks"),
    (np.linspace(0, 1, 21), "best at the limit of the search"),
    (0.2 - 0.01 * np.arange(-10, 11) ** 2, "peak too weak"),
    (np.full(21, np.nan), "no data"),
])
def test_peak_shift_refuses_unclear_peaks(curve, why):
    assert peak_shift(curve, min_correlation=0.3, min_separation=3) is None, why


def test_shift_correlation_of_a_delayed_signal_peaks_at_the_delay():
    rng = np.random.default_rng(5)
    signal = np.cumsum(rng.normal(size=(200, 4)), axis=0)
    reference = signal[50:150]
    person = signal[50 - 10 - 4:150 + 10 - 4]  # person[t + 4] == reference[t]
    curve = shift_correlations(reference, person, min_valid=50)
    assert curve.shape == (21,)
    assert np.argmax(curve) - 10 == 4
    assert curve.max() == pytest.approx(1.0)


def test_solve_group_lags_puts_the_median_person_at_zero():
    lags = solve_group_lags(4, {(0, 1): (0.0, 1.0), (0, 2): (-6.0, 1.0), (1, 2): (-6.0, 0.5),
                                (0, 3): (0.0, 1.0)})
    assert lags == pytest.approx([0.0, 0.0, 6.0, 0.0])
    # Two persons: each is half the difference from the group.
    assert solve_group_lags(2, {(0, 1): (-4.0, 1.0)}) == pytest.approx([-2.0, 2.0])
    # Persons not linked to the largest group get no lag.
    lags = solve_group_lags(5, {(0, 1): (1.0, 1.0), (1, 2): (1.0, 1.0), (3, 4): (2.0, 1.0)})
    assert np.isnan(lags[3:]).all() and lags[:3] == pytest.approx([1.0, 0.0, -1.0])


def test_analysis_windows():
    assert analysis_windows(300, 30.0, 4.0, 1.0) == [(s, s + 120) for s in range(0, 181, 30)]
    assert analysis_windows(50, 30.0, 4.0, 1.0) == [(0, 50)]
    assert analysis_windows(0, 30.0, 4.0, 1.0) == []


@pytest.mark.parametrize("delay", [3, 6, 12])
def test_a_late_dancer_is_behind_by_the_delay(delay):
    result = analyse_timing(trio(delay), FPS)
    on_time = [result[1].lag_ms, result[2].lag_ms]
    assert abs(on_time[0] - on_time[1]) < FRAME_MS
    assert result[3].lag_ms > 0
    assert result[3].lag_ms - np.mean(on_time) == pytest.approx(delay * FRAME_MS, abs=FRAME_MS)
    for window in result[3].windows:
        assert window.lag_ms == pytest.approx(delay * FRAME_MS, abs=FRAME_MS)
        assert window.correlation > 0.8
        assert window.end_s - window.start_s == pytest.approx(4.0)
    # The moves are the same once the lag is removed.
    assert all(person.pose_score > 9 for person in result.values())


def test_an_early_dancer_is_ahead_and_a_pair_splits_the_difference():
    result = analyse_timing({1: dance(dx=200, seed=1), 2: dance(delay_s=-8 / FPS, dx=700, seed=2)}, FPS)
    assert result[2].lag_ms == pytest.approx(-4 * FRAME_MS, abs=FRAME_MS / 2)
    assert result[1].lag_ms == pytest.approx(4 * FRAME_MS, abs=FRAME_MS / 2)


def test_a_delay_between_frames_is_found_to_a_fraction_of_a_frame():
    result = analyse_timing(trio(4.5), FPS)
    assert result[3].lag_ms == pytest.approx(4.5 * FRAME_MS, abs=0.25 * FRAME_MS)


def test_identical_dancers_are_in_time():
    result = analyse_timing(trio(0), FPS)
    lags = [person.lag_ms for person in result.values()]
    assert max(lags) - min(lags) < FRAME_MS
    assert all(person.timing_score > 9 for person in result.values())


def test_timing_score_falls_as_the_delay_grows():
    scores = [analyse_timing(trio(delay), FPS)[3].timing_score for delay in (0, 3, 6, 12)]
    assert scores[0] > scores[1] > scores[2] > scores[3]
    assert timing_score(0.0) == 10.0
    assert timing_score(-150.0) == pytest.approx(10 / np.e)
    assert timing_score(None) is None


def test_mirror_images_are_in_sync_only_with_mirror():
    poses = {1: dance(dx=200, seed=1), 2: mirror_poses(dance(scale=90, dx=700, seed=2))}
    mirrored = analyse_timing(poses, FPS, TimingParams(mirror=True))
    direct = analyse_timing(poses, FPS, TimingParams(mirror=False))
    assert mirrored[1].mirrored_with == (2,) and mirrored[2].mirrored_with == (1,)
    assert mirrored[1].pose_score > 9.5
    assert abs(mirrored[1].lag_ms) < FRAME_MS and mirrored[1].timing_score > 9
    assert direct[1].pose_score < mirrored[1].pose_score - 3
    assert direct[1].mirrored_with == ()


def test_missing_frames_are_skipped_and_empty_windows_have_no_lag():
    poses = {1: dance(seconds=15, dx=200, seed=1), 2: dance(seconds=15, dx=500, seed=2),
             3: dance(seconds=15, delay_s=6 / FPS, dx=800, seed=3)}
    poses[3][20:35] = np.nan  # a short dropout: still measured
    poses[3][200:] = np.nan  # gone after 6.7 s
    result = analyse_timing(poses, FPS)
    assert result[3].lag_ms == pytest.approx(6 * FRAME_MS, abs=FRAME_MS)
    assert result[3].windows[0].lag_ms == pytest.approx(6 * FRAME_MS, abs=FRAME_MS)
    late = [w for w in result[3].windows if w.start_s >= 200 / FPS]
    assert late and all(w.lag_ms is None and w.correlation is None for w in late)
    assert np.isnan(result[3].distances[200:]).all()
    assert np.isfinite(result[3].distances[40:190]).all()


def test_vertical_features_are_the_heights_relative_to_the_torso():
    frames = np.repeat(pose(50.0, 100, 100)[None], 3, axis=0)
    frames[1] += [40.0, -20.0]  # the whole body moves: the heights relative to the torso stay
    features = vertical_features(normalise_poses(frames))
    assert features.shape == (3, 12)
    assert np.allclose(features[0], features[1])
    assert np.allclose(features[0], normalise_poses(frames)[0, 5:, 1])


@pytest.mark.parametrize("delay", [0, 6, 12])
def test_two_views_of_one_dance_get_the_lag_from_the_heights(delay):
    poses = {1: seen_from(0, dx=200, seed=1), 2: seen_from(90, delay_s=delay / FPS, dx=700, seed=2)}
    motion_only = analyse_timing(poses, FPS, TimingParams(vertical_fallback=False))
    assert motion_only[2].lag_confidence < 0.1, "the image velocities of the two views must not match"
    result = analyse_timing(poses, FPS)
    assert result[2].lag_ms - result[1].lag_ms == pytest.approx(delay * FRAME_MS, abs=FRAME_MS)
    assert 0.4 <= result[2].lag_confidence < 1.0


def test_the_vertical_fallback_needs_a_stronger_peak():
    poses = {1: seen_from(0, dx=200, seed=1), 2: seen_from(90, delay_s=6 / FPS, dx=700, seed=2)}
    strict = analyse_timing(poses, FPS, TimingParams(vertical_min_correlation=0.999))
    motion_only = analyse_timing(poses, FPS, TimingParams(vertical_fallback=False))
    assert strict[2].windows == motion_only[2].windows
    assert strict[2].lag_confidence < 0.1
    with pytest.raises(ValueError, match="vertical_min_correlation"):
        TimingParams(vertical_min_correlation=1.5)


def test_periodic_motion_gives_no_lag():
    t = np.arange(300) / FPS
    frames = np.repeat(pose(100.0, 300, 300)[None], len(t), axis=0)
    frames[:, 9:11, 1] += 40 * np.sin(2 * np.pi * t / 0.3)[:, None]  # wrists, 0.3 s period
    frames[:, 15:17, 0] += 30 * np.sin(2 * np.pi * t / 0.3)[:, None]
    result = analyse_timing({1: frames, 2: frames + [400.0, 0.0]}, FPS)
    assert result[1].lag_ms is None and result[1].timing_score is None
    assert all(w.lag_ms is None for w in result[1].windows)


def test_one_performer_has_nothing_to_compare():
    result = analyse_timing({7: dance(seconds=5)}, FPS)
    assert result[7].lag_ms is None and result[7].pose_score is None
    assert np.isnan(result[7].distances).all()
    assert analyse_timing({}, FPS) == {}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"poses\[2\] must have shape \(30, 17, 2\), got \(20, 17, 2\)"):
        analyse_timing({1: np.zeros((30, 17, 2)), 2: np.zeros((20, 17, 2))}, FPS)
    with pytest.raises(ValueError, match="max_lag_s must be > 0"):
        TimingParams(max_lag_s=0)


def test_pose_distances_match_the_original_score():
    rng = np.random.default_rng(2)
    reference = pose(100.0) + rng.normal(0, 15, (6, 17, 2))
    other = pose(70.0, 400, 20) + rng.normal(0, 15, (6, 17, 2))
    ones = np.ones(17)
    expected = [pose_distance(r, o, ones, ones) for r, o in zip(reference, other)]
    assert pose_distances(reference, other) == pytest.approx(expected)
    # An affine image of a pose is the same pose.
    affine = np.array([[1.3, 0.2], [-0.1, 0.8]])
    assert pose_distances(reference, reference @ affine + 50) == pytest.approx(np.zeros(6), abs=1e-9)


def test_pose_distances_use_only_the_keypoints_both_have():
    reference = np.repeat(pose(100.0)[None], 3, axis=0)
    other = reference * 0.5 + 10
    other[1, 9] = np.nan  # one keypoint missing: still the same pose
    other[2] = np.nan  # absent
    distances = pose_distances(reference, other)
    assert distances[:2] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert np.isnan(distances[2])


def test_worst_moments_find_the_dips_and_who_was_off():
    fps = 10.0
    scores = np.full(100, 8.0)
    scores[30:40] = 2.0  # 3-4 s: the worst
    scores[70:80] = 5.0  # 7-8 s
    scores[50:60] = np.nan  # unscored, not a dip
    distances = {1: np.full(100, 0.05), 2: np.full(100, 0.05)}
    distances[2][30:40] = 0.3
    distances[1][70:80] = 0.2
    moments = worst_moments(scores, fps, distances, count=3, duration_s=1.0)
    assert len(moments) == 3
    first, second, third = moments
    assert (first.start_s, first.end_s, first.mean_score, first.worst_person) == (3.0, 4.0, 2.0, 2)
    assert (second.start_s, second.end_s, second.mean_score, second.worst_person) == (7.0, 8.0, 5.0, 1)
    assert third.mean_score > 5.0
    for a in moments:  # they do not overlap
        for b in moments:
            assert a is b or a.end_s <= b.start_s or b.end_s <= a.start_s


def test_worst_moments_without_scores_or_distances():
    assert worst_moments(np.full(50, np.nan), 10.0) == []
    assert worst_moments(np.full(5, 3.0), 10.0) == []  # shorter than one stretch
    (moment,) = worst_moments(np.linspace(10, 0, 20), 10.0, count=1)
    assert (moment.start_s, moment.end_s, moment.worst_person) == (1.0, 2.0, None)


def test_lag_confidence_is_the_share_of_windows_with_a_lag_times_their_correlation():
    from workers.timing import WindowLag, lag_confidence

    windows = [WindowLag(0, 4, 10.0, 0.9), WindowLag(1, 5, None, None), WindowLag(2, 6, 12.0, 0.5),
               WindowLag(3, 7, 11.0, -0.2)]
    assert lag_confidence(windows) == pytest.approx(3 / 4 * (0.9 + 0.5 + 0.0) / 3)
    assert lag_confidence([WindowLag(0, 4, None, None)]) == 0.0 and lag_confidence([]) == 0.0


def test_a_large_group_compares_each_pose_with_eight_others_spread_through_it():
    assert pose_partners(3) == [[1, 2], [0, 2], [0, 1]]
    assert pose_partners(9)[4] == [0, 1, 2, 3, 5, 6, 7, 8]
    thirty = pose_partners(30)
    assert all(len(others) == 8 and person not in others and len(set(others)) == 8
               for person, others in enumerate(thirty))
    assert thirty[0][0] == 1 and thirty[0][-1] == 29  # from one end of the group to the other
