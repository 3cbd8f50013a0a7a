"""Where one recording of a dance falls in another, found by their music.

Pure math, no I/O: two mono waveforms in, an `AudioAlignment` out.

The waveforms themselves are correlated, not their loudness envelopes: dance music repeats every
bar, so envelopes match equally well a whole bar (1-2 s) off, while the waveform of the whole
mix (a melody, the phases of the notes) does not repeat. Both signals are first whitened over a
band that survives a phone's microphone (`AlignParams.band`), which sharpens the correlation
peak to about a millisecond and keeps echoes from pulling it.

The clocks of two devices drift apart (up to about 1000 ppm: 0.6 s over 10 minutes), which
smears one correlation of the whole recordings. So the search runs in two steps:

1. Coarse: a few 20 s windows of the student, spread over it, are each correlated against the
   whole reference on how the loudness of 24 bands changes from one 20 ms frame to the next
   (notes starting and stopping; a drifting clock smears a waveform's millisecond peak over a
   20 s window, not these). Each window proposes its best few lags; the straight lines lag(t)
   that most windows agree with are the candidates. A window of a song that repeats may prefer
   a lag a bar off; the other windows outvote it, and the waveforms decide between the best
   few lines, so no envelope alone decides the offset.
2. Fine: the student is resampled onto the reference's clock along that line, then cut into
   windows that are each correlated against the reference only a few milliseconds either way,
   to a fraction of a sample (a parabola through the peak). A line through those lags, fitted
   again without the windows that stray from it, gives the offset and the drift.

Sign convention: `offset_seconds` is the time in the student's recording at which the
reference's time 0 falls; `t_student = offset_seconds + t_reference * (1 + drift_ppm * 1e-6)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy import fft, signal

#: The reason given when the music of the two recordings does not match.
NO_MATCH = "the two audio tracks do not match (another song or version?)"
#: The coarse step's frames: length and hop (seconds), and how many bands between `AlignParams.band`.
COARSE_FRAME, COARSE_HOP, COARSE_BANDS = 0.064, 0.02, 24


@dataclass(frozen=True)
class AlignParams:
    """Every knob of `align_audio`, with its default.

    Attributes:
        work_rate: Sample rate the signals are brought to before correlating (Hz). 4000 Hz keeps
            a 10-minute pair under a second or two of CPU and still places the peak to a
            fraction of a millisecond.
        band: The band kept by the whitening (Hz, low and high): above most of the bass (which
            repeats every bar) and inside a phone's 300-3400 Hz.
        coarse_window: Length of each coarse window (seconds).
        coarse_windows: How many coarse windows, at most, are spread over the student.
        candidates: Lags each coarse window proposes (its highest peaks).
        coarse_tolerance: How far a window's lag may lie from the coarse line and still agree
            with it (seconds).
        max_drift_ppm: The largest clock drift looked for (parts per million).
        fine_window: Length of each fine window (seconds).
        fine_reach: How far either way of the coarse line each fine window is searched (seconds).
        inlier_tolerance: How far a fine window's lag may lie from the fitted line and still be
            used (seconds).
        min_overlap: The shortest stretch the two recordings must share (seconds).
        min_peak_ratio: The smallest `peak_ratio` accepted as a match.
        min_agreement: The smallest share of coarse windows (0..1) that must agree on the line.
    """

    work_rate: int = 4000
    band: tuple[float, float] = (300.0, 1800.0)
    coarse_window: float = 20.0
    coarse_windows: int = 12
    candidates: int = 5
    coarse_tolerance: float = 0.03
    lines: int = 3
    max_drift_ppm: float = 1500.0
    fine_window: float = 8.0
    fine_reach: float = 0.05
    inlier_tolerance: float = 0.002
    min_overlap: float = 3.0
    min_peak_ratio: float = 6.0
    min_agreement: float = 0.5

    def __post_init__(self) -> None:
        if self.work_rate < 1000:
            raise ValueError(f"work_rate must be at least 1000 Hz, got {self.work_rate}")
        low, high = self.band
        if not 0 <= low < high <= self.work_rate / 2:
            raise ValueError(f"band must satisfy 0 <= low < high <= work_rate / 2 ({self.work_rate / 2} Hz), "
                             f"got {self.band}")
        for name in ("coarse_window", "fine_window", "fine_reach", "coarse_tolerance", "inlier_tolerance",
                     "min_overlap"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.coarse_windows < 1 or self.candidates < 1:
            raise ValueError(f"coarse_windows and candidates must be at least 1, got {self.coarse_windows} "
                             f"and {self.candidates}")
        if not 0 < self.min_agreement <= 1:
            raise ValueError(f"min_agreement must be in (0, 1], got {self.min_agreement}")


@dataclass(frozen=True)
class AudioAlignment:
    """Where the reference's clock falls on the student's (made by `align_audio`).

    Attributes:
        matched: Whether the two recordings were found to play the same music.
        offset_seconds: The student's time (seconds) at which the reference's time 0 falls;
            negative when the student began recording after the reference's music had begun.
            0 when not matched.
        drift_ppm: How much faster the student's clock runs (parts per million): a reference
            second lasts 1 + drift_ppm * 1e-6 student seconds.
        confidence: 0..1, the share of fine windows on the line times how clearly the coarse
            peaks stand out (1 from a `peak_ratio` of twice the threshold on).
        peak_ratio: How far the correlation peaks stand above the rest of their curves: the
            median, over the fine windows on the line, of the peak divided by its curve's
            robust spread (1.4826 * median absolute deviation). Unrelated music stays below 4.
        windows_used: Fine windows whose lag lies on the fitted line.
        windows_total: Fine windows with sound in both recordings.
        residual_ms: Root mean square distance of the used windows from the line (ms).
        reason: Why the alignment was refused ("" when matched).
        window_times: (k,) the used fine windows' centres on the reference's clock (seconds).
        window_offsets: (k,) each used window's lag, student time minus reference time (seconds).
    """

    matched: bool
    offset_seconds: float = 0.0
    drift_ppm: float = 0.0
    confidence: float = 0.0
    peak_ratio: float = 0.0
    windows_used: int = 0
    windows_total: int = 0
    residual_ms: float = float("nan")
    reason: str = ""
    window_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    window_offsets: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def scale(self) -> float:
        """Student seconds per reference second."""
        return 1.0 + self.drift_ppm * 1e-6

    def student_time(self, reference_seconds: float | np.ndarray) -> float | np.ndarray:
        """The student's time (seconds) of a moment given on the reference's clock (seconds)."""
        return self.offset_seconds + np.asarray(reference_seconds) * self.scale

    def reference_time(self, student_seconds: float | np.ndarray) -> float | np.ndarray:
        """The reference's time (seconds) of a moment given on the student's clock (seconds)."""
        return (np.asarray(student_seconds) - self.offset_seconds) / self.scale


def align_audio(reference: np.ndarray, student: np.ndarray, rate: float,
                params: AlignParams = AlignParams()) -> AudioAlignment:
    """Find where the reference's time 0 falls in the student's recording, and the clocks' drift.

    Args:
        reference: (n,) the reference's (teacher's) mono samples, any scale.
        student: (m,) the student's mono samples at the same rate.
        rate: Their sample rate (Hz).
        params: The knobs (`AlignParams`).

    Returns:
        The alignment; `matched` is False, with a `reason`, when either track is silent, when the
        two share less than `params.min_overlap` seconds, or when their music does not match.
    """
    for name, samples in (("reference", reference), ("student", student)):
        if np.ndim(samples) != 1:
            raise ValueError(f"{name} must have shape (n,), got {np.shape(samples)}")
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    work = params.work_rate
    ref = _whiten(_resample(np.asarray(reference, np.float64), rate, work), work, params.band)
    stu = _whiten(_resample(np.asarray(student, np.float64), rate, work), work, params.band)
    for name, samples in (("reference", ref), ("student", stu)):
        if len(samples) < params.min_overlap * work:
            return AudioAlignment(False, reason=f"the {name}'s audio is shorter than {params.min_overlap:g} s")
        if not np.any(samples):
            return AudioAlignment(False, reason=f"the {name}'s audio is silent")

    fits = []
    for offset, drift, agreement in _coarse(ref, stu, work, params):
        # A dozen windows tell the lines apart; the chosen one is then refitted on all of them.
        # Over a short overlap the coarse drift is poor (lags to a frame over a few seconds), so
        # the line is also tried without drift, pivoted on the middle of the overlap.
        middle = 0.5 * (max(0.0, -offset) + min(len(ref) / work, len(stu) / work - offset))
        for line in ((offset, drift), (offset + drift * middle, 0.0)):
            fit = _fine(ref, stu, work, *line, params, most=12)
            if fit is not None:
                fits.append((fit.score / fit.total, agreement, fit))
    if not fits:
        return AudioAlignment(False, reason=NO_MATCH)
    _, agreement, first_fit = max(fits, key=lambda item: item[0])
    # The second pass starts from a line already within a fraction of a millisecond.
    fit = _fine(ref, stu, work, first_fit.offset, first_fit.drift, params)
    if fit is None:
        return AudioAlignment(False, peak_ratio=first_fit.peak_ratio, reason=NO_MATCH)
    overlap = _overlap(len(ref) / work, len(stu) / work, fit.offset, fit.drift)
    if overlap < params.min_overlap:
        return AudioAlignment(False, peak_ratio=fit.peak_ratio,
                              reason=f"the recordings share only {overlap:.1f} s of audio "
                                     f"(at least {params.min_overlap:g} s needed)")
    if fit.peak_ratio < params.min_peak_ratio or agreement < params.min_agreement:
        return AudioAlignment(False, peak_ratio=fit.peak_ratio, reason=NO_MATCH)
    residual = fit.lags - (fit.offset + fit.drift * fit.times)
    used = len(fit.times)
    confidence = (used / fit.total) * float(np.clip((fit.peak_ratio - params.min_peak_ratio)
                                                    / params.min_peak_ratio, 0, 1))
    return AudioAlignment(True, offset_seconds=fit.offset, drift_ppm=fit.drift * 1e6, confidence=confidence,
                          peak_ratio=fit.peak_ratio, windows_used=used, windows_total=fit.total,
                          residual_ms=float(np.sqrt(np.mean(residual**2))) * 1000,
                          window_times=fit.times, window_offsets=fit.lags)


def _resample(samples: np.ndarray, rate: float, work: int) -> np.ndarray:
    """`samples` at `work` Hz (a polyphase filter; rates within 0.01 % count as equal)."""
    if abs(rate - work) <= 1e-4 * work:
        return samples
    ratio = Fraction(work / rate).limit_denominator(1000)
    return signal.resample_poly(samples, ratio.numerator, ratio.denominator)


def _whiten(samples: np.ndarray, rate: int, band: tuple[float, float]) -> np.ndarray:
    """`samples` with a flat spectrum inside `band` (Hz) and none outside, as float32.

    Each frequency is divided by the signal's average magnitude around it (over 20 Hz), so
    that every part of the band counts alike: the peak sharpens to about 1 / bandwidth and a
    resonance or an echo (a ripple in the spectrum) weighs little.
    """
    if len(samples) == 0:
        return samples.astype(np.float32)
    size = fft.next_fast_len(len(samples), real=True)
    spectrum = fft.rfft(samples.astype(np.float32), size)
    freqs = np.fft.rfftfreq(size, 1 / rate)
    magnitude = np.abs(spectrum)
    smooth = max(1, int(round(20.0 * size / rate)))
    total = np.concatenate([[0.0], np.cumsum(magnitude, dtype=np.float64)])
    centre = np.arange(len(magnitude))
    lo = np.clip(centre - smooth // 2, 0, len(magnitude))
    hi = np.clip(centre + smooth - smooth // 2, 0, len(magnitude))
    level = ((total[hi] - total[lo]) / (hi - lo)).astype(np.float32)
    low, high = band
    taper = 50.0  # Hz, the cosine edges of the band
    gain = np.clip(np.minimum(freqs - low + taper, high + taper - freqs) / taper, 0, 1)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    floor = 1e-6 * max(float(level.max()), 1e-30)
    out = fft.irfft(spectrum * (gain / np.maximum(level, floor)).astype(np.float32), size)[: len(samples)]
    if float(level.max()) <= 1e-12:  # digital silence: nothing to whiten
        return np.zeros(len(samples), np.float32)
    return out.astype(np.float32)


def _overlap(ref_seconds: float, stu_seconds: float, offset: float, drift: float) -> float:
    """Seconds of the reference's clock that both recordings cover, on the line offset + (1 + drift) t."""
    start = max(0.0, -offset / (1 + drift))
    end = min(ref_seconds, (stu_seconds - offset) / (1 + drift))
    return max(0.0, end - start)


