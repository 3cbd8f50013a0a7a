"""Folder runs: every video under a folder, the tree mirrored under an output folder.

Built for a night of real files: the model is loaded once; a video whose outputs are complete
and were made with the same settings is skipped, so a killed run restarted redoes only what is
missing; one bad file is recorded as failed and the night goes on; `summary.csv` is rewritten
(atomically) after every file. File discovery, the output names and the summary rows are plain
functions, testable without threads or subprocesses.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from config import Config
from config.settings import parse_shard
from pipeline.progress import Progress, format_duration
from pipeline.reference import prepare_reference
from pipeline.resume import complete_report, remove_outputs
from pipeline.runner import process_video, write_page
from reports.outputs import OutputFiles
from reports.report import describe, in_words
from reports.review import build_index
from reports.summary import INDEX_NAME, SUMMARY_NAME, SummaryRow, is_reserved_stem, shard_summary_name, write_summary
from workers.errors import DancingSkeletonsError, FolderError, one_line
from workers.infer import PoseEstimator
from workers.probe import probe

log = logging.getLogger("dancingskeletons")
#: Marks a file's closing log line (done, failed): where several jobs run, the driver writes its
#: own, with where it ran and the ETA, and the job's own is left out.
FINISH = {"finish": True}

#: File extensions taken as videos (compared in lower case). ffmpeg then has to find a video
#: stream in each; a file where it does not is reported as failed.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv", ".mpg", ".mpeg",
    ".m2v", ".ts", ".mts", ".m2ts", ".3gp", ".3g2", ".ogv", ".mxf", ".vob", ".dv", ".y4m",
})

@dataclass(frozen=True)
class Job:
    """One input video of a folder run.

    Attributes:
        source: The input file.
        relative: Its path relative to the input folder.
        output: Its output video path (the reports take the same stem).
    """

    source: Path
    relative: Path
    output: Path

    def row(self, status: str, report: dict, seconds: float, output_folder: Path, node: str = "") -> SummaryRow:
        """The summary row of this job, done or skipped, its numbers taken from its report."""
        report_path = OutputFiles.of(self.output).json.relative_to(output_folder).as_posix()
        return SummaryRow.from_report(self.relative.as_posix(), status, report, seconds, report_path, node)


def find_videos(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Every video file under `folder`, by extension, sorted by path (folder by folder).

    Hidden files and folders (names starting with ".") are left out, and so is the `exclude`
    folder (an output folder inside the input folder). Symbolic links to folders are not
    followed (no loops); links to files are taken.
    """
    excluded = None if exclude is None else Path(exclude).resolve()
    found = []
    for root, folders, names in os.walk(folder):
        here = Path(root)
        folders[:] = sorted(
            name for name in folders
            if not name.startswith(".") and (excluded is None or (here / name).resolve() != excluded)
        )
        for name in sorted(names):
            path = here / name
            if not name.startswith(".") and path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
                found.append(path)
    return sorted(found, key=lambda path: path.relative_to(folder).parts)


def plan_jobs(input_folder: Path, output_folder: Path) -> list[Job]:
    """The videos under `input_folder` and where each one's outputs go.

    `IN/a/b.mov` goes to `OUT/a/b.mp4` (with `b.json`, `b.csv`, `b.png`, `b.poses.npz`). Inputs
    that would share a stem in one folder (`b.mov` and `b.mp4`), or a top-level input named
    like one of the folder's own files (`summary.*`, `summary-shard-*`, `index.*`), keep their
    extension in the stem instead: `OUT/a/b.mov.mp4`, `OUT/a/b.mp4.mp4`.

    Raises:
        FolderError: The folders are the same, or outputs would land in the input tree.
    """
    input_root, output_root = Path(input_folder).resolve(), Path(output_folder).resolve()
    if input_root == output_root:
        raise FolderError(
            f"{output_folder}: the output folder is the input folder; its outputs would be read as inputs "
            "next time; choose another output folder"
        )
    exclude = output_root if output_root.is_relative_to(input_root) else None
    sources = find_videos(Path(input_folder), exclude)
    relatives = [source.relative_to(input_folder) for source in sources]
    stems = Counter((relative.parent, relative.stem.casefold()) for relative in relatives)
    jobs: list[Job] = []
    taken: dict[str, Path] = {}
    for source, relative in zip(sources, relatives):
        clash = stems[(relative.parent, relative.stem.casefold())] > 1
        reserved = relative.parent == Path(".") and is_reserved_stem(relative.stem)
        stem = relative.name if clash or reserved else relative.stem
        output = Path(output_folder) / relative.parent / f"{stem}.mp4"
        key = str(output).casefold()
        if key in taken:
            raise FolderError(f"{source} and {taken[key]} would both be written to {output}; rename one of them")
        taken[key] = source
        landing = output.resolve()
        if not landing.is_relative_to(output_root):
            raise FolderError(
                f"{output}: the output of {source} would land outside the output folder {output_folder} "
                f"(at {landing}, through a symbolic link); remove the link or choose another output folder"
            )
        if landing.is_relative_to(input_root) and not (exclude is not None and landing.is_relative_to(exclude)):
            raise FolderError(
                f"{output}: the output of {source} would land inside the input folder {input_folder} and be read "
                "as an input next time; choose an output folder outside it"
            )
        jobs.append(Job(source=source, relative=relative, output=output))
    return jobs


