"""What the CLI prints for people to act on: commands that paste whole, errors in one line."""

from __future__ import annotations

import pytest

from edgedistill.cli import main


def test_remaining_steps_are_printed_unfolded_so_they_paste_whole(tmp_path, monkeypatch, capsys):
    # stderr in CI is a pipe, 80 columns to rich: a step folded mid-path breaks the copied command
    from edgedistill import report
    from edgedistill.pipeline import Pipeline

    step = f"there: edgedistill compile {tmp_path}/" + "orin-nx-experiments-2026-q4/" * 4 + "trt_bundle"
    monkeypatch.setattr(Pipeline, "build", lambda self: {"remaining_steps": [step]})
    monkeypatch.setattr(report, "summary_table", lambda doc: "")
    assert main(["build", "--out", str(tmp_path / "b")]) == 0
    assert f"remaining: {step}" in capsys.readouterr().err


def test_a_name_too_long_for_the_file_system_is_a_one_line_error(tmp_path, capsys):
    assert main(["build", "--out", str(tmp_path / ("日" * 90))]) == 2  # 270 bytes: over the 255 a name may hold
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "File name too long" in err and "choose a shorter name" in err


@pytest.mark.parametrize("args, setting", [
    (["--target", "LONG.yaml"], "--target"),
    (["--set", "quantize.calibration=LONG.txt"], "config 'quantize.calibration'"),
    (["--set", "data.source=LONG"], "config 'data.source'"),
    (["--set", "teacher.checkpoint=LONG/w.safetensors"], "config 'teacher.checkpoint'"),
    (["--set", "bench.eval_dir=LONG"], "config 'bench.eval_dir'"),
])
def test_a_too_long_input_name_names_its_setting_not_a_failed_write(tmp_path, monkeypatch, capsys, args, setting):
    # only read, never written: "File name too long writing ..." sent people to change --out
    from edgedistill.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "build", lambda self: pytest.fail("the stages ran: the name was not checked first"))
    long = str(tmp_path / ("日" * 90))
    out = tmp_path / "b"
    assert main(["build", "--out", str(out), *[a.replace("LONG", long) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {setting} ") and "longer than the file system allows" in err
    assert "writing" not in err and not out.exists()  # refused before the build folder was made


def test_the_engines_bench_hint_keeps_a_bracketed_part_of_the_build_path(tmp_path, monkeypatch, capsys):
    # rich read '[v2]' as a style tag and dropped it from the printed command
    from edgedistill.backends import compile_stage, trt_bundle

    build = tmp_path / "orin [v2]"
    (build / "trt_bundle").mkdir(parents=True)
    (build / "trt_bundle" / "bundle.json").write_text("{}")
    engine = build / "trt_bundle" / "model [v2].engine"
    monkeypatch.setattr(trt_bundle, "compile_bundle", lambda path: [engine])
    monkeypatch.setattr(compile_stage, "record_device_engines", lambda path, engines: build)
    assert main(["compile", str(build / "trt_bundle")]) == 0
    err = capsys.readouterr().err
    assert f"wrote engine {engine}" in err and f"edgedistill bench '{build}' --target TARGET" in err
