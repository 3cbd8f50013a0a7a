#!/usr/bin/env python
"""torchvision Keypoint R-CNN R50-FPN (random weights, seed 0) on CPU: PyTorch vs OpenVINO.

Measures
  1. conversion: the model as is (fails) and wrapped as one (3,H,W) tensor -> (boxes, scores,
     keypoints, keypoints_scores) tuple; per frame detection count torch vs OV and max |box| /
     |keypoint| difference in px; interleaved timing (torch, OV) on the first frame.
  2. the empty frame: a score threshold T is picked so that the conversion frame has >= 1 detection
     and a blank frame (black / grey / white / noise / heavy blur, first that works) has none; the
     model is converted with the conversion frame and run on the blank one, and the reverse.
  3. batch: the one-image OV model on a (2,3,H,W) input, and a wrapper traced for a batch of 2.
Run:  python -m bench.rcnn_openvino [--video PATH] [--frames 0,30,60,90] [--runs 5]
      (first frame = conversion/timing frame; default video: ../shared's park clip). Needs torch,
      torchvision, openvino (make setup-cpu-fast) and opencv. About 3 minutes on 2 cores.

Why it is not a runtime of the tool (yet): see docs/BENCHMARKS.md, "Keypoint R-CNN through
OpenVINO". With random weights the score thresholds are meaningless, so the model keeps the two
best boxes of every frame (box_score_thresh=0, box_detections_per_img=2), like a trained model on
a clip with two people.
"""
import argparse
import functools
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]  # no telemetry, no ~/intel
import openvino as ov  # noqa: E402

PARK = Path(__file__).resolve().parents[2] / "shared" / "videos" / "park_two_people_vp9_audio.mp4"

OV_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
KEYS = ("boxes", "scores", "keypoints", "keypoints_scores")
SUMMARY: list[tuple[str, str]] = []

log = functools.partial(print, flush=True)


def one_line(e, n=700):
    s = f"{type(e).__name__}: " + " | ".join(x.strip() for x in str(e).splitlines() if x.strip())
    return s if len(s) <= n else s[:n] + " ..."


def gist(s, i=-1):
    """One ' | '-separated segment of a one_line() message (the last one by default), for the summary."""
    return s.split(" | ")[i][:140] if " | " in s else s[:140]


def load_frames(path, idxs):
    """RGB float 0..1 (3,H,W) tensors for the wanted frame indices (cv2, else PyAV)."""
    want: set[int] = set(idxs)
    out: dict[int, torch.Tensor] = {}
    try:
        import cv2
        cap = cv2.VideoCapture(path)
        it = iter(cap.read, None)  # yields (ok, bgr) forever; ok=False at the end
        conv = lambda r: cv2.cvtColor(r[1], cv2.COLOR_BGR2RGB) if r[0] else None  # noqa: E731
    except ImportError:
        import av
        it, conv = (f.to_ndarray(format="rgb24") for f in av.open(path).decode(video=0)), lambda f: f
    for i, raw in enumerate(it):
        rgb = conv(raw)
        if rgb is None or len(out) == len(want):
            break
        if i in want:
            out[i] = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0).contiguous()
    return out


def build(thresh):
    torch.manual_seed(0)
    return torchvision.models.detection.keypointrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=2, num_keypoints=17,
        box_score_thresh=thresh, box_detections_per_img=2).eval()


class Wrap(torch.nn.Module):
    """One (3,H,W) tensor in, (boxes, scores, keypoints, keypoints_scores) out."""
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        d = self.m([x])[0]
        return tuple(d[k] for k in KEYS)


class WrapBatch(Wrap):
    """(N,3,H,W) in; the N images' detections concatenated + per-image counts out (trace fixes N)."""
    def forward(self, x):
        ds = self.m(list(x.unbind(0)))
        return tuple(torch.cat([d[k] for d in ds]) for k in KEYS) + (
            torch.stack([torch.tensor(d["boxes"].shape[0]) for d in ds]),)


