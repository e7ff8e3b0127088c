import pytest

from edgedistill import cli as cli_module
from edgedistill.cli import cli, main
from edgedistill.exits import Terminated


def test_targets_lists_profiles(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "x86-cpu" in out and "jetson-orin" in out


def test_targets_checks_a_users_profile_file(tmp_path, capsys):
    mine = tmp_path / "pi5.yaml"
    mine.write_text("name: pi5\narch: aarch64\ndevice: CPU\nbackends: [onnxruntime]\nprecisions: [fp32, int8]\n")
    assert main(["targets", str(mine), "x86-cpu"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert any("pi5" in r and "target is aarch64" in r for r in rows) and any("x86-cpu" in r for r in rows)
    assert not any("jetson-orin" in r for r in rows)  # only the profiles asked for
    (tmp_path / "bad.yaml").write_text("name: bad\ndevice: CPU\nbackends: [onnxruntime]\n")
    assert main(["targets", str(tmp_path / "bad.yaml")]) == 2
    assert "does not name its arch" in capsys.readouterr().err


@pytest.mark.parametrize("args,fragment", [
    (["build", "--target", "no-such-device"], "unknown target 'no-such-device'"),
    (["build", "--config", "/nonexistent.yaml"], "does not exist"),
    (["build", "--set", "distill.nope=1"], "unknown config key"),
    (["export", "/nonexistent-build"], "is not a build folder"),
])
def test_user_errors_exit_2_with_one_line(args, fragment, capsys, tmp_path):
    assert main(args + (["--out", str(tmp_path / "o")] if args[0] == "build" else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert fragment in err[0] and "fix:" in err[0]


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"], standalone_mode=True)
    assert info.value.code == 0
    assert "Example" in capsys.readouterr().out


def test_report_gates_fail_with_one_line_reason(tiny_build, capsys):
    assert main(["report", str(tiny_build), "--max-latency-ms", "0.0001"]) == 1
    captured = capsys.readouterr()
    assert captured.out.lstrip().startswith("#")  # Markdown for $GITHUB_STEP_SUMMARY on stdout
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("error: gate failed") and "latency" in last
    gates = captured.out[captured.out.index("## Gates"):]  # the summary itself says why the job failed
    assert "Asked: max latency ms 0.0001." in gates and "**Failed:**" in gates and "latency" in gates.split("**Failed:**")[1]


def test_report_gates_pass(tiny_build, tmp_path, capsys):
    assert main(["report", str(tiny_build), "--min-cosine", "0.5", "--max-size-mb", "500", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.html").is_file()
    assert "## Gates\n\nAsked: min cosine 0.5, max size MB 500.\n\n**Passed.**" in capsys.readouterr().out
    assert main(["report", str(tiny_build)]) == 0 and "## Gates" not in capsys.readouterr().out


TINY_TEACHER = ["teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28", "teacher.model_args={depth: 1, patch_size: 14}",
                "student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}", "data.max_images=3",
                "distill.batch_size=2", "distill.steps=2", "distill.warmup_steps=1", "distill.tensorboard=false", "distill.device=cpu"]


def test_cache_teacher_with_stored_views_then_distill_from_it(tmp_path, capsys):
    sets = [arg for s in TINY_TEACHER for arg in ("--set", s)]
    assert main(["cache-teacher", str(tmp_path / "cache"), "-k", "2", "--store-views", *sets]) == 0
    assert (tmp_path / "cache" / "cache.json").is_file()
    assert main(["distill", str(tmp_path / "build"), *sets, "--set", f"distill.cache={tmp_path / 'cache'}"]) == 0
    assert (tmp_path / "build" / "student" / "student.safetensors").is_file()


def test_cache_teacher_rejects_zero_augmentations_and_writes_nothing(tmp_path, capsys):
    assert main(["cache-teacher", str(tmp_path / "cache"), "-k", "0"]) == 2
    assert "augmentations must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("error, cause, fix", [
    (OSError(28, "No space left on device", "/out/student/student.safetensors"), "No space left on device", "free space there or choose another --out"),
    (RuntimeError("Error while serializing: IoError(Os { code: 28 }) No space left on device (os error 28)"),  # safetensors' wording
     "No space left on device", "free space there or choose another --out"),
    (OSError(27, "File too large", "/out/student/student.safetensors"), "File too large", "ulimit -f unlimited"),  # or a FAT32 disk's 4 GiB
    (RuntimeError("Error while serializing: I/O error: File too large (os error 27)"), "File too large", "ulimit -f unlimited"),
])
def test_a_full_disk_or_a_file_size_limit_is_one_line_with_its_fix(error, cause, fix, monkeypatch, capsys):
    def fail(**kwargs):
        raise error

    monkeypatch.setattr(cli, "main", fail)
    assert main(["distill", "runs/x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {cause}") and fix in err[0], err


def test_a_full_disk_names_the_file_written_not_the_one_copied(monkeypatch, capsys):
    def fail(**kwargs):  # shutil.copyfile's error names the source first, the destination as filename2
        raise OSError(28, "No space left on device", "/tmp/tmpab12/int8-k0.onnx", None, "/out/quantized/model.int8.qdq.onnx")

    monkeypatch.setattr(cli, "main", fail)
    assert main(["quantize", "runs/x"]) == 1
    err = capsys.readouterr().err.strip()
    assert "writing '/out/quantized/model.int8.qdq.onnx'" in err and "/tmp/tmpab12" not in err, err


def test_sigterm_during_an_extensions_import_still_reads_as_terminated(monkeypatch, capsys):
    def fail(**kwargs):  # onnxruntime's C extension turns an exception raised during its import into this
        try:
            raise Terminated()
        except Terminated as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(cli, "main", fail)
    assert main(["quantize", "runs/x"]) == 143
    assert capsys.readouterr().err.strip() == "terminated (SIGTERM)"


def test_an_out_path_below_a_file_is_one_line_with_a_fix(tmp_path, capsys):
    (tmp_path / "afile").write_text("not a folder")
    assert main(["cache-teacher", str(tmp_path / "afile" / "cache"), "-k", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a file stands where the path needs a folder" in err[0], err
    assert (tmp_path / "afile").read_text() == "not a folder"


@pytest.mark.parametrize("content", ['{"artifacts": ', '["a", "list"]', '{"config": 5}'])
def test_a_damaged_manifest_is_one_line_with_a_fix(tmp_path, capsys, content):
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "manifest.json").write_text(content)
    assert main(["distill", str(tmp_path / "build"), "--set", "distill.steps=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and "delete it to rebuild" in err[0], err


def test_other_crashes_show_their_traceback_and_exit_3(monkeypatch, capsys):
    """A bug is not a failed gate (1) nor a user's mistake (2): CI can tell them apart."""
    def fail(**kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(cli, "main", fail)
    assert main(["distill", "runs/x"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "OSError: [Errno 5] Input/output error" in err and "this is a bug" in err.splitlines()[-1]


def test_stages_after_distill_name_a_folder_that_is_not_a_build_and_do_not_create_it(tmp_path, capsys):
    for command in (["export"], ["quantize"], ["compile"], ["bench"]):
        assert main([*command, str(tmp_path / "typo")]) == 2
        assert "is not a build folder (it has no manifest.json)" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("gate", ["--max-latency-ms", "--min-cosine", "--max-size-mb"])
def test_a_gate_that_is_not_a_finite_number_is_refused(tmp_path, capsys, gate):
    """`--min-cosine nan` (an unset CI variable) passed every build."""
    (tmp_path / "bench.json").write_text("{}")
    assert main(["report", str(tmp_path / "bench.json"), gate, "nan"]) == 2
    assert "is not a finite number" in capsys.readouterr().err


@pytest.mark.parametrize("gate, value", [("--max-latency-ms", "-1"), ("--max-latency-ms", "0"), ("--min-cosine", "1.5"), ("--max-size-mb", "-5")])
def test_a_gate_no_build_could_pass_is_a_mistake_not_a_failed_build(tmp_path, capsys, gate, value):
    (tmp_path / "bench.json").write_text("{}")
    assert main(["report", str(tmp_path / "bench.json"), gate, value]) == 2
    assert "is out of range" in capsys.readouterr().err


def test_a_time_budget_alone_lifts_an_iteration_count_an_earlier_bench_saved(monkeypatch, tmp_path):
    """Bench flags persist in the build: after `bench --iterations 7`, `--time-budget` must still decide alone."""
    seen = []

    class Stop(Exception):
        pass

    import json

    from edgedistill.config import load_config

    def capture(build_dir, target, config_path, overrides, force, existing=False, unsaved=()):
        seen.append((overrides, unsaved))
        raise Stop

    monkeypatch.setattr(cli_module, "_pipeline", capture)
    for args in (["--time-budget", "0.5"], ["--time-budget", "0.5", "--iterations", "7"]):
        with pytest.raises(Stop):
            cli.main(["bench", "b", *args], standalone_mode=False)
    assert seen[0] == (("bench.time_budget_s=0.5",), ("bench.iterations",))
    assert "bench.iterations=7" in seen[1][0] and seen[1][1] == ()
    monkeypatch.undo()

    build = tmp_path / "b"  # the saved value goes; one given in this command (--set, --config) stays
    build.mkdir()
    (build / "manifest.json").write_text(json.dumps({"artifacts": {}, "stages": {}, "config": {"bench": {"iterations": 7, "warmup": 3}}}))
    pipe = cli_module._pipeline(build, None, None, ("bench.time_budget_s=0.5",), unsaved=("bench.iterations",))
    assert (pipe.cfg.bench.iterations, pipe.cfg.bench.warmup) == (None, 3)
    del pipe
    pipe = cli_module._pipeline(build, None, None, ("bench.iterations=50", "bench.time_budget_s=0.5"), unsaved=("bench.iterations",))
    assert pipe.cfg.bench.iterations == 50 and load_config(None, []).bench.iterations is None


def test_a_build_folder_from_a_newer_edgedistill_says_so(tmp_path, capsys):
    """Copied to a device with an older pip install: not "unknown config key" blamed on the user."""
    import json

    from edgedistill.versions import tool_versions

    installed = tool_versions(("edgedistill",))["edgedistill"]
    build = tmp_path / "b"
    build.mkdir()
    record = {"name": "student", "tool_versions": {"edgedistill": "999.0"}}
    manifest = {"schema": "edgedistill.manifest/1", "artifacts": {"student": record}, "stages": {}, "config": {"bench": {"warmup_s": 1}}}
    (build / "manifest.json").write_text(json.dumps(manifest))
    assert main(["bench", str(build)]) == 2
    err = capsys.readouterr().err
    assert "was made by edgedistill 999.0, newer than this one, and unknown config key 'bench.warmup_s'" in err and "pip install -U 'edgedistill>=999.0'" in err
    (build / "manifest.json").write_text(json.dumps({**manifest, "config": {}, "schema": "edgedistill.manifest/2"}))
    assert main(["bench", str(build)]) == 2
    err = capsys.readouterr().err
    assert f"has the layout 'edgedistill.manifest/2', which this edgedistill ({installed}) does not know" in err and "(999.0)" in err
