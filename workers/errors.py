"""The exceptions DancingSkeletons raises on purpose, with one base class.

The CLI prints a `DancingSkeletonsError` as one line and exits 1 (2 for a `UsageError`); anything else is
a bug and shows a traceback. Every exception the tool raises on purpose is defined here.
"""


class DancingSkeletonsError(Exception):
    """Base class: a problem the user can act on, with a message that says what to do."""


#: The base class's earlier name, kept for code that catches it (it said "sync", for the tool,
#: not for the synchrony score of `workers.sync`).
SyncError = DancingSkeletonsError


class UsageError(DancingSkeletonsError, ValueError):
    """The command line asks for something that cannot be done as asked; the CLI exits 2."""


class FolderError(UsageError):
    """The input and output folders cannot be used together."""


class ReferenceVideoError(UsageError):
    """The teacher's video (`--reference`) cannot be used: not a video, nobody in it, no such person."""


class PoseCacheError(DancingSkeletonsError, ValueError):
    """A pose cache that is unreadable or does not match the video or the settings."""


class VideoOpenError(DancingSkeletonsError, OSError):
    """The input cannot be opened or has no decodable video stream."""


class DecodeError(DancingSkeletonsError, RuntimeError):
    """Decoding failed part-way through the video."""


class AudioError(DancingSkeletonsError, OSError):
    """A file's audio cannot be opened or decoded."""


class EncodeError(DancingSkeletonsError, RuntimeError):
    """The encoder failed or produced an output that does not check out."""


class ModelError(DancingSkeletonsError, RuntimeError):
    """The pose model or its weights cannot be loaded."""


class DeviceError(DancingSkeletonsError, RuntimeError):
    """The requested compute device is not available."""


class StageError(DancingSkeletonsError, RuntimeError):
    """A pipeline stage stopped (a stalled subprocess, a cancelled run)."""


class SpoolError(DancingSkeletonsError, OSError):
    """The run's temporary per-frame records cannot be written (e.g. the disk is full)."""


class Cancelled(Exception):
    """Raised inside a stage when the run is being stopped because of another stage."""


def one_line(error: BaseException) -> str:
    """An error as one line: the tool's own errors by their message, others with their type."""
    text = " ".join(str(error).split())
    if isinstance(error, DancingSkeletonsError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