def convert(module, example):
    """ov.convert_model + compile on CPU -> infer(x) returning a list of numpy outputs."""
    with torch.no_grad(), warnings.catch_warnings():  # no_grad, NOT inference_mode (trace fails)
        warnings.simplefilter("ignore")  # ~100 TracerWarnings
        t0 = time.perf_counter()
        om = ov.convert_model(module.eval(), example_input=example)
    log(f"  converted in {time.perf_counter() - t0:.0f}s: input {om.inputs[0].get_partial_shape()}, "
        f"outputs {[str(o.get_partial_shape()) for o in om.outputs]}")
    cm = ov.Core().compile_model(om, "CPU", OV_CONFIG)
    req = cm.create_infer_request()

    def infer(x):  # copy: OV reuses its output buffers on the next infer()
        res = req.infer({0: x.numpy()})
        return [np.array(res[o], copy=True) for o in cm.outputs]
    return infer


@torch.no_grad()
def run_torch(model, x):
    d = model([x])[0]
    return [d[k].numpy() for k in KEYS]


def compare(ref, got):
    nr, ng = len(ref[0]), len(got[0])
    if nr != ng or nr == 0:
        return f"n torch {nr} / OV {ng}" + ("  MISMATCH" if nr != ng else "")
    db, dk = np.abs(ref[0] - got[0]).max(), np.abs(ref[2][..., :2] - got[2][..., :2]).max()
    return f"n torch {nr} / OV {ng}  max|dbox| {db:.3g}px  max|dkp| {dk:.3g}px"


def try_ov(fn, x):
    """(outputs, 'shapes + scores') or (None, 'EXCEPTION one-line message')."""
    try:
        o = fn(x)
        return o, f"shapes {[a.shape for a in o]} scores {[round(float(v), 3) for v in o[1]]}"
    except Exception as e:  # noqa: BLE001
        return None, "EXCEPTION " + one_line(e)


def part_conversion(model, frames, idxs, runs):
    """Part 1: the model as is, then wrapped; torch against OV on each frame; interleaved timing.

    Returns the one-image OV model (converted with the first frame).
    """
    log("\n== Part 1: conversion, accuracy, timing (box_score_thresh=0.0) ==")
    f0 = frames[idxs[0]]
    try:
        convert(model, ([f0],))
        r = "OK (unexpected)"
    except Exception as e:  # noqa: BLE001
        r = one_line(e, 300)
    log(f"  convert as is: {r}")
    SUMMARY.append(("convert model as is", gist(r, 2)))
    ov1 = convert(Wrap(model), f0)
    for i in idxs:
        s = compare(run_torch(model, frames[i]), ov1(frames[i]))
        log(f"  frame {i:3d}: {s}")
        SUMMARY.append((f"T=0, frame {i}", s))
    fns = {"torch": lambda: run_torch(model, f0), "openvino": lambda: ov1(f0)}
    ts: dict[str, list[float]] = {k: [] for k in fns}
    for rnd in range(1 + runs):  # round 0 = warm-up; interleaved: a noisy neighbour hits both alike
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            ts[k] += [time.perf_counter() - t0] if rnd else []
    med = {k: float(np.median(v)) for k, v in ts.items()}
    ratio = float(np.median(np.array(ts["torch"]) / np.array(ts["openvino"])))
    for k, v in ts.items():
        log(f"  time {k:8s}: median {med[k]*1e3:.0f} ms, rounds {[round(t, 2) for t in v]}")
    log(f"  speed-up torch/OV: {med['torch'] / med['openvino']:.2f}x (median per-round {ratio:.2f}x)")
    SUMMARY.append(("time frame 0 (median)", f"torch {med['torch']*1e3:.0f} ms, OV {med['openvino']*1e3:.0f} ms,"
                    f" x{med['torch'] / med['openvino']:.2f} (per-round x{ratio:.2f}), {runs} runs"))
    return ov1


