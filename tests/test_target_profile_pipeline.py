"""A build folder's own profile is not swapped for a bundled namesake, and a calibration typo stops a build
before distillation rather than after it (no stage runs in these tests: they are fast)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edgedistill.cli import _pipeline
from edgedistill.config import load_config
from edgedistill.errors import EdgedistillError
from edgedistill.pipeline import Pipeline
from edgedistill.targets import load_target

NVIDIA_GPU = (Path(__file__).parents[1] / "targets" / "nvidia-gpu.yaml").read_text()


def _folder_built_for(tmp_path, text: str) -> Path:
    """A build folder whose profile is the user's file `text` (kept as BUILD/target.yaml)."""
    (tmp_path / "rtx4090.yaml").write_text(text)
    out = tmp_path / "build"
    Pipeline(load_config(), load_target(str(tmp_path / "rtx4090.yaml")), out).manifest.save()
    return out


def test_a_bundled_name_does_not_replace_the_folders_own_profile_of_that_name(tmp_path):
    """A user's RTX 4090 file named nvidia-gpu: `bench BUILD --target nvidia-gpu` dropped target_file and
    re-estimated with the bundled L4 figures."""
    out = _folder_built_for(tmp_path, NVIDIA_GPU.replace("peak_tops_int8: 242.5", "peak_tops_int8: 660.6"))
    with pytest.raises(EdgedistillError, match="built for its own profile file .*named nvidia-gpu like the bundled target") as error:
        _pipeline(out, "nvidia-gpu", None, ())
    assert "target.yaml" in error.value.fix and "name of its own" in error.value.fix
    kept = _pipeline(out, None, None, ())  # the folder's own, by default or by its path
    assert kept.target.peak_tops_int8 == 660.6 and kept.manifest.data["target_file"] == "target.yaml"
    assert _pipeline(out, str(out / "target.yaml"), None, ()).target.peak_tops_int8 == 660.6


def test_a_copy_of_the_bundled_profile_may_still_be_named_by_its_bundled_name(tmp_path):
    out = _folder_built_for(tmp_path, NVIDIA_GPU)
    assert _pipeline(out, "nvidia-gpu", None, ()).target == load_target("nvidia-gpu")


@pytest.mark.parametrize("overrides, calibration", [((), "bundled-photo"), (("quantize.calibration=bundled-photo",), "bundled-photos")])
def test_a_calibration_typo_stops_the_build_before_any_stage(tmp_path, monkeypatch, overrides, calibration):
    """Found by quantize, the typo cost a distillation and an export first."""
    ran = []
    monkeypatch.setattr(Pipeline, "distill", lambda self: ran.append("distill"))
    target = dataclasses.replace(load_target("x86-cpu"), calibration=calibration)
    pipe = Pipeline(load_config(None, overrides), target, tmp_path / "build")
    with pytest.raises(EdgedistillError, match="unknown calibration source 'bundled-photo'"):
        pipe.build()
    assert ran == []


def test_a_target_without_int8_needs_no_calibration(tmp_path, monkeypatch):
    class Ran(Exception):
        pass

    def distill(self):
        raise Ran

    monkeypatch.setattr(Pipeline, "distill", distill)
    target = dataclasses.replace(load_target("x86-cpu"), precisions=("fp32",), calibration="bundled-photo")
    with pytest.raises(Ran):  # quantize makes nothing for it, so the recipe is never read
        Pipeline(load_config(), target, tmp_path / "build").build()