def _peaks(curve: np.ndarray, count: int, spacing: int) -> np.ndarray:
    """Indices of the `count` highest local maxima of `curve`, at least `spacing` samples apart."""
    top = min(len(curve) - 1, 50 * count)
    order = np.argpartition(curve, -top - 1)[-top - 1:]
    order = order[np.argsort(curve[order])[::-1]]
    chosen: list[int] = []
    for index in order:
        if all(abs(int(index) - other) >= spacing for other in chosen):
            chosen.append(int(index))
            if len(chosen) == count:
                break
    return np.array(chosen, dtype=np.int64)


def _bands(samples: np.ndarray, rate: int, params: AlignParams) -> np.ndarray:
    """(bands, frames) how each band's loudness changes from frame to frame, each band scaled to
    unit spread: notes starting and stopping, at `COARSE_HOP` seconds a frame."""
    frame = int(COARSE_FRAME * rate)
    hop = int(COARSE_HOP * rate)
    count = max(0, (len(samples) - frame) // hop + 1)
    if count < 2:
        return np.zeros((COARSE_BANDS, 0), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame)[::hop][:count]
    power = np.abs(fft.rfft(frames * np.hanning(frame).astype(np.float32), axis=1)) ** 2
    freqs = np.fft.rfftfreq(frame, 1 / rate)
    edges = np.geomspace(params.band[0], params.band[1], COARSE_BANDS + 1)
    which = np.digitize(freqs, edges) - 1
    members = (which[:, None] == np.arange(COARSE_BANDS)[None, :]).astype(np.float32)
    energy = (power @ members).astype(np.float64)
    level = np.log(energy + 1e-6 * max(float(energy.mean()), 1e-30))
    change = np.diff(level, axis=0, prepend=level[:1]).T
    change -= change.mean(axis=1, keepdims=True)
    change /= change.std(axis=1, keepdims=True) + 1e-12
    return change.astype(np.float32)


def _coarse(ref: np.ndarray, stu: np.ndarray, rate: int, params: AlignParams) -> list[tuple[float, float, float]]:
    """Candidate lines lag(t) = offset + drift * t (t: reference seconds) that coarse windows
    agree on, best first.

    The windows are correlated on their bands' loudness changes (`_bands`), which a drifting
    clock does not smear, so that each window finds its lag to a frame or two; a repeating song
    lets a window prefer a lag a bar off, which the other windows outvote, and the fine step
    (on the waveforms) settles between the best lines.

    Returns:
        (offset seconds, drift as a fraction, share of the windows that agree) of the best few
        lines, empty when no window has sound.
    """
    ref_bands, stu_bands = _bands(ref, rate, params), _bands(stu, rate, params)
    total = stu_bands.shape[1]
    window = min(int(params.coarse_window / COARSE_HOP), total, ref_bands.shape[1])
    if window < 2:
        return []
    starts = np.unique(np.linspace(0, total - window, max(1, min(params.coarse_windows,
                                                               2 * total // window))).astype(np.int64))
    size = fft.next_fast_len(ref_bands.shape[1] + window, real=True)
    ref_spectrum = np.conj(fft.rfft(ref_bands, size, axis=1))
    lags = np.arange(-(window // 2), ref_bands.shape[1] - window // 2)  # at least half the window overlaps
    counts = np.clip(lags + window, 0, ref_bands.shape[1]) - np.clip(lags, 0, ref_bands.shape[1])
    points = []  # (window, reference time of its centre, lag, score)
    spacing = max(1, int(round(0.05 / COARSE_HOP)))
    for index, start in enumerate(starts):
        part = stu_bands[:, start:start + window]
        raw = fft.irfft((fft.rfft(part, size, axis=1) * ref_spectrum).sum(axis=0), size)
        corr = raw[(-lags) % size] / (COARSE_BANDS * np.maximum(counts, window // 4))
        for peak in _peaks(corr, params.candidates, spacing):
            # A parabola through the peak: the lag to a fraction of a frame.
            a, b, c = corr[max(peak - 1, 0)], corr[peak], corr[min(peak + 1, len(corr) - 1)]
            bend = a - 2 * b + c
            shift = float(np.clip(0.5 * (a - c) / bend, -0.5, 0.5)) if bend < 0 else 0.0
            ref_start = (lags[peak] + shift) * COARSE_HOP
            centre = ref_start + window * COARSE_HOP / 2
            points.append((index, centre, start * COARSE_HOP - ref_start, float(b)))
    if not points:
        return []
    table = np.array(points)
    windows = len(starts)
    # Every line through one candidate (no drift) or through two of different windows.
    first, second = np.triu_indices(len(table), 1)
    keep = table[first, 0] != table[second, 0]
    first, second = first[keep], second[keep]
    slopes = (table[second, 2] - table[first, 2]) / (table[second, 1] - table[first, 1] + 1e-12)
    keep = np.abs(slopes) <= params.max_drift_ppm * 1e-6
    first, slopes = first[keep], slopes[keep]
    anchors = np.concatenate([np.arange(len(table)), first])
    slopes = np.concatenate([np.zeros(len(table)), slopes])
    intercepts = table[anchors, 2] - slopes * table[anchors, 1]
    # Score each line: per window, the best score among its candidates near the line.
    distance = np.abs(table[None, :, 2] - (intercepts[:, None] + slopes[:, None] * table[None, :, 1]))
    near = np.where(distance <= params.coarse_tolerance, table[None, :, 3], 0.0)
    ids = table[:, 0].astype(int)
    per_window = np.zeros((len(intercepts), windows))
    for index in range(windows):
        mine = ids == index
        if mine.any():
            per_window[:, index] = near[:, mine].max(axis=1)
    scores = per_window.sum(axis=1)
    lines: list[tuple[float, float, float]] = []
    for best in np.argsort(scores)[::-1]:
        chosen = near[best] > 0
        offset, drift = float(intercepts[best]), float(slopes[best])
        if len(set(ids[chosen])) >= 2 and np.ptp(table[chosen, 1]) > 0:
            drift, offset = (float(v) for v in np.polyfit(table[chosen, 1], table[chosen, 2], 1))
        if any(abs(offset - o) < 2 * params.coarse_tolerance and abs(drift - d) < 1e-4 for o, d, _ in lines):
            continue
        # The share among the windows that the line puts inside the reference (a window of
        # the student's before or after the music cannot agree with anything).
        centres = ((starts + window / 2) * COARSE_HOP - offset) / (1 + drift)
        inside = max(1, int(np.count_nonzero((centres >= 0) & (centres <= ref_bands.shape[1] * COARSE_HOP))))
        lines.append((offset, drift, min(1.0, float(np.count_nonzero(per_window[best])) / inside)))
        if len(lines) == params.lines:
            break
    return lines


@dataclass(frozen=True)
class _Fit:
    """A line fitted by `_fine`: lag = offset + drift * t (t: reference seconds)."""

    offset: float
    drift: float
    times: np.ndarray  # the used windows' centres (reference seconds)
    lags: np.ndarray  # their lags (seconds)
    total: int  # windows with sound in both recordings
    peak_ratio: float  # median peak / robust spread of the windows' curves
    score: float  # sum of the used windows' correlation coefficients


def _fine(ref: np.ndarray, stu: np.ndarray, rate: int, offset: float, drift: float,
          params: AlignParams, most: int | None = None) -> _Fit | None:
    """The line refitted from windows searched `fine_reach` either way of `offset` + `drift` * t.

    Returns:
        The fit, or None when no window has sound in both recordings or fewer than half of
        them lie on a line.

    Args:
        most: Use at most this many windows, spread over the overlap (all by default).
    """
    start = max(0.0, -offset / (1 + drift))
    end = min(len(ref) / rate, (len(stu) / rate - offset) / (1 + drift))
    window = min(int(params.fine_window * rate), int((end - start) * rate))
    reach = int(np.ceil(params.fine_reach * rate))
    if window < rate:
        return None
    span = int((end - start) * rate)
    count = max(1, span // window)
    firsts = (start * rate + np.arange(count) * window + (span - count * window) / 2).astype(np.int64)
    if most is not None and count > most:
        firsts = firsts[np.unique(np.linspace(0, count - 1, most).round().astype(np.int64))]
    size = fft.next_fast_len(window + 2 * reach, real=True)
    times, lags, peaks, ratios = [], [], [], []
    for first in firsts:
        ref_part = ref[first:first + window]
        # The student on the reference's clock over the window and `reach` either side.
        where = (offset + np.arange(first - reach, first + window + reach) / rate * (1 + drift)) * rate
        where = np.clip(where, 0, len(stu) - 1.000001)
        below = where.astype(np.int64)
        frac = where - below
        stu_part = (stu[below] * (1 - frac) + stu[below + 1] * frac).astype(np.float32)
        ref_power = float(ref_part @ ref_part)
        stu_power = float(stu_part[reach:reach + window] @ stu_part[reach:reach + window])
        if ref_power <= 0 or stu_power <= 0:
            continue
        raw = fft.irfft(fft.rfft(stu_part, size) * np.conj(fft.rfft(ref_part, size)), size)[: 2 * reach + 1]
        corr = raw / np.sqrt(ref_power * stu_power)
        peak = int(np.argmax(corr[1:-1])) + 1
        a, b, c = corr[peak - 1], corr[peak], corr[peak + 1]
        bend = a - 2 * b + c
        shift = 0.5 * (a - c) / bend if bend < 0 else 0.0
        # The student's sample `reach + lag` matches the reference's first: lag samples later
        # on the reference's clock, (1 + drift) * lag / rate seconds on the student's.
        lag = (peak + shift - reach) / rate
        centre = (first + window / 2) / rate
        times.append(centre)
        lags.append(offset + drift * centre + lag * (1 + drift))
        peaks.append(float(b))
        ratios.append(float(b) / (1.4826 * float(np.median(np.abs(corr - np.median(corr)))) + 1e-12))
    total = len(times)
    if total == 0:
        return None
    t, y = np.array(times), np.array(lags)
    inliers = np.ones(total, bool)
    for _ in range(4):  # fit, drop the windows far from the line, fit again
        if inliers.sum() >= 2 and np.ptp(t[inliers]) > 0:
            slope, intercept = (float(v) for v in np.polyfit(t[inliers], y[inliers], 1))
        else:
            slope, intercept = drift, float(np.median(y[inliers] - drift * t[inliers]))
        distance = np.abs(y - (intercept + slope * t))
        tolerance = max(params.inlier_tolerance, 3 * 1.4826 * float(np.median(distance)))
        inliers = distance <= min(tolerance, 5 * params.inlier_tolerance)
        if not inliers.any():
            return None
    if inliers.sum() < 0.5 * total:
        return None
    return _Fit(intercept, slope, t[inliers], y[inliers], total, float(np.median(np.array(ratios)[inliers])),
                float(np.sum(np.array(peaks)[inliers])))
