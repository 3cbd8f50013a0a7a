"""The teacher of a `--reference` run: its poses (computed once and cached), its audio, the alignment.

`prepare_reference` runs once per process and reference (a folder run's videos share it): the
teacher's video goes through the pose model like any video, without drawing, and its pose cache
is kept in the user's cache folder (beside the exported models, `$TORCH_HOME/../dancingskeletons/
references/`), named by the video and the detection settings, so the next run, or the next
video of a folder, reads it back instead. `--reference` also takes a pose cache itself; the
teacher's video is then looked for beside it (under the name the cache records), for its audio
and the picture-in-picture.

`Reference.setup_for` aligns one video with the teacher before its run: by hand (`--offset`),
else by the music (`workers.alignment`), else it leaves the alignment to the movement, after the
run (`workers.reference.align_by_poses`), and says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from config import Config
from pipeline.runner import run_video
from workers.alignment import AudioAlignment, align_audio
from workers.audio import DEFAULT_RATE, AudioTrack, read_audio
from workers.data import VideoInfo
from workers.errors import DancingSkeletonsError, PoseCacheError, ReferenceVideoError, VideoOpenError, one_line
from workers.export_cache import cache_root
from workers.files import exclusive
from workers.infer import PoseEstimator
from workers.poses import check_matches, load_poses, poses_path, read_poses_meta
from workers.probe import probe
from workers.reference import Alignment, TeacherPoses, TeacherSetup, choose_teacher

log = logging.getLogger("dancingskeletons")

#: Suffix of a pose cache given to `--reference` instead of a video.
POSES_SUFFIX = ".poses.npz"


def reference_cache_folder() -> Path:
    """Where the teachers' pose caches are kept: beside the exported models."""
    return cache_root().parent / "references"


@dataclass(frozen=True, eq=False)
class Reference:
    """The teacher, ready for every video of a run.

    Attributes:
        source: What `--reference` named (a video or a pose cache).
        video: The teacher's video, or None when only its pose cache is at hand.
        poses: The teacher's pose cache.
        teacher: The teacher's poses on the reference's own frames.
        persons: Every id found in the reference video.
        audio: The teacher's audio at `workers.audio.DEFAULT_RATE`, or None (no audio, no video).
        why_no_audio: Why `audio` is None ("" when it is not).
    """

    source: Path
    video: VideoInfo | None
    poses: Path
    teacher: TeacherPoses
    persons: tuple[int, ...]
    audio: AudioTrack | None
    why_no_audio: str = ""

    def setup_for(self, info: VideoInfo, config: Config) -> TeacherSetup:
        """Align the video `info` with the teacher as far as it can be before its run.

        By hand with `config.offset`; else by the music; else the alignment is left to the
        movement after the run (`TeacherSetup.alignment` None) and the reason is kept.
        """
        unaligned = TeacherSetup(teacher=self.teacher, alignment=None, mirror=True if config.mirror else None,
                                 video=self.video, input=str(self.source), poses_file=str(self.poses),
                                 persons_found=self.persons)
        if config.offset is not None:
            return replace(unaligned, alignment=Alignment("manual", float(config.offset), None, None,
                                                          "given with --offset"))
        if self.audio is None:
            return replace(unaligned, why_not_audio=self.why_no_audio)
        started = time.perf_counter()
        try:
            student = read_audio(info.path, DEFAULT_RATE)
        except DancingSkeletonsError as error:
            return replace(unaligned, why_not_audio=f"{info.path.name}'s audio cannot be read ({one_line(error)})")
        if student is None:
            return replace(unaligned, why_not_audio=f"{info.path.name} has no audio")
        found = align_audio(self.audio.samples, student.samples, DEFAULT_RATE)
        log.debug("%s: audio alignment in %.2f s: %s", info.path.name, time.perf_counter() - started, found)
        if not found.matched:
            return replace(unaligned, why_not_audio=f"the audio does not match: {found.reason}")
        return replace(unaligned, alignment=_audio_alignment(found, self.audio, student))


def _audio_alignment(found: AudioAlignment, teacher: AudioTrack, student: AudioTrack) -> Alignment:
    """The alignment of the two videos from that of their audio tracks, each of which may start
    after its video does (`AudioTrack.start_seconds`)."""
    offset = found.offset_seconds + student.start_seconds - teacher.start_seconds * (1 + found.drift_ppm * 1e-6)
    detail = (f"aligned by the music: confidence {found.confidence:.2f}, {found.windows_used} of "
              f"{found.windows_total} windows on the fitted line, residual {found.residual_ms:.1f} ms")
    return Alignment("audio", offset, found.drift_ppm, found.confidence, detail)


_PREPARED: dict[str, Reference] = {}
_LOCK = threading.Lock()


def prepare_reference(config: Config, estimator: PoseEstimator) -> Reference:
    """The teacher of `config.reference`, prepared once per process (later calls return it).

    Raises:
        ReferenceVideoError: The reference is not a video or pose cache, nobody is in it, or
            `config.reference_person` is not one of its persons (the CLI exits 2).
    """
    assert config.reference is not None
    key = _key(config)
    with _LOCK:
        if key not in _PREPARED:
            _PREPARED[key] = _prepare(config, estimator)
        return _PREPARED[key]


