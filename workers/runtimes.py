"""Where a model's forward pass runs: PyTorch, or an exported copy in OpenVINO or ONNX Runtime.

One registry, each runtime registered once: the Python module it needs, the Ultralytics export
format that makes its model file, and the packages whose versions decide whether an export
is still current. The rest of the code asks `choose_runtime` which one runs; the estimators
keep their interface, so the pose cache, tracking, scores and reports never know.

OpenVINO and ONNX Runtime are an optional extra (requirements-cpu-fast.txt) and run on the
CPU only. `auto` takes OpenVINO on the CPU when it is installed and the model can be exported,
else PyTorch; on CUDA it is always PyTorch.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass

from workers.errors import ModelError

#: What `--runtime` takes.
RUNTIME_CHOICES = ("auto", "torch", "openvino", "onnxruntime")
#: What `make` target installs the exported runtimes (named in error messages).
INSTALL_HINT = "make setup-cpu-fast"


@dataclass(frozen=True)
class Runtime:
    """One registered runtime.

    Attributes:
        name: The name `--runtime` takes and the report records.
        module: The module it imports.
        export_format: Ultralytics' export format that makes its model; None for PyTorch,
            which runs the checkpoint itself.
        versions: Distributions whose versions make an export of it stale when they change
            (the exporter's are added by the model).
    """

    name: str
    module: str
    export_format: str | None
    versions: tuple[str, ...]

    @property
    def exported(self) -> bool:
        """Whether the model runs from an exported file (CPU only) rather than the checkpoint."""
        return self.export_format is not None

    def installed(self) -> bool:
        """Whether its module can be imported here (without importing it)."""
        return importlib.util.find_spec(self.module) is not None


_REGISTRY: dict[str, Runtime] = {}


def register(runtime: Runtime) -> Runtime:
    """Add a runtime; a name is registered once."""
    if runtime.name in _REGISTRY:
        raise ValueError(f"runtime {runtime.name!r} is already registered")
    _REGISTRY[runtime.name] = runtime
    return runtime


def get_runtime(name: str) -> Runtime:
    """The registered runtime of that name (ValueError lists them)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIME_CHOICES)}, got {name!r}") from None


def is_exported(requested: str) -> bool:
    """Whether `--runtime` names an exported runtime (which runs on the CPU only); False for auto."""
    return requested in _REGISTRY and _REGISTRY[requested].exported


def distribution_version(name: str) -> str:
    """An installed distribution's version; "" when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def check_runtime_request(requested: str, model: str, supported: tuple[str, ...], device: str) -> None:
    """Refuse a runtime the model cannot use or a device it cannot run on (for Config).

    Raises:
        ValueError: One line with what to do instead.
    """
    if requested not in RUNTIME_CHOICES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIME_CHOICES)}, got {requested!r}")
    if requested in ("auto", "torch"):
        return
    if requested not in supported:
        raise ValueError(f"runtime {requested} is not available for --model {model} "
                         f"(its runtimes: {', '.join(supported)})")
    if device.startswith("cuda"):
        raise ValueError(f"runtime {requested} runs the model on the CPU, but device {device} was asked for; "
                         "use --device cpu or auto (on CUDA the runtime is torch)")


def choose_runtime(requested: str, supported: tuple[str, ...], device: str) -> Runtime:
    """The runtime that runs the model.

    Args:
        requested: "auto", "torch", "openvino" or "onnxruntime" (checked by
            `check_runtime_request`).
        supported: The runtimes the model can use, "torch" first.
        device: The resolved torch device, "cpu" or "cuda:N".

    Returns:
        `auto`: OpenVINO when the device is the CPU, the model supports it and it is
        installed, else PyTorch. Otherwise the runtime asked for.

    Raises:
        ModelError: An exported runtime was asked for explicitly and is not installed.
    """
    if requested == "auto":
        openvino = get_runtime("openvino")
        use_openvino = device == "cpu" and openvino.name in supported and openvino.installed()
        return openvino if use_openvino else get_runtime("torch")
    runtime = get_runtime(requested)
    if not runtime.installed():
        raise ModelError(f"--runtime {requested} was asked for, but its package ({runtime.module}) is not "
                         f"installed; install it with `{INSTALL_HINT}`, or use --runtime auto")
    return runtime


def switch_off_telemetry() -> None:
    """Keep the exported runtimes from collecting or sending usage data in this process.

    Must run before either is first imported.

    OpenVINO's model converter reports usage through the separate `openvino-telemetry`
    package, which sends events and writes ~/intel/ (a client id, statistics and, for its own
    opt-out, a consent file). When that package cannot be imported, the converter uses its
    built-in no-op stub instead (openvino.tools.ovc.telemetry_utils). The extra installs
    OpenVINO without it, and this makes the import fail even where it is installed.

    ONNX Runtime's Linux build sends telemetry events (1DS) and keeps a device id and an event
    cache under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/. `ORT_DISABLE_TELEMETRY=1`,
    read once when it starts, is its own full opt-out: nothing is created, written or sent
    (microsoft/onnxruntime#27379).
    """
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"


register(Runtime(name="torch", module="torch", export_format=None, versions=("torch",)))
register(Runtime(name="openvino", module="openvino", export_format="openvino", versions=("openvino",)))
register(Runtime(name="onnxruntime", module="onnxruntime", export_format="onnx",
                 versions=("onnxruntime", "onnx")))
