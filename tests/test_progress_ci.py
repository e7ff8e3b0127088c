"""What a CI log sees: plain progress lines where the live bar is off, and `targets` on stdout."""

import io
import re
import types

import pytest

from edgedistill import progress
from edgedistill.cli import main
from edgedistill.config import load_config
from edgedistill.distill import stage
from edgedistill.targets import list_targets

LINE = re.compile(r"^distill (\d+)/4 loss \d+\.\d+ \d+ img/s eta (\d+:\d\d:\d\d|-:--:--)$")


@pytest.fixture
def in_ci(monkeypatch):
    monkeypatch.delenv("EDGEDISTILL_NO_PROGRESS", raising=False)
    monkeypatch.setenv("CI", "true")


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("env,tty,disabled", [
    ({}, True, False),
    ({"CI": "true"}, True, True),
    ({"EDGEDISTILL_NO_PROGRESS": "1"}, True, True),
    ({}, False, True),  # a log file gets no redraws, only the bar's last state at the end
])
def test_the_live_bar_is_off_in_ci_without_a_terminal_or_when_asked(env, tty, disabled, monkeypatch):
    for name in ("CI", "EDGEDISTILL_NO_PROGRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if tty:
        monkeypatch.setattr(progress.sys, "stderr", _Tty())
    assert progress.progress_bar().disable is disabled


def test_distill_in_ci_prints_one_plain_line_per_logged_row(in_ci, tmp_path, capsys):
    stage.run(load_config(None, [
        "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28", "teacher.model_args={depth: 1, patch_size: 14}",
        "student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}", "data.max_images=4",
        "distill.batch_size=2", "distill.steps=4", "distill.warmup_steps=1", "distill.tensorboard=false", "distill.log_every=2",
    ]), {}, tmp_path)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("distill ")]
    assert [LINE.match(line).group(1) for line in lines] == ["2", "4"], err  # the rows train_log.csv gets


def test_a_disabled_bar_without_info_prints_at_most_every_interval(in_ci, monkeypatch, capsys):
    clock = [0.0]
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: clock[0]), raising=False)
    with progress.progress_bar() as bar:
        task = bar.add_task("cache-teacher", total=100, info="1 teacher(s), K=2")
        for _ in range(100):  # one view per second
            clock[0] += 1
            bar.advance(task)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in lines] == ["60/100"]
    assert lines[0].startswith("cache-teacher 60/100 1 teacher(s), K=2 eta ")


def test_a_live_bar_prints_no_plain_lines(monkeypatch):
    for name in ("CI", "EDGEDISTILL_NO_PROGRESS"):
        monkeypatch.delenv(name, raising=False)
    terminal = _Tty()
    monkeypatch.setattr(progress.sys, "stderr", terminal)
    bar = progress.progress_bar()  # not started: the live display itself would draw on the terminal
    task = bar.add_task("bench", total=2, info="")
    for name in ("a.onnx", "b.onnx"):
        bar.update(task, info=name)
        bar.advance(task)
    assert not bar.disable and terminal.getvalue() == ""


def test_targets_lists_on_stdout_one_line_per_profile(capsys):
    assert main(["targets"]) == 0
    captured = capsys.readouterr()
    assert "x86-cpu" not in captured.err
    rows = [line for line in captured.out.splitlines() if " nvidia-gpu " in line]  # what `| grep nvidia-gpu` keeps
    assert len(rows) == 1 and ("yes" in rows[0] or "no: " in rows[0]), captured.out
    body = [line for line in captured.out.splitlines() if line.startswith("│")]
    assert len(body) == len(list_targets())  # a pipe gets no 80-column wrapping: a row keeps its reason
    assert "\x1b" not in captured.out
