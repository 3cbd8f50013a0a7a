"""The score over time beside each output (`<stem>.png`): a matplotlib Figure, no pyplot.

No global state, so it is safe from any thread; written atomically like every output.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reports.results import FrameResult, FrameTable, PersonResult
from workers.draw import colour_of
from workers.files import write_atomically
from workers.sync import SyncResult


def frame_column(frames: Sequence[FrameResult], name: str) -> np.ndarray:
    """One field of every frame as a float64 array, NaN where it is None ("timestamp",
    "persons", "score" or "displayed"); read straight from the records of a `FrameTable`."""
    if isinstance(frames, FrameTable):
        return frames.column(name).astype(np.float64)
    return np.array([np.nan if getattr(frame, name) is None else getattr(frame, name) for frame in frames],
                    dtype=np.float64)


def unscored_runs(scored: Sequence[bool]) -> list[tuple[int, int]]:
    """The stretches of consecutive unscored frames, as (first index, count) pairs."""
    flags = np.concatenate([[False], ~np.asarray(scored, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(flags.astype(np.int8)))
    return [(int(start), int(end - start)) for start, end in zip(edges[::2], edges[1::2])]


def plot_figure(
    frames: Sequence[FrameResult], *, frame_seconds: float, total: float | None, score_max: float, title: str,
    scored: bool, persons: Sequence[PersonResult] = (), sync: SyncResult | None = None,
):
    """The score over time as a matplotlib Figure (no pyplot: no global state, thread-safe).

    Top: each frame's score (thin) and the on-screen moving average (thick), unscored frames
    as gaps over grey bands, the total score as a dashed line, and the group's synchrony per
    analysis window (at the window's centre) with its chance level. Middle: each performer's lag
    behind the group per analysis window (at the window's centre, in the person's video
    colour). Bottom: persons per frame. The x axis is in seconds, each frame drawn at its
    start time and lasting `frame_seconds`.
    """
    from matplotlib.figure import Figure

    seconds, score, shown, persons_count = (frame_column(frames, name)
                                            for name in ("timestamp", "score", "displayed", "persons"))
    figure = Figure(figsize=(10, 5), dpi=100, layout="constrained")
    figure.suptitle(title, x=0.01, ha="left", fontsize=11)
    top, middle, bottom = figure.subplots(3, 1, sharex=True, height_ratios=(3, 2, 1))
    if scored and len(frames):
        runs = unscored_runs(~np.isnan(score))
        if runs:
            spans = [(seconds[start], count * frame_seconds) for start, count in runs]
            top.broken_barh(spans, (0, 1), transform=top.get_xaxis_transform(), color="0.88", label="unscored")
        top.plot(seconds, score, color="tab:blue", linewidth=0.8, alpha=0.7, marker=".", markersize=3,
                 label="frame score")
        top.plot(seconds, shown, color="tab:orange", linewidth=2.0, label="on screen (moving average)")
        if total is not None:
            top.axhline(total, color="tab:red", linestyle="--", linewidth=1.2, label=f"total {total:.2f}")
        _plot_sync(top, sync)
        top.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=4, fontsize=8, frameon=False,
                   borderaxespad=0.2)
    else:
        message = "scoring off (--no-score)" if not scored else "no frames"
        top.text(0.5, 0.5, message, transform=top.transAxes, ha="center", va="center", color="0.4")
    top.set_ylim(-0.02 * score_max, 1.05 * score_max)
    top.set_ylabel("score")
    top.grid(True, alpha=0.3)
    _plot_lags(middle, persons)
    bottom.step(seconds, persons_count, where="post", color="tab:green", linewidth=1.2)
    bottom.set_ylim(-0.1, max(2, int(persons_count.max(initial=0))) + 0.5)
    bottom.yaxis.get_major_locator().set_params(integer=True)
    bottom.set_ylabel("persons")
    bottom.set_xlabel("seconds")
    bottom.grid(True, alpha=0.3)
    bottom.set_xlim(0, max(len(frames) * frame_seconds, frame_seconds))
    return figure


def _plot_sync(axes, sync: SyncResult | None) -> None:
    """The group's synchrony per window, and the 95th percentile of chance as a dotted line."""
    if sync is None or sync.group is None:
        return
    centres = np.array([(start + end) / 2 for start, end, _ in sync.windows])
    values = np.array([np.nan if score is None else score for _, _, score in sync.windows])
    axes.plot(centres, values, color="tab:purple", linewidth=1.6, marker="s", markersize=4,
              label=f"group sync {sync.group.score:.1f}")
    axes.axhline(sync.group.chance_p95, color="tab:purple", linestyle=":", linewidth=1.0,
                 label=f"chance p95 {sync.group.chance_p95:.1f}")


def _plot_lags(axes, persons: Sequence[PersonResult]) -> None:
    """Each scored person's window lags (ms) over time, in the person's video colour."""
    drawn = False
    for person in persons:
        if not person.scored or not person.windows:
            continue
        centres = np.array([(window.start_s + window.end_s) / 2 for window in person.windows])
        lags = np.array([np.nan if window.lag_ms is None else window.lag_ms for window in person.windows])
        if not np.isfinite(lags).any():
            continue
        colour = tuple(channel / 255 for channel in colour_of(person.id))
        axes.plot(centres, lags, color=colour, marker="o", markersize=3, linewidth=1.4, label=f"#{person.id}")
        drawn = True
    axes.axhline(0, color="0.5", linewidth=0.8)
    if drawn:
        axes.legend(loc="upper right", ncols=8, fontsize=7, frameon=False)
    else:
        axes.text(0.5, 0.5, "no lag measured", transform=axes.transAxes, ha="center", va="center", color="0.4")
    axes.set_ylabel("lag ms\n(+ behind)")
    axes.grid(True, alpha=0.3)


def write_plot(path: Path, figure) -> Path:
    """Render a Figure to a PNG file atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    with warnings.catch_warnings():
        # A file name in a script the bundled font lacks is drawn with boxes; that is fine.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        return write_atomically(path, lambda handle: figure.savefig(handle, format="png"))
