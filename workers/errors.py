"""The exceptions DancingSkeletons raises on purpose, with one base class.

The CLI prints a `SyncError` as one line and exits 1 (2 for a `UsageError`); anything else is
a bug and shows a traceback. Every exception the tool raises on purpose is defined here.
"""


class SyncError(Exception):
    """Base class: a problem the user can act on, with a message that says what to do."""


class UsageError(SyncError, ValueError):
    """The command line asks for something that cannot be done as asked; the CLI exits 2."""


class FolderError(UsageError):
    """The input and output folders cannot be used together."""


class PoseCacheError(SyncError, ValueError):
    """A pose cache that is unreadable or does not match the video or the settings."""


class VideoOpenError(SyncError, OSError):
    """The input cannot be opened or has no decodable video stream."""


class DecodeError(SyncError, RuntimeError):
    """Decoding failed part-way through the video."""


class EncodeError(SyncError, RuntimeError):
    """The encoder failed or produced an output that does not check out."""


class ModelError(SyncError, RuntimeError):
    """The pose model or its weights cannot be loaded."""


class DeviceError(SyncError, RuntimeError):
    """The requested compute device is not available."""


class StageError(SyncError, RuntimeError):
    """A pipeline stage stopped (a stalled subprocess, a cancelled run)."""


class SpoolError(SyncError, OSError):
    """The run's temporary per-frame records cannot be written (e.g. the disk is full)."""


class Cancelled(Exception):
    """Raised inside a stage when the run is being stopped because of another stage."""
