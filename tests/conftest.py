import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


#: Test modules that run real videos through real models, a browser, a Ray cluster or the GPU
#: check's dry run: marked `slow`, left out of `make test-quick` (the inner loop), always in
#: `make test` (what CI runs).
SLOW_MODULES = frozenset({
    "test_cluster", "test_crowds_real_footage", "test_identity_real_footage", "test_real_footage",
    "test_sync_real_footage", "test_runtimes", "test_review_browser", "test_bench_gpu", "test_yolo",
    "test_keypoint_rcnn", "test_alignment_real_audio", "test_teacher_pairs",
})


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: real footage, real models, browser, cluster (see SLOW_MODULES)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def validate_report(report: dict) -> None:
    """Raise jsonschema.ValidationError unless `report` follows the report's JSON Schema."""
    from jsonschema import Draft202012Validator

    from reports import schemas

    Draft202012Validator(schemas.load("report")).validate(report)


def validate_summary_rows(rows: list[dict]) -> None:
    """Raise jsonschema.ValidationError unless every summary.csv row follows its JSON Schema."""
    from jsonschema import Draft202012Validator

    from reports import schemas

    validator = Draft202012Validator(schemas.load("summary"))
    for row in rows:
        validator.validate(row)


@pytest.fixture(autouse=True, scope="session")
def private_torch_home(tmp_path_factory):
    """TORCH_HOME in a folder of this session: the export cache (workers.export_cache) and any
    torchvision weights stay out of the user's home, and every session starts without them,
    as CI does."""
    import os

    before = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch-home"))
    yield
    if before is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = before


@pytest.fixture(autouse=True)
def every_report_follows_its_schema(monkeypatch):
    """Every report and summary.csv a test writes in this process is validated as it is written.

    The patches follow the writers: `reports.report` writes the JSON and the CSVs,
    `reports.summary` every summary. tests/test_report.py and tests/test_summary.py check
    that a bad report or row written through them is refused, so that this check cannot
    silently stop when the code moves.
    """
    import reports.report
    import reports.summary

    write_json, write_csv = reports.report.write_json, reports.report.write_csv

    def checked_json(path, data):
        if str(data.get("format", "")).startswith("dancingskeletons-report/"):
            validate_report(data)
        return write_json(path, data)

    def checked_csv(path, header, rows):
        if Path(path).name.startswith("summary"):  # summary.csv and a shard's summary-shard-I-of-N.csv
            rows = [list(row) for row in rows]
            validate_summary_rows([dict(zip(header, (str(cell) for cell in row))) for row in rows])
        return write_csv(path, header, rows)

    monkeypatch.setattr(reports.report, "write_json", checked_json)
    monkeypatch.setattr(reports.report, "write_csv", checked_csv)
    monkeypatch.setattr(reports.summary, "write_csv", checked_csv)
