"""The command line: arguments, exit codes, one-line errors."""

import pytest
import torch

from pipeline.cli import config_from_args, get_args_parser, main
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


def test_the_end_card_length_is_a_hidden_flag_for_benchmarks_of_short_clips():
    parser = get_args_parser()
    assert config_from_args(parser.parse_args(["a.mp4", "b.mp4"])).end_card_seconds == 5.0
    assert config_from_args(parser.parse_args(["a.mp4", "b.mp4", "--end-card-seconds", "0"])).end_card_seconds == 0.0
    assert "end-card" not in parser.format_help()


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


def _container(path):
    """'matroska', 'qt' or 'mp4', from the file's first bytes (EBML header or ISO-BMFF brand)."""
    head = path.read_bytes()[:12]
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    assert head[4:8] == b"ftyp", head
    return "qt" if head[8:12] == b"qt  " else "mp4"


@pytest.mark.parametrize("name, container", [("out.mp4", "mp4"), ("out.mov", "qt"), ("out.MKV", "matroska")])
def test_the_output_container_follows_the_output_name(tmp_path, name, container):
    source = make_video(tmp_path / "in.mp4", seconds=0.2, fps="10", size="96x64", audio=True)
    code = _main(source, tmp_path / name, "--weights", "random", "--device", "cpu", "--min-size", "64",
                 "--person-threshold", "0", "-b", "2", "--no-progress", "--no-score")
    assert code == 0
    assert _container(tmp_path / name) == container
    facts = stream_facts(tmp_path / name)
    assert facts["frames"] == 2 and facts["audio"]


@pytest.mark.parametrize("name", ["out.avi", "out.webm", "out"])
def test_another_output_extension_is_a_usage_error_before_anything_runs(tmp_path, capsys, name):
    source = make_video(tmp_path / "in.mp4", seconds=0.2)
    assert _main(source, tmp_path / name, "--weights", "random") == 2
    err = capsys.readouterr().err
    assert "must end in .mp4, .mov, .mkv" in err and name in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
