"""Per-limb timing: which limb is late, on synthetic dancers whose limbs keep known times."""

import numpy as np
import pytest

from tests.synthetic_dance import FPS, LIMB_NAMES, Dancer, dance
from workers.limbs import (
    LIMB_DEFINITIONS,
    NO_CLEAR_LAG,
    NOT_ENOUGH_MOVEMENT,
    LimbParams,
    LimbTiming,
    jitter,
    limb_lags_against,
    limb_lags_in_group,
    limb_positions,
    lower_median,
    movement_ratio,
    summarise,
    velocities,
)
from workers.motion import mirror_poses, torso_lengths
from workers.skeleton import KEYPOINT_NAMES

SECONDS = 40.0
FRAME_MS = 1000.0 / FPS
UPPER_BODY = ("head", "left_arm", "right_arm")
CASES = [(0, 4.0, False), (1, 5.0, False), (2, 4.5, True), (3, 5.0, True)]  # choreography seed, delay, one rhythm


def hit_rate(timings: tuple[LimbTiming, ...], names) -> float:
    """Share of (limb, window) of the named limbs that are called late."""
    calls = [late for limb in timings if limb.name in names for late in limb.late_windows]
    return float(np.mean(calls))


def false_rate(timings: tuple[LimbTiming, ...], names) -> float:
    """Share of (limb, window) of the named limbs called late (they are not)."""
    return hit_rate(timings, names)


def on_time(names) -> tuple[str, ...]:
    return tuple(name for name in LIMB_NAMES if name not in names)


def teacher(seed: int, shared: bool) -> np.ndarray:
    return dance(SECONDS, Dancer(seed=100 + seed), seed, shared)


# --- The parts: jitter, movement, positions -------------------------------------------------


def test_jitter_of_white_noise_is_its_deviation_and_smooth_motion_adds_little():
    rng = np.random.default_rng(3)
    t = np.arange(300) / FPS
    noise = rng.normal(0.0, 0.02, (300, 4))
    motion = 0.5 * np.sin(2 * np.pi * 1.5 * t)[:, None] + 0.3 * np.sin(2 * np.pi * 2.7 * t + 1)[:, None]
    assert float(jitter(noise)) == pytest.approx(0.02, rel=0.1)
    assert float(jitter(noise + motion)) == pytest.approx(0.02, rel=0.15)
    assert np.isnan(jitter(np.full((20, 2), np.nan)))
    assert jitter(np.stack([noise, 2 * noise])) == pytest.approx([0.02, 0.04], rel=0.1)


def test_movement_ratio_is_the_motions_velocity_over_the_noises():
    rng = np.random.default_rng(4)
    frames, half, sigma = 124, 2, 0.02
    t = np.arange(frames) / FPS
    noise = rng.normal(0.0, sigma, (frames, 4))
    still = movement_ratio(noise, velocities(noise, FPS, half)[2:-2], FPS, half)
    assert float(still) < 0.5
    # A sine of amplitude A at f Hz through a central difference over 2 * half frames has
    # velocity RMS A * sin(2 pi f half / fps) * fps / half / sqrt(2).
    amplitude, frequency = 0.1, 1.0
    moving = noise + amplitude * np.sin(2 * np.pi * frequency * t)[:, None]
    expected_rms = amplitude * np.sin(2 * np.pi * frequency * half / FPS) * FPS / half / np.sqrt(2)
    noise_rms = sigma * np.sqrt(2) * FPS / (2 * half)
    ratio = float(movement_ratio(moving, velocities(moving, FPS, half)[2:-2], FPS, half))
    assert ratio == pytest.approx(expected_rms / noise_rms, rel=0.2)
    assert float(movement_ratio(np.full((frames, 4), np.nan), np.full((frames - 4, 4), np.nan), FPS, half)) == 0


