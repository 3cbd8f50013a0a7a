"""The model's own thread (`ModelThread`) and what a failed batch leaves behind (`AdaptiveBatches`)."""

from __future__ import annotations

import threading
import weakref

import numpy as np
import pytest

from workers.data import Detections
from workers.errors import ModelError
from workers.infer import AdaptiveBatches, ModelThread, PoseModel


class OutOfMemoryError(RuntimeError):
    """Named like torch's, which `is_out_of_memory` recognises by name."""


class Activations:
    """Stands for the tensors a batch makes on its way through the model."""


class RecordingModel(PoseModel):
    """Records which thread runs each batch; batches larger than `fits` run out of memory.

    Each batch makes an `Activations` held by its frame, as a model's intermediate tensors
    are; `alive_at_start` counts, at the start of each batch, those of earlier batches that
    are still alive.
    """

    name = "recording"
    device = "cpu"

    def __init__(self, fits: int = 1000) -> None:
        self.fits = fits
        self.threads: set[int] = set()
        self.made: list[weakref.ref] = []
        self.alive_at_start: list[int] = []
        self.model = "the wrapped model"

    def predict(self, images):
        self.alive_at_start.append(sum(ref() is not None for ref in self.made))
        self.threads.add(threading.get_ident())
        activations = Activations()
        self.made.append(weakref.ref(activations))
        if len(images) > self.fits:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [Detections.empty() for _ in images]


def frames(count: int) -> list[np.ndarray]:
    return [np.zeros((4, 4, 3), np.uint8) for _ in range(count)]


def test_every_batch_runs_on_the_models_own_thread_whoever_asks():
    model = RecordingModel()
    wrapped = ModelThread(model)
    callers = [threading.Thread(target=wrapped.predict, args=(frames(2),)) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(wrapped.predict(frames(3))) == 3
    assert len(model.threads) == 1
    assert model.threads.isdisjoint({threading.get_ident(), *(caller.ident for caller in callers)})


def test_the_models_errors_reach_the_caller_and_its_attributes_show_through():
    wrapped = ModelThread(RecordingModel(fits=1))
    with pytest.raises(OutOfMemoryError):
        wrapped.predict(frames(2))
    assert (wrapped.name, wrapped.device, wrapped.model) == ("recording", "cpu", "the wrapped model")


@pytest.mark.parametrize("through_thread", [False, True])
def test_a_failed_batch_frees_its_memory_before_the_smaller_one(through_thread):
    """Seen on an H200: failed batches' tensors, held by the error, left batch 1 no room."""
    model = RecordingModel(fits=2)
    batches = AdaptiveBatches(ModelThread(model) if through_thread else model, batch_size=8)
    found = batches.predict(frames(10))
    assert len(found) == 10 and batches.batch_size == 2 and batches.halvings == 2
    assert model.alive_at_start == [0] * len(model.alive_at_start)


def test_one_frame_that_does_not_fit_fails_with_one_line():
    batches = AdaptiveBatches(ModelThread(RecordingModel(fits=0)), batch_size=2)
    with pytest.raises(ModelError, match=r"out of cpu memory even for one frame \(CUDA out of memory\."):
        batches.predict(frames(2))
