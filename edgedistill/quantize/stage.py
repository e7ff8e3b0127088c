"""Stage `quantize`: model.onnx -> INT8 models for the target's backends, from calibration data."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..artifacts import Artifact, atomic_output, remove_orphans
from ..backends.openvino_backend import ir_batch
from ..config import BuildConfig, short_hash
from ..progress import console
from ..targets import TargetProfile
from ..data.images import ImageSource
from .calibration import CalibrationRecipe, HeldOut, calibration_batch, evaluation_apart, holdout_views, load_recipe, may_share_files
from .fidelity import Budget, main_output, run_model
from .metadata import update_metadata
from .nncf_ov import quantize_openvino_int8
from .scratch import SCRATCH

TRT_CALIBRATION_DIR = Path("quantized") / "trt_calibration"
log = logging.getLogger(__name__)


def calibration_recipe(cfg: BuildConfig, target: TargetProfile):
    # An explicit --set quantize.calibration wins over the target's default recipe.
    return load_recipe(cfg.quantize.calibration or target.calibration)


def sweep_scratch(workdir: Path) -> None:
    """Scratch folders of quantize runs killed before their cleanup (SIGKILL): model-sized trial files."""
    remove_orphans(Path(workdir) / "quantized" / SCRATCH)


def recipe_hash(recipe: CalibrationRecipe) -> str:
    """The calibration batch's settings (source, samples, seed); the student's data config is recorded beside it."""
    return short_hash(recipe.__dict__)


@dataclass(frozen=True)
class EvaluationPicks:
    """Which evaluation images calibration keeps apart from (evaluation_apart): found once per quantize run, for
    the stage's key and then for the stage, since finding them decodes up to bench.eval_images images."""
    recipe: CalibrationRecipe
    apart: frozenset[int] | None  # None: too few other images, calibration shares the evaluation's


def evaluation_picks(cfg: BuildConfig, recipe: CalibrationRecipe) -> EvaluationPicks:
    if not cfg.data.source or not may_share_files(recipe.source, cfg.data.source):  # no listing or indexing for it
        return EvaluationPicks(recipe, frozenset())
    return EvaluationPicks(recipe, evaluation_apart(ImageSource(recipe.source), cfg.data.source, cfg.bench.eval_images, recipe.samples))


def evaluation_key(picks: EvaluationPicks) -> list:
    """For the stage's key: nothing where the sources have no file in common, so such builds keep their keys."""
    if picks.apart is None:  # held-out views then keep apart from calibration's images only: nothing else to key on
        return ["shares evaluation images"]
    return [sorted(picks.apart)] if picks.apart else []


@dataclass(frozen=True)
class CalibrationViews:
    recipe: CalibrationRecipe
    batch: np.ndarray
    held: HeldOut
    record: dict  # what the artifacts say of the calibration


def calibration_for(cfg: BuildConfig, target: TargetProfile, data_config: dict, workdir: Path,
                    picks: EvaluationPicks | None = None) -> CalibrationViews:
    """The calibration batch and the fallback's held-out views, kept apart from the images bench's fidelity views
    are cropped from (data.source, bench.eval_images) where the calibration source holds enough others.
    `picks`: those images as the stage's key found them (for this very recipe), not looked for again."""
    recipe = calibration_recipe(cfg, target)
    source = ImageSource(recipe.source)
    apart = picks.apart if picks is not None and picks.recipe == recipe else evaluation_picks(cfg, recipe).apart
    shares = apart is None
    evaluated = frozenset() if shares else apart  # sharing, calibration and held-out views are made as with none evaluated
    batch = calibration_batch(recipe, data_config, workdir / ".cache", evaluated, source)
    held = holdout_views(recipe, data_config, cfg.quantize.holdout_images, workdir / ".cache", evaluated, source)
    if shares:
        log.info("calibration shares images with the evaluation views: '%s' holds %d images, too few for %d calibration samples "
                 "besides the images bench's %d evaluation views are cropped from, so INT8 fidelity is measured on images calibration "
                 "saw; use a larger quantize.calibration source for an independent measure", recipe.source, len(source), recipe.samples,
                 cfg.bench.eval_images)
    record = {**recipe.__dict__, "method": cfg.quantize.method, "holdout_images": len(held.batch),
              "holdout_shares_calibration_images": held.shares_calibration_images, "shares_evaluation_images": shares}
    return CalibrationViews(recipe, batch, held, record)