def _key(config: Config) -> str:
    """What a prepared teacher depends on."""
    source = Path(config.reference or "")
    try:
        stat = source.stat()
        identity = [stat.st_size, stat.st_mtime_ns]
    except OSError:
        identity = []
    return json.dumps([str(source.resolve()), identity, config.model, config.detection_settings(),
                       config.keypoint_min_score, config.reference_person], sort_keys=True, default=str)


def _prepare(config: Config, estimator: PoseEstimator) -> Reference:
    started = time.perf_counter()
    source = Path(config.reference or "")
    if source.name.endswith(POSES_SUFFIX):
        video, poses = _from_cache(source)
        where = f"from {poses}"
    else:
        video = _probe_reference(source)
        poses, computed = _teacher_poses(config, estimator, video)
        where = f"{'computed, ' if computed else ''}cached in {poses}"
    try:
        meta, log_ = load_poses(poses)
    except PoseCacheError as error:
        raise ReferenceVideoError(f"--reference: {one_line(error)}") from None
    try:
        everyone = {i: keypoints for i, keypoints in log_.rows(0, len(log_)).poses(config.keypoint_min_score).items()
                    if i > 0}
    finally:
        log_.close()
    try:
        person, reason = choose_teacher(everyone, config.reference_person)
    except ValueError as error:
        raise ReferenceVideoError(f"{source}: {error}") from None
    from fractions import Fraction

    teacher = TeacherPoses(everyone[person], float(Fraction(meta.fps)), person, reason)
    audio, why = _teacher_audio(video)
    log.info("%s: the teacher is %s; %.1f s of poses (%s, %.1f s)%s", source.name, reason, teacher.duration, where,
             time.perf_counter() - started, "" if audio is not None else f"; no audio alignment: {why}")
    return Reference(source, video, poses, teacher, tuple(sorted(everyone)), audio, why)


def _probe_reference(source: Path) -> VideoInfo:
    try:
        return probe(source)
    except VideoOpenError as error:
        raise ReferenceVideoError(f"--reference: {one_line(error)}") from None


def _from_cache(source: Path) -> tuple[VideoInfo | None, Path]:
    """A pose cache given as the reference, and its video when it lies beside it."""
    try:
        meta = read_poses_meta(source)
    except PoseCacheError as error:
        raise ReferenceVideoError(f"--reference: {one_line(error)}") from None
    beside = source.parent / meta.input
    if meta.input and beside.is_file():
        try:
            video = probe(beside)
        except VideoOpenError:
            return None, source
        if (video.width, video.height) == (meta.width, meta.height):
            return video, source
    return None, source


def _teacher_poses(config: Config, estimator: PoseEstimator, video: VideoInfo) -> tuple[Path, bool]:
    """The teacher's pose cache, and whether it was computed now: read back when it was made with
    these settings, else computed (the whole reference video through the model, nothing drawn)."""
    settings = config.detection_settings()
    stat = video.path.stat()
    digest = hashlib.sha256(json.dumps(
        {"video": str(video.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
         "model": config.model, "settings": settings}, sort_keys=True, default=str).encode()).hexdigest()[:16]
    output = reference_cache_folder() / f"{video.path.stem}-{digest}.mp4"
    cache = poses_path(output)
    # Several jobs of one folder run (or Ray workers of one machine) start with the same teacher:
    # one computes its poses, the others wait and read them.
    with exclusive(output.with_name(f".{output.stem}.lock")):
        if cache.is_file():
            try:
                meta = read_poses_meta(cache)
                check_matches(cache, meta, video, config.model, config.person_threshold_in_effect)
                return cache, False
            except PoseCacheError as error:
                log.info("%s: recomputing the teacher's poses (%s)", video.path.name, one_line(error))
        if estimator.replays_cache:
            raise ReferenceVideoError(f"{video.path}: the teacher's poses are not cached yet and --poses replays "
                                      "this video's; run once without --poses, or give --reference the teacher's "
                                      ".poses.npz")
        log.info("%s: computing the teacher's poses once (cached for later runs)", video.path.name)
        teacher_config = config.replace(input=video.path, output=output, video=False, save_poses=True, score=False,
                                        reference=None, reference_person=None, offset=None, poses=None)
        result = run_video(teacher_config, estimator, video)
        if result.poses is None:
            raise DancingSkeletonsError(f"{video.path}: the teacher's poses were not saved")
        return result.poses, True


def _teacher_audio(video: VideoInfo | None) -> tuple[AudioTrack | None, str]:
    """The teacher's audio for the alignment, or None and why not."""
    if video is None:
        return None, "the teacher's video is not at hand (only its pose cache)"
    if not video.has_audio:
        return None, f"{video.path.name} has no audio"
    try:
        audio = read_audio(video.path, DEFAULT_RATE)
    except DancingSkeletonsError as error:
        return None, f"{video.path.name}'s audio cannot be read ({one_line(error)})"
    if audio is None or not np.any(audio.samples):
        return None, f"{video.path.name} has no audio" if audio is None else f"{video.path.name}'s audio is silent"
    return audio, ""


def forget_prepared() -> None:
    """Drop the teachers prepared in this process (tests)."""
    with _LOCK:
        _PREPARED.clear()
