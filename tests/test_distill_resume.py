"""Exact resume: a distillation run killed with SIGKILL and resumed ends with the same weights
as an uninterrupted run (CPU, tiny ViTs, real bundled photos)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from edgedistill.config import load_config
from edgedistill.distill import stage
from edgedistill.errors import EdgedistillError

TINY = [
    "teacher.name=vit_tiny_patch16_224", "teacher.pretrained=false", "teacher.img_size=28",
    "teacher.model_args={depth: 1, patch_size: 14, reg_tokens: 2}",
    "student.name=vit_tiny_patch16_224", "student.img_size=32", "student.model_args={depth: 1}",
    "data.max_images=6", "data.auto_augment=rand-m9-mstd0.5",
    "distill.steps=8", "distill.batch_size=4", "distill.warmup_steps=2", "distill.checkpoint_every=2",
    "distill.ema_decay=0.9", "distill.tensorboard=false", "distill.log_every=1",
]

CHILD = """
import json, sys, time
from pathlib import Path
from edgedistill.config import load_config
from edgedistill.distill import stage
from edgedistill.errors import EdgedistillError
overrides, workdir, delay = json.loads(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
stage.run(load_config(None, overrides), {}, workdir, on_step=lambda step: time.sleep(delay))
"""


def _weights(student_dir: Path) -> dict:
    return {**load_file(str(student_dir / "student.safetensors")), **load_file(str(student_dir / "heads.safetensors"))}


def _child(tmp_path: Path, workdir: Path, delay: float, overrides: list, **popen) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "EDGEDISTILL_NO_PROGRESS": "1"}
    return subprocess.Popen([sys.executable, str(script), json.dumps(overrides), str(workdir), str(delay)], env=env, **popen)


# phi-s estimates over 6 batches, so the kill (after the step-4 checkpoint) lands mid-estimate
@pytest.mark.parametrize("standardize", [["distill.standardize=running"], ["distill.standardize=phi-s", "distill.standardize_batches=6"]])
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path, standardize):
    overrides = TINY + standardize
    killed = tmp_path / "killed"
    proc = _child(tmp_path, killed, delay=0.5, overrides=overrides)
    log = killed / "distill_state" / "train_log.csv"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # wait until step 5 ran (checkpoint at 4 is on disk)
        if log.is_file() and len(log.read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "student").exists()
    assert torch.load(killed / "distill_state" / "checkpoint.pt", weights_only=False)["step"] == 4

    resumed = _child(tmp_path, killed, delay=0.0, overrides=overrides, stderr=subprocess.PIPE, text=True)
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err[-3000:]
    assert "distill: resuming at step 4 of 8" in err
    spec = json.loads((killed / "student" / "student.json").read_text())
    assert spec["train"]["resumed_from_step"] == 4
    assert not (killed / "distill_state").exists()  # checkpoints are removed once the student is written
    log_steps = [line.split(",")[0] for line in (killed / "student" / "train_log.csv").read_text().splitlines()[1:]]
    assert log_steps == [str(s) for s in range(1, 9)]  # replayed steps are not logged twice

    straight = tmp_path / "straight"
    stage.run(load_config(None, overrides), {}, straight)
    a, b = _weights(killed / "student"), _weights(straight / "student")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_changed_config_starts_fresh_and_says_so(tmp_path, capsys):
    cfg = load_config(None, TINY + ["distill.steps=2", "distill.checkpoint_every=1"])
    prepared = stage.prepare(cfg, tmp_path)
    (tmp_path / "distill_state").mkdir()
    torch.save({"config_hash": "something-else", "step": 1}, tmp_path / "distill_state" / "checkpoint.pt")
    artifact = stage.run(cfg, {}, tmp_path)
    assert artifact.extra["train"]["resumed_from_step"] == 0
    assert prepared.job.config_hash == stage.resume_hash(cfg, stage.dataset_identity(prepared.job.dataset))
    assert "(step 1) was written with another config or other images, so training starts from step 0" in " ".join(capsys.readouterr().err.split())


def test_a_checkpoint_over_other_images_starts_fresh(tmp_path, capsys):
    import shutil

    from edgedistill.data.sample_photos import bundled_photo_paths

    folder = tmp_path / "images"
    folder.mkdir()
    for path in bundled_photo_paths()[:3]:
        shutil.copy(path, folder / path.name)
    cfg = load_config(None, [o for o in TINY if not o.startswith("data.")] + [f"data.source={folder}", "distill.steps=2", "distill.checkpoint_every=1"])
    state = tmp_path / "build" / "distill_state"
    written = stage.prepare(cfg, tmp_path / "build").job.config_hash
    shutil.copy(bundled_photo_paths()[3], folder / bundled_photo_paths()[3].name)  # the sample stream now draws over 4 images
    state.mkdir(parents=True)
    torch.save({"config_hash": written, "step": 1}, state / "checkpoint.pt")
    artifact = stage.run(cfg, {}, tmp_path / "build")
    assert artifact.extra["train"]["resumed_from_step"] == 0 and artifact.extra["train"]["images"] == 4
    assert "written with another config or other images" in " ".join(capsys.readouterr().err.split())


def test_a_checkpoint_from_before_the_image_check_still_resumes(tmp_path):
    cfg = load_config(None, TINY + ["distill.steps=4", "distill.checkpoint_every=2"])

    def stop(step):
        if step == 3:
            raise KeyboardInterrupt  # as if pre-empted after the checkpoint at step 2

    with pytest.raises(KeyboardInterrupt):
        stage.run(cfg, {}, tmp_path, on_step=stop)
    path = tmp_path / "distill_state" / "checkpoint.pt"
    payload = torch.load(path, weights_only=False)
    payload["config_hash"] = stage.resume_hash(cfg, by_content=False)  # as the version before the image check hashed the same job
    torch.save(payload, path)
    assert stage.run(cfg, {}, tmp_path).extra["train"]["resumed_from_step"] == 2


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 half a zip", b"not a checkpoint"])
def test_a_damaged_checkpoint_is_a_one_line_error_with_a_fix(tmp_path, content):
    from edgedistill.distill.state import load_checkpoint

    (tmp_path / "checkpoint.pt").write_bytes(content)
    with pytest.raises(EdgedistillError, match="checkpoint .* is damaged") as error:
        load_checkpoint(tmp_path, "h")
    assert "distill.resume=false" in error.value.fix and "\n" not in error.value.one_line()
    torch.save(["a list"], tmp_path / "checkpoint.pt")
    with pytest.raises(EdgedistillError, match="not an edgedistill checkpoint"):
        load_checkpoint(tmp_path, "h")


def test_a_save_clears_temp_files_that_killed_saves_left_but_not_a_live_writers(tmp_path):
    """Another process still writing (its pid in the name) is about to rename its temp file: removing it
    would end that save with a FileNotFoundError traceback."""
    from edgedistill.distill.state import load_checkpoint, save_checkpoint

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / ".checkpoint.pt.k1ll3d00").write_bytes(b"half a checkpoint")  # named before temp files carried a pid
    (tmp_path / f".checkpoint.pt.{dead}-k1ll3d00").write_bytes(b"half a checkpoint")
    live = tmp_path / f".checkpoint.pt.{os.getppid()}-wr1t1ng0"
    live.write_bytes(b"a save in progress")
    save_checkpoint(tmp_path, {"config_hash": "h", "step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoint.pt", live.name]) and load_checkpoint(tmp_path, "h")["step"] == 1


def test_the_first_log_row_after_a_resume_averages_the_steps_the_checkpoint_saw(tmp_path):
    """checkpoint_every=2 against log_every=3: the step-4 checkpoint falls mid-row, and the resumed
    row for step 6 must still average steps 4 to 6, as the uninterrupted run's does."""
    overrides = TINY + ["distill.steps=6", "distill.log_every=3", "distill.ema_decay=0"]

    class Stop(Exception):
        pass

    def stop_after_5(step):
        if step == 5:
            raise Stop()

    stage.run(load_config(None, overrides), {}, tmp_path / "plain")
    with pytest.raises(Stop):
        stage.run(load_config(None, overrides), {}, tmp_path / "resumed", on_step=stop_after_5)
    assert stage.run(load_config(None, overrides), {}, tmp_path / "resumed").extra["train"]["resumed_from_step"] == 4
    rows = {name: (tmp_path / name / "student" / "train_log.csv").read_text().splitlines() for name in ("plain", "resumed")}
    plain, resumed = ([float(x) for x in row.split(",")[1:5]] for row in (rows["plain"][-1], rows["resumed"][-1]))
    assert rows["resumed"][-1].startswith("6,") and resumed == pytest.approx(plain, rel=1e-5)


def test_a_build_stopped_before_it_recorded_its_finished_student_keeps_it(tmp_path, monkeypatch):
    """Killed after student/ is in place but before the manifest records it: the checkpoint must still be
    there, or the re-run trains from step 0; with the finished mark it takes the student as it is."""
    from edgedistill.artifacts import Artifact, Manifest
    from edgedistill.pipeline import Pipeline
    from edgedistill.targets import load_target

    cfg = load_config(None, TINY + ["distill.steps=2", "distill.checkpoint_every=1"])
    real = Artifact.record.__func__

    def stopped(cls, root, path, **fields):
        if fields.get("kind") == "student":
            raise KeyboardInterrupt  # as if killed there
        return real(cls, root, path, **fields)

    monkeypatch.setattr(Artifact, "record", classmethod(stopped))
    with pytest.raises(KeyboardInterrupt):
        Pipeline(cfg, load_target("x86-cpu"), tmp_path).distill()
    monkeypatch.setattr(Artifact, "record", classmethod(real))
    written = json.loads((tmp_path / "student" / "student.json").read_text())
    monkeypatch.setattr(stage, "train", lambda job: pytest.fail("trained again"))
    again = Pipeline(cfg, load_target("x86-cpu"), tmp_path)
    (student,) = again.distill()
    assert student.extra["train"] == written["train"] and Manifest.load(tmp_path).get("student").sha256 == student.sha256
    assert not (tmp_path / "distill_state").exists()  # recorded now: its checkpoints go
    assert "student" in again.reused  # the CLI says "kept", not "wrote"


def test_a_job_relaunched_with_its_images_or_teachers_at_another_path_or_strategy_resumes(tmp_path):
    """resume_hash holds the content of content-stamped images and of teacher checkpoints, not their paths'
    text (a node's local copy), and not the strategy (DDP and FSDP write the same full state dicts)."""
    import shutil

    from safetensors.torch import save_file

    from edgedistill.config import load_config
    from edgedistill.data.sample_photos import bundled_photo_paths
    from edgedistill.distill.stage import resume_hash

    images = tmp_path / "images"
    images.mkdir()
    for path in bundled_photo_paths()[:2]:
        shutil.copy(path, images / path.name)
    staged = tmp_path / "node-local"
    shutil.copytree(images, staged / "images")
    save_file({"w": torch.zeros(4)}, str(staged / "t.safetensors"))
    shutil.copy(staged / "t.safetensors", tmp_path / "t.safetensors")

    def resume(source, checkpoint, *more, by_content=True):
        sets = [f"data.source={source}", f"teacher.checkpoint={checkpoint}", f"teacher.extra=[{{name: resnet10t, checkpoint: {checkpoint}}}]", *more]
        return resume_hash(load_config(None, sets), "the images' names", by_content=by_content)

    here = resume(images, tmp_path / "t.safetensors")
    assert resume(staged / "images", staged / "t.safetensors") == here
    assert resume(images, tmp_path / "t.safetensors", "distill.strategy=fsdp") == here
    assert resume(staged / "images", staged / "t.safetensors", by_content=False) != resume(images, tmp_path / "t.safetensors", by_content=False)
    save_file({"w": torch.ones(4)}, str(staged / "t.safetensors"))  # another teacher: another run
    assert resume(staged / "images", staged / "t.safetensors") != here
    # from a teacher cache, cache.json stands for the teachers: a node without their files resumes too
    cached = resume(images, tmp_path / "t.safetensors", f"distill.cache={tmp_path / 'cache'}")
    assert resume(images, tmp_path / "gone.safetensors", f"distill.cache={tmp_path / 'cache'}") == cached