def run(cfg: BuildConfig, inputs: dict, workdir: Path, target: TargetProfile) -> list[Artifact]:
    onnx_artifact: Artifact = inputs["onnx"]
    if "int8" not in target.precisions:
        return []
    onnx_path = onnx_artifact.abspath(workdir)
    views = calibration_for(cfg, target, onnx_artifact.data_config, workdir, inputs.get("evaluation_picks"))
    recipe, batch, holdout, calibration_record = views.recipe, views.batch, views.held.batch, views.record
    common = dict(parents=[onnx_artifact.name], precision="int8", data_config=onnx_artifact.data_config, config_hash=cfg.section_hash("quantize"))
    produced = []
    if {"onnxruntime", "tensorrt"} & set(target.backends):
        produced.append(_onnxruntime(cfg, target, onnx_path, batch, holdout, workdir, common, calibration_record))
    if "tensorrt" in target.backends:
        from .trt_calibration import write_trt_calibration

        folder = write_trt_calibration(workdir / TRT_CALIBRATION_DIR, batch, recipe, onnx_artifact.data_config)
        produced.append(Artifact.record(workdir, folder, kind="calibration", name="trt-calibration", parents=[onnx_artifact.name],
                                        data_config=onnx_artifact.data_config, config_hash=recipe_hash(recipe),
                                        extra={"calibration": calibration_record}))
    if "openvino" in target.backends:
        produced.append(_openvino(cfg, target, onnx_path, batch, holdout, workdir, common, calibration_record))
    return produced


def _onnxruntime(cfg, target, onnx_path, batch, holdout, workdir, common, calibration_record) -> Artifact:
    from .fallback import quantize_with_fallback

    qcfg = cfg.quantize
    if "tensorrt" in target.backends:
        # TensorRT's parser takes only symmetric int8 Q/DQ, and no int32 (bias) DequantizeLinear: biases stay float
        qcfg = replace(qcfg, symmetric_activations=True, quantize_bias=False)
    final = workdir / "quantized" / "model.int8.qdq.onnx"
    with atomic_output(final) as tmp:
        result = quantize_with_fallback(onnx_path, tmp, batch, holdout, qcfg, Budget.of(target))
        update_metadata(tmp, {"edgedistill.precision": "int8", "edgedistill.float_layers": result.float_layers,
                              "edgedistill.calibration": calibration_record})
    console.print(f"onnxruntime-int8: {result.summary()}")
    if result.float_layers:
        console.print(f"  float layers: {', '.join(result.float_layers)}")
    return Artifact.record(workdir, final, kind="onnx", name="onnxruntime-int8", backend="onnxruntime", **common, extra={
        "calibration": calibration_record, "symmetric_activations": qcfg.symmetric_activations, "op_types": list(qcfg.op_types),
        "float_layers": result.float_layers, "fallback": result.as_record(),
    })


def _openvino(cfg, target, onnx_path, batch, holdout, workdir, common, calibration_record) -> Artifact:
    validation = None
    if cfg.quantize.nncf_accuracy_control:
        reference = run_model(onnx_path, holdout)  # teacher labels: the fp32 model's own outputs
        validation = (holdout, reference["logits"] if "logits" in reference else main_output(reference))
    final = workdir / "openvino" / "int8"
    with atomic_output(final) as tmp:
        applied = quantize_openvino_int8(onnx_path, tmp / "model.xml", batch, cfg.quantize, validation,
                                         metadata={"edgedistill.precision": "int8", "edgedistill.calibration": calibration_record},
                                         fixed_batch=ir_batch(target.device, target.batch_opt))
    return Artifact.record(workdir, final, kind="openvino-ir", name="openvino-int8", backend="openvino", device=target.device,
                           **common, extra={"calibration": calibration_record, "nncf": applied})
