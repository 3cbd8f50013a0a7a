"""The CPU runtimes: which one runs, the export cache, fallbacks, and OpenVINO against torch.

The export cache's logic is tested with a stand-in exporter; everything else with the real
Ultralytics export of ../shared's YOLO11n-pose and the real OpenVINO and ONNX Runtime (the tests
that need them skip cleanly where they or ../shared are absent).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from config import Config
from config.settings import RUN_ONLY_SETTINGS
from pipeline.cli import get_args_parser
from tests.helpers import SHARED, make_video, need_shared
from workers.errors import ModelError
from workers.export_cache import MANIFEST, ExportKey, cached_export, entry_problem, read_meta
from workers.models import get_model
from workers.runtimes import Runtime, choose_runtime

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = SHARED / "models" / "yolo11n-pose.pt"
YOLO_RUNTIMES = get_model("yolo").runtimes


def _installed(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


needs_openvino = pytest.mark.skipif(not _installed("ultralytics", "openvino"),
                                    reason="ultralytics or openvino is not installed (make setup-cpu-fast)")
needs_onnxruntime = pytest.mark.skipif(not _installed("ultralytics", "onnxruntime", "onnx"),
                                       reason="ultralytics, onnxruntime or onnx is not installed (make setup-cpu-fast)")


def yolo_config(runtime: str, **changes: object) -> Config:
    need_shared("models", "yolo11n-pose.pt")
    return Config(input="in.mp4", output="out.mp4", model="yolo", weights=str(WEIGHTS), runtime=runtime,
                  batch_size=2, **changes)


# Which runtime runs.

def test_auto_picks_openvino_on_the_cpu_where_it_is_installed_else_torch(monkeypatch):
    monkeypatch.setattr(Runtime, "installed", lambda self: True)
    assert choose_runtime("auto", YOLO_RUNTIMES, "cpu").name == "openvino"
    assert choose_runtime("auto", YOLO_RUNTIMES, "cuda:0").name == "torch"
    assert choose_runtime("auto", get_model("keypointrcnn").runtimes, "cpu").name == "torch"
    assert choose_runtime("onnxruntime", YOLO_RUNTIMES, "cpu").name == "onnxruntime"
    monkeypatch.setattr(Runtime, "installed", lambda self: self.name == "torch")
    assert choose_runtime("auto", YOLO_RUNTIMES, "cpu").name == "torch"
    with pytest.raises(ModelError, match=r"--runtime openvino was asked for, but .*make setup-cpu-fast"):
        choose_runtime("openvino", YOLO_RUNTIMES, "cpu")


@pytest.mark.parametrize(("changes", "message"), [
    ({"model": "keypointrcnn", "runtime": "openvino"},
     "runtime openvino is not available for --model keypointrcnn"),
    ({"model": "yolo", "runtime": "onnxruntime", "device": "cuda"},
     "runtime onnxruntime runs the model on the CPU, but device cuda was asked for"),
    ({"model": "yolo", "runtime": "tensorrt"}, "runtime must be one of auto, torch, openvino, onnxruntime"),
    ({"model": "yolo", "runtime": "openvino", "cluster": "ray", "gpus_per_video": 0.5},
     "runtime openvino runs the model on the CPU, but gpus_per_video is 0.5; use 0"),
])
def test_config_refuses_a_runtime_the_model_or_device_cannot_use(changes, message):
    with pytest.raises(ValueError, match=message):
        Config(input="in.mp4", output="out.mp4", **changes)


def test_the_runtime_is_a_flag_and_a_run_only_setting():
    args = get_args_parser().parse_args(["in.mp4", "out.mp4", "--model", "yolo", "--runtime", "onnxruntime"])
    assert args.runtime == "onnxruntime"
    assert get_args_parser().parse_args(["in.mp4", "out.mp4"]).runtime == "auto"
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["in.mp4", "out.mp4", "--runtime", "tensorrt"])
    # Like the device: a report made by another runtime is not out of date.
    assert "runtime" in RUN_ONLY_SETTINGS


# The export cache, with a stand-in exporter.

KEY = ExportKey(runtime="openvino", weights_sha256="ab" * 32, settings={"format": "openvino", "dynamic": True},
                versions={"openvino": "2026.4.1", "ultralytics": "8.4.190"})


class StandInExporter:
    """Writes a two-file "export" and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, folder: Path) -> dict:
        self.calls += 1
        (folder / "model").mkdir()
        (folder / "model" / "model.xml").write_text("<net/>")
        (folder / "model" / "model.bin").write_bytes(bytes(range(256)) * 4)
        return {"file": "model", "stride": 32}