def test_limb_positions_are_relative_to_the_limbs_root_in_torso_lengths():
    poses = dance(2.0, Dancer(jitter_px=0.0, dropout=0.0))
    moved = dance(2.0, Dancer(jitter_px=0.0, dropout=0.0, scale=2.0, place=(900.0, 100.0)))
    scale = float(np.median(torso_lengths(poses)))
    positions = limb_positions(poses, scale)
    assert [p.shape[1] for p in positions] == [limb.channels for limb in LIMB_DEFINITIONS] == [10, 4, 4, 9, 4, 4]
    for ours, theirs in zip(positions, limb_positions(moved, 2 * scale)):
        assert np.allclose(ours[:, :8], theirs[:, :8])  # not the torso centre's height: it moved
    arm = positions[LIMB_NAMES.index("left_arm")]
    wrist, shoulder = KEYPOINT_NAMES.index("left_wrist"), KEYPOINT_NAMES.index("left_shoulder")
    assert np.allclose(arm[:, 2:4], (poses[:, wrist] - poses[:, shoulder]) / scale)
    assert np.isnan(limb_positions(poses, float("nan"))[0]).all()


def test_mirror_image_pairs_the_left_arm_with_the_right_arm_flipped():
    poses = dance(2.0, Dancer(jitter_px=0.0, dropout=0.0))
    scale = float(np.median(torso_lengths(poses)))
    plain = dict(zip(LIMB_NAMES, limb_positions(poses, scale)))
    mirrored = dict(zip(LIMB_NAMES, limb_positions(mirror_poses(poses), scale)))
    flip = np.array([-1.0, 1.0, -1.0, 1.0])
    assert np.allclose(mirrored["left_arm"], plain["right_arm"] * flip)
    assert np.allclose(mirrored["right_leg"], plain["left_leg"] * flip)
    assert np.allclose(mirrored["torso"][:, -1], plain["torso"][:, -1])  # the bounce stays


def test_lower_median_takes_the_earlier_of_the_middle_two():
    assert lower_median(np.array([5.0, 5.0, 0.0, 0.0])) == 0.0
    assert lower_median(np.array([5.0, np.nan, 0.0, 1.0])) == 1.0
    assert np.isnan(lower_median(np.array([np.nan])))


def test_summarise_names_a_limb_late_beyond_its_uncertainty_and_says_why_others_have_no_lag():
    windows = 10
    lags = np.zeros((windows, 6))
    lags[:, 1] = 3.0  # left arm 3 frames behind the rest
    lags[:, 2] = np.nan  # right arm: no peak anywhere
    moving = np.ones(lags.shape, dtype=bool)
    moving[:, 4] = False  # left leg still
    lags[:, 4] = np.nan
    result = dict((limb.name, limb) for limb in summarise(lags, moving, FPS))
    assert result["left_arm"].late and all(result["left_arm"].late_windows)
    assert result["left_arm"].relative_ms == pytest.approx(100.0)
    assert result["left_arm"].uncertainty_ms == pytest.approx(FRAME_MS)  # the floor: no spread
    assert not any(limb.late for name, limb in result.items() if name != "left_arm")
    assert result["right_arm"].reason == NO_CLEAR_LAG and result["right_arm"].lag_ms is None
    assert result["left_leg"].reason == NOT_ENOUGH_MOVEMENT and result["left_leg"].lag_ms is None
    # 1.5 frames behind is within 2 uncertainties of one frame: not late.
    lags[:, 1] = 1.5
    assert not summarise(lags, moving, FPS)[1].late
    # Against a whole-body lag of 3 frames, the arm is in time and the rest early, not late.
    lags[:, 1] = 3.0
    with_body = summarise(lags, moving, FPS, body=np.full(windows, 3.0))
    assert not any(limb.late for limb in with_body)
    assert with_body[0].relative_ms == pytest.approx(-100.0)


# --- Against a teacher ------------------------------------------------------------------------


@pytest.mark.parametrize("seed, delay, shared", CASES)
def test_a_late_upper_body_is_named_and_the_legs_are_not(seed, delay, shared):
    student = dance(SECONDS, Dancer(delays={name: delay for name in UPPER_BODY}, seed=200 + seed, scale=0.8,
                                    place=(250.0, 260.0)), seed, shared)
    result = limb_lags_against(student, teacher(seed, shared), FPS)
    assert [limb.name for limb in result] == list(LIMB_NAMES)
    assert hit_rate(result, UPPER_BODY) >= 0.95
    assert false_rate(result, on_time(UPPER_BODY)) <= 0.05
    by_name = {limb.name: limb for limb in result}
    for name in UPPER_BODY:
        assert by_name[name].late
        assert by_name[name].lag_ms == pytest.approx(delay * FRAME_MS, abs=0.5 * FRAME_MS)
    for name in ("left_leg", "right_leg"):
        assert not by_name[name].late
        assert by_name[name].lag_ms == pytest.approx(0.0, abs=0.5 * FRAME_MS)


