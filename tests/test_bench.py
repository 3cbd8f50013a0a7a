"""`make bench` itself runs (a few frames, the machinery ceiling only)."""

from pipeline.bench import get_args_parser, main


def test_bench_runs_and_reports_the_ceiling(capsys):
    assert main(get_args_parser().parse_args(["--ceiling-frames", "12", "--models", ""])) == 0
    out = capsys.readouterr().out
    assert "machinery ceiling" in out and "frames/s" in out and "peak memory" in out
