"""Every pair's shift correlations at once (workers/correlation.py) against the one-pair reference."""

import numpy as np
import pytest

from tests.reference import peak_shift, shift_correlations
from workers.correlation import correlate, fft_length, partners, references
from workers.motion import peak_shifts

LENGTH, REACH, CHANNELS = 120, 16, 24


def _velocities(count: int, seed: int = 0) -> np.ndarray:
    """(count, L + 2S, C) smooth, roughly zero-mean signals, some channels nearly still."""
    rng = np.random.default_rng(seed)
    kernel = np.hanning(9) / np.hanning(9).sum()
    noise = rng.normal(size=(count, LENGTH + 2 * REACH + 8, CHANNELS))
    smooth = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), 1, noise)
    smooth[:, :, 5] *= 0.001  # a limb at rest
    return smooth


def _matrix(stretches: np.ndarray, min_valid: int, min_std: float = 0.05, min_channels: int = 3) -> np.ndarray:
    size = fft_length(LENGTH, REACH)
    return correlate(references(stretches[:, REACH:REACH + LENGTH], size, min_std),
                     partners(stretches, LENGTH, size, min_std), min_valid, min_channels)


def _one_pair(stretches: np.ndarray, i: int, j: int, min_valid: int) -> np.ndarray:
    return shift_correlations(stretches[i, REACH:REACH + LENGTH], stretches[j], min_valid, 0.05, 3)


def test_with_every_frame_present_every_pair_matches_the_one_pair_computation():
    stretches = _velocities(6)
    stretches[2] = np.roll(stretches[0], 5, axis=0)  # a copy 5 frames late
    matrix = _matrix(stretches, LENGTH // 2)
    assert matrix.shape == (6, 6, 2 * REACH + 1)
    for i in range(6):
        for j in range(6):
            assert matrix[i, j] == pytest.approx(_one_pair(stretches, i, j, LENGTH // 2), abs=1e-9, nan_ok=True)
    assert matrix[0, 0, REACH] == pytest.approx(1.0)  # a person against itself, no shift
    assert np.nanargmax(matrix[0, 2]) - REACH == 5  # the late copy peaks 5 frames on


def test_with_missing_frames_the_peaks_stay_where_they_were_and_nearly_as_high():
    rng = np.random.default_rng(1)
    one = _velocities(1, seed=1)[0]
    delays = (0, 3, 6, 9)
    stretches = np.stack([np.roll(one, d, axis=0) + rng.normal(0, 0.05, one.shape) for d in delays])
    stretches[1, 40:70] = np.nan  # away for a second
    stretches[2][np.repeat(rng.random((len(one), CHANNELS // 2)) < 0.2, 2, axis=1)] = np.nan  # keypoints flicker
    stretches[3, LENGTH + 10:] = np.nan  # leaves near the end
    matrix = _matrix(stretches, LENGTH // 2)
    for i in range(4):
        for j in range(4):
            expected = _one_pair(stretches, i, j, LENGTH // 2)
            assert (np.isnan(matrix[i, j]) == np.isnan(expected)).all()
            assert np.nanargmax(matrix[i, j]) == np.nanargmax(expected) == REACH + delays[j] - delays[i]
            assert np.nanmax(matrix[i, j]) == pytest.approx(np.nanmax(expected), abs=0.05)
            assert np.nanmax(np.abs(matrix[i, j] - expected)) < 0.2


def test_too_few_frames_or_channels_give_no_value():
    stretches = _velocities(2, seed=2)
    stretches[1, :LENGTH] = np.nan  # the partner only has the last 2S frames
    assert np.isnan(_matrix(stretches, LENGTH // 2)[0, 1]).all()
    still = _velocities(2, seed=3) * 1e-4  # nobody moves more than the threshold
    assert np.isnan(_matrix(still, LENGTH // 2)).all()


def test_peak_shifts_of_many_curves_at_once_give_each_curve_its_own_answer():
    shifts = np.arange(-10, 11)
    truths = [-7.3, -2.0, 0.4, 5.5, 8.25]
    curves = [0.9 - 0.01 * (shifts - truth) ** 2 for truth in truths]  # parabolas: exact sub-frame peaks
    curves.append(0.8 * np.exp(-((shifts + 5) / 1.5) ** 2) + 0.78 * np.exp(-((shifts - 5) / 1.5) ** 2))  # two peaks
    curves.append(np.linspace(0.1, 0.9, 21))  # no interior peak
    curves.append(0.2 - 0.01 * shifts ** 2)  # too low
    curves.append(np.full(21, np.nan))
    found, values = peak_shifts(np.array(curves), min_correlation=0.3, ambiguity_margin=0.05, min_separation=3)
    assert found[:5] == pytest.approx(truths, abs=1e-9)
    assert values[:5] == pytest.approx([curve[np.argmax(curve)] for curve in curves[:5]])
    assert np.isnan(found[5:]).all() and np.isnan(values[5:]).all()
    assert peak_shift(curves[2], 0.3, 0.05, 3) == pytest.approx((0.4, curves[2][10]))
    assert peak_shift(curves[5], 0.3, 0.05, 3) is None
