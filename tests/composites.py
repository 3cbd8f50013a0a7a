"""Known-answer footage for identities: dancers composited from ../shared's park clip, with the truth.

The dancer on the park clip's roof (his jumping jacks, played forwards then backwards: 8 s at
30 fps) is cut out as a rectangle with his own background and laid on a grey canvas several
times, each copy moving along a known path and, where it says so, some frames late; the woman
who walks through the park clip is a passer-by. Layers are stacked back to front, so where two
rectangles overlap the front one hides the other completely, as a dancer in front hides one
behind. Every copy is the same man: look-alikes, told apart only by where they go and, where
one is late, by their pose.

The truth of each frame is each layer's box: the person's box in its rectangle, found by the
same model on the rectangle alone, moved with the rectangle; a person counts as seen where at
least half of that box is neither covered by a layer in front nor outside the canvas.

    python -m tests.composites [FOLDER]     # every case through YOLO11n-pose: the table of docs/SYNC.md
    python -m tests.composites --crowds | --sizes | --alone [NAME...]   # docs/BENCHMARKS.md, "Small people"

needs ../shared (the clip and the model) and the optional ultralytics package.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.ffmpeg import ffmpeg_exe

SHARED = Path(__file__).resolve().parents[2] / "shared"
PARK = SHARED / "videos" / "park_two_people_vp9_audio.mp4"
WEIGHTS = SHARED / "models" / "yolo11n-pose.pt"

FPS = 30
FRAME_MS = 1000.0 / FPS
CANVAS = (1200, 400)
FRAMES = 240  # 8 s: the dance forwards (4 s), then backwards
#: The dancer's rectangle on the canvas (the roof crop, 520x480, scaled by 3/4).
DANCER = (390, 360)
#: The passer-by's rectangle (a 380x500 window that follows her, scaled by 3/4).
WALKER = (286, 376)
_DANCER_GRAPH = ("crop=520:480:330:0,trim=end_frame=120,setpts=PTS-STARTPTS,split[f][r];[r]reverse[b];"
                 f"[f][b]concat=n=2:v=1:a=0,scale={DANCER[0]}:{DANCER[1]},setsar=1")
#: The walker's centre x in the park clip at frames 40, 50, ..., 180 (YOLO11n-pose boxes).
_WALKER_CENTRES = (1522, 1498, 1389, 1322, 1223, 1127, 1031, 919, 835, 722, 623, 502, 436, 304, 205)
_WALKER_FIRST, _WALKER_LAST = 45, 175


def skip_marks() -> list:
    """pytest's skip marks of a test module that runs composites through the real model."""
    import importlib.util

    import pytest

    return [
        pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None,
                           reason="ultralytics is not installed (requirements-yolo.txt)"),
        pytest.mark.skipif(importlib.util.find_spec("motmetrics") is None,
                           reason="motmetrics is not installed (requirements-dev.txt)"),
    ]


def cpu_estimator():
    """YOLO11n-pose on the CPU, loaded once for all the composites (skips without ../shared)."""
    from config import Config
    from tests.helpers import need_shared
    from workers.models import build_estimator

    need_shared("models", "yolo11n-pose.pt")
    need_shared("videos", "park_two_people_vp9_audio.mp4")
    return build_estimator(Config(input="in.mp4", output="out.mp4", model="yolo", weights=str(WEIGHTS),
                                  device="cpu"))


def _piecewise(points: Sequence[tuple[float, float]], variable: str) -> str:
    """An ffmpeg expression through (value of `variable`, result) points, flat outside them."""
    (first, value), rest = points[0], points[1:]
    expression = f"{points[-1][1]}"
    for (t0, v0), (t1, v1) in reversed(list(zip(points, rest))):
        expression = f"if(lt({variable},{t1}),{v0}+({v1}-({v0}))*({variable}-({t0}))/{t1 - t0},{expression})"
    return f"if(lt({variable},{first}),{value},{expression})"


def _walker_graph() -> str:
    frames = range(40, 181, 10)
    crop_x = [(f - _WALKER_FIRST, min(max(0, c - 190), 1768 - 380)) for f, c in zip(frames, _WALKER_CENTRES)]
    return (f"trim=start_frame={_WALKER_FIRST}:end_frame={_WALKER_LAST},setpts=PTS-STARTPTS,"
            f"crop=380:500:'{_piecewise(crop_x, 'n')}':480,scale={WALKER[0]}:{WALKER[1]},setsar=1,"
            f"loop=loop=-1:size={_WALKER_LAST - _WALKER_FIRST},trim=end_frame={FRAMES}")


