"""Review pages: `OUT/index.html` over a folder run, `<stem>.html` for each video.

Static and self-contained: Jinja2 templates with autoescaping (reports/templates/), inline
CSS and JS, a Content-Security-Policy that forbids every network load, relative links only,
so the results folder opens from `file://` or any static server and can be zipped and mailed.
Everything on a page comes from what a run left on disk (the JSON report, the per-frame CSV,
the annotated video, `summary.csv`), so `python -m reports.review OUT` rebuilds the pages
without running a model.

    python -m reports.review OUT            # a folder run's output folder: every page and the index
    python -m reports.review OUT/a/b.json   # one video's page
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from os.path import relpath
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cv2
import numpy as np

from reports.outputs import OutputFiles, read_report
from reports.summary import INDEX_NAME, STATUSES, SUMMARY_NAME, read_rows
from workers.decode import frame_at
from workers.draw import colour_of
from workers.errors import DancingSkeletonsError
from workers.files import write_bytes
from workers.probe import probe

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: The timeline's drawing size in SVG units.
TIMELINE_WIDTH, TIMELINE_HEIGHT = 1000, 220
#: Most points a timeline line has (a two-hour video is thinned to this many).
TIMELINE_POINTS = 1500
#: Longer side of a thumbnail and of a person's crop, pixels.
THUMB_SIZE, CROP_SIZE = 240, 96
#: The track timeline's rows: the first row's top and each row's height, in SVG units.
TRACK_TOP, TRACK_ROW = 4, 16
#: Above this many people the page goes compact: small crops and heat-map cells, thin lag lines.
COMPACT_PERSONS = 8
#: Above this many performers the index names the few furthest from the group's time and sums
#: up the others in one chip ("+27 within ±40 ms"), as the end card does.
MAX_CHIPS = 6


@dataclass(frozen=True)
class Chip:
    """A performer's lag chip: id, colour and lag."""

    id: int
    colour: str
    lag_ms: float | None
    confidence: float | None


@dataclass
class IndexRow:
    """One input of the index."""

    input: str
    status: str
    error: str = ""
    page: str | None = None
    thumb: str | None = None
    score: float | None = None
    sync: float | None = None
    chance: float | None = None
    chips: list[Chip] = field(default_factory=list)
    others: str | None = None
    frames: int | None = None
    duration: float | None = None
    processing: float | None = None


def _hex(person_id: int) -> str:
    r, g, b = colour_of(person_id)
    return f"#{r:02x}{g:02x}{b:02x}"


@cache
def _environment() -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    environment.filters["num"] = lambda value, digits=2: "--" if value is None else f"{value:.{digits}f}"
    environment.filters["tojson_safe"] = lambda value: json.dumps(value).replace("<", "\\u003c")
    return environment