def shard_jobs(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Shard `index` of `count` (1-based): every `count`-th job from the `index`-th, in the plan's
    (path) order, so that the shards of one plan are disjoint and together cover it."""
    return list(jobs[index - 1::count])


def exit_code(rows: Sequence[SummaryRow]) -> int:
    """0 when every file is done or skipped, 1 when any failed."""
    return 1 if any(row.status == "failed" for row in rows) else 0


@dataclass(frozen=True)
class FolderRun:
    """A planned folder run: its jobs (a shard's share of them) and where its summary goes.

    Attributes:
        input_folder: The folder searched for videos.
        output_folder: The folder that receives the outputs and the summary.
        jobs: The files this run is to do, in path order.
        summary: This run's summary file (`summary.csv`, or a shard's own).
        sharded: Whether this is one shard of a split run (which writes no index page).
    """

    input_folder: Path
    output_folder: Path
    jobs: tuple[Job, ...]
    summary: Path
    sharded: bool

    def write_summary(self, rows: Sequence[SummaryRow]) -> None:
        """Rewrite the summary (atomically) with `rows`."""
        write_summary(self.summary, rows)

    def write_index(self, rows: Sequence[SummaryRow], build_pages: bool = True) -> None:
        """The review index over `rows`; a shard's rows are a part, so a shard writes none (the merge does)."""
        if not self.sharded:
            cells = [row.as_read() for row in rows]
            write_page(lambda: build_index(self.output_folder, cells, build_pages=build_pages))

    def log_totals(self, rows: Sequence[SummaryRow], seconds: float) -> None:
        counts = Counter(row.status for row in rows)
        log.info(
            "%d files: %d done, %d skipped, %d failed in %s; summary: %s",
            len(rows), counts["done"], counts["skipped"], counts["failed"], format_duration(seconds), self.summary,
        )


def plan_folder_run(config: Config, input_folder: Path, output_folder: Path) -> FolderRun:
    """Plan a folder run (`config.shard` picks a share) and create the output folder.

    Raises:
        FolderError: The folders cannot be used together.
        DancingSkeletonsError: No video file was found.
    """
    jobs = plan_jobs(input_folder, output_folder)
    if not jobs:
        raise DancingSkeletonsError(
            f"{input_folder}: no video files found (looked for {', '.join(sorted(VIDEO_EXTENSIONS))})"
        )
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    if config.shard is None:
        log.info("%d video files under %s -> %s", len(jobs), input_folder, output_folder)
        return FolderRun(Path(input_folder), output_folder, tuple(jobs), output_folder / SUMMARY_NAME, False)
    index, count = parse_shard(config.shard)
    share = shard_jobs(jobs, index, count)
    log.info("shard %d/%d: %d of the %d files under %s -> %s", index, count, len(share), len(jobs), input_folder,
             output_folder)
    return FolderRun(Path(input_folder), output_folder, tuple(share), output_folder / shard_summary_name(index, count),
                     True)


def describe_row(row: SummaryRow) -> str:
    """A done or skipped row in a few words: frames, scored frames, total score, seconds."""
    seconds = "" if row.processing_seconds is None else f", {format_duration(row.processing_seconds)}"
    return in_words(row.frames, row.frames_scored, row.score) + seconds


def run_folder(
    config: Config,
    input_folder: Path,
    output_folder: Path,
    load_estimator: Callable[[], PoseEstimator],
    progress: Progress | None = None,
) -> list[SummaryRow]:
    """Process every video under `input_folder` into `output_folder`; write `summary.csv`.

    Args:
        config: The settings for every file (its input and output are replaced per file).
        input_folder: Searched recursively (see `find_videos`).
        output_folder: Receives the mirrored tree and `summary.csv`.
        load_estimator: Builds the pose model; called once, when the first file that is not
            skipped has been probed.
        progress: The progress display (none by default).

    Returns:
        One row per input, in order (the rows of `summary.csv`).

    Raises:
        FolderError: The folders cannot be used together.
        DancingSkeletonsError: No video file was found, or the model cannot be loaded (the summary then
            lists what was done so far).
        KeyboardInterrupt: After removing the current file's partial outputs and writing the
            summary (that file "interrupted", the rest "pending").
    """
    progress = progress or Progress()
    run = plan_folder_run(config, input_folder, output_folder)
    jobs = run.jobs
    rows = [SummaryRow(input=job.relative.as_posix(), status="pending") for job in jobs]
    run.write_summary(rows)
    if not jobs:
        return []
    estimator: PoseEstimator | None = None

    def model() -> PoseEstimator:
        nonlocal estimator
        if estimator is None:
            estimator = load_estimator()
        return estimator

    run_started = time.perf_counter()
    progress.begin(len(jobs))
    try:
        for position, job in enumerate(jobs, start=1):
            started = time.perf_counter()
            progress.start_file(position, job.relative.as_posix())
            try:
                row = skipped_row(job, config, run.output_folder, position, len(jobs))
                if row is None:
                    row = run_job(job, config, model, progress, run.output_folder, position, len(jobs))
            except KeyboardInterrupt:
                rows[position - 1] = SummaryRow(input=job.relative.as_posix(), status="interrupted",
                                                processing_seconds=time.perf_counter() - started, node=this_node())
                run.write_summary(rows)
                run.write_index(rows, build_pages=False)
                log.info("interrupted during %s; the summary is in %s", job.relative.as_posix(), run.summary)
                raise
            rows[position - 1] = row
            run.write_summary(rows)
            progress.end_file(row)
    finally:
        progress.close()
    run.write_index(rows)
    run.log_totals(rows, time.perf_counter() - run_started)
    return rows


def this_node() -> str:
    """The name of the machine this process runs on, for the summary's `node` column."""
    return socket.gethostname()


def skipped_row(job: Job, config: Config, output_folder: Path, position: int, count: int) -> SummaryRow | None:
    """The row of a file done earlier with the same settings (its outputs kept), else None."""
    started = time.perf_counter()
    earlier = complete_report(config.replace(input=job.source, output=job.output))
    if earlier is None:
        return None
    log.info("[%d/%d] skipped %s: done earlier with the same settings", position, count, job.relative.as_posix())
    return job.row("skipped", earlier, time.perf_counter() - started, output_folder)


def run_job(
    job: Job, config: Config, model: Callable[[], PoseEstimator], progress: Progress, output_folder: Path,
    position: int, count: int,
) -> SummaryRow:
    """One file of a folder run, from scratch: done or failed (earlier outputs are removed first).

    Args:
        model: Gives the pose model; called once the file has been probed.
        position: The file's place in the run (from 1), for the log lines.
        count: The files in the run.

    Raises:
        DancingSkeletonsError: From the model's loading, or the teacher's (`--reference`), only.
        KeyboardInterrupt: After removing the file's partial outputs.
    """
    started = time.perf_counter()
    label = job.relative.as_posix()
    job_config = config.replace(input=job.source, output=job.output)
    try:
        remove_outputs(job.output)
        info = probe(job.source)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the night
        return _failed(job, error, started, position, count)
    probe_seconds = time.perf_counter() - started
    estimator = model()
    # Once per process; a teacher that cannot be used stops the run: every file would fail alike.
    reference = None if config.reference is None else prepare_reference(job_config, estimator)
    progress.expect_frames(info.expected_frames)
    try:
        teacher = None if reference is None else reference.setup_for(info, job_config)
        _, report = process_video(job_config, estimator, info, progress.advance, probe_seconds,
                                  index=output_folder / INDEX_NAME, teacher=teacher)
    except KeyboardInterrupt:
        remove_outputs(job.output)
        raise
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the night
        return _failed(job, error, started, position, count)
    seconds = time.perf_counter() - started
    log.info("[%d/%d] done %s: %s, %s", position, count, label, describe(report), format_duration(seconds),
             extra=FINISH)
    return job.row("done", report, seconds, output_folder, node=this_node())


def _failed(job: Job, error: Exception, started: float, position: int, count: int) -> SummaryRow:
    remove_outputs(job.output)
    message = one_line(error)
    log.error("[%d/%d] FAILED %s: %s", position, count, job.relative.as_posix(), message, extra=FINISH)
    log.debug("traceback of the failure of %s", job.relative.as_posix(), exc_info=error)
    return SummaryRow(input=job.relative.as_posix(), status="failed", error=message,
                      processing_seconds=time.perf_counter() - started, node=this_node())