@dataclass(frozen=True)
class Layer:
    """One person on the canvas.

    Attributes:
        name: The true identity ("A", "B", ..., "walker").
        path: (seconds, x, y) of the rectangle's top-left corner, piecewise linear, flat
            before the first and after the last point.
        source: "dancer" or "walker".
        delay: Frames the dancer is late (the first frame repeats).
        mirrored: Flipped left to right (the walker walks left; mirrored, she walks right).
    """

    name: str
    path: tuple[tuple[float, float, float], ...]
    source: str = "dancer"
    delay: int = 0
    mirrored: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return DANCER if self.source == "dancer" else WALKER

    def corner(self, seconds: np.ndarray) -> np.ndarray:
        """(len(seconds), 2) top-left corners at these times."""
        times = [p[0] for p in self.path]
        return np.stack([np.interp(seconds, times, [p[1] for p in self.path]),
                         np.interp(seconds, times, [p[2] for p in self.path])], axis=1)


@dataclass(frozen=True)
class Case:
    """A composite: its layers back to front, and the case without the event to compare with."""

    name: str
    layers: tuple[Layer, ...]
    baseline: str | None = None

    @property
    def dancers(self) -> list[str]:
        return [layer.name for layer in self.layers if layer.source == "dancer"]


LEFT, RIGHT, TOP = 60.0, 750.0, 20.0
P1, P2, P3 = 30.0, 405.0, 780.0


def _still(x: float) -> tuple[tuple[float, float, float], ...]:
    return ((0.0, x, TOP),)


def _moves(*steps: tuple[float, float]) -> tuple[tuple[float, float, float], ...]:
    return tuple((t, x, TOP) for t, x in steps)


CASES = {case.name: case for case in (
    Case("side_by_side", (Layer("A", _still(LEFT)), Layer("B", _still(RIGHT), delay=6))),
    # They swap places between 2.5 and 5 s; A passes in front and hides B for about half a second.
    Case("swap", (Layer("B", _moves((2.5, RIGHT), (5.0, LEFT)), delay=6),
                  Layer("A", _moves((2.5, LEFT), (5.0, RIGHT)))), baseline="side_by_side"),
    # A passer-by walks in front of both, right to left, from 1.5 to 5 s.
    Case("passer_by", (Layer("A", _still(LEFT)), Layer("B", _still(RIGHT), delay=6),
                       Layer("walker", ((1.5, 1220.0, 15.0), (5.0, -300.0, 15.0)), source="walker")),
         baseline="side_by_side"),
    # B leaves the picture on the right (2 to 3 s), stays out for 1.5 s, and comes back (4.5 to 5.5 s).
    Case("leave_and_return", (Layer("A", _still(LEFT)),
                              Layer("B", _moves((2.0, RIGHT), (3.0, 1250.0), (4.5, 1250.0), (5.5, RIGHT)), delay=6)),
         baseline="side_by_side"),
    # More of the same kind (the tests take swap_slow; swap, swap_fast and passer_by_slow are for
    # the table only). A faster swap (1.5 s), B in front this time.
    Case("swap_fast", (Layer("A", _moves((3.0, LEFT), (4.5, RIGHT))),
                       Layer("B", _moves((3.0, RIGHT), (4.5, LEFT)), delay=6)), baseline="side_by_side"),
    # A slow swap (5 s): B is hidden for about a second.
    Case("swap_slow", (Layer("B", _moves((1.5, RIGHT), (6.5, LEFT)), delay=6),
                       Layer("A", _moves((1.5, LEFT), (6.5, RIGHT)))), baseline="side_by_side"),
    # The passer-by the other way, left to right, more slowly (2 to 7 s).
    Case("passer_by_slow", (Layer("A", _still(LEFT)), Layer("B", _still(RIGHT), delay=6),
                            Layer("walker", ((2.0, -300.0, 15.0), (7.0, 1220.0, 15.0)), source="walker",
                                  mirrored=True)),
         baseline="side_by_side"),
    Case("trio", (Layer("C", _still(P3), delay=3), Layer("B", _still(P2), delay=6), Layer("A", _still(P1)))),
    # Three rotate twice: each time the one at the right end passes behind the others to the left end.
    Case("rotate_three", (
        Layer("C", _moves((2.0, P3), (4.0, P1), (5.5, P1), (7.0, P2)), delay=3),
        Layer("B", _moves((2.0, P2), (4.0, P3), (5.5, P3), (7.0, P1)), delay=6),
        Layer("A", _moves((2.0, P1), (4.0, P2), (5.5, P2), (7.0, P3))),
    ), baseline="trio"),
)}