def part_empty_frame(model, f0):
    """Part 2: a threshold between a blank frame's best score and the conversion frame's; the
    model converted with each frame as the example and run on both."""
    log("\n== Part 2: a frame with no detection above the threshold ==")
    small = torch.nn.functional.interpolate(f0[None], scale_factor=1 / 64, mode="area")
    blanks = {"black": torch.zeros_like(f0), "grey": torch.full_like(f0, 0.5), "white": torch.ones_like(f0),
              "noise": torch.rand(f0.shape, generator=torch.Generator().manual_seed(1)),
              "blur": torch.nn.functional.interpolate(small, size=f0.shape[1:], mode="bilinear")[0]}
    top0 = float(run_torch(model, f0)[1].max())
    log(f"  T=0 max score: conversion frame {top0:.4f}")
    empty_name = None
    for name, x in blanks.items():  # first blank frame that torch scores below the conversion frame
        top = float(run_torch(model, x)[1].max())
        log(f"  T=0 max score: {name:8s} {top:.4f}" + ("  <- usable" if top < top0 else ""))
        if top < top0:
            empty_name, T = name, (top + top0) / 2
            break
    if empty_name is None:
        log("  no blank frame scores below the conversion frame with these weights; Part 2 skipped")
        SUMMARY.append(("empty frame", "no (frame, blank) pair found"))
    else:
        empty = blanks[empty_name].contiguous()
        log(f"  T = {T:.4f} (midway); empty frame = {empty_name}")
        mT = build(T)
        ref = {"conv": run_torch(mT, f0), "empty": run_torch(mT, empty)}
        for tag, ex in (("conv", f0), ("empty", empty)):
            log(f"  convert T={T:.3f} with the {tag} frame as example:")
            try:
                fn = convert(Wrap(mT), ex)
            except Exception as e:  # noqa: BLE001
                log(f"  conversion FAILED: {one_line(e)}")
                SUMMARY.append((f"T={T:.3f} convert with {tag}", "FAIL " + one_line(e, 90)))
                continue
            for run_tag, x in (("conv", f0), ("empty", empty)):
                o, s = try_ov(fn, x)
                c = compare(ref[run_tag], o) if o is not None else f"n torch {len(ref[run_tag][0])} / OV -"
                log(f"    run on {run_tag:5s}: {c}; OV {s}")
                SUMMARY.append((f"T={T:.3f} conv.{tag} -> run {run_tag}", c + ("" if o is not None else "; " + s[:80])))
            del fn


def part_batch(model, ov1, frames, idxs):
    """Part 3: the one-image OV model on a batch of two, and a wrapper traced for a batch of two."""
    log("\n== Part 3: batch ==")
    f0 = frames[idxs[0]]
    fr2 = [frames[i] for i in idxs[:2]] if len(idxs) > 1 else [f0, f0]
    x2 = torch.stack(fr2)
    _, s = try_ov(ov1, x2)
    log(f"  one-image OV model on (2,3,H,W): {s}")
    SUMMARY.append(("1-image OV model, (2,3,H,W) in", gist(s)))
    log("  WrapBatch traced with N=2 (detections concatenated + per-image counts):")
    try:
        ovb = convert(WrapBatch(model), x2)
        o = ovb(x2)
        cnt = o[4].tolist()
        parts = np.split(np.arange(len(o[0])), np.cumsum(cnt)[:-1])
        s = f"counts {cnt}: " + "; ".join(compare(run_torch(model, x), [a[p] for a in o[:4]])
                                          for x, p in zip(fr2, parts))
        o3, s3 = try_ov(ovb, torch.stack(fr2 + fr2[:1]))
        s3 = s3 if o3 is None else f"counts {o3[4].tolist()}, " + s3
    except Exception as e:  # noqa: BLE001
        s, s3 = "FAIL " + one_line(e), "-"
    log(f"    N=2: {s}\n    N=3 input: {s3}")
    SUMMARY.append(("WrapBatch N=2 on 2 frames", s[:150]))
    SUMMARY.append(("WrapBatch N=2 on 3 frames", gist(s3)))


def main():
    ap = argparse.ArgumentParser(prog="python -m bench.rcnn_openvino", description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(PARK))
    ap.add_argument("--frames", default="0,30,60,90")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    video = a.video
    idxs = [int(s) for s in a.frames.split(",")]
    t_start = time.perf_counter()
    torch.set_num_threads(2)
    log(f"torch {torch.__version__} torchvision {torchvision.__version__} openvino {ov.__version__} "
        f"threads {torch.get_num_threads()} cpus {os.cpu_count()} loadavg {os.getloadavg()[0]:.1f}")
    frames = load_frames(video, idxs)
    assert len(frames) == len(idxs), f"got frames {sorted(frames)} of {idxs} from {video}"
    f0 = frames[idxs[0]]
    log(f"video {video}: frames {idxs}, shape {tuple(f0.shape)}")
    model = build(0.0)
    ov1 = part_conversion(model, frames, idxs, a.runs)
    part_empty_frame(model, f0)
    part_batch(model, ov1, frames, idxs)

    log("\n== SUMMARY ==")
    for what, found in SUMMARY:
        log(f"  {what:34s} | {found}")
    log(f"  ~/intel exists: {os.path.exists(os.path.expanduser('~/intel'))};  "
        f"total {time.perf_counter() - t_start:.0f}s, loadavg {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
