"""Shift correlations of every pair of persons at once, through the FFT.

Pure math, no I/O. The reference that this is tested against (in `tests/reference.py`)
compares one pair in one window; a class of 30 has 435 pairs, and the timing analysis, the live
lag and the synchrony score each ask for every pair in every window (the synchrony score also
for every surrogate shift). Here one call gives the curves of all pairs of a window: each
person's features are transformed once, the pairs cost one product of spectra each, summed over
the channels before the inverse transform.

The similarity is the same as that reference's (weighted by motion): at a shift s,

    sum over channels of the covariance  /  sum over channels of sd(reference) * sd(partner)

over the window, so that it is 1 for identical signals and dominated by the channels that move.
Where both persons have every frame of the window the two agree to rounding. Where values are
missing (NaN) they differ slightly. There, each channel is restricted to the frames both persons
have at that shift, with its own means and spreads, which needs every pair's channels one by
one. Here:
- a missing value adds nothing to the covariance (each person centred on its own frames);
- each person's sum of squares over the frames and channels the other has is exact, summed
  over the channels (one more product of spectra each);
- the sum over channels of sd * sd is that exact root of the two sums times how much the sum
  of sd * sd falls short of it over each person's own frames (1 when both move their channels
  in the same proportions).
On real footage (the composites of `tests/composites.py`, people hidden, keypoints dropping out)
the likenesses stayed within 0.015 of the one-pair computation's and the group scores within
0.05; `tests/test_correlation.py` holds the known answers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft

#: Threads for the transforms (scipy's `workers`). One: the matrix products already use every
#: core through BLAS, and a second pool of threads in every process of a folder or cluster run
#: gained little (the benchmarks in docs/BENCHMARKS.md were measured with two).
WORKERS = 1


def fft_length(window: int, reach: int) -> int:
    """Transform length for windows of `window` frames searched `reach` frames either way: long
    enough that no product wraps round (window + 2 * reach), and fast for the FFT."""
    return int(fft.next_fast_len(window + 2 * reach, real=True))


@dataclass(frozen=True)
class References:
    """Every person's window, ready to be correlated (made by `references`).

    Attributes:
        spectra: (3, n, C, F) transforms of each channel: its values centred on their mean over
            the person's frames in the window (zero where missing or not moving), their
            squares, and where the channel is present and moving (0 or 1).
        energy: (n, C) each channel's centred sum of squares over the window.
        present: (n, F) transform of the frames where the person has any channel.
        moving: (n, C) channels that vary more than the threshold.
    """

    spectra: np.ndarray
    energy: np.ndarray
    present: np.ndarray
    moving: np.ndarray


@dataclass(frozen=True)
class Partners:
    """Every person's window with `reach` frames either side (made by `partners`).

    Attributes:
        spectra: (3, m, C, F) transforms of each channel: its values centred on their mean over
            the stretch (zero where missing or not moving), where the channel is present and
            moving (0 or 1), and the values squared (the order that pairs with `References`'s:
            covariance, the reference's squares where the partner has the channel, the
            partner's squares where the reference has it).
        energy: (m, 2S + 1, C) each channel's centred sum of squares over the L frames seen
            at each shift.
        recentred: (m, 2S + 1) how much smaller the sum of squares of those L frames is
            centred on their own means than on the stretch's.
        present: (m, F) transform of the frames where the person has any channel.
        moving: (m, C) channels that vary more than the threshold over the whole stretch.
        reach: S, frames searched either way.
    """

    spectra: np.ndarray
    energy: np.ndarray
    recentred: np.ndarray
    present: np.ndarray
    moving: np.ndarray
    reach: int


def _moving(values: np.ndarray, finite: np.ndarray, threshold: float) -> np.ndarray:
    """(n, T, C) -> (n, C): whether each channel's standard deviation over its finite frames
    exceeds `threshold` (as the one-pair reference's channel test, `tests/reference.py`)."""
    count = np.maximum(finite.sum(axis=1), 1)
    filled = np.where(finite, values, 0.0)
    mean = filled.sum(axis=1) / count
    spread = np.sqrt((np.where(finite, values - mean[:, None, :], 0.0) ** 2).sum(axis=1) / count)
    return np.asarray(spread > threshold)


def _transforms(values: np.ndarray, min_channel_std: float, size: int):
    """Centred values, their squares, the kept mask and presence, transformed; and the raw
    centred values, the kept mask and the moving channels."""
    finite = np.isfinite(values)
    moving = _moving(values, finite, min_channel_std)
    kept = finite & moving[:, None, :]
    mean = np.where(finite, values, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    centred = np.where(kept, values - mean[:, None, :], 0.0)
    # Time last, so that each transform runs over contiguous memory.
    series = np.stack([centred, centred * centred, kept.astype(np.float64)]).transpose(0, 1, 3, 2)
    spectra = fft.rfft(np.ascontiguousarray(series), size, axis=-1, workers=WORKERS)  # (3, n, C, F)
    present = fft.rfft(np.asarray(finite.any(axis=2), dtype=np.float64), size, axis=-1, workers=WORKERS)
    return spectra, present, centred, kept, moving


def references(windows: np.ndarray, size: int, min_channel_std: float = 0.0) -> References:
    """Prepare every person's window as the reference of a comparison.

    Args:
        windows: (n, L, C) features over the window, NaN where missing.
        size: Transform length, `fft_length(L, S)`.
        min_channel_std: Channels varying less than this do not count.
    """
    spectra, present, centred, _, moving = _transforms(np.asarray(windows, dtype=np.float64), min_channel_std, size)
    return References(spectra, (centred ** 2).sum(axis=1), present, moving)


def partners(stretches: np.ndarray, length: int, size: int, min_channel_std: float = 0.0) -> Partners:
    """Prepare every person's stretch as the partner of a comparison.

    Args:
        stretches: (m, L + 2S, C) features from S frames before the window to S frames after
            it, NaN where missing (e.g. past the video's ends).
        length: L, frames in the window.
        size: Transform length, `fft_length(L, S)`.
        min_channel_std: Channels varying less than this (over the whole stretch) do not count.
    """
    values = np.asarray(stretches, dtype=np.float64)
    reach = (values.shape[1] - length) // 2
    if reach < 0 or values.shape[1] != length + 2 * reach:
        raise ValueError(f"stretches must have L + 2S frames with L = {length}, got {values.shape[1]}")
    spectra, present, centred, kept, moving = _transforms(values, min_channel_std, size)
    # Sums over frames k..k+L-1 for every shift k: frames kept, values, squares.
    total = np.cumsum(np.stack([kept.astype(np.float64), centred, centred * centred]), axis=2)
    count, sums, squares = np.concatenate([total[:, :, length - 1:length],
                                           total[:, :, length:] - total[:, :, :-length]], axis=2)
    energy = np.maximum(np.where(count > 0, squares - sums ** 2 / np.maximum(count, 1), 0.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recentred = np.where(squares.sum(axis=2) > 0, energy.sum(axis=2) / squares.sum(axis=2), 1.0)
    return Partners(spectra[[0, 2, 1]], energy, recentred, present, moving, reach)


@functools.lru_cache(maxsize=16)
def _inverse_basis(size: int, shifts: int) -> np.ndarray:
    """(F, K) complex matrix whose product with a real signal's spectrum, real part, is the
    signal at 0..K-1 (`numpy.fft.irfft`'s first K values, for the few shifts searched)."""
    frequencies = np.arange(size // 2 + 1)
    weight = np.full(len(frequencies), 2.0)
    weight[0] = 1.0
    if size % 2 == 0:
        weight[-1] = 1.0
    return weight[:, None] * np.exp(2j * np.pi * np.outer(frequencies, np.arange(shifts)) / size) / size


def _pairs(first: np.ndarray, second: np.ndarray, size: int, shifts: int) -> np.ndarray:
    """(q, n, C, F) and (q, m, C, F) spectra -> (q, n, m, K): cross-correlations at shifts
    0..K-1 summed over the channels: one matrix product per frequency, then the inverse
    transform at the K shifts only (a matrix product too: K is a fifth of the transform)."""
    cross = np.matmul(np.conj(first).transpose(0, 3, 1, 2), second.transpose(0, 3, 2, 1))  # (q, F, n, m)
    return (cross.transpose(0, 2, 3, 1) @ _inverse_basis(size, shifts)).real


def correlate(
    reference: References, partner: Partners, min_valid: int, min_channels: int = 1
) -> np.ndarray:
    """The similarity of every reference with every partner at every shift.

    Args:
        reference: n windows (`references`).
        partner: m stretches (`partners`), made with the same transform length.
        min_valid: Fewest frames both must have for a value.
        min_channels: Fewest channels moving in both for a value.

    Returns:
        (n, m, 2S + 1) similarity; index k is shift k - S, which pairs the partner's frame
        t + s with the reference's frame t (as the one-pair reference in `tests/reference.py`);
        NaN where too few frames or channels count.
    """
    size = 2 * (reference.spectra.shape[3] - 1)
    shifts = 2 * partner.reach + 1
    count, m = len(reference.energy), len(partner.energy)
    # The covariance, and each one's sum of squares over the frames (and channels) the other
    # has, all channels together.
    covariance, own, other = _pairs(reference.spectra, partner.spectra, size, shifts)
    own = np.maximum(own, 0.0)
    other = np.maximum(other, 0.0) * partner.recentred[None]
    # How the sum over channels of sd * sd falls short of the root of the products of the sums
    # (1 when both move their channels in the same proportions), from each one's own frames.
    mutual = np.sqrt(reference.energy) @ np.sqrt(partner.energy).reshape(m * shifts, -1).T
    totals = (reference.energy @ partner.moving.T.astype(np.float64))[:, :, None] * \
        np.einsum("ic,jkc->ijk", reference.moving.astype(np.float64), partner.energy)
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = mutual.reshape(count, m, shifts) / np.sqrt(totals)
        scale = shape * np.sqrt(own * other)
    overlap = np.rint(((np.conj(reference.present)[:, None, :] * partner.present[None, :, :])
                       @ _inverse_basis(size, shifts)).real)
    channels = reference.moving.astype(np.float64) @ partner.moving.T.astype(np.float64)  # (n, m)
    usable = (overlap >= min_valid) & (channels[:, :, None] >= min_channels) & (scale > 1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(usable, np.clip(covariance / scale, -1.0, 1.0), np.nan)


def pair_curves(
    windows: np.ndarray, stretches: np.ndarray, min_valid: int, min_channel_std: float = 0.0, min_channels: int = 1,
    mirrored_windows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Every pair's similarity curve in one window (`references`, `partners`, `correlate`).

    Args:
        windows: (n, L, C) every person's features over the window, NaN where missing.
        stretches: (n, L + 2S, C) the same persons from S frames before to S frames after.
        min_valid: Fewest frames both must have for a value.
        min_channel_std: Channels varying less than this do not count.
        min_channels: Fewest channels moving in both for a value.
        mirrored_windows: (n, L, C) the windows of the persons mirrored, or None.

    Returns:
        (n, n, 2S + 1) curves (reference i against partner j, as `correlate`), and the same
        with the mirrored references (None without them).
    """
    length = windows.shape[1]
    size = fft_length(length, (stretches.shape[1] - length) // 2)
    partner = partners(stretches, length, size, min_channel_std)

    def curves(references_of: np.ndarray) -> np.ndarray:
        return correlate(references(references_of, size, min_channel_std), partner, min_valid, min_channels)

    return curves(windows), None if mirrored_windows is None else curves(mirrored_windows)