def make_composite(case: Case, path: Path) -> Path:
    """Render `case` to `path` (H.264, 30 fps, 8 s) with the bundled ffmpeg."""
    sources = [f"[0:v]{_DANCER_GRAPH},split={max(1, len(case.dancers))}"
               + "".join(f"[d{k}]" for k in range(max(1, len(case.dancers))))]
    dancer = 0
    graph = [f"color=c=0x808080:s={CANVAS[0]}x{CANVAS[1]}:r={FPS}:d={FRAMES / FPS}[c0]"]
    for k, layer in enumerate(case.layers):
        if layer.source == "dancer":
            stream = f"[d{dancer}]"
            dancer += 1
            if layer.delay:
                graph.append(f"{stream}tpad=start={layer.delay}:start_mode=clone,trim=end_frame={FRAMES}[s{k}]")
                stream = f"[s{k}]"
        else:
            graph.append(f"[1:v]{_walker_graph()}{',hflip' if layer.mirrored else ''}[s{k}]")
            stream = f"[s{k}]"
        x = _piecewise([(t, px) for t, px, _ in layer.path], "t")
        y = _piecewise([(t, py) for t, _, py in layer.path], "t")
        graph.append(f"[c{k}]{stream}overlay=x='{x}':y='{y}':eval=frame:eof_action=pass[c{k + 1}]")
    graph[-1] = graph[-1].rsplit("[", 1)[0] + ",format=yuv420p[out]"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(PARK), "-i", str(PARK),
                    "-filter_complex", ";".join(sources + graph), "-map", "[out]", "-frames:v", str(FRAMES),
                    "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", str(path)], check=True)
    return path


#: The latest copy of a crowd is this many frames (300 ms) behind the earliest.
MAX_DELAY = 9


@dataclass(frozen=True)
class Crowd:
    """A class: copies of the dancer, each in its own rectangle, each some frames late.

    Attributes:
        name: The case's name.
        canvas: (width, height) of the picture.
        places: (x, y, height) of each copy's rectangle (its top-left corner and height in
            pixels; the width keeps the rectangle's proportions); x may be negative or reach
            past the right edge (a dancer cut by the frame).
        frames: Length of the clip (the dance repeats every FRAMES).
    """

    name: str
    canvas: tuple[int, int]
    places: tuple[tuple[int, int, int], ...]
    frames: int = FRAMES - MAX_DELAY

    @property
    def dancers(self) -> list[str]:
        return [f"D{k + 1:02d}" for k in range(len(self.places))]

    @property
    def delays(self) -> list[int]:
        """Frames each copy is late: 0 to MAX_DELAY, spread (k * 7 mod 10), so neighbours differ."""
        return [(k * 7) % (MAX_DELAY + 1) for k in range(len(self.places))]


def grid_places(canvas: tuple[int, int], columns: int, rows: int, height: int,
                count: int | None = None) -> tuple[tuple[int, int, int], ...]:
    """Rectangles `height` tall in a grid that spans the canvas, edge to edge."""
    width = round(height * DANCER[0] / DANCER[1])
    xs = np.linspace(0, canvas[0] - width, columns).round().astype(int)
    ys = np.linspace(0, canvas[1] - height, rows).round().astype(int) if rows > 1 else [0]
    places = [(int(x), int(y), height) for y in ys for x in xs]
    return tuple(places[: count or len(places)])


