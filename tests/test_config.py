"""The one config object: defaults, validation with the allowed range, the settings in effect per
model, and which settings are part of a report's fingerprint.

No video, no model: every test builds `Config` objects from plain values.
"""

import dataclasses
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from config import Config
from config.settings import RUN_ONLY_SETTINGS, parse_shard
from pipeline.cli import config_from_args, get_args_parser
from reports import schemas
from workers.score import ScoreParams

FIELDS = tuple(field.name for field in dataclasses.fields(Config))


def make(**changes) -> Config:
    return Config(input="in.mp4", output="out.mp4", **changes)


def rejects(message: str, **changes) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make(**changes)


# Defaults.

DEFAULTS = {
    "model": "keypointrcnn", "weights": None, "device": "auto", "runtime": "auto", "batch_size": 4,
    "score": True, "verbose": False, "person_threshold": None, "keypoint_threshold": None,
    "keypoint_weighting": None, "distance_offset": 0.05, "distance_scale": 0.1, "score_max": 10.0,
    "display_window": 10, "end_card_seconds": 5.0, "model_min_size": None, "max_persons": 30, "infer_every": 1,
    "half": False, "queue_size": 8, "queue_megabytes": 64, "encoder": "auto", "decoder": "auto",
    "x264_preset": "veryfast",
    "crf": 20, "poses": None, "save_poses": True, "stall_timeout": 120.0, "ffmpeg_nice": 10, "progress": True,
    "video": True, "log_file": None, "log_interval": 60.0, "persons": "auto", "max_gap_s": 3.0,
    "identity_lookahead_s": 1.0, "lookahead_megabytes": 1024, "mirror": False, "shard": None, "cluster": None,
    "gpus_per_video": None, "cpus_per_video": 2.0, "retries": 1, "jobs": 1, "cpu_threads": None,
    "reference": None, "reference_person": None,
    "offset": None, "reference_inset": True,
}


def test_the_defaults_table_names_every_setting_but_the_paths():
    assert set(DEFAULTS) == set(FIELDS) - {"input", "output"}


@pytest.mark.parametrize("name, default", DEFAULTS.items())
def test_default(name, default):
    value = getattr(make(), name)
    assert value == default and type(value) is type(default)


def test_the_score_constants_default_to_the_original_scores():
    params, config = ScoreParams(), make()
    assert (config.distance_offset, config.distance_scale, config.score_max, config.display_window) == (
        params.distance_offset, params.distance_scale, params.score_max, params.display_window)


def test_the_cli_without_flags_gives_the_config_defaults():
    args = get_args_parser().parse_args(["in.mp4", "out.mp4"])
    assert config_from_args(args) == make()


def test_paths_given_as_text_become_paths():
    config = Config(input="in.mp4", output="out/o.mp4", poses="a.poses.npz", log_file="run.log")
    assert (config.input, config.output, config.poses, config.log_file) == (
        Path("in.mp4"), Path("out/o.mp4"), Path("a.poses.npz"), Path("run.log"))
    assert config == Config(input=Path("in.mp4"), output=Path("out/o.mp4"), poses=Path("a.poses.npz"),
                            log_file=Path("run.log"))


def test_a_config_is_frozen():
    config = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 8


# Ranges: every out-of-range value is refused, naming the setting and the allowed range.

