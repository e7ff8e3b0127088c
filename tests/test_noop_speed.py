"""A command that finds nothing to do stays cheap: no torch, timm or onnx imported to compute stage keys or
check the config, and no matplotlib re-rendering of a report that comes out the same."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgedistill.report import make_report, write_report
from edgedistill.report import write as write_mod

from .conftest import TINY_OVERRIDES

DATA = Path(__file__).parent / "data"
HEAVY = ("torch", "timm", "torchvision", "onnx", "matplotlib")
# Records the edgedistill modules that imported torch, timm or onnx, so a failure names the import to make lazy.
PROBE = """
import json, sys, traceback
from edgedistill.cli import main
class Who:
    seen = {}
    def find_spec(self, name, path=None, target=None):
        if name in ("torch", "timm", "onnx") and name not in self.seen:
            self.seen[name] = [f"{f.filename.rsplit('edgedistill', 1)[-1]}:{f.lineno}" for f in traceback.extract_stack() if "/edgedistill/" in f.filename]
who = Who()
sys.meta_path.insert(0, who)
rc = main(json.loads(sys.argv[1]))
print(json.dumps({"rc": rc, "loaded": [m for m in %r if m in sys.modules], "via": who.seen}))
""" % (HEAVY,)


def run_probe(args: list[str]) -> dict:
    env = {**os.environ, "EDGEDISTILL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def finished(tiny_build, tmp_path) -> Path:
    """A copy of the finished tiny build: these runs must not change the shared one if they fail."""
    out = tmp_path / "build"
    shutil.copytree(tiny_build, out)
    return out


def test_noop_build_and_stage_commands_import_no_torch(finished):
    build = ["build", "--target", "x86-cpu", "--out", str(finished), *[a for o in TINY_OVERRIDES for a in ("--set", o)]]
    first = run_probe(build)  # the copy's report names its new folder: written again once
    assert first["rc"] == 0
    again = run_probe(build)
    assert again["rc"] == 0
    assert again["loaded"] == [], again
    for stage in ("export", "distill"):
        alone = run_probe([stage, str(finished)])
        assert alone["rc"] == 0 and alone["loaded"] == [], alone
    assert json.loads((finished / "manifest.json").read_text())["status"] == "complete"


def test_the_zero_shot_head_preflight_imports_no_torch(tmp_path):
    """A build checks bench.zero_shot_head before its first stage, every run: that must stay cheap too."""
    import torch

    from edgedistill.config import load_config
    from edgedistill.distill.zero_shot_head import write_head
    from edgedistill.teacher_identity import teacher_identity

    from PIL import Image

    for shade, label in enumerate(("cat", "dog")):
        (tmp_path / "val" / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16), (100 * shade + i,) * 3).save(tmp_path / "val" / label / f"{i}.png")
    settings = [f"bench.eval_dir={tmp_path / 'val'}", f"bench.zero_shot_head={tmp_path / 'head.safetensors'}"]
    write_head(tmp_path / "head.safetensors", torch.eye(2, 8), teacher_identity(load_config(None, settings).teacher), ["cat", "dog"])
    code = ("import json, sys; from edgedistill.config import load_config; from edgedistill.bench.zero_shot import check_zero_shot_head; "
            f"check_zero_shot_head(load_config(None, {settings!r})); print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout.strip().splitlines()[-1]) == [], done.stderr[-2000:]


def test_default_op_types_are_not_checked_against_onnx():
    code = ("import sys; from edgedistill.config import load_config; "
            "load_config(None, ['quantize.op_types=[MatMul, Conv]']); print('onnx' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


def sample_report() -> dict:
    return make_report(json.loads((DATA / "report_sample_bench.json").read_text()))


def test_an_unchanged_report_is_not_rendered_again(tmp_path, monkeypatch):
    written = write_report(sample_report(), tmp_path)
    before = {kind: (path.read_bytes(), path.stat().st_mtime_ns) for kind, path in written.items()}
    rendered = []
    real = write_mod.render_html
    monkeypatch.setattr(write_mod, "render_html", lambda doc: rendered.append(doc) or real(doc))
    assert write_report(sample_report(), tmp_path) == written
    assert rendered == [] and {kind: (path.read_bytes(), path.stat().st_mtime_ns) for kind, path in written.items()} == before

    changed = sample_report()
    changed["selected"] = {**changed["selected"], "reason": "another reason"}
    write_report(changed, tmp_path)
    assert len(rendered) == 1 and json.loads(written["json"].read_text())["selected"]["reason"] == "another reason"
    changed["artifacts"][0]["latency_ms"]["p50"] += 1.0  # a row
    write_report(changed, tmp_path)
    assert len(rendered) == 2


def test_a_report_html_left_by_an_interrupted_write_is_rendered_again(tmp_path, monkeypatch):
    written = write_report(sample_report(), tmp_path)
    written["md"].unlink()  # the HTML is not known to be this document's
    rendered = []
    real = write_mod.render_html
    monkeypatch.setattr(write_mod, "render_html", lambda doc: rendered.append(doc) or real(doc))
    write_report(sample_report(), tmp_path)
    assert len(rendered) == 1 and written["md"].is_file()
    changed = sample_report()  # a later document's HTML, its report.json never written (even one older by mtime)
    changed["selected"] = {**changed["selected"], "reason": "another reason"}
    shutil.copy2(write_report(changed, tmp_path / "later")["html"], written["html"])
    os.utime(written["html"], ns=(1, 1))
    write_report(sample_report(), tmp_path)
    assert len(rendered) == 3 and "another reason" not in written["html"].read_text()


def test_a_report_html_drawn_by_other_code_is_drawn_again(tmp_path, monkeypatch):
    # an upgrade that changes only the HTML or its plots: the same report.json must not keep the old page
    written = write_report(sample_report(), tmp_path)
    monkeypatch.setattr(write_mod, "_renderer_digest", lambda: "0000000000000000")
    monkeypatch.setattr(write_mod, "render_html", lambda doc: "<html>new renderer</html>\n")
    write_report(sample_report(), tmp_path)
    assert written["html"].read_text().startswith("<html>new renderer</html>")