def scattered_places(canvas: tuple[int, int], count: int, heights: tuple[int, int],
                     seed: int) -> tuple[tuple[int, int, int], ...]:
    """`count` rectangles of random heights in `heights` at random places that do not overlap;
    the first two touch the left and right edges and the third is cut by the left one by a
    sixth of its width."""
    rng = np.random.default_rng(seed)
    places: list[tuple[int, int, int]] = []
    for _ in range(100_000):
        if len(places) == count:
            return tuple(places)
        height = int(rng.integers(heights[0], heights[1] + 1))
        width = round(height * DANCER[0] / DANCER[1])
        x = {0: 0, 1: canvas[0] - width, 2: -width // 6}.get(len(places), int(rng.integers(0, canvas[0] - width)))
        y = int(rng.integers(0, canvas[1] - height + 1))
        box = (x, y, x + width, y + height)
        if all(box[2] <= p[0] or p[2] <= box[0] or box[3] <= p[1] or p[3] <= box[1]
               for p in ((px, py, px + round(ph * DANCER[0] / DANCER[1]), py + ph) for px, py, ph in places)):
            places.append((x, y, height))
    raise ValueError(f"{count} rectangles of {heights} px do not fit on {canvas}")


CROWDS = {crowd.name: crowd for crowd in (
    # The two wide shots: 12 at 1080p (each about 230 px tall) and 24 in a 1920x720
    # strip (about 190 px); at YOLO's default input both shrink below 80 px.
    Crowd("grid_12", (1920, 1080), grid_places((1920, 1080), 6, 2, 290)),
    Crowd("grid_24", (1920, 720), grid_places((1920, 720), 8, 3, 220)),
    Crowd("grid_24_long", (1920, 720), grid_places((1920, 720), 8, 3, 220), frames=3 * FRAMES),
    # Scattered, sizes mixed (the smallest about 130 px tall), three at the edges.
    Crowd("scattered_5", (1920, 1080), scattered_places((1920, 1080), 5, (170, 420), 5)),
    Crowd("scattered_20", (1920, 1080), scattered_places((1920, 1080), 20, (170, 260), 20)),
    Crowd("grid_30", (1920, 1080), grid_places((1920, 1080), 8, 4, 220, 30)),
)}


def make_crowd(crowd: Crowd, path: Path) -> Path:
    """Render `crowd` to `path` (H.264, 30 fps) with the bundled ffmpeg."""
    count = len(crowd.places)
    graph = [f"[0:v]crop=520:480:330:0,trim=end_frame=120,setpts=PTS-STARTPTS,split[f][r];[r]reverse[b];"
             f"[f][b]concat=n=2:v=1:a=0,setsar=1,loop=loop={-(-crowd.frames // FRAMES)}:size={FRAMES},"
             f"split={count}" + "".join(f"[d{k}]" for k in range(count)),
             f"color=c=0x808080:s={crowd.canvas[0]}x{crowd.canvas[1]}:r={FPS}:d={crowd.frames / FPS}[c0]"]
    for k, ((x, y, height), delay) in enumerate(zip(crowd.places, crowd.delays)):
        width = round(height * DANCER[0] / DANCER[1])
        # Late by `delay` frames: it starts that many frames less far into the dance than the
        # latest, so that everyone moves from the first frame (no one frozen at the start).
        lead = MAX_DELAY - delay
        graph.append(f"[d{k}]scale={width}:{height},trim=start_frame={lead},setpts=PTS-STARTPTS[s{k}]")
        graph.append(f"[c{k}][s{k}]overlay=x={x}:y={y}:eof_action=pass[c{k + 1}]")
    graph[-1] = graph[-1].rsplit("[", 1)[0] + ",format=yuv420p[out]"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(PARK),
                    "-filter_complex", ";".join(graph), "-map", "[out]", "-frames:v", str(crowd.frames),
                    "-c:v", "libx264", "-preset", "ultrafast", "-crf", "14", str(path)], check=True)
    return path


def crowd_truth(crowd: Crowd, solo: np.ndarray) -> dict[str, np.ndarray]:
    """{name: (frames, 4) true box on the canvas}: `solo` (the dancer's boxes in his own
    DANCER-sized rectangle, `solo_boxes("dancer", ...)`) scaled and moved; NaN where less than
    half of the box is inside the canvas."""
    out = {}
    for name, (x, y, height), delay in zip(crowd.dancers, crowd.places, crowd.delays):
        own = solo[(np.arange(crowd.frames) + MAX_DELAY - delay) % FRAMES] * (height / DANCER[1])
        boxes = own + np.array([x, y, x, y], dtype=np.float64)
        inside = ((np.minimum(boxes[:, 2], crowd.canvas[0]) - np.maximum(boxes[:, 0], 0))
                  / (boxes[:, 2] - boxes[:, 0]))
        boxes[~(inside >= 0.5)] = np.nan
        out[name] = boxes
    return out


def detected_share(poses_path: Path, true_boxes: dict[str, np.ndarray]) -> dict[str, float]:
    """{name: share of the frames where the person is seen in which a person the run tracked
    (id > 0) covers the true box (IoU >= 0.5)}."""
    from workers.poses import load_poses
    from workers.track import box_iou

    _, log = load_poses(poses_path)
    hits = {name: [] for name in true_boxes}
    for t in range(len(log)):
        rows = log.rows(t, t + 1).records
        boxes = rows["boxes"][rows["ids"] > 0].astype(np.float64).reshape(-1, 4)
        for name, truth_boxes in true_boxes.items():
            if np.isfinite(truth_boxes[t]).all():
                iou = box_iou(truth_boxes[t][None], boxes)
                hits[name].append(bool(iou.size and iou.max() >= 0.5))
    return {name: float(np.mean(seen)) if seen else 0.0 for name, seen in hits.items()}


