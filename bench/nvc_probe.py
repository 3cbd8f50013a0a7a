"""Probe PyNvVideoCodec on a GPU machine: what its API returns, how fast, how close to ffmpeg.

    python -m bench.nvc_probe OUT_DIR
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

RESULTS: dict = {}


def note(key, value):
    RESULTS[key] = value
    print(f"{key}: {value}", flush=True)


def section(name):
    def wrap(fn):
        def run(*args):
            start = time.perf_counter()
            try:
                fn(*args)
            except Exception as error:  # noqa: BLE001 - a probe reports everything
                note(f"{name}.error", f"{type(error).__name__}: {error}")
                traceback.print_exc()
            note(f"{name}.seconds", round(time.perf_counter() - start, 2))
        return run
    return wrap


def make_clip(ffmpeg, path, size, frames, fps=30):
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate={fps}", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-frames:v", str(frames), "-t", str(frames / fps), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-preset", "veryfast", "-g", "60", "-c:a", "aac", "-shortest", str(path)], check=True)


def ffmpeg_frames(ffmpeg, path, width, height, count):
    raw = subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(path), "-frames:v", str(count),
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def attrs(obj):
    return [name for name in dir(obj) if not name.startswith("__")]


def main(out):
    out.mkdir(parents=True, exist_ok=True)
    import imageio_ffmpeg
    import torch
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    clips = {}
    for size, name in (("1920x1080", "c1080.mp4"), ("1280x720", "c720.mp4")):
        clips[size] = Path("/tmp") / name
        make_clip(ffmpeg, clips[size], size, 300)
    import PyNvVideoCodec as nvc
    note("version", getattr(nvc, "__version__", "?"))
    note("nvc.dir", attrs(nvc))
    for name in ("CreateDecoder", "CreateDemuxer", "CreateSimpleDecoder", "CreateEncoder", "PyNvEncoder",
                 "DecodedFrame", "OutputColorType", "GetDecoderCaps", "FFmpegMuxer"):
        obj = getattr(nvc, name, None)
        note(f"doc.{name}", (obj.__doc__ or "")[:1500] if obj is not None else "absent")
        if obj is not None and isinstance(obj, type):
            note(f"dir.{name}", attrs(obj))
    for method in ("Encode", "EndEncode", "GetEncodeReconfigureParams"):
        obj = getattr(getattr(nvc, "PyNvEncoder", None), method, None)
        note(f"doc.PyNvEncoder.{method}", (obj.__doc__ or "")[:1500] if obj is not None else "absent")

    @section("simple")
    def simple():
        clip = clips["1920x1080"]
        decoder = nvc.SimpleDecoder(str(clip), gpu_id=0, use_device_memory=True,
                                    output_color_type=nvc.OutputColorType.RGB)
        meta = decoder.get_stream_metadata()
        note("simple.len", len(decoder))
        note("simple.meta", {name: str(getattr(meta, name)) for name in attrs(meta)
                             if not callable(getattr(meta, name))})
        frames = decoder.get_batch_frames(4)
        first = frames[0]
        note("simple.frame.dir", attrs(first))
        for name in ("getPTS", "pts", "timestamp", "GetPTS", "decode_stats", "format", "shape", "dtype"):
            if hasattr(first, name):
                value = getattr(first, name)
                try:
                    value = value() if callable(value) else value
                except Exception as error:  # noqa: BLE001
                    value = f"error {error}"
                note(f"simple.frame.{name}", str(value)[:300])
        note("simple.frame.cai", str(getattr(first, "__cuda_array_interface__", None))[:400])
        tensor = torch.from_dlpack(first)
        note("simple.tensor", [list(tensor.shape), str(tensor.dtype), str(tensor.device), list(tensor.stride())])
        ours = torch.stack([torch.from_dlpack(f).clone() for f in frames]).cpu().numpy()
        theirs = ffmpeg_frames(ffmpeg, clip, 1920, 1080, 4)
        diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
        note("simple.vs_ffmpeg", {"mean": float(diff.mean()), "max": int(diff.max()),
                                  "p99": float(np.percentile(diff, 99))})
        try:
            frames2 = nvc.SimpleDecoder(str(clip), gpu_id=0, use_device_memory=True,
                                        output_color_type=nvc.OutputColorType.RGB)
            count = 0
            torch.cuda.synchronize()
            start = time.perf_counter()
            while True:
                batch = frames2.get_batch_frames(16)
                if not batch:
                    break
                for f in batch:
                    torch.from_dlpack(f).clone()
                count += len(batch)
            torch.cuda.synchronize()
            note("simple.decode_fps_1080", round(count / (time.perf_counter() - start), 1))
            note("simple.decoded_count", count)
        except Exception as error:  # noqa: BLE001
            note("simple.loop.error", repr(error))

    @section("threaded")
    def threaded():
        for size, clip in clips.items():
            decoder = nvc.ThreadedDecoder(str(clip), buffer_size=16, gpu_id=0, use_device_memory=True,
                                          output_color_type=nvc.OutputColorType.RGB)
            count = 0
            torch.cuda.synchronize()
            start = time.perf_counter()
            pts: list = []
            while True:
                batch = decoder.get_batch_frames(8)
                if not batch:
                    break
                for f in batch:
                    torch.from_dlpack(f).clone()
                    if hasattr(f, "getPTS"):
                        pts.append(f.getPTS())
                count += len(batch)
            torch.cuda.synchronize()
            note(f"threaded.{size}.fps", round(count / (time.perf_counter() - start), 1))
            note(f"threaded.{size}.count", count)
            note(f"threaded.{size}.pts_head", pts[:5])
            if hasattr(decoder, "end"):
                decoder.end()

    @section("demux")
    def demux():
        clip = clips["1280x720"]
        demuxer = nvc.CreateDemuxer(filename=str(clip))
        note("demux.dir", attrs(demuxer))
        note("demux.fps", str(demuxer.FrameRate()))
        try:
            decoder = nvc.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), usedevicememory=True,
                                        outputColorType=nvc.OutputColorType.RGB)
        except TypeError as error:
            note("demux.create.error", repr(error))
            decoder = nvc.CreateDecoder(gpuid=0, codec=demuxer.GetNvCodecId(), usedevicememory=True)
        count = 0
        pts: list = []
        for packet in demuxer:
            for frame in decoder.Decode(packet):
                count += 1
                if len(pts) < 5:
                    pts.append([str(getattr(packet, "pts", "?")),
                                str(frame.getPTS() if hasattr(frame, "getPTS") else "?")])
                    if len(pts) == 1:
                        note("demux.packet.dir", attrs(packet))
                        note("demux.rgb.shape", list(torch.from_dlpack(frame).shape))
        note("demux.count", count)
        note("demux.pts", pts)

    def encode_run(fmt, host, size, frames_np):
        height, width = frames_np.shape[1:3]
        encoder = nvc.CreateEncoder(width, height, fmt, host, codec="h264", preset="P4", tuning_info="high_quality",
                                    rc="vbr", fps=30, gop=60, bitrate=8000000, maxbitrate=16000000,
                                    bf=0, gpu_id=0)
        import cv2
        chunks = []
        torch.cuda.synchronize()
        start = time.perf_counter()
        for image in frames_np:
            if fmt == "ARGB":
                data = cv2.cvtColor(image, cv2.COLOR_RGB2BGRA)
            elif fmt == "ABGR":
                data = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)
            else:  # NV12 from host
                yuv = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)
                h = height
                y = yuv[:h]
                u = yuv[h:h + h // 4].reshape(h // 2, width // 2)
                v = yuv[h + h // 4:].reshape(h // 2, width // 2)
                uv = np.empty((h // 2, width), np.uint8)
                uv[:, 0::2] = u
                uv[:, 1::2] = v
                data = np.concatenate([y, uv])
            if not host:
                data = torch.from_numpy(np.ascontiguousarray(data)).cuda()
                if fmt in ("ARGB", "ABGR"):
                    data = data.reshape(height, width * 4)
            packets = encoder.Encode(data)
            chunks.append(packets)
        chunks.append(encoder.EndEncode())
        torch.cuda.synchronize()
        fps = len(frames_np) / (time.perf_counter() - start)
        blob = b""
        for packets in chunks:
            if isinstance(packets, (bytes, bytearray)):
                blob += bytes(packets)
            else:
                for packet in packets:
                    blob += bytes(packet["data"]) if isinstance(packet, dict) else bytes(packet)
        return fps, blob, type(chunks[0]).__name__

    @section("encode")
    def encode():
        clip = clips["1920x1080"]
        frames_np = ffmpeg_frames(ffmpeg, clip, 1920, 1080, 120)
        for fmt, host in (("ARGB", True), ("ABGR", True), ("NV12", True), ("ARGB", False), ("NV12", False)):
            key = f"encode.{fmt}.{'host' if host else 'gpu'}"
            try:
                fps, blob, kind = encode_run(fmt, host, "1080", frames_np)
                note(f"{key}.fps", round(fps, 1))
                note(f"{key}.bytes", len(blob))
                note(f"{key}.packets_type", kind)
                raw = out / f"{fmt}-{host}.h264"
                raw.write_bytes(blob)
                mp4 = Path("/tmp") / f"{fmt}-{host}.mp4"
                subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-f", "h264", "-framerate", "30", "-i", str(raw),
                                "-i", str(clip), "-map", "0:v", "-map", "1:a", "-c", "copy", "-shortest", str(mp4)],
                               check=True)
                back = ffmpeg_frames(ffmpeg, mp4, 1920, 1080, 1000)
                note(f"{key}.frames_back", len(back))
                n = min(len(back), len(frames_np))
                mse = float(np.mean((back[:n].astype(np.float32) - frames_np[:n].astype(np.float32)) ** 2))
                note(f"{key}.psnr", round(10 * np.log10(255 ** 2 / max(mse, 1e-9)), 2))
                raw.unlink()
            except Exception as error:  # noqa: BLE001
                note(f"{key}.error", f"{type(error).__name__}: {error}")
                traceback.print_exc()

    simple()
    threaded()
    demux()
    encode()
    (out / "nvc_probe.json").write_text(json.dumps(RESULTS, indent=1, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/nvc_probe"))