OUT_OF_RANGE = [
    ("batch_size", 0, "batch_size must be in 1..256, got 0"),
    ("batch_size", 257, "batch_size must be in 1..256, got 257"),
    ("display_window", 0, "display_window must be in 1..10000, got 0"),
    ("display_window", 10_001, "display_window must be in 1..10000, got 10001"),
    ("queue_size", 0, "queue_size must be in 1..1024, got 0"),
    ("queue_size", 1025, "queue_size must be in 1..1024, got 1025"),
    ("queue_megabytes", 0, "queue_megabytes must be in 1..65536, got 0"),
    ("queue_megabytes", 65_537, "queue_megabytes must be in 1..65536, got 65537"),
    ("crf", -1, "crf must be in 0..51, got -1"),
    ("crf", 52, "crf must be in 0..51, got 52"),
    ("max_persons", 0, "max_persons must be in 1..1000, got 0"),
    ("max_persons", 1001, "max_persons must be in 1..1000, got 1001"),
    ("infer_every", 0, "infer_every must be in 1..100, got 0"),
    ("infer_every", 101, "infer_every must be in 1..100, got 101"),
    ("ffmpeg_nice", -1, "ffmpeg_nice must be in 0..19, got -1"),
    ("ffmpeg_nice", 20, "ffmpeg_nice must be in 0..19, got 20"),
    ("distance_scale", 0, "distance_scale must be in 1e-09..inf, got 0"),
    ("distance_scale", -0.1, "distance_scale must be in 1e-09..inf, got -0.1"),
    ("score_max", 0.0, "score_max must be in 1e-09..inf, got 0.0"),
    ("end_card_seconds", -0.5, "end_card_seconds must be in 0.0..3600.0, got -0.5"),
    ("end_card_seconds", 3600.5, "end_card_seconds must be in 0.0..3600.0, got 3600.5"),
    ("stall_timeout", 0.05, "stall_timeout must be in 0.1..inf, got 0.05"),
    ("log_interval", -1.0, "log_interval must be in 0.0..inf, got -1.0"),
    ("model_min_size", 31, "model_min_size must be in 32..4096, got 31"),
    ("model_min_size", 4097, "model_min_size must be in 32..4096, got 4097"),
    ("gpus_per_video", -0.5, "gpus_per_video must be in 0.0..1.0, got -0.5"),
    ("gpus_per_video", 1.5, "gpus_per_video must be in 0.0..1.0, got 1.5"),
    ("cpus_per_video", -1.0, "cpus_per_video must be in 0.0..1024.0, got -1.0"),
    ("cpus_per_video", 1025.0, "cpus_per_video must be in 0.0..1024.0, got 1025.0"),
    ("retries", -1, "retries must be in 0..100, got -1"),
    ("retries", 101, "retries must be in 0..100, got 101"),
    ("cpu_threads", 0, "cpu_threads must be in 1..4096, got 0"),
    ("cpu_threads", 2.0, "cpu_threads must be a whole number, got 2.0"),
    ("max_gap_s", 0.005, "max_gap_s must be in 0.01..600.0, got 0.005"),
    ("max_gap_s", 601.0, "max_gap_s must be in 0.01..600.0, got 601.0"),
    ("identity_lookahead_s", 0.0, "identity_lookahead_s must be in 0.01..60.0, got 0.0"),
    ("identity_lookahead_s", 61.0, "identity_lookahead_s must be in 0.01..60.0, got 61.0"),
    ("lookahead_megabytes", 0, "lookahead_megabytes must be in 1..1048576, got 0"),
    ("lookahead_megabytes", 1_048_577, "lookahead_megabytes must be in 1..1048576, got 1048577"),
    ("reference_person", 0, "reference_person must be in 1..inf, got 0"),
    ("offset", 86_401.0, "offset must be in -86400.0..86400.0, got 86401.0"),
]


@pytest.mark.parametrize("name, value, message", OUT_OF_RANGE)
def test_an_out_of_range_value_is_refused_with_the_range(name, value, message):
    teacher = {"reference": "teacher.mp4"} if name in ("reference_person", "offset") else {}
    rejects(message, **{name: value}, **teacher)


@pytest.mark.parametrize("name, value", [("reference_person", 2), ("offset", -12.5)])
def test_the_teachers_settings_need_a_teacher(name, value):
    rejects("reference_person and offset need a reference video (--reference)", **{name: value})
    assert getattr(make(reference="teacher.mp4", **{name: value}), name) == value
    assert make(reference="teacher.mp4").reference == Path("teacher.mp4")


@pytest.mark.parametrize("name, value", [
    ("batch_size", 1), ("batch_size", 256), ("display_window", 1), ("display_window", 10_000),
    ("queue_size", 1), ("queue_size", 1024), ("queue_megabytes", 1), ("queue_megabytes", 65_536),
    ("crf", 0), ("crf", 51), ("max_persons", 1), ("max_persons", 1000), ("infer_every", 1), ("infer_every", 100),
    ("ffmpeg_nice", 0), ("ffmpeg_nice", 19), ("distance_scale", 1e-9), ("score_max", 1e-9),
    ("end_card_seconds", 0.0), ("end_card_seconds", 3600.0), ("stall_timeout", 0.1), ("log_interval", 0.0),
    ("model_min_size", 32), ("model_min_size", 4096), ("gpus_per_video", 0.0), ("gpus_per_video", 1.0),
    ("cpus_per_video", 0.0), ("cpus_per_video", 1024.0), ("retries", 0), ("retries", 100),
    ("jobs", 1), ("jobs", 256), ("cpu_threads", 1), ("cpu_threads", 4096),
    ("max_gap_s", 0.01), ("max_gap_s", 600.0), ("identity_lookahead_s", 0.01), ("identity_lookahead_s", 60.0),
    ("lookahead_megabytes", 1), ("lookahead_megabytes", 1 << 20),
    # No bound at all: the box score's scale is the model's.
    ("person_threshold", -5.0), ("person_threshold", 0.0), ("person_threshold", 1.5),
])
def test_a_value_at_the_edge_of_its_range_is_accepted(name, value):
    assert getattr(make(**{name: value}), name) == value