def _solo_clip(source: str, path: Path, frames: int) -> Path:
    graph = f"[0:v]{_DANCER_GRAPH}[out]" if source == "dancer" else f"[0:v]{_walker_graph()}[out]"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(PARK), "-filter_complex",
                    graph, "-map", "[out]", "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast",
                    "-crf", "12", str(path)], check=True)
    return path


def solo_boxes(source: str, folder: Path, predict: Callable[[list[np.ndarray]], list]) -> np.ndarray:
    """(FRAMES, 4) the person's box in its own rectangle per frame (NaN where none was found),
    by `predict` (a pose model's `predict`) on the rectangle alone."""
    from workers.decode import VideoReader
    from workers.probe import probe

    # The walker's 130 frames loop: the model sees them once.
    frames = FRAMES if source == "dancer" else _WALKER_LAST - _WALKER_FIRST
    clip = _solo_clip(source, folder / f"solo-{source}.mp4", frames)
    boxes = np.full((frames, 4), np.nan)
    reader = VideoReader(probe(clip))
    reader.start()
    try:
        batch: list = []
        for frame in [*reader, None]:
            if frame is not None:
                batch.append(frame)
            if batch and (frame is None or len(batch) == 8):
                for item, found in zip(batch, predict([f.image for f in batch])):
                    if len(found):
                        boxes[item.index] = found.boxes[int(np.argmax(found.box_scores))]
                batch = []
    finally:
        reader.kill()
    return boxes[np.arange(FRAMES) % frames]


def truth(case: Case, solo: dict[str, np.ndarray], min_visible: float = 0.5) -> dict[str, np.ndarray]:
    """{name: (FRAMES, 4) true box on the canvas, NaN where less than `min_visible` of it is seen}."""
    seconds = np.arange(FRAMES) / FPS
    corners = {layer.name: layer.corner(seconds) for layer in case.layers}
    out = {}
    for k, layer in enumerate(case.layers):
        frame_index = np.clip(np.arange(FRAMES) - layer.delay, 0, FRAMES - 1)
        own = solo[layer.source][frame_index]
        if layer.mirrored:
            own = np.stack([layer.size[0] - own[:, 2], own[:, 1], layer.size[0] - own[:, 0], own[:, 3]], axis=1)
        boxes = own + np.tile(corners[layer.name], 2)
        visible = np.ones(FRAMES, dtype=bool)
        for t in range(FRAMES):
            box = boxes[t]
            if not np.isfinite(box).all():
                visible[t] = False
                continue
            mask = np.zeros((int(np.ceil(box[3] - box[1])) + 1, int(np.ceil(box[2] - box[0])) + 1), dtype=bool)
            ys, xs = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
            px, py = xs + box[0], ys + box[1]
            seen = (px >= 0) & (px < CANVAS[0]) & (py >= 0) & (py < CANVAS[1])
            for front in case.layers[k + 1:]:
                fx, fy = corners[front.name][t]
                w, h = front.size
                seen &= ~((px >= fx) & (px < fx + w) & (py >= fy) & (py < fy + h))
            visible[t] = seen.mean() >= min_visible
        boxes[~visible] = np.nan
        out[layer.name] = boxes
    return out


@dataclass(frozen=True)
class Scores:
    """How the ids of a run match the truth.

    Attributes:
        idf1: IDF1 (motmetrics: box IoU >= 0.5 counts as the same place).
        switches: Identity switches.
        ids_per_person: {true name: the distinct ids matched to it}.
        person_of: {true name: the id matched to it most often}.
    """

    idf1: float
    switches: int
    ids_per_person: dict[str, set[int]]
    person_of: dict[str, int]


