"""The kit the GPU check carries to a bare GPU machine that has no network, and its unpacking.

    python3 tools/gpu_kit.py make [--kit .gpu-kit]                 # here: `make gpu-kit`
    python3 tools/gpu_kit.py install --kit .gpu-kit --target DIR   # there: tools/gpu_check.sh

The GPU machine has torch, torchvision, numpy, scipy, matplotlib, OpenCV, tqdm, PyYAML and
nvidia-ml-py, but neither imageio-ffmpeg (our ffmpeg) nor ultralytics, and no `../shared`.
`make` fills the kit with them, for Python 3.12 on x86-64 Linux, at the versions our
requirements pin, plus the YOLO11n-pose weights and the park clip from `../shared`.

imageio-ffmpeg's wheel (68 MB, a 173 MB ffmpeg inside) alone is over the 64 MiB that may
travel with a call, so the kit holds its Python files and the binary xz-compressed with the
x86 branch filter (46 MiB), and `install` puts the binary back where imageio-ffmpeg
looks for it. Only the Python standard library is used, so `install` runs on any python3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
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


def pinned(package: str) -> str:
    """`package==version` as our requirements files pin it."""
    for name in ("requirements.txt", "requirements-yolo.txt"):
        for line in (ROOT / name).read_text().splitlines():
            if line.split("==")[0].strip().lower() == package:
                return line.strip()
    raise SystemExit(f"{package} is not pinned in requirements.txt or requirements-yolo.txt")


def download(requirement: str, folder: Path) -> Path:
    """One wheel for CPython 3.12 on manylinux x86-64 (or a pure one), without its dependencies."""
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder),
                    requirement], check=True)
    name = requirement.split("==")[0].replace("-", "_")
    return next(folder.glob(f"{name}-*.whl"))


def make(kit: Path) -> None:
    """Fill `kit` (replacing what is there) and print its size."""
    kit.mkdir(parents=True, exist_ok=True)
    wheels = kit / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        download(pinned("ultralytics"), wheels)
        imageio = download(pinned("imageio-ffmpeg"), Path(tmp))
        with zipfile.ZipFile(imageio) as wheel, zipfile.ZipFile(kit / "imageio_ffmpeg.zip", "w",
                                                                 zipfile.ZIP_DEFLATED) as light:
            for entry in wheel.infolist():
                if FFMPEG_BINARY.match(entry.filename):
                    print(f"compressing {entry.filename} ({entry.file_size / 2**20:.0f} MiB), a few minutes")
                    data = wheel.read(entry)
                    (kit / "ffmpeg.xz").write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ, filters=XZ_FILTERS))
                    (kit / "ffmpeg.json").write_text(json.dumps({
                        "path": entry.filename, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))
                else:
                    light.writestr(entry, wheel.read(entry))
    for name, source in (("yolo11n-pose.pt", SHARED / "models" / "yolo11n-pose.pt"),
                         ("clip.mp4", SHARED / "videos" / "park_two_people_vp9_audio.mp4")):
        if source.is_file():
            shutil.copyfile(source, kit / name)
        else:
            print(f"{source} is absent: the check will run without it")
    size = sum(path.stat().st_size for path in kit.rglob("*") if path.is_file())
    print(f"{kit}: {size / 2**20:.1f} MiB")


def install(kit: Path, target: Path) -> None:
    """Install the kit's packages into `target` (a folder to put on PYTHONPATH)."""
    target.mkdir(parents=True, exist_ok=True)
    wheels = sorted((kit / "wheels").glob("*.whl"))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                        "--no-compile", "--target", str(target), *map(str, wheels)], check=True)
    if (kit / "imageio_ffmpeg.zip").is_file():
        with zipfile.ZipFile(kit / "imageio_ffmpeg.zip") as light:
            light.extractall(target)
        facts = json.loads((kit / "ffmpeg.json").read_text())
        binary = target / facts["path"]
        data = lzma.decompress((kit / "ffmpeg.xz").read_bytes())
        if hashlib.sha256(data).hexdigest() != facts["sha256"]:
            raise SystemExit(f"{kit / 'ffmpeg.xz'}: does not unpack to the ffmpeg it was made from")
        binary.write_bytes(data)
        os.chmod(binary, 0o755)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("make", "install"))
    parser.add_argument("--kit", type=Path, default=ROOT / ".gpu-kit", help="the kit folder (default: .gpu-kit)")
    parser.add_argument("--target", type=Path, help="install: the folder to install into")
    args = parser.parse_args(argv)
    if args.action == "make":
        make(args.kit)
    else:
        if args.target is None:
            parser.error("install needs --target")
        install(args.kit, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
