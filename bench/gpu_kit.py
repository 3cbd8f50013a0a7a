"""The kit the GPU check carries to a bare GPU machine that has no network, and its unpacking.

    python3 -m bench.gpu_kit make                                  # here: `make gpu-kit`
    python3 -m bench.gpu_kit install --kit .gpu-kit --target DIR   # there: bench/gpu_check.sh

The GPU machine has torch, torchvision, numpy, scipy, matplotlib, OpenCV, tqdm, PyYAML and
nvidia-ml-py, but neither imageio-ffmpeg (our ffmpeg), PyAV (our probe) nor ultralytics, and
no `../shared`. `make` fills two kits with them, for Python 3.12 on x86-64 Linux, at the
versions our requirements pin, because together they are over the 64 MiB that may travel
with one call:

- `.gpu-kit-ffmpeg/` (about 47 MiB): imageio-ffmpeg's Python files and its ffmpeg binary
  xz-compressed with the x86 branch filter (the 68 MB wheel holds a 165 MiB binary);
- `.gpu-kit/` (about 39 MiB): PyAV's wheel unpacked and xz-compressed (36 MB as a wheel,
  23 MiB so), PyNvVideoCodec's wheel cut to what imports and xz-compressed (27 MB as a wheel:
  an ffmpeg source tarball, samples and three copies of each library; 5 MiB so), the
  ultralytics wheel, the YOLO11n-pose weights and the park clip.

`install` installs what one kit holds into a folder for PYTHONPATH; bench/gpu_check.sh
keeps that folder (`.gpu-site/`) in the checkout, so a first call carrying one kit and a
second carrying the other add up while the machine is still held. Only the Python standard
library is used, so `install` runs on any python3.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
#: The pip platform tags of the GPU machine's Python (3.12, glibc x86-64), newest first.
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
FFMPEG_BINARY = re.compile(r"^imageio_ffmpeg/binaries/ffmpeg-[^/]+$")
XZ_FILTERS = [{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


#: The kits `make` fills, relative to the checkout: what each one holds is in the docstring.
KITS = {"ffmpeg": ROOT / ".gpu-kit-ffmpeg", "main": ROOT / ".gpu-kit"}


def pinned(package: str) -> str:
    """`package==version` as our requirements files pin it."""
    for name in ("requirements.txt", "requirements-yolo.txt", "requirements-nvcodec.txt"):
        for line in (ROOT / name).read_text().splitlines():
            if line.split("==")[0].strip().lower() == package:
                return line.strip()
    raise SystemExit(f"{package} is not pinned in requirements.txt, requirements-yolo.txt or requirements-nvcodec.txt")


def download(requirement: str, folder: Path) -> Path:
    """One wheel for CPython 3.12 on manylinux x86-64 (or a pure one), without its dependencies."""
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder),
                    requirement], check=True)
    name = requirement.split("==")[0].replace("-", "_")
    return next(folder.glob(f"{name}-*.whl"))


def make(kits: dict[str, Path] = KITS) -> None:
    """Fill both kits (replacing what is there) and print their sizes."""
    ffmpeg_kit, kit = kits["ffmpeg"], kits["main"]
    for folder in (ffmpeg_kit, kit):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        imageio = download(pinned("imageio-ffmpeg"), Path(tmp))
        with zipfile.ZipFile(imageio) as wheel, zipfile.ZipFile(ffmpeg_kit / "imageio_ffmpeg.zip", "w",
                                                                 zipfile.ZIP_DEFLATED) as light:
            for entry in wheel.infolist():
                if FFMPEG_BINARY.match(entry.filename):
                    print(f"compressing {entry.filename} ({entry.file_size / 2**20:.0f} MiB), a few minutes")
                    data = wheel.read(entry)
                    (ffmpeg_kit / "ffmpeg.xz").write_bytes(
                        lzma.compress(data, format=lzma.FORMAT_XZ, filters=XZ_FILTERS))
                    (ffmpeg_kit / "ffmpeg.json").write_text(json.dumps(
                        {"path": entry.filename, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))
                else:
                    light.writestr(entry, wheel.read(entry))
        pyav = download(pinned("av"), Path(tmp))
        print(f"compressing {pyav.name} ({pyav.stat().st_size / 2**20:.0f} MiB), a few minutes")
        pack_wheel(pyav, kit, "av")
        pack_nvcodec(kit, Path(tmp))
    wheels = kit / "wheels"
    wheels.mkdir()
    download(pinned("ultralytics"), wheels)
    for name, source in (("yolo11n-pose.pt", SHARED / "models" / "yolo11n-pose.pt"),
                         ("clip.mp4", SHARED / "videos" / "park_two_people_vp9_audio.mp4")):
        if source.is_file():
            shutil.copyfile(source, kit / name)
        else:
            print(f"{source} is absent: the check will run without it")
    for folder in (ffmpeg_kit, kit):
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        print(f"{folder}: {size / 2**20:.1f} MiB")


#: What of PyNvVideoCodec's wheel imports and runs: its Python files, the two bindings (NVENC API
#: 12.1 and 13.0, picked by the driver), the driver version check, the libraries they load under
#: the names they ask for, the CUDA runtime beside them, and the wheel's metadata.
NVCODEC_KEPT = re.compile(
    r"^(PyNvVideoCodec/([A-Za-z]+/)?[A-Za-z_]+\.py|PyNvVideoCodec/(PyNvVideoCodec_\d+|VersionCheck)\.[^/]+\.so"
    r"|PyNvVideoCodec/lib(avformat|avutil)\.so\.\d+|pynvvideocodec\./[^/]+|[^/]+\.dist-info/[^/]+)$")


def pack_wheel(wheel: Path, kit: Path, name: str, keep: re.Pattern[str] | None = None) -> None:
    """`wheel` unpacked (only the entries `keep` matches, if given), as `name`.tar.xz in `kit`."""
    archive = io.BytesIO()
    with zipfile.ZipFile(wheel) as source, tarfile.open(fileobj=archive, mode="w") as tar:
        for entry in source.infolist():
            if entry.is_dir() or (keep is not None and not keep.match(entry.filename)):
                continue
            info = tarfile.TarInfo(entry.filename)
            info.size = entry.file_size
            info.mode = 0o755 if entry.filename.endswith(".so") or ".so." in entry.filename else 0o644
            tar.addfile(info, io.BytesIO(source.read(entry)))
    data = archive.getvalue()
    (kit / f"{name}.tar.xz").write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ, filters=XZ_FILTERS))
    (kit / f"{name}.json").write_text(json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


def pack_nvcodec(kit: Path, tmp: Path) -> None:
    """PyNvVideoCodec for the GPU machine, cut to `NVCODEC_KEPT`, into `kit`."""
    wheel = download(pinned("pynvvideocodec"), tmp)
    print(f"cutting and compressing {wheel.name} ({wheel.stat().st_size / 2**20:.0f} MiB)")
    pack_wheel(wheel, kit, "pynvvideocodec", NVCODEC_KEPT)


def install(kit: Path, target: Path) -> None:
    """Install what `kit` holds into `target` (a folder to put on PYTHONPATH)."""
    target.mkdir(parents=True, exist_ok=True)
    wheels = sorted((kit / "wheels").glob("*.whl"))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                        "--no-compile", "--upgrade", "--target", str(target), *map(str, wheels)], check=True)
    if (kit / "imageio_ffmpeg.zip").is_file():
        with zipfile.ZipFile(kit / "imageio_ffmpeg.zip") as light:
            light.extractall(target)
        facts = json.loads((kit / "ffmpeg.json").read_text())
        binary = target / facts["path"]
        data = _unpacked(kit / "ffmpeg.xz", facts["sha256"], "the ffmpeg it was made from")
        binary.write_bytes(data)
        os.chmod(binary, 0o755)
    for name, what in (("av", "the PyAV wheel"), ("pynvvideocodec", "the PyNvVideoCodec wheel")):
        if (kit / f"{name}.tar.xz").is_file():
            facts = json.loads((kit / f"{name}.json").read_text())
            data = _unpacked(kit / f"{name}.tar.xz", facts["sha256"], f"{what} it was made from")
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(target, filter="data")


def _unpacked(path: Path, sha256: str, what: str) -> bytes:
    data = lzma.decompress(path.read_bytes())
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SystemExit(f"{path}: does not unpack to {what}")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_kit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("make", "install"))
    parser.add_argument("--kit", type=Path, default=ROOT / ".gpu-kit",
                        help="install: the kit folder (default: .gpu-kit)")
    parser.add_argument("--target", type=Path, help="install: the folder to install into")
    args = parser.parse_args(argv)
    if args.action == "make":
        make()
    else:
        if args.target is None:
            parser.error("install needs --target")
        install(args.kit, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