def score_ids(poses_path: Path, true_boxes: dict[str, np.ndarray], retrack: bool = False) -> Scores:
    """IDF1 and switches of the ids in a run's pose cache against the true boxes.

    Args:
        poses_path: The run's `.poses.npz`.
        true_boxes: `truth(...)`.
        retrack: Score instead the ids the tracker alone gives the same detections, as the
            tool did before tracklets were joined (one second of bridging, no joining).
    """
    import motmetrics

    from workers.poses import load_poses
    from workers.score import order_above
    from workers.track import Tracker, box_iou

    meta, log = load_poses(poses_path)
    tracker = Tracker(max_missing=round(FPS))
    names = sorted(true_boxes)
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    matched: dict[str, dict[int, int]] = {name: {} for name in names}
    threshold = meta.settings["person_threshold"]
    for t in range(len(log)):
        frame = log.rows(t, t + 1)
        rows = frame.records
        if retrack:
            order = order_above(frame.detections(0), threshold)
            rows = rows[order].copy()
            rows["ids"] = tracker.update(frame.detections(0).select(order))
        rows = rows[rows["ids"] > 0]
        seen = [name for name in names if np.isfinite(true_boxes[name][t]).all()]
        objects = np.array([true_boxes[name][t] for name in seen]).reshape(-1, 4)
        # 1 - IoU, no match below an IoU of 0.5 (what motmetrics' iou_matrix does; it needs NumPy 1).
        distances = 1.0 - box_iou(objects, rows["boxes"].astype(np.float64).reshape(-1, 4))
        distances[distances > 0.5] = np.nan
        frame_id = accumulator.update([names.index(name) for name in seen], rows["ids"].tolist(), distances)
        events = accumulator.mot_events.loc[frame_id]
        for _, event in events[events.Type.isin(["MATCH", "SWITCH"])].iterrows():
            counts = matched[names[int(event.OId)]]
            counts[int(event.HId)] = counts.get(int(event.HId), 0) + 1
    summary = motmetrics.metrics.create().compute(accumulator, metrics=["idf1", "num_switches"])
    return Scores(
        idf1=float(summary["idf1"].iloc[0]),
        switches=int(summary["num_switches"].iloc[0]),
        ids_per_person={name: set(counts) for name, counts in matched.items()},
        person_of={name: max(counts, key=counts.__getitem__) for name, counts in matched.items() if counts},
    )


def run_crowd(crowd: Crowd, folder: Path, estimator, solo: np.ndarray, **settings) -> dict:
    """One crowd through the CLI's run (YOLO11n-pose, CPU, no video): what the table shows."""
    from config import Config
    from pipeline.runner import run_video
    from reports.report import write_reports

    clip = make_crowd(crowd, folder / f"{crowd.name}.mp4")
    config = Config(input=clip, output=folder / f"{crowd.name}-out.mp4", model="yolo", weights=str(WEIGHTS),
                    device="cpu", progress=False, video=False, **settings)
    result = run_video(config, estimator)
    report = write_reports(result, config)
    true_boxes = crowd_truth(crowd, solo)
    scores = score_ids(result.poses, true_boxes)
    seen = detected_share(result.poses, true_boxes)
    lags = {}
    for name in crowd.dancers:
        person = next((p for p in report["persons"] if p["id"] == scores.person_of.get(name)), None)
        lags[name] = None if person is None else person["lag_ms"]
    reported, truth = _lags_and_truth(crowd, [lags[name] for name in crowd.dancers])
    return {
        "report": report, "scores": scores, "seen": seen, "lags": lags,
        "lag_errors": _centred_errors(reported, truth), "lag_slope": _slope(reported, truth),
        "seconds": result.seconds, "frames": len(result.frames),
    }