@pytest.mark.parametrize("name, value, message", [
    ("batch_size", "4", "batch_size must be a number, got '4'"),
    ("batch_size", True, "batch_size must be a number, got True"),
    ("crf", None, "crf must be a number, got None"),
    ("person_threshold", "0.5", "person_threshold must be a number, got '0.5'"),
    ("model_min_size", "640", "model_min_size must be a number, got '640'"),
    ("stall_timeout", False, "stall_timeout must be a number, got False"),
])
def test_a_number_setting_refuses_text_bools_and_none(name, value, message):
    rejects(message, **{name: value})


# Settings with a fixed set of values.

@pytest.mark.parametrize("name, value, message", [
    ("model", "pose9000", "model must be one of keypointrcnn, yolo, got 'pose9000'"),
    ("device", "gpu", "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("device", "CPU", "device must be auto, cpu, cuda or cuda:N, got 'CPU'"),
    ("device", "cuda:", "device must be auto, cpu, cuda or cuda:N, got 'cuda:'"),
    ("device", "cuda:x", "device must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    ("device", "cuda:0:1", "device must be auto, cpu, cuda or cuda:N, got 'cuda:0:1'"),
    ("device", "mps", "device must be auto, cpu, cuda or cuda:N, got 'mps'"),
    ("runtime", "tensorrt", "runtime must be one of auto, torch, openvino, onnxruntime, got 'tensorrt'"),
    ("encoder", "x265", "encoder must be one of auto, libx264, h264_nvenc, nvenc, got 'x265'"),
    ("decoder", "gpu", "decoder must be one of auto, ffmpeg, nvdec, got 'gpu'"),
    ("x264_preset", "placebo", "x264_preset must be one of ultrafast, superfast, veryfast, faster, fast, "
                               "medium, slow, slower, veryslow, got 'placebo'"),
    ("cluster", "slurm", "cluster must be one of ray, got 'slurm'"),
    ("keypoint_weighting", "sigmoid", "keypoint_weighting must be relu or logit, got 'sigmoid'"),
    ("mirror", "yes", "mirror must be true or false, got 'yes'"),
    ("mirror", 1, "mirror must be true or false, got 1"),
    ("shard", "0/4", "shard must be I/N with 1 <= I <= N (e.g. 2/8), got '0/4'"),
])
def test_a_value_outside_the_choices_is_refused_with_the_choices(name, value, message):
    rejects(message, **{name: value})


@pytest.mark.parametrize("name, value", [
    ("device", "auto"), ("device", "cpu"), ("device", "cuda"), ("device", "cuda:0"), ("device", "cuda:15"),
    ("encoder", "libx264"), ("encoder", "h264_nvenc"), ("encoder", "nvenc"), ("decoder", "nvdec"),
    ("decoder", "ffmpeg"), ("x264_preset", "ultrafast"), ("x264_preset", "veryslow"),
    ("cluster", "ray"), ("keypoint_weighting", "relu"), ("keypoint_weighting", "logit"), ("mirror", True),
    ("runtime", "torch"), ("shard", "3/4"),
])
def test_a_value_among_the_choices_is_accepted(name, value):
    assert getattr(make(**{name: value}), name) == value


# Settings that must agree with each other.

@pytest.mark.parametrize("changes, message", [
    ({"cluster": "ray", "device": "cuda:1"},
     "device cuda:1 pins one GPU, but on a cluster Ray assigns each video its GPU; use --device cuda or auto"),
    ({"device": "cuda", "gpus_per_video": 0}, "device cuda needs a GPU, but gpus_per_video is 0"),
    ({"device": "cuda:0", "gpus_per_video": 0.0}, "device cuda:0 needs a GPU, but gpus_per_video is 0"),
    ({"model": "yolo", "runtime": "openvino", "gpus_per_video": 0.5},
     "runtime openvino runs the model on the CPU, but gpus_per_video is 0.5; use 0"),
    ({"model": "keypointrcnn", "runtime": "openvino"},
     "runtime openvino is not available for --model keypointrcnn (its runtimes: torch)"),
    ({"model": "yolo", "runtime": "onnxruntime", "device": "cuda:0"},
     "runtime onnxruntime runs the model on the CPU, but device cuda:0 was asked for; use --device cpu or auto "
     "(on CUDA the runtime is torch)"),
])
def test_settings_that_contradict_each_other_are_refused(changes, message):
    if "reference" not in changes and ("reference_person" in changes or "offset" in changes):
        pytest.fail("cases of the teacher's settings give a reference")
    rejects(message, **changes)


@pytest.mark.parametrize("changes", [
    {"cluster": "ray", "device": "cuda"},
    {"cluster": "ray", "device": "auto", "gpus_per_video": 0.5},
    {"device": "cpu", "gpus_per_video": 0},
    {"device": "cuda:1"},  # pinning one GPU is fine when the run is here
    {"model": "yolo", "runtime": "openvino"},  # device auto: the exported runtime implies the CPU
    {"model": "yolo", "runtime": "onnxruntime", "device": "cpu", "gpus_per_video": 0},
    {"model": "keypointrcnn", "runtime": "torch", "device": "cuda"},
])
def test_settings_that_agree_are_accepted(changes):
    config = make(**changes)
    assert {name: getattr(config, name) for name in changes} == changes


# replace

def test_replace_changes_only_the_fields_named_and_leaves_the_original_alone():
    base = make()
    changed = base.replace(batch_size=16, mirror=True)
    assert (changed.batch_size, changed.mirror) == (16, True)
    assert (base.batch_size, base.mirror) == (4, False)
    assert changed == dataclasses.replace(base, batch_size=16, mirror=True)
    assert {name for name in FIELDS if getattr(changed, name) != getattr(base, name)} == {"batch_size", "mirror"}


@pytest.mark.parametrize("name, value, message", OUT_OF_RANGE[::4] + [
    ("device", "gpu", "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("shard", "5/4", "shard must be I/N with 1 <= I <= N (e.g. 2/8), got '5/4'"),
])
def test_replace_validates_again(name, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make().replace(**{name: value})


def test_replace_normalises_again():
    config = make().replace(persons="3", poses="a.poses.npz", output="x/b.mp4")
    assert (config.persons, config.poses, config.output) == (3, Path("a.poses.npz"), Path("x/b.mp4"))


def test_replace_refuses_a_setting_that_does_not_exist():
    with pytest.raises(TypeError, match="batchsize"):
        make().replace(batchsize=8)


# The thresholds in effect: the model's unless set.

@pytest.mark.parametrize("model, person, keypoint, weighting", [
    ("keypointrcnn", 0.9, 2.0, "relu"),
    ("yolo", 0.5, 0.5, "logit"),
])
def test_the_thresholds_in_effect_are_the_models_by_default(model, person, keypoint, weighting):
    config = make(model=model)
    assert (config.person_threshold_in_effect, config.keypoint_min_score, config.weighting) == (
        person, keypoint, weighting)
    resolved = config.as_dict()
    assert (resolved["person_threshold"], resolved["keypoint_threshold"], resolved["keypoint_weighting"]) == (
        person, keypoint, weighting)
    assert config.detection_settings()["person_threshold"] == person


@pytest.mark.parametrize("model", ["keypointrcnn", "yolo"])
@pytest.mark.parametrize("person, keypoint, weighting", [(0.3, 1.0, "logit"), (0.0, 0.0, "relu")])
def test_a_threshold_that_is_set_wins_over_the_models_even_zero(model, person, keypoint, weighting):
    config = make(model=model, person_threshold=person, keypoint_threshold=keypoint, keypoint_weighting=weighting)
    assert (config.person_threshold_in_effect, config.keypoint_min_score, config.weighting) == (
        person, keypoint, weighting)
    resolved = config.as_dict()
    assert (resolved["person_threshold"], resolved["keypoint_threshold"], resolved["keypoint_weighting"]) == (
        person, keypoint, weighting)


def test_model_defaults_follow_the_model():
    assert make().model_defaults.person_threshold == 0.9
    assert make().replace(model="yolo").model_defaults.person_threshold == 0.5


# The fingerprinted settings: everything but RUN_ONLY_SETTINGS.

#: A valid value other than the default for every setting (each alone on the default config).
OTHER_VALUE = {
    "input": "b.mov", "output": "x/b.mp4", "model": "yolo", "weights": "w.pt", "device": "cpu", "runtime": "torch",
    "batch_size": 16, "score": False, "verbose": True, "person_threshold": 0.5, "keypoint_threshold": 1.0,
    "keypoint_weighting": "logit", "distance_offset": 0.1, "distance_scale": 0.2, "score_max": 100.0,
    "display_window": 5, "end_card_seconds": 0.0, "model_min_size": 640, "max_persons": 5, "infer_every": 2,
    "half": True, "queue_size": 2, "queue_megabytes": 16, "encoder": "libx264", "x264_preset": "slow", "crf": 30,
    "poses": "a.poses.npz", "save_poses": False, "stall_timeout": 10.0, "ffmpeg_nice": 0, "progress": False,
    "video": False, "log_file": "run.log", "log_interval": 5.0, "persons": "all", "max_gap_s": 1.0,
    "identity_lookahead_s": 0.5, "lookahead_megabytes": 256, "mirror": True, "shard": "1/2", "cluster": "ray",
    "gpus_per_video": 0.5, "cpus_per_video": 4.0, "retries": 0, "jobs": 3, "cpu_threads": 2, "decoder": "ffmpeg",
    "reference": "teacher.mp4", "reference_person": 2,
    "offset": 1.5, "reference_inset": False,
}
#: Settings that need another one to be set (on the default config they are refused).
NEEDS = {"reference_person": {"reference": "teacher.mp4"}, "offset": {"reference": "teacher.mp4"}}
RESULT_SETTINGS = sorted(set(FIELDS) - RUN_ONLY_SETTINGS)


def test_every_setting_is_decided_result_changing_or_run_only():
    """A new setting fails here until it has a value in OTHER_VALUE: then the two tests below
    say whether it changes the fingerprint (the default) or is listed in RUN_ONLY_SETTINGS."""
    assert set(OTHER_VALUE) == set(FIELDS)
    assert RUN_ONLY_SETTINGS <= set(FIELDS), RUN_ONLY_SETTINGS - set(FIELDS)


def test_the_run_only_settings_are_the_paths_speed_display_and_which_outputs():
    assert RUN_ONLY_SETTINGS == {
        "input", "output", "poses", "video", "save_poses", "device", "runtime", "batch_size", "queue_size",
        "queue_megabytes", "stall_timeout", "ffmpeg_nice", "progress", "verbose", "log_file", "log_interval",
        "shard", "cluster", "gpus_per_video", "cpus_per_video", "retries", "jobs", "cpu_threads", "decoder",
    }


def test_result_settings_are_as_dict_less_exactly_the_run_only_settings():
    config = make()
    assert set(config.result_settings()) == set(RESULT_SETTINGS)
    assert set(config.as_dict()) == set(FIELDS)
    assert config.result_settings() == {name: config.as_dict()[name] for name in RESULT_SETTINGS}


@pytest.mark.parametrize("name", sorted(RUN_ONLY_SETTINGS))
def test_a_run_only_setting_leaves_the_result_settings_alone(name):
    base = make()
    changed = base.replace(**{name: OTHER_VALUE[name]})
    assert changed.as_dict()[name] != base.as_dict()[name]
    assert changed.result_settings() == base.result_settings()


@pytest.mark.parametrize("name", RESULT_SETTINGS)
def test_a_result_setting_changes_the_result_settings(name):
    base = make(**NEEDS.get(name, {}))
    changed = base.replace(**{name: OTHER_VALUE[name]})
    assert changed.result_settings()[name] != base.result_settings()[name]


def test_a_threshold_set_to_the_models_default_is_the_same_result():
    base = make()
    explicit = base.replace(person_threshold=0.9, keypoint_threshold=2.0, keypoint_weighting="relu")
    assert explicit.result_settings() == base.result_settings()
    assert explicit != base


def test_another_model_changes_the_thresholds_in_the_result_settings():
    settings = make(model="yolo").result_settings()
    assert (settings["model"], settings["person_threshold"], settings["keypoint_threshold"],
            settings["keypoint_weighting"]) == ("yolo", 0.5, 0.5, "logit")


def test_as_dict_is_json_and_follows_the_reports_settings_schema():
    validator = Draft202012Validator(schemas.load("report")["properties"]["settings"])
    everything_set = make(**{name: value for name, value in OTHER_VALUE.items()
                             if name not in ("input", "output", "jobs")})  # jobs or a cluster, not both
    for config in (make(), everything_set, make(persons="2"), make(jobs="auto")):
        values = config.as_dict()
        assert json.loads(json.dumps(values)) == values
        validator.validate(values)
    assert everything_set.as_dict()["poses"] == "a.poses.npz"
    assert everything_set.as_dict()["log_file"] == "run.log"
    assert make().as_dict()["input"] == "in.mp4"


# What the model detects (recorded in the pose cache).

def test_detection_settings_of_the_default_config():
    assert make().detection_settings() == {
        "weights": None, "model_min_size": None, "person_threshold": 0.9, "max_persons": 30, "infer_every": 1,
        "half": False,
    }


@pytest.mark.parametrize("name", ["weights", "model_min_size", "person_threshold", "max_persons", "infer_every",
                                  "half"])
def test_a_detection_setting_changes_the_detection_settings_and_the_result(name):
    base, changed = make(), make(**{name: OTHER_VALUE[name]})
    assert changed.detection_settings() != base.detection_settings()
    assert changed.result_settings() != base.result_settings()


@pytest.mark.parametrize("name", ["keypoint_threshold", "keypoint_weighting", "distance_scale", "display_window",
                                  "crf", "persons", "mirror", "max_gap_s", "score", "batch_size", "device"])
def test_scoring_drawing_and_run_settings_leave_the_detection_settings_alone(name):
    assert make(**{name: OTHER_VALUE[name]}).detection_settings() == make().detection_settings()


# Memory: queue slots and the look-ahead.

@pytest.mark.parametrize("queue_size, megabytes, width, height, slots", [
    (8, 64, 1280, 720, 8),    # 2.6 MB a frame: the queue size
    (16, 64, 640, 360, 16),
    (8, 64, 3840, 2160, 2),   # 23.7 MB a frame: 64 MB holds 2
    (8, 20, 1920, 1080, 3),   # 5.9 MB a frame: 20 MB holds 3
    (8, 64, 7680, 4320, 2),   # 94.9 MB a frame: more than the budget, still 2
    (1024, 65536, 96, 64, 1024),
])
def test_queue_slots_shrink_for_large_frames_to_no_fewer_than_2(queue_size, megabytes, width, height, slots):
    config = make(queue_size=queue_size, queue_megabytes=megabytes)
    assert config.queue_slots(width, height) == slots


@pytest.mark.parametrize("seconds, megabytes, width, height, fps, frames", [
    (1.0, 1024, 1280, 720, 30, 30),
    (1.0, 1024, 3840, 2160, 60, 43),   # the docstring's 4K at 60 fps: about 0.7 s of the 1 s
    (0.5, 1024, 640, 360, 30, 15),
    (1.0, 100, 1920, 1080, 30, 16),
    (0.01, 1024, 640, 360, 30, 2),     # never fewer than 2
    (60.0, 1, 3840, 2160, 60, 2),
])
def test_lookahead_frames_is_the_look_ahead_in_frames_capped_by_memory(seconds, megabytes, width, height, fps,
                                                                      frames):
    config = make(identity_lookahead_s=seconds, lookahead_megabytes=megabytes)
    assert config.lookahead_frames(width, height, fps) == frames


# parse_shard

@pytest.mark.parametrize("text, expected", [
    ("1/1", (1, 1)), ("2/8", (2, 8)), ("8/8", (8, 8)), ("1/100", (1, 100)), ("3 / 4", (3, 4)), (" 3/4 ", (3, 4)),
    ("007/10", (7, 10)),
])
def test_parse_shard_reads_i_of_n(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "2/0", "0/0", "2", "2/", "/8", "a/b", "1/2/3", "-1/4", "1.5/4", "",
                                  "2 8", "2:8", "I/N"])
def test_parse_shard_refuses_anything_else_naming_the_form(text):
    message = f"shard must be I/N with 1 <= I <= N (e.g. 2/8), got {text!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_shard(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        make(shard=text)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("stall_timeout", float("nan"), "stall_timeout must be a number, got nan"),
    ("crf", float("nan"), "crf must be a number, got nan"),
    ("distance_offset", float("nan"), "distance_offset must be a number, got nan"),
    ("batch_size", 2.5, "batch_size must be a whole number, got 2.5"),
    ("queue_size", 1.5, "queue_size must be a whole number, got 1.5"),
    ("model_min_size", 640.0, "model_min_size must be a whole number, got 640.0"),
    ("keypoint_threshold", "2", "keypoint_threshold must be a number, got '2'"),
])
def test_not_a_number_or_not_a_whole_number_is_refused(field, value, message):
    with pytest.raises(ValueError) as refused:
        Config(input="in.mp4", output="out.mp4", **{field: value})
    assert str(refused.value) == message