@pytest.mark.parametrize("seed, delay, shared", CASES[:2])
def test_with_the_torso_late_too_the_arms_are_late_not_the_legs_early(seed, delay, shared):
    # The upper body cut at the hips (tests/teacher_pairs.py): head, arms and the torso's lean late.
    late = (*UPPER_BODY, "torso")
    student = dance(SECONDS, Dancer(delays=dict.fromkeys(late, delay), seed=250 + seed), seed, shared)
    by_name = {limb.name: limb for limb in limb_lags_against(student, teacher(seed, shared), FPS)}
    assert by_name["left_arm"].late and by_name["right_arm"].late
    assert not by_name["left_leg"].late and not by_name["right_leg"].late
    assert hit_rate(tuple(by_name.values()), ("left_arm", "right_arm")) >= 0.95


@pytest.mark.parametrize("seed, delay, shared", CASES)
def test_a_student_late_all_over_has_no_late_limb(seed, delay, shared):
    student = dance(SECONDS, Dancer(delays={name: delay for name in LIMB_NAMES}, seed=300 + seed), seed, shared)
    result = limb_lags_against(student, teacher(seed, shared), FPS)
    assert false_rate(result, LIMB_NAMES) <= 0.05
    assert not any(limb.late for limb in result)
    for limb in result:
        assert limb.lag_ms == pytest.approx(delay * FRAME_MS, abs=0.5 * FRAME_MS)


@pytest.mark.parametrize("seed, _, shared", CASES)
def test_a_student_in_time_has_no_late_limb(seed, _, shared):
    student = dance(SECONDS, Dancer(seed=500 + seed, scale=1.2, jitter_px=1.8), seed, shared)
    result = limb_lags_against(student, teacher(seed, shared), FPS)
    assert false_rate(result, LIMB_NAMES) <= 0.05
    assert not any(limb.late for limb in result)


@pytest.mark.parametrize("seed, _, shared", CASES)
def test_a_still_arm_has_not_enough_movement_rather_than_a_lag(seed, _, shared):
    student = dance(SECONDS, Dancer(still=("left_arm",), seed=400 + seed), seed, shared)
    result = {limb.name: limb for limb in limb_lags_against(student, teacher(seed, shared), FPS)}
    arm = result["left_arm"]
    assert arm.reason == NOT_ENOUGH_MOVEMENT
    assert arm.lag_ms is None and arm.relative_ms is None and not arm.late
    assert not any(arm.moving) and set(arm.window_lags_ms) == {None}
    assert all(limb.lag_ms is not None for name, limb in result.items() if name != "left_arm")
    assert not any(limb.late for limb in result.values())


@pytest.mark.parametrize("seed", [0, 1])
def test_a_mirrored_teacher_pairs_the_students_left_arm_with_its_image(seed):
    """The teacher faces the student: its right arm moves as the student's left arm's mirror
    image. The student's left arm is late; with `mirror` it is the one named."""
    source = Dancer(seed=600 + seed)
    mirrored_teacher = mirror_poses(dance(SECONDS, source, seed))
    student = dance(SECONDS, Dancer(delays={"left_arm": 5.0}, seed=700 + seed), seed)
    result = limb_lags_against(student, mirrored_teacher, FPS, mirror=True)
    assert hit_rate(result, ("left_arm",)) >= 0.95
    assert false_rate(result, on_time(("left_arm",))) <= 0.05
    assert [limb.name for limb in result if limb.late] == ["left_arm"]
    unmirrored = limb_lags_against(student, mirrored_teacher, FPS)
    assert hit_rate(unmirrored, ("left_arm",)) < 0.5


def test_whole_body_lags_can_be_the_reference():
    student = dance(SECONDS, Dancer(delays={name: 5.0 for name in LIMB_NAMES}, seed=800), 0)
    poses = teacher(0, False)
    count = len(limb_lags_against(student, poses, FPS)[0].window_lags_ms)
    result = limb_lags_against(student, poses, FPS, body_lags=[5 * FRAME_MS] * count)
    assert not any(limb.late for limb in result)
    result = limb_lags_against(student, poses, FPS, body_lags=[0.0] * count)
    assert all(limb.late for limb in result if limb.name != "torso")  # all behind a body in time
    with pytest.raises(ValueError, match="one value per window"):
        limb_lags_against(student, poses, FPS, body_lags=[0.0])