def _lags_and_truth(crowd: Crowd, lags: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """The reported lags (ms) that exist, and the true delays (ms) of the same dancers."""
    known = [k for k, lag in enumerate(lags) if lag is not None]
    return (np.array([lags[k] for k in known], dtype=np.float64),
            np.array([crowd.delays[k] * FRAME_MS for k in known], dtype=np.float64))


def _centred_errors(reported: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Reported minus true lags, both sides' mean taken out (the lags are relative to the group)."""
    errors = reported - truth
    return errors - errors.mean() if len(errors) else errors


def _slope(reported: np.ndarray, truth: np.ndarray) -> float:
    """Reported lag per unit of true delay (1 when the lags are right), least squares."""
    return float(np.polyfit(truth, reported, 1)[0]) if len(truth) > 1 else float("nan")


def crowds_main(folder: Path, names: Sequence[str]) -> int:
    """The crowds through the whole run at the defaults: the table of docs/BENCHMARKS.md."""
    estimator = cpu_estimator()
    solo = solo_boxes("dancer", folder, estimator.predict)
    print("| case | dancers | frame | input size | each found in (least, mean) | IDF1 | switches | ids per dancer "
          "(most) | performers | lag error, centred (largest) | lag slope | run s (of which scout) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in names or list(CROWDS):
        crowd = CROWDS[name]
        out = run_crowd(crowd, folder, estimator, solo)
        report, scores = out["report"], out["scores"]
        seen = np.array(list(out["seen"].values()))
        size = report["input_size"]
        performers = sum(p["scored"] for p in report["persons"])
        worst = float(np.abs(out["lag_errors"]).max()) if len(out["lag_errors"]) else float("nan")
        print(f"| {name} | {len(crowd.places)} | {crowd.canvas[0]}x{crowd.canvas[1]} "
              f"| {size['pixels']} ({size['how']}) "
              f"| {seen.min():.3f}, {seen.mean():.3f} | {scores.idf1:.3f} | {scores.switches} "
              f"| {max(len(ids) for ids in scores.ids_per_person.values())} | {performers} "
              f"| {worst:.0f} ms ({sum(v is None for v in out['lags'].values())} without a lag) "
              f"| {out['lag_slope']:.3f} | {out['seconds']:.1f} ({size['scout_seconds']:.1f}) |")
    return 0


def sizes_main(folder: Path, names: Sequence[str], sizes: Sequence[int] = (640, 960, 1280),
               tiles: Sequence[tuple[int, int]] = ((2, 1), (2, 2))) -> int:
    """The model alone on each crowd's frames: each input size, and tiles at the default size
    (overlapping by a tenth of the frame): milliseconds a frame and the share of the dancers
    found (a detection on the true box, IoU >= 0.5; a dancer cut by a seam counts if one tile
    finds him whole)."""
    import time

    from workers.decode import VideoReader
    from workers.probe import probe
    from workers.track import box_iou

    estimator = cpu_estimator()
    solo = solo_boxes("dancer", folder, estimator.predict)
    print("| case | how the model sees the frame | ms a frame | each dancer found in (least, mean) |")
    print("| --- | --- | --- | --- |")
    for name in names or ("grid_12", "grid_24"):
        crowd = CROWDS[name]
        reader = VideoReader(probe(make_crowd(crowd, folder / f"{name}.mp4")))
        reader.start()
        frames = [frame.image for frame in reader][::3]
        true_boxes = crowd_truth(crowd, solo)
        width, height = crowd.canvas
        ways: list[tuple[str, int, tuple[int, int]]] = [(f"whole frame at {size}", size, (1, 1)) for size in sizes]
        ways += [(f"{cols}x{rows} tiles at {sizes[0]}", sizes[0], (cols, rows)) for cols, rows in tiles]
        for label, size, (cols, rows) in ways:
            estimator.set_input_size(size)
            pad_x, pad_y = (width // 20 if cols > 1 else 0), (height // 20 if rows > 1 else 0)
            windows = [(max(0, c * width // cols - pad_x), max(0, r * height // rows - pad_y),
                        min(width, (c + 1) * width // cols + pad_x), min(height, (r + 1) * height // rows + pad_y))
                       for r in range(rows) for c in range(cols)]
            found = np.zeros((len(frames), len(crowd.dancers)), dtype=bool)
            started = time.perf_counter()
            for t, image in enumerate(frames):
                boxes = []
                for x0, y0, x1, y1 in windows:
                    part = estimator.predict([np.ascontiguousarray(image[y0:y1, x0:x1])])[0]
                    boxes.append(part.boxes + np.array([x0, y0, x0, y0], dtype=np.float32))
                every = np.concatenate(boxes).astype(np.float64)
                for k, dancer in enumerate(crowd.dancers):
                    box = true_boxes[dancer][3 * t]
                    found[t, k] = bool(np.isfinite(box).all() and len(every) and box_iou(box[None], every).max() >= 0.5)
            seconds = time.perf_counter() - started
            share = found.mean(axis=0)
            print(f"| {name} | {label} | {1000 * seconds / len(frames):.0f} | {share.min():.3f}, {share.mean():.3f} |")
    return 0


def alone_main(folder: Path, names: Sequence[str]) -> int:
    """Each crowd's lags with the dancers together in one frame against each dancer alone.

    Alone: every copy rendered by itself, at its own place, size and delay on the same canvas,
    each video through the model at the input size the crowd ran at; the lags of the separate
    tracks then come from the same analysis. Prints the table of docs/BENCHMARKS.md ("Small
    people"): where alone is right and together is not, the people around a person move its
    keypoints.
    """
    from workers.decode import VideoReader
    from workers.probe import probe
    from workers.timing import analyse_timing

    estimator = cpu_estimator()
    solo = solo_boxes("dancer", folder, estimator.predict)
    print("| case | input size | together: lag slope, largest error | alone: lag slope, largest error |")
    print("| --- | --- | --- | --- |")
    for name in names or ("scattered_5",):
        crowd = CROWDS[name]
        together = run_crowd(crowd, folder, estimator, solo)
        size = together["report"]["input_size"]["pixels"]
        estimator.set_input_size(size)
        tracks = {}
        for k, (place, delay) in enumerate(zip(crowd.places, crowd.delays)):
            one = _Alone(f"{name}-alone-{k}", crowd.canvas, (place,), crowd.frames, delay)
            reader = VideoReader(probe(make_crowd(one, folder / f"{one.name}.mp4")))
            reader.start()
            frames = [frame.image for frame in reader]
            track = np.full((len(frames), 17, 2), np.nan)
            for start in range(0, len(frames), 4):
                for offset, found in enumerate(estimator.predict(frames[start:start + 4])):
                    if len(found):
                        best = int(np.argmax(found.box_scores))
                        keypoints = found.keypoints[best].astype(np.float64)
                        keypoints[found.keypoint_scores[best] <= 0.5] = np.nan
                        track[start + offset] = keypoints
            tracks[k] = track
        timing = analyse_timing(tracks, float(FPS))
        reported, truth = _lags_and_truth(crowd, [timing[k].lag_ms for k in range(len(tracks))])
        alone = _centred_errors(reported, truth)
        print(f"| {name} | {size} | {together['lag_slope']:.3f}, {np.abs(together['lag_errors']).max():.0f} ms "
              f"| {_slope(reported, truth):.3f}, {np.abs(alone).max():.1f} ms |")
    return 0


@dataclass(frozen=True)
class _Alone(Crowd):
    """One dancer of a crowd by itself, keeping its delay."""

    delay: int = 0

    @property
    def delays(self) -> list[int]:
        return [self.delay]


def main(argv: Sequence[str]) -> int:
    """Every case through YOLO11n-pose on the CPU; prints the table of docs/SYNC.md.

    With `--crowds [NAME...]` first: the crowds instead (docs/BENCHMARKS.md, "Small people");
    with `--sizes [NAME...]`: the model alone at each input size and tiled; with `--alone
    [NAME...]`: a crowd's lags together against each dancer rendered alone.
    """
    import json
    import tempfile

    tables = {"--crowds": crowds_main, "--sizes": sizes_main, "--alone": alone_main}
    if argv and argv[0] in tables:
        return tables[argv[0]](Path(tempfile.mkdtemp(prefix="crowds-")), argv[1:])

    from config import Config
    from pipeline.runner import run_video
    from reports.report import write_reports

    folder = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="composites-"))
    folder.mkdir(parents=True, exist_ok=True)
    estimator = cpu_estimator()
    solo = {source: solo_boxes(source, folder, estimator.predict) for source in ("dancer", "walker")}
    reports = {}
    print("| case | IDF1 | switches | ids per person | performers (truth) | lags ms (without the event) "
          "| group sync (without) | tracker alone: IDF1, switches, ids per person |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for case in CASES.values():
        clip = make_composite(case, folder / f"{case.name}.mp4")
        config = Config(input=clip, output=folder / f"{case.name}-out.mp4", model="yolo", weights=str(WEIGHTS),
                        device="cpu", progress=False, video=False)
        result = run_video(config, estimator)
        report = reports[case.name] = write_reports(result, config)
        scores = score_ids(result.poses, truth(case, solo))
        alone = score_ids(result.poses, truth(case, solo), retrack=True)
        performers = {p["id"] for p in report["persons"] if p["scored"]}
        named = {scores.person_of.get(name): name for name in case.dancers}
        lags, base_sync = [], None
        base = reports.get(case.baseline) if case.baseline else None
        base_scores = None
        if base is not None:
            base_scores = score_ids(folder / f"{case.baseline}-out.poses.npz", truth(CASES[case.baseline], solo))
            base_sync = base["sync"]["score"]
        for name in case.dancers:
            person = next((p for p in report["persons"] if p["id"] == scores.person_of.get(name)), None)
            lag = None if person is None else person["lag_ms"]
            base_lag = None
            if base is not None and base_scores is not None:
                base_person = next((p for p in base["persons"] if p["id"] == base_scores.person_of.get(name)), None)
                base_lag = None if base_person is None else base_person["lag_ms"]
            lags.append(f"{name} {_ms(lag)} ({_ms(base_lag)})")
        truly = sorted(str(i) for i in performers if i in named)
        extra = sorted(str(i) for i in performers if i not in named)
        print(f"| {case.name} | {scores.idf1:.3f} | {scores.switches} | "
              f"{', '.join(f'{n}: {len(ids)}' for n, ids in sorted(scores.ids_per_person.items()))} | "
              f"{len(truly)} of {len(case.dancers)}{' + ' + ', '.join('#' + e for e in extra) if extra else ''} | "
              f"{'; '.join(lags)} | {_num(report['sync']['score'])} ({_num(base_sync)}) | "
              f"{alone.idf1:.3f}, {alone.switches}, "
              f"{', '.join(f'{n}: {len(ids)}' for n, ids in sorted(alone.ids_per_person.items()))} |")
    (folder / "reports.json").write_text(json.dumps(reports))
    return 0


def _ms(value: float | None) -> str:
    return "--" if value is None else f"{value:+.0f}"


def _num(value: float | None) -> str:
    return "--" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