def _write(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def _href(target: Path, page: Path) -> str:
    """`target` relative to the folder of `page`, URL-quoted, with forward slashes."""
    return quote(Path(relpath(target, page.parent)).as_posix())


def _save_jpeg(path: Path, image: np.ndarray, size: int) -> Path:
    scale = size / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError(f"{path}: cannot encode the image")
    return write_bytes(path, data.tobytes())


def media_folder(output: Path) -> Path:
    """Where a video's thumbnail and person crops go: `<stem>.review/` beside its outputs."""
    return OutputFiles.of(output).media


def page_path(output: Path) -> Path:
    """A video's review page: `<stem>.html` beside its outputs."""
    return OutputFiles.of(output).page


def _media(report: dict, files: OutputFiles) -> tuple[Path | None, dict[int, Path]]:
    """The thumbnail (at the worst moment, else the middle) and each person's crop, made from
    the annotated video once and reused. A person seen at the thumbnail's moment is cropped
    from that same frame, so most videos need one frame read."""
    video = files.video
    if not report.get("files", {}).get("video") or not video.is_file():
        return None, {}
    try:
        info = probe(video)  # its size is the encoded one: the encoder pads odd sizes
    except DancingSkeletonsError:
        return None, {}
    folder = files.media
    folder.mkdir(exist_ok=True)
    fps = report["fps"] or 1.0
    moments = report.get("worst_moments") or []
    at = moments[0]["start_s"] if moments else report["duration_seconds"] / 2
    wanted: dict[float, list[tuple[Path, dict | None]]] = {}
    thumb = folder / "thumb.jpg"
    if not thumb.is_file():
        wanted.setdefault(at, []).append((thumb, None))
    crops: dict[int, Path] = {}
    for person in report["persons"]:
        if person.get("box") is None:
            continue
        crop = crops[person["id"]] = folder / f"person-{person['id']}.jpg"
        if not crop.is_file():
            seen_then = person["first_frame"] <= round(at * fps) <= person["last_frame"]
            when = at if seen_then else (person["first_frame"] + person["last_frame"]) / 2 / fps
            wanted.setdefault(when, []).append((crop, person))
    for when, images in wanted.items():
        frame = frame_at(info, when)
        if frame is None:
            continue
        for path, person in images:
            if person is None:
                _save_jpeg(path, frame, THUMB_SIZE)
                continue
            x0, y0, x1, y1 = (int(round(v)) for v in person["box"])
            # A box may reach past the frame (or lie outside it): keep at least one pixel inside.
            x0, y0 = min(max(0, x0), frame.shape[1] - 1), min(max(0, y0), frame.shape[0] - 1)
            x1, y1 = min(frame.shape[1], max(x1, x0 + 1)), min(frame.shape[0], max(y1, y0 + 1))
            _save_jpeg(path, np.ascontiguousarray(frame[y0:y1, x0:x1]), CROP_SIZE)
    return (thumb if thumb.is_file() else None), {i: path for i, path in crops.items() if path.is_file()}


def _path_data(times: np.ndarray, values: np.ndarray, duration: float, low: float, high: float,
               top: float, height: float) -> str:
    """An SVG path through (time, value) points, broken where a value is NaN."""
    if len(times) > TIMELINE_POINTS:
        keep = np.linspace(0, len(times) - 1, TIMELINE_POINTS).round().astype(int)
        times, values = times[keep], values[keep]
    span = max(high - low, 1e-9)
    parts: list[str] = []
    pen_down = False
    for t, v in zip(times, values, strict=True):
        if not math.isfinite(v):
            pen_down = False
            continue
        x = TIMELINE_WIDTH * t / max(duration, 1e-9)
        y = top + height * (1 - (min(max(v, low), high) - low) / span)
        if not pen_down and parts and parts[-1].startswith("M"):
            parts.append("l0.1,0")  # an isolated point: a dot (round line caps)
        parts.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
        pen_down = True
    if parts and parts[-1].startswith("M"):
        parts.append("l0.1,0")
    return " ".join(parts)


def _timeline(report: dict, frames: dict[str, np.ndarray]) -> dict:
    """What the timeline SVG draws: score lines on top, lag lines below, worst moments as bands."""
    duration = max(report["duration_seconds"], 1e-6)
    score_max = report["score"]["scale"]
    score_top, score_height = 8.0, 120.0
    lag_top, lag_height = 148.0, 64.0
    lines = []
    if len(frames["seconds"]):
        lines.append({"class": "frame-score", "d": _path_data(frames["seconds"], frames["score"], duration, 0,
                                                            score_max, score_top, score_height)})
        lines.append({"class": "moving", "d": _path_data(frames["seconds"], frames["displayed"], duration, 0,
                                                       score_max, score_top, score_height)})
    lags = [w["lag_ms"] for p in report["persons"] for w in p["lag_ms_windows"] if w["lag_ms"] is not None]
    reach = max([abs(v) for v in lags] + [50.0])
    for person in report["persons"]:
        windows = person["lag_ms_windows"]
        if not windows:
            continue
        times = np.array([(w["start_s"] + w["end_s"]) / 2 for w in windows])
        values = np.array([np.nan if w["lag_ms"] is None else w["lag_ms"] for w in windows], dtype=float)
        lines.append({"class": "lag", "colour": _hex(person["id"]), "id": person["id"],
                      "d": _path_data(times, values, duration, -reach, reach, lag_top, lag_height)})
    bands = [{"x": TIMELINE_WIDTH * m["start_s"] / duration,
              "width": max(1.0, TIMELINE_WIDTH * (m["end_s"] - m["start_s"]) / duration)}
             for m in report.get("worst_moments") or []]
    return {"width": TIMELINE_WIDTH, "height": TIMELINE_HEIGHT, "lines": lines, "bands": bands,
            "lag_width": 1.2 if len(report["persons"]) > COMPACT_PERSONS else 3,
            "score_top": score_top, "score_height": score_height, "lag_top": lag_top, "lag_height": lag_height,
            "lag_reach": reach, "lag_zero": lag_top + lag_height / 2, "duration": duration}


def _tracks(report: dict) -> dict:
    """What the track timeline SVG draws: a row per person with its tracklets as bars, its
    absences as breaks, a mark where a tracklet was joined to the one before (its cost in the
    tooltip), and the camera cuts as dashed lines."""
    fps = report["fps"] or 1.0
    duration = max(report["duration_seconds"], 1e-6)

    def x(frame: float) -> float:
        return TIMELINE_WIDTH * frame / fps / duration

    rows = []
    for k, person in enumerate(report["persons"]):
        y = TRACK_TOP + k * TRACK_ROW
        bars = [{"x": x(t["start_frame"]), "width": max(0.8, x(t["end_frame"] + 1) - x(t["start_frame"]))}
                for t in person.get("tracklets") or []]
        if not bars:  # reports of earlier versions: the person's whole span
            bars = [{"x": x(person["first_frame"]),
                     "width": max(0.8, x(person["last_frame"] + 1) - x(person["first_frame"]))}]
        breaks = [{"x": x(g["start_frame"]), "width": max(0.8, x(g["end_frame"] + 1) - x(g["start_frame"]))}
                  for g in person.get("gaps") or []]
        joins = [{"x": x(t["start_frame"]), "title": _join_title(person["id"], t["join"], fps)}
                 for t in person.get("tracklets") or [] if t["join"] is not None]
        rows.append({"id": person["id"], "colour": _hex(person["id"]), "y": y, "scored": person["scored"],
                     "bars": bars, "breaks": breaks, "joins": joins})
    cuts = [{"x": x(cut["frame"]), "seconds": cut["seconds"]}
            for cut in (report.get("identity") or {}).get("scene_cuts", [])]
    return {"width": TIMELINE_WIDTH, "height": TRACK_TOP + max(1, len(rows)) * TRACK_ROW + 4, "rows": rows,
            "cuts": cuts, "row": TRACK_ROW, "duration": duration}


def _join_title(person_id: int, join: dict, fps: float) -> str:
    terms = ", ".join(f"{name} {join[name]:.2f}" for name in ("position", "velocity", "shape", "colour")
                      if join.get(name) is not None)
    return (f"#{person_id} again after {join['gap_frames'] / fps:.2f} s: join cost {join['cost']:.2f} "
            f"(below 1 joins; {terms})")


def _heat_map(report: dict) -> dict | None:
    """The pairwise synchrony as a matrix: ids, and per cell its score, colour and whether the
    pair moves together; None with fewer than two people compared.

    Rows and columns go group by group (group 1 first, those in no group last), so that each
    group is a block on the diagonal; `starts` marks each group's first row and column. Above
    `COMPACT_PERSONS` people the cells are small and show their score on hover only.
    """
    pairs = (report.get("sync") or {}).get("pairs") or []
    group_of = {person["id"]: person.get("group") for person in report["persons"]}
    ids = sorted({i for pair in pairs for i in pair["ids"]},
                 key=lambda i: (group_of.get(i) is None, group_of.get(i) or 0, i))
    if len(ids) < 2:
        return None
    found = {tuple(pair["ids"]): pair for pair in pairs}
    starts = {i for k, i in enumerate(ids) if k > 0 and group_of.get(i) != group_of.get(ids[k - 1])}
    cells = []
    for a in ids:
        row = []
        for b in ids:
            pair = found.get((min(a, b), max(a, b))) if a != b else None
            score = None if pair is None else pair["score"]
            row.append({"score": score, "together": bool(pair and pair["moves_together"]),
                        "background": _heat_colour(score) if pair is not None else "#eee",
                        "title": "" if pair is None else _pair_title(pair), "starts": b in starts})
        cells.append({"id": a, "colour": _hex(a), "group": group_of.get(a), "cells": row, "starts": a in starts})
    return {"ids": [{"id": i, "colour": _hex(i), "starts": i in starts} for i in ids], "rows": cells,
            "compact": len(ids) > COMPACT_PERSONS}


def _heat_colour(score: float | None) -> str:
    """White (0, chance) to deep green (10, the same movement at the same time)."""
    if score is None:
        return "#f4f4f4"
    share = min(max(score / 10.0, 0.0), 1.0)
    r, g, b = (round(255 + (end - 255) * share) for end in (26, 152, 80))
    return f"#{r:02x}{g:02x}{b:02x}"


def _pair_title(pair: dict) -> str:
    a, b = pair["ids"]
    likeness = "--" if pair["likeness"] is None else f"{pair['likeness']:.2f}"
    lag = "--" if pair["lag_ms"] is None else f"{pair['lag_ms']:.0f} ms"
    verdict = "move together" if pair["moves_together"] else "do not move together above chance"
    return f"#{a} and #{b} {verdict}: likeness {likeness}, lag {lag}"


#: The limbs' colours on the teacher section's limb timeline (the same for every person).
LIMB_COLOURS = {"head": "#9c755f", "left_arm": "#e15759", "right_arm": "#f28e2b", "torso": "#76b7b2",
                "left_leg": "#4e79a7", "right_leg": "#59a14f"}


def _teacher(report: dict, files: OutputFiles, page: Path) -> dict | None:
    """The "Against the teacher" section: the alignment in words, each performer's lag behind the
    teacher over time, each limb's over time (one person shown at a time), the per-person table,
    and the teacher beside the class at each of the worst moments against the teacher; None
    without a teacher."""
    reference = report.get("reference")
    if not reference:
        return None
    duration = max(report["duration_seconds"], 1e-6)
    performers = [p for p in report["persons"] if p.get("reference")]
    lags = [w["lag_ms"] for p in performers for w in p["reference"]["windows"] if w["lag_ms"] is not None]
    lags += [v for p in performers for limb in p["reference"]["limbs"].values() for v in limb["window_lags_ms"]
             if v is not None]
    reach = max([abs(v) for v in lags] + [100.0])
    top, height = 8.0, 144.0

    def line(windows: list[dict], values: list) -> str:
        times = np.array([(w["start_s"] + w["end_s"]) / 2 for w in windows])
        return _path_data(times, np.array([np.nan if v is None else v for v in values], dtype=float), duration,
                          -reach, reach, top, height)

    lag_lines, limb_lines, rows = [], [], []
    for person in performers:
        own = person["reference"]
        windows = own["windows"]
        lag_lines.append({"id": person["id"], "colour": _hex(person["id"]),
                          "d": line(windows, [w["lag_ms"] for w in windows])})
        for name, limb in own["limbs"].items():
            limb_lines.append({"id": person["id"], "limb": name, "colour": LIMB_COLOURS.get(name, "#555"),
                               "d": line(windows, limb["window_lags_ms"])})
        rows.append({"id": person["id"], "colour": _hex(person["id"]), **own,
                     "limb_cells": [{"name": name, **limb} for name, limb in own["limbs"].items()]})
    chosen = max(performers, key=lambda p: (len(p["reference"]["late_limbs"]), abs(p["reference"]["lag_ms"] or 0)),
                 default=None)
    return {
        "reference": reference, "name": Path(reference["input"]).name, "rows": rows,
        "limb_names": list(LIMB_COLOURS), "limb_colours": LIMB_COLOURS,
        "chart": {"width": TIMELINE_WIDTH, "height": top * 2 + height, "zero": top + height / 2, "reach": reach,
                  "duration": duration, "lags": lag_lines, "limbs": limb_lines,
                  "lag_width": 1.2 if len(performers) > COMPACT_PERSONS else 2.5},
        "chosen": None if chosen is None else chosen["id"],
        "moments": _teacher_moments(report, files, page),
    }


def _teacher_moments(report: dict, files: OutputFiles, page: Path) -> list[dict]:
    """The worst moments against the teacher, each with a picture of the class then and of the
    teacher at the same moment of the choreography (from the teacher's video, where it can be
    read), made once and reused."""
    reference = report["reference"]
    moments = []
    video = files.video if report.get("files", {}).get("video") and files.video.is_file() else None
    teacher_video = Path(reference["input"])
    teacher_info = None
    if reference.get("offset_seconds") is not None and teacher_video.is_file():
        try:
            teacher_info = probe(teacher_video)
        except DancingSkeletonsError:
            teacher_info = None
    student_info = None
    if video is not None:
        try:
            student_info = probe(video)
        except DancingSkeletonsError:
            student_info = None
    for k, moment in enumerate(reference.get("worst_moments") or []):
        middle = (moment["start_s"] + moment["end_s"]) / 2
        entry = {**moment, "class_picture": None, "teacher_picture": None, "teacher_s": None}
        if reference.get("offset_seconds") is not None:
            rate = 1.0 + (reference.get("drift_ppm") or 0.0) * 1e-6
            entry["teacher_s"] = (middle - reference["offset_seconds"]) / rate
        for key, info, seconds, name in (("class_picture", student_info, middle, f"moment-{k + 1}-class.jpg"),
                                         ("teacher_picture", teacher_info, entry["teacher_s"],
                                          f"moment-{k + 1}-teacher.jpg")):
            if info is None or seconds is None or seconds < 0:
                continue
            path = files.media / name
            if not path.is_file():
                frame = frame_at(info, seconds)
                if frame is None:
                    continue
                files.media.mkdir(exist_ok=True)
                _save_jpeg(path, frame, 2 * THUMB_SIZE)
            entry[key] = _href(path, page)
        moments.append(entry)
    return moments


def _frame_columns(path: Path) -> dict[str, np.ndarray]:
    columns: dict[str, list[float]] = {"seconds": [], "score": [], "displayed": []}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                for name, values in columns.items():
                    values.append(float(row[name]) if row.get(name) else math.nan)
    except (OSError, ValueError, KeyError):
        pass
    return {name: np.array(values, dtype=float) for name, values in columns.items()}


def build_video_page(report_path: Path, index: Path | None = None) -> Path | None:
    """Write `<stem>.html` (and its thumbnail and crops) beside a report; None if it is not one.

    Args:
        report_path: The `<stem>.json` report.
        index: The folder run's index, to link back to; None for a single-file run.
    """
    report_path = Path(report_path)
    report = read_report(report_path)
    if report is None:
        return None
    listed = report.get("files") or {}
    files = OutputFiles.of(report_path.with_name(listed["video"]) if listed.get("video")
                           else report_path.with_suffix(".mp4"))
    page = page_path(report_path)
    thumb, crops = _media(report, files)
    frames = _frame_columns(files.csv)
    links = [(label, _href(report_path.with_name(listed[key]), page)) for key, label in
             (("video", "annotated video"), ("csv", "per-frame CSV"), ("plot", "plot"), ("poses", "pose cache"))
             if listed.get(key)] + [("report (JSON)", _href(report_path, page))]
    persons = [{
        **person, "colour": _hex(person["id"]),
        "crop": _href(crops[person["id"]], page) if person["id"] in crops else None,
    } for person in report["persons"]]
    text = _environment().get_template("video.html.j2").render(
        report=report, title=Path(report["input"]).name, persons=persons, links=links,
        video=_href(files.video, page) if listed.get("video") and files.video.is_file() else None,
        thumb=_href(thumb, page) if thumb else None,
        timeline=_timeline(report, frames), index=_href(index, page) if index else None,
        tracks=_tracks(report), heat=_heat_map(report), groups=report.get("groups") or [],
        teacher=_teacher(report, files, page),
        identity=report.get("identity"), compact=len(persons) > COMPACT_PERSONS,
        frame_seconds=1.0 / report["fps"] if report["fps"] else 0.0,
    )
    return _write(page, text)


def _row_from_report(input_name: str, status: str, report: dict, report_path: Path, index: Path,
                     processing: float | None) -> IndexRow:
    group = report.get("sync") or {}
    media = media_folder(report_path) / "thumb.jpg"
    return IndexRow(
        input=input_name, status=status,
        page=_href(page_path(report_path), index) if page_path(report_path).is_file() else None,
        thumb=_href(media, index) if media.is_file() else None,
        score=report["score"]["mean"], sync=group.get("score"), chance=group.get("chance_mean"),
        **_chips([Chip(p["id"], _hex(p["id"]), p["lag_ms"], p["lag_confidence"])
                  for p in report["persons"] if p["scored"]]),
        frames=report["frames"], duration=report["duration_seconds"], processing=processing,
    )


def _chips(chips: list[Chip], named: int = 3) -> dict:
    """{"chips", "others"} of an index row: every performer's chip, or above `MAX_CHIPS` the
    `named` furthest from the group's time and one line for the others."""
    timed = sorted((c for c in chips if c.lag_ms is not None), key=lambda c: (-abs(c.lag_ms or 0.0), c.id))
    if len(chips) <= MAX_CHIPS or len(timed) <= named:
        return {"chips": chips, "others": None}
    rest = len(chips) - named
    reach = max(abs(c.lag_ms or 0.0) for c in timed[named:])
    return {"chips": timed[:named], "others": f"+{rest} more within ±{reach:.0f} ms"
            if rest == len(timed) - named else f"+{rest} more ({len(timed) - named} within ±{reach:.0f} ms)"}


def build_index(output_folder: Path, summary_rows: Sequence[dict[str, str]] | None = None,
                build_pages: bool = True) -> Path:
    """Write `OUT/index.html` over a folder run's outputs (and each video page it lacks).

    Args:
        output_folder: The folder run's output folder.
        summary_rows: Its `summary.csv` rows (as `csv.DictReader` reads them); None reads the
            file, or, without one, takes every report under the folder.
        build_pages: Write the video pages that are missing.
    """
    output_folder = Path(output_folder)
    index = output_folder / INDEX_NAME
    if summary_rows is None:
        summary = output_folder / SUMMARY_NAME
        if summary.is_file():
            summary_rows = read_rows(summary)
        else:
            summary_rows = [{"input": p.relative_to(output_folder).as_posix(), "status": "done", "error": "",
                             "report": p.relative_to(output_folder).as_posix(), "processing_seconds": ""}
                            for p in sorted(output_folder.rglob("*.json")) if read_report(p) is not None]
    rows = []
    for cells in summary_rows:
        report_path = output_folder / cells["report"] if cells.get("report") else None
        report = read_report(report_path) if report_path else None
        processing = float(cells["processing_seconds"]) if cells.get("processing_seconds") else None
        if report is None or report_path is None:
            rows.append(IndexRow(input=cells["input"], status=cells["status"], error=cells.get("error", ""),
                                 processing=processing))
            continue
        if build_pages and not page_path(report_path).is_file():
            build_video_page(report_path, index)
        rows.append(_row_from_report(cells["input"], cells["status"], report, report_path, index, processing))
    counts = {status: sum(row.status == status for row in rows) for status in STATUSES}
    text = _environment().get_template("index.html.j2").render(rows=rows, counts=counts, total=len(rows),
                                                               title=output_folder.name or str(output_folder))
    return _write(index, text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.review", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", type=Path, help="a folder run's output folder, or one video's <stem>.json")
    args = parser.parse_args(argv)
    target = args.target
    if target.is_dir():
        for report in sorted(target.rglob("*.json")):
            if read_report(report) is not None:
                build_video_page(report, target / INDEX_NAME)
        print(build_index(target, build_pages=False))
        return 0
    page = build_video_page(target.with_suffix(".json"))
    if page is None:
        print(f"{target}: not a report of this tool (nor a folder)", file=sys.stderr)
        return 2
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