def test_an_export_is_made_once_then_reused(tmp_path):
    export = StandInExporter()
    first = cached_export(KEY, export, tmp_path)
    second = cached_export(KEY, export, tmp_path)
    assert first == second and export.calls == 1
    assert read_meta(first) == {"file": "model", "stride": 32}
    assert entry_problem(first, KEY) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no temporary folder left


def _flip_a_byte(entry: Path) -> None:
    path = entry / "model" / "model.bin"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))


def _other_key(entry: Path) -> None:
    manifest = json.loads((entry / MANIFEST).read_text())
    manifest["key"]["versions"]["openvino"] = "2025.0.0"
    (entry / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(("damage", "problem"), [
    (_flip_a_byte, "model/model.bin does not match its checksum"),
    (lambda entry: (entry / "model" / "model.bin").write_bytes(b"short"), "model/model.bin has 5 bytes, not 1024"),
    (lambda entry: (entry / "model" / "model.xml").unlink(), "model/model.xml is missing"),
    (lambda entry: (entry / MANIFEST).unlink(), "no manifest"),  # an export killed before it finished
    (lambda entry: (entry / MANIFEST).write_text("{not json"), "unreadable manifest"),
    (_other_key, "made for another key"),
    (lambda entry: (entry / "model" / "stray.txt").write_text("x"), "model/stray.txt is not in the manifest"),
])
def test_a_damaged_or_stale_entry_is_rebuilt_never_used(tmp_path, caplog, damage, problem):
    export = StandInExporter()
    entry = cached_export(KEY, export, tmp_path)
    damage(entry)
    assert problem in entry_problem(entry, KEY)
    with caplog.at_level(logging.WARNING, logger="dancingskeletons"):
        again = cached_export(KEY, export, tmp_path)
    assert export.calls == 2 and again == entry and entry_problem(entry, KEY) is None
    assert [record.getMessage() for record in caplog.records] == [
        f"{entry}: cached export not used ({entry_problem_text(problem)}); exporting again"]


def entry_problem_text(problem: str) -> str:
    """The unreadable-manifest problem carries the parser's message; the others are whole."""
    return problem if problem != "unreadable manifest" else (
        "unreadable manifest (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))")


def test_another_version_or_setting_is_another_entry():
    newer = ExportKey(KEY.runtime, KEY.weights_sha256, KEY.settings, {**KEY.versions, "openvino": "2026.5.0"})
    static = ExportKey(KEY.runtime, KEY.weights_sha256, {**KEY.settings, "dynamic": False}, KEY.versions)
    other_weights = ExportKey(KEY.runtime, "cd" * 32, KEY.settings, KEY.versions)
    names = {key.folder_name() for key in (KEY, newer, static, other_weights)}
    assert len(names) == 4 and all(name.startswith("openvino-") for name in names)


def test_an_upgrade_replaces_the_entry_of_the_same_weights_and_keeps_the_others(tmp_path):
    export = StandInExporter()
    old = cached_export(KEY, export, tmp_path)
    other_weights = cached_export(ExportKey(KEY.runtime, "cd" * 32, KEY.settings, KEY.versions), export, tmp_path)
    other_runtime = cached_export(ExportKey("onnxruntime", KEY.weights_sha256, KEY.settings, KEY.versions), export,
                                  tmp_path)
    (tmp_path / "openvino-not-an-entry").mkdir()
    newer = cached_export(ExportKey(KEY.runtime, KEY.weights_sha256, KEY.settings,
                                    {**KEY.versions, "openvino": "2026.5.0"}), export, tmp_path)
    assert not old.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [other_weights.name, other_runtime.name, newer.name, "openvino-not-an-entry"])