def test_bad_inputs_are_rejected_with_the_shapes():
    poses = dance(5.0)
    with pytest.raises(ValueError, match=r"anchor must have the shape of poses"):
        limb_lags_against(poses, poses[:-1], FPS)
    with pytest.raises(ValueError, match=r"poses must have shape \(T, 17, 2\)"):
        limb_lags_against(poses[:, :5], poses[:, :5], FPS)
    with pytest.raises(ValueError, match="fps must be > 0"):
        limb_lags_against(poses, poses, 0.0)
    with pytest.raises(ValueError, match="min_movement"):
        LimbParams(min_movement=-1.0)


# --- In a group -------------------------------------------------------------------------------


def group(seed: int, shared: bool) -> dict[int, np.ndarray]:
    """Five performers: 2 has both arms 5 frames late, 3 is 2 frames late all over."""
    dancers = {
        1: Dancer(seed=10 + seed),
        2: Dancer(delays={"left_arm": 5.0, "right_arm": 5.0}, seed=20 + seed, scale=0.9, place=(200.0, 280.0)),
        3: Dancer(delays={name: 2.0 for name in LIMB_NAMES}, seed=30 + seed, scale=1.1, place=(600.0, 320.0)),
        4: Dancer(seed=40 + seed, place=(800.0, 300.0)),
        5: Dancer(seed=50 + seed, scale=0.8, place=(1000.0, 260.0)),
    }
    return {i: dance(SECONDS, d, seed, shared) for i, d in dancers.items()}


@pytest.mark.parametrize("seed, shared", [(0, False), (1, True)])
def test_in_a_group_the_performer_with_late_arms_is_the_one_named(seed, shared):
    poses = group(seed, shared)
    ids = [5, 3, 1, 4, 2]  # any order: the result comes back by id
    frames = len(poses[1])
    result = limb_lags_in_group(ids, frames, lambda a, b: [poses[i][a:b] for i in ids], FPS)
    assert list(result) == [1, 2, 3, 4, 5]
    arms = ("left_arm", "right_arm")
    assert hit_rate(result[2], arms) >= 0.95
    assert false_rate(result[2], on_time(arms)) <= 0.05
    for person in (1, 3, 4, 5):
        assert false_rate(result[person], LIMB_NAMES) <= 0.05
        assert not any(limb.late for limb in result[person])
    by_name = {limb.name: limb for limb in result[2]}
    assert by_name["left_arm"].lag_ms == pytest.approx(5 * FRAME_MS, abs=0.5 * FRAME_MS)
    assert by_name["left_leg"].lag_ms == pytest.approx(0.0, abs=0.5 * FRAME_MS)
    # Performer 3 is late all over, so each of its limbs is late behind the group's, none
    # relative to the rest of its body.
    for limb in result[3]:
        assert limb.lag_ms == pytest.approx(2 * FRAME_MS, abs=0.5 * FRAME_MS)


def test_the_group_analysis_streams_with_the_same_result():
    poses = group(2, False)
    ids = sorted(poses)
    frames = 20 * round(FPS)
    reads = []

    def source(start, stop):
        reads.append(stop - start)
        return [poses[i][start:stop] for i in ids]

    whole = limb_lags_in_group(ids, frames, source, FPS)
    reads.clear()
    streamed = limb_lags_in_group(ids, frames, source, FPS, chunk_frames=90)
    assert max(reads) < frames / 2
    for person in ids:
        for a, b in zip(whole[person], streamed[person]):
            assert a.window_lags_ms == pytest.approx(b.window_lags_ms, nan_ok=True)
            assert a.late_windows == b.late_windows and a.moving == b.moving


def test_a_still_limb_in_the_group_has_not_enough_movement():
    poses = group(3, False)
    poses[4] = dance(SECONDS, Dancer(still=("right_arm",), seed=99, place=(800.0, 300.0)), 3)
    ids = sorted(poses)
    result = limb_lags_in_group(ids, len(poses[1]), lambda a, b: [poses[i][a:b] for i in ids], FPS)
    arm = {limb.name: limb for limb in result[4]}["right_arm"]
    assert arm.reason == NOT_ENOUGH_MOVEMENT and arm.lag_ms is None
    assert all(limb.lag_ms is not None for limb in result[1])
