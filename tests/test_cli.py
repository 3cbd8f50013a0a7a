"""The command line: arguments, exit codes, one-line errors."""

import pytest
import torch

from pipeline.cli import get_args_parser, main
from tests.helpers import make_video, stream_facts


def _main(*argv):
    return main(get_args_parser().parse_args([str(a) for a in argv]))


def test_a_run_writes_the_video_and_exits_0(tmp_path, capsys):
    source = make_video(tmp_path / "in.mp4", seconds=0.3, fps="10", size="96x64")
    code = _main(source, tmp_path / "out.mp4", "--weights", "random", "--device", "cpu", "--min-size", "64",
                 "--person-threshold", "0", "--max-persons", "2", "-b", "2", "--no-progress")
    assert code == 0
    assert stream_facts(tmp_path / "out.mp4")["frames"] == 3 + 50
    assert "out.mp4: 3 frames" in capsys.readouterr().err


def test_the_original_flags_and_defaults():
    args = get_args_parser().parse_args(["a.mp4", "b.mp4"])
    assert args.batch_size == 4 and args.score is True and args.device == "auto"
    args = get_args_parser().parse_args(["a.mp4", "b.mp4", "-b", "8", "--no-score"])
    assert args.batch_size == 8 and args.score is False


@pytest.mark.parametrize("flags, message", [
    (["-b", "0"], "batch_size must be in 1..256, got 0"),
    (["--device", "gpu"], "device must be auto, cpu, cuda or cuda:N"),
    (["--crf", "99"], "crf must be in 0..51"),
])
def test_out_of_range_values_are_usage_errors(tmp_path, capsys, flags, message):
    assert _main(tmp_path / "in.mp4", tmp_path / "out.mp4", *flags) == 2
    assert message in capsys.readouterr().err


def test_a_missing_input_is_one_line_and_exit_1(tmp_path, capsys):
    assert _main(tmp_path / "missing.mp4", tmp_path / "out.mp4", "--weights", "random") == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "missing.mp4: no such file" in err
    assert not (tmp_path / "out.mp4").exists()


def test_output_must_not_overwrite_the_input(tmp_path, capsys):
    source = make_video(tmp_path / "in.mp4", seconds=0.2)
    assert _main(source, source, "--weights", "random") == 1
    assert "overwrite its own input" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_explicit_cuda_request_without_cuda_is_an_error(tmp_path, capsys):
    source = make_video(tmp_path / "in.mp4", seconds=0.2)
    assert _main(source, tmp_path / "out.mp4", "--device", "cuda", "--weights", "random") == 1
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "out.mp4").exists()