def test_a_failed_export_leaves_nothing_behind(tmp_path):
    def fails(folder: Path) -> dict:
        (folder / "half-written.xml").write_text("<ne")
        raise RuntimeError("the exporter failed")

    with pytest.raises(RuntimeError, match="the exporter failed"):
        cached_export(KEY, fails, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_export_another_process_finished_first_is_used(tmp_path):
    theirs = StandInExporter()

    def slow_export(folder: Path) -> dict:
        cached_export(KEY, theirs, tmp_path)  # the other process, finishing while this one exports
        (folder / "mine.xml").write_text("<net/>")
        return {"file": "mine.xml"}

    entry = cached_export(KEY, slow_export, tmp_path)
    assert theirs.calls == 1 and read_meta(entry) == {"file": "model", "stride": 32}
    assert sorted(p.name for p in tmp_path.iterdir()) == [entry.name]


def test_the_key_follows_the_weights_file_bytes(tmp_path):
    from workers.models.yolo import export_key
    from workers.runtimes import get_runtime

    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    first.write_bytes(b"weights")
    second.write_bytes(b"weights!")
    openvino = get_runtime("openvino")
    assert export_key(first, openvino) == export_key(first, openvino)
    assert export_key(first, openvino).folder_name() != export_key(second, openvino).folder_name()
    assert export_key(first, openvino).folder_name() != export_key(first, get_runtime("onnxruntime")).folder_name()


# The real exports.

@needs_openvino
def test_openvino_is_exported_once_then_loaded_from_the_cache_in_f32(monkeypatch, tmp_path):
    from workers.models import yolo

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache
    exports = []
    export_checkpoint = yolo.export_checkpoint
    monkeypatch.setattr(yolo, "export_checkpoint", lambda *args: exports.append(args) or export_checkpoint(*args))
    first = get_model("yolo").load(yolo_config("auto", device="cpu"))
    second = get_model("yolo").load(yolo_config("openvino"))
    assert (first.runtime, first.device, second.runtime) == ("openvino", "cpu", "openvino")
    assert len(exports) == 1
    assert len(list((tmp_path / "torch" / "dancingskeletons" / "exports").glob("openvino-*/manifest.json"))) == 1
    compiled = second.model.predictor.model.backend.ov_compiled_model
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"



@needs_openvino
@needs_onnxruntime
def test_a_jobs_share_of_the_cores_reaches_openvino_and_onnx_runtime():
    """`--jobs` splits the cores: each runtime gets the worker's threads, and answers the same."""
    import numpy as np

    frame = np.zeros((96, 128, 3), np.uint8)
    frame[20:80, 50:70] = 200
    for runtime in ("openvino", "onnxruntime"):
        whole = get_model("yolo").load(yolo_config(runtime))
        share = get_model("yolo").load(yolo_config(runtime, cpu_threads=1))
        backend = share.model.predictor.model.backend
        if runtime == "openvino":
            assert backend.ov_compiled_model.get_property("INFERENCE_NUM_THREADS") == 1
        else:
            assert backend.session.get_session_options().intra_op_num_threads == 1
        ours, theirs = share.predict([frame])[0], whole.predict([frame])[0]
        np.testing.assert_allclose(ours.keypoints, theirs.keypoints, atol=1e-3)

FAKE_TELEMETRY = '''
from pathlib import Path
folder = Path.home() / "intel"
folder.mkdir(exist_ok=True)
(folder / "openvino_telemetry_was_imported").touch()
'''
#: Where ONNX Runtime's Linux telemetry keeps its device id and event cache.
ORT_TELEMETRY_FOLDER = Path(".cache") / "Microsoft" / "DeveloperTools" / ".onnxruntime"
#: Settings that switch telemetry off or that its CI detection reads: left out of the subprocesses.
TELEMETRY_SETTINGS = ("ORT_DISABLE_TELEMETRY", "CI", "TF_BUILD", "JENKINS_URL", "GITHUB_ACTIONS", "BUILD_BUILDID")


def _run_at_home(tmp_path: Path, home: str, code: str, fake_site: Path | None = None) -> Path:
    """Run Python code in a subprocess whose HOME is a new folder; return that folder."""
    folder = tmp_path / home
    folder.mkdir()
    env = {name: value for name, value in os.environ.items() if name not in TELEMETRY_SETTINGS}
    paths = [str(fake_site)] if fake_site else []
    env.update(HOME=str(folder), TORCH_HOME=str(tmp_path / "torch"), PYTHONPATH=os.pathsep.join([*paths, str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return folder


def _load(runtime: str) -> str:
    """Code that loads the yolo model on `runtime` (exporting it) and runs it once."""
    return f"""
        from config import Config
        from workers.models import get_model
        estimator = get_model("yolo").load(Config(input="in.mp4", output="out.mp4", model="yolo",
                                                  weights={str(WEIGHTS)!r}, runtime={runtime!r}))
        assert estimator.runtime == {runtime!r}
    """


@needs_openvino
def test_the_openvino_export_writes_nothing_under_home_intel(tmp_path):
    """With a stand-in `openvino_telemetry` on the path that writes ~/intel when imported: the
    control shows it would, the export shows it is never imported."""
    need_shared("models", "yolo11n-pose.pt")
    fake = tmp_path / "site"
    (fake / "openvino_telemetry").mkdir(parents=True)
    (fake / "openvino_telemetry" / "__init__.py").write_text(FAKE_TELEMETRY)
    control = _run_at_home(tmp_path, "control", "import openvino_telemetry", fake)
    assert (control / "intel").is_dir()
    home = _run_at_home(tmp_path, "home", _load("openvino") + """
        import sys
        assert sys.modules["openvino_telemetry"] is None
    """, fake)
    assert not (home / "intel").exists()
    assert list((tmp_path / "torch" / "dancingskeletons" / "exports").glob("openvino-*/manifest.json"))


@needs_onnxruntime
def test_onnx_runtime_writes_no_device_id_and_sends_nothing(tmp_path):
    """ONNX Runtime's own telemetry, off through its own setting: the control (a plain session on
    the same exported model) shows what it writes otherwise."""
    need_shared("models", "yolo11n-pose.pt")
    home = _run_at_home(tmp_path, "home", _load("onnxruntime"))
    assert not (home / ORT_TELEMETRY_FOLDER).exists()
    model = next((tmp_path / "torch" / "dancingskeletons" / "exports").glob("onnxruntime-*/model.onnx"))
    control = _run_at_home(tmp_path, "control", f"""
        import onnxruntime
        onnxruntime.InferenceSession({str(model)!r}, providers=["CPUExecutionProvider"])
    """)
    if not (control / ORT_TELEMETRY_FOLDER).exists():
        pytest.skip("this ONNX Runtime collects nothing even without the opt-out (no telemetry in its build)")
    assert (control / ORT_TELEMETRY_FOLDER / "deviceid").is_file()


def _broken_export(path: Path, runtime: Runtime, folder: Path) -> dict:
    """An export that finished and checks out, but whose model is garbage."""
    model = folder / "model_openvino_model"
    model.mkdir()
    (model / "model.xml").write_text("<net>this is not a model</n")
    (model / "model.bin").write_bytes(b"\0" * 64)
    (model / "metadata.yaml").write_text("task: pose\nstride: 32\n")
    return {"file": model.name, "stride": 32, "image_size": 640, "names": {"0": "person"}}


def _cannot_compile(*args, **kwargs):
    raise RuntimeError("Exception from src/inference/src/cpp/core.cpp: this CPU lacks an instruction set "
                       "the plugin needs")


@needs_openvino
@pytest.mark.parametrize("failure", ["broken export", "cannot compile here"])
def test_openvino_that_fails_falls_back_to_torch_with_one_warning_or_fails_when_asked_by_name(
        monkeypatch, caplog, failure):
    import openvino

    from workers.models import yolo

    if failure == "broken export":
        monkeypatch.setenv("TORCH_HOME", os.environ["TORCH_HOME"] + "-broken")
        monkeypatch.setattr(yolo, "export_checkpoint", _broken_export)
    else:
        monkeypatch.setattr(openvino.Core, "compile_model", _cannot_compile)
    with caplog.at_level(logging.WARNING, logger="dancingskeletons"):
        estimator = get_model("yolo").load(yolo_config("auto", device="cpu"))
    assert estimator.runtime == "torch"
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "openvino cannot run the exported model here" in warnings[0]
    assert warnings[0].endswith("; running the model in torch instead")
    with pytest.raises(ModelError, match="openvino cannot run the exported model here"):
        get_model("yolo").load(yolo_config("openvino"))


@pytest.mark.skipif(not _installed("ultralytics"), reason="ultralytics is not installed (requirements-yolo.txt)")
def test_without_openvino_the_cpu_run_says_how_to_make_it_faster(monkeypatch, caplog):
    monkeypatch.setattr(Runtime, "installed", lambda self: self.name == "torch")
    with caplog.at_level(logging.INFO, logger="dancingskeletons"):
        estimator = get_model("yolo").load(yolo_config("auto", device="cpu"))
    assert estimator.runtime == "torch"
    assert [record.getMessage() for record in caplog.records] == [
        "the yolo model runs in torch on the CPU; `make setup-cpu-fast` installs OpenVINO, which runs it faster "
        '(docs/BENCHMARKS.md, "CPU runtimes")']
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dancingskeletons"):
        get_model("yolo").load(yolo_config("torch", device="cpu"))  # torch asked for: nothing to say
    assert caplog.records == []


@needs_onnxruntime
def test_the_report_says_which_runtime_ran(tmp_path):
    from pipeline.cli import main

    need_shared("models", "yolo11n-pose.pt")
    clip = make_video(tmp_path / "clip.mp4", seconds=0.5, fps="10", size="320x240")
    args = get_args_parser().parse_args([str(clip), str(tmp_path / "out.mp4"), "--model", "yolo", "--weights",
                                         str(WEIGHTS), "--runtime", "onnxruntime", "--no-progress"])
    assert main(args) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert (report["runtime"], report["device"], report["settings"]["runtime"]) == ("onnxruntime", "cpu",
                                                                                    "onnxruntime")


# Known answers: the exported runtimes against torch on the shared clips.

#: The roof dancer of the park clip beside himself 6 frames late (120 frames), so that lags are
#: compared where there is one to find (tests/test_sync_real_footage.py has the same case).
DELAYED_PAIR = "crop=520:480:330:0,split[a][b];[b]tpad=start=6:start_mode=clone[c];[a][c]hstack"
CLIPS = ["park_two_people_vp9_audio.mp4", "pedestrians_msmpeg4_10fps.avi", "lab_three_people_portrait_60fps.mp4",
         "lab_three_people_side_camera_60fps.mp4", "roof dancer and his copy 6 frames late"]


class Recording:
    """A pose model that keeps what the model it wraps found, frame by frame."""

    def __init__(self, estimator) -> None:
        self.estimator = estimator
        self.found: list = []

    def __getattr__(self, name: str):
        return getattr(self.estimator, name)

    def predict(self, images):
        found = self.estimator.predict(images)
        self.found.extend(found)
        return found


@pytest.fixture(scope="module")
def same_clip_runs(tmp_path_factory):
    """run(clip, runtime) -> (RunResult, detections per frame), each run once per module."""
    from pipeline.runner import run_video
    from workers.ffmpeg import ffmpeg_exe

    folder = tmp_path_factory.mktemp("runtimes")
    estimators: dict[str, object] = {}
    done: dict[tuple[str, str], tuple] = {}

    def run(clip: str, runtime: str):
        if (clip, runtime) not in done:
            source = need_shared("videos", clip if clip.endswith((".mp4", ".avi")) else CLIPS[0])
            if not clip.endswith((".mp4", ".avi")):
                source_clip, source = source, folder / "pair.mp4"
                if not source.exists():
                    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(source_clip),
                                    "-filter_complex", DELAYED_PAIR, "-frames:v", "120", "-an", "-c:v", "libx264",
                                    "-preset", "ultrafast", "-crf", "12", str(source)], check=True)
            if runtime not in estimators:
                estimators[runtime] = get_model("yolo").load(yolo_config(runtime, device="cpu"))
            recording = Recording(estimators[runtime])
            # At the model's default size: the runtimes are compared, not the sizes (auto would run the
            # pedestrians at 1216, 3 minutes of torch on the CPU).
            config = yolo_config(runtime, device="cpu").replace(
                input=source, output=folder / f"{len(done)}.mp4", video=False, save_poses=False, progress=False,
                model_min_size=640)
            result = run_video(config, recording)
            assert result.runtime == runtime
            done[clip, runtime] = result, recording.found
        return done[clip, runtime]

    return run


def _keypoint_differences(reference: list, other: list) -> tuple[float, list[float]]:
    """The share of frames with equal person counts, and per matched person of those frames the
    mean absolute keypoint difference (pixels) to the nearest person of the other run."""
    equal = [len(a.boxes) == len(b.boxes) for a, b in zip(reference, other, strict=True)]
    differences = [
        float(np.abs(b.keypoints - person).mean(axis=(1, 2)).min())
        for a, b, same in zip(reference, other, equal) if same for person in a.keypoints
    ]
    return sum(equal) / len(equal), differences


#: OpenVINO (what `auto` picks on a CPU) on every clip; ONNX Runtime, whose export is the same
#: ONNX graph, on the park clip and the roof copies (the other three added about 35 s to the suite).
RUNTIME_CASES = [pytest.param(clip, "openvino", marks=needs_openvino) for clip in CLIPS] + [
    pytest.param(clip, "onnxruntime", marks=needs_onnxruntime) for clip in (CLIPS[0], CLIPS[-1])]


@pytest.mark.parametrize(("clip", "runtime"), RUNTIME_CASES)
def test_the_exported_runtime_gives_torch_s_answers(same_clip_runs, clip, runtime):
    torch_result, torch_found = same_clip_runs(clip, "torch")
    result, found = same_clip_runs(clip, runtime)
    counts_equal, differences = _keypoint_differences(torch_found, found)
    frame_ms = 1000 / result.info.fps
    lags = {person.id: person.lag_ms for person in result.persons if person.lag_ms is not None}
    torch_lags = {person.id: person.lag_ms for person in torch_result.persons if person.lag_ms is not None}
    summary = (f"{clip}, {runtime}: counts equal on {counts_equal:.1%} of {len(found)} frames, keypoints "
               f"{np.mean(differences):.3f} px, total {result.total} vs {torch_result.total}, lags {lags} vs "
               f"{torch_lags} ms")
    print(summary)
    assert sum(len(f.boxes) for f in torch_found) > 0, summary
    assert counts_equal >= 0.99, summary
    assert np.mean(differences) < 1.0, summary
    assert abs(result.total - torch_result.total) <= 0.1, summary
    assert lags.keys() == torch_lags.keys(), summary
    assert all(abs(lags[person] - torch_lags[person]) <= frame_ms for person in lags), summary
    if clip.startswith("roof"):
        assert len(lags) == 2, summary  # the pair's lags were compared, not skipped
