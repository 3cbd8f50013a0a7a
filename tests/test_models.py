"""The model registry: every model registered once, with its defaults; nothing loaded until asked."""

import subprocess
import sys

import pytest

from config import Config
from workers.models import ModelDefaults, ModelEntry, get_model, model_names, register


def test_the_registered_models_and_their_defaults():
    assert model_names() == ("keypointrcnn", "yolo")
    assert get_model("keypointrcnn").defaults == ModelDefaults(0.9, 2.0, "relu")
    assert get_model("yolo").defaults == ModelDefaults(0.5, 0.5, "logit")
    assert Config(input="a.mp4", output="b.mp4", model="yolo").person_threshold_in_effect == 0.5


def test_an_unknown_model_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="model must be one of keypointrcnn, yolo, got 'pose9000'"):
        get_model("pose9000")
    with pytest.raises(ValueError, match="model must be one of keypointrcnn, yolo"):
        Config(input="a.mp4", output="b.mp4", model="pose9000")


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register(ModelEntry("yolo", ModelDefaults(0.5, 0.5, "logit"), "workers.models.yolo:YoloPoseEstimator", ""))


def test_asking_the_registry_loads_no_model_code():
    code = ("import sys, config, pipeline.cli, workers.models; "
            "config.Config(input='a.mp4', output='b.mp4', model='yolo'); "
            "print(sorted(m for m in ('torch', 'ultralytics', 'workers.models.yolo', 'workers.models.keypoint_rcnn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
