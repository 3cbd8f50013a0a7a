"""The folder module's earlier name: `pipeline.batch` is `pipeline.folder` (the same module
object, so that code importing either name sees, and patches, the same functions). "Batch"
now means only an inference batch."""

import sys

from pipeline import folder

sys.modules[__name__] = folder
