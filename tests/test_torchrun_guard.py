"""Under torchrun (WORLD_SIZE > 1) only `distill` runs: every other command would run once per rank; and
distill's ranks agree whether the stage is fresh before any acts on it."""

from pathlib import Path

import pytest

from edgedistill.cli import main

from .distributed_run import TINY, launch


@pytest.mark.parametrize("args", [["build", "--out", "{tmp}/b"], ["export", "{tmp}/b"], ["quantize", "{tmp}/b"], ["compile", "{tmp}/b"],
                                  ["bench", "{tmp}/b"], ["report", "{tmp}"], ["cache-teacher", "{tmp}/c"]])
def test_every_command_but_distill_refuses_torchrun_in_one_line(args, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"only `edgedistill distill` runs under torchrun, not `edgedistill {args[0]}`" in err
    assert f"then edgedistill {args[0]} ... on one process" in err and list(tmp_path.iterdir()) == []


def test_distill_passes_the_torchrun_guard(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["distill", "--help"]) == 0
    assert "Distil the teacher" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["bench", "build", "report"])
def test_a_commands_help_is_shown_under_torchrun(command, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")  # e.g. the help of the command to run after a torchrun job, in the same shell
    assert main([command, "-h"]) == 0
    assert f" {command} [OPTIONS]" in capsys.readouterr().out


NODE_LOCAL = """
import os, sys
if os.environ["RANK"] == "1":
    os.chdir(sys.argv[1])  # another node, whose local disk lacks rank 0's build folder
from edgedistill.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_ranks_that_see_different_build_folders_stop_with_a_one_line_error_not_a_hang(tmp_path):
    """Rank 0's folder holds the finished student, rank 1's (a node-local disk) does not: rank 0 reused it and
    exited while rank 1 trained, waiting for it in init_process_group until the rendezvous timed out."""
    sets = [arg for item in TINY for arg in ("--set", item)]
    assert main(["distill", str(tmp_path / "build"), *sets]) == 0  # one process: rank 0's folder is finished
    (tmp_path / "node2").mkdir()
    run = launch(tmp_path / "child.py", NODE_LOCAL, [str(tmp_path / "node2"), "distill", "build", *sets], cwd=tmp_path, timeout=120)
    assert run.returncode != 0, run.stdout + run.stderr
    assert "do not see the same build folder 'build' (for its distill stage, rank 0 would reuse it, rank 1 would run it)" in run.stderr, run.stderr[-3000:]
    assert "a file system every node shares" in run.stderr and "this is a bug" not in run.stderr
    assert not (tmp_path / "node2" / "build" / "student").exists()


def test_a_rank_other_than_0_changes_nothing_in_the_build_folder(tmp_path, monkeypatch):
    """Rank 0 alone holds the folder's lock and writes it: rank 1 deleted report/ (and copied the target file)
    even where another process held the folder and rank 0 was refused it."""
    from edgedistill.config import load_config
    from edgedistill.pipeline import Pipeline
    from edgedistill.targets import load_target

    build = tmp_path / "build"
    (build / "report").mkdir(parents=True)
    (build / "report" / "report.md").write_text("the finished build's report")
    profile = tmp_path / "mine.yaml"
    profile.write_text((Path(__file__).parents[1] / "targets" / "x86-cpu.yaml").read_text())
    monkeypatch.setenv("RANK", "1")
    pipe = Pipeline(load_config(None, []), load_target(str(profile)), build)
    assert pipe._run_stage("bench", "a new key", lambda: []) == []  # a stage whose settings changed: it runs
    assert sorted(p.name for p in build.rglob("*")) == ["report", "report.md"]


def test_ranks_that_all_run_the_stage_go_on_though_their_keys_differ(tmp_path, monkeypatch):
    """A source over the content-stamp size, copied to each node's disk, is stamped with each copy's mtimes:
    the keys differ, every rank trains, and only rank 0's key is recorded. Only a split decision is refused."""
    from edgedistill.config import load_config
    from edgedistill.distill import distributed
    from edgedistill.errors import EdgedistillError
    from edgedistill.pipeline import Pipeline
    from edgedistill.targets import load_target

    pipeline = Pipeline(load_config(), load_target("x86-cpu"), tmp_path / "b")
    pipeline._ranks = object()  # as under torchrun: the gathered decisions are what this test sets
    gathered = []
    monkeypatch.setattr(distributed, "gather_objects", lambda mine, ctx: gathered)
    gathered[:] = [("key-on-node-0", False), ("key-on-node-1", False)]
    pipeline._ranks_agree("distill", "key-on-node-0", False)
    gathered[:] = [("key", True), ("key", False)]
    with pytest.raises(EdgedistillError, match="rank 0 would reuse it, rank 1 would run it"):
        pipeline._ranks_agree("distill", "key", True)
