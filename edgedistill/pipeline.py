"""Runs the stages in order over one build folder; skips a stage whose inputs+config are unchanged.

Stages talk only through files in the build folder and its manifest.json, so any stage can be
re-run alone (`edgedistill export`, `bench`, ...) or on another machine from a copied folder.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable

from .artifacts import RUNNABLE_KINDS, Artifact, Manifest, model_digest, remove_path, restore_interrupted
from .backends.trt_bundle_text import python_too_old_on_device
from .config import BuildConfig, short_hash, teacher_list
from .errors import EdgedistillError
from .device_names import device_family
from .distill import state_files
from .folder_lock import LOCK, FolderLock
from .progress import console
from .profiles import bundled_dir
from .ranks import is_first_rank
from .targets import TargetProfile

STAGES = ("distill", "export", "quantize", "compile", "bench", "report")
TARGET_FILE = "target.yaml"  # a user's target profile, kept in the build folder
# The config sections each stage reads: saved into the build once the stage has succeeded with them,
# so a typo in a later section, refused by its stage, is not kept for every later command. A "section.key"
# is one setting of another stage's section: export writes bench.eval_images's views, so it saves it.
STAGE_SECTIONS = {"distill": ("teacher", "student", "data", "distill"), "export": ("export", "teacher", "data", "bench.eval_images"),
                  "quantize": ("quantize",), "compile": (), "bench": ("bench",)}


def _key(*parts) -> str:
    return short_hash(parts)


class Pipeline:
    def __init__(self, cfg: BuildConfig, target: TargetProfile, workdir: Path, force: bool = False):
        self.cfg, self.target, self.workdir, self.force = cfg, target, Path(workdir), force
        self.workdir.mkdir(parents=True, exist_ok=True)
        # One process at a time: a second (a CI retry) would resume from the first's checkpoints and
        # replace its files under it. Under torchrun the job's ranks share the folder, and rank 0, which
        # writes it, holds it for them all.
        self._lock = FolderLock(self.workdir / LOCK, f"build folder '{self.workdir}'",
                                "wait for that run to finish, or use another build folder (--out)") if is_first_rank() else None
        self.manifest = Manifest.load(self.workdir)
        self.manifest.data["target"] = target.name
        self.manifest.data.pop("target_file", None)
        if target.source and (target.given_as_file or Path(target.source).resolve().parent != bundled_dir("targets").resolve()):
            # a copy in the build folder, which later commands reload (not a bundled namesake), here or on
            # the device the folder is copied to
            kept = self.workdir / TARGET_FILE
            if Path(target.source).resolve() != kept.resolve() and is_first_rank():  # rank 0 alone writes the folder
                shutil.copyfile(target.source, kept)
            self.manifest.data["target_file"] = TARGET_FILE
        # The config later commands start from: each section as its stage last succeeded with it (the
        # whole config on a first run, so a failed first build is re-run with its settings).
        self.manifest.data.setdefault("config", cfg.to_dict())
        self._stamps: dict = {}
        self._ranks = None  # under torchrun, while distill runs: the job's DistContext (_torchrun_job)
        self.reused: set[str] = set()  # artifacts an unchanged stage kept, so the CLI says "kept", not "wrote"

    # -- helpers ---------------------------------------------------------------------------
    def artifacts(self) -> dict[str, Artifact]:
        return self.manifest.artifacts()

    def need(self, *names: str) -> dict[str, Artifact]:
        found = self.artifacts()
        missing = [n for n in names if n not in found or not found[n].is_intact(self.workdir)]
        if missing:
            if self.manifest.data.get("status") == "complete":  # its report no longer describes these files: CI gates must not pass it
                self.manifest.set_status("incomplete", changed_artifacts=missing)
                self.manifest.save()
            raise EdgedistillError(f"build folder '{self.workdir}' lacks {', '.join(missing)} (or it changed on disk)", "run the earlier stages first, e.g. edgedistill build")
        return found

    def _run_stage(self, stage: str, key: str, work: Callable[[], list[Artifact]],
                   legacy_keys: Callable[[], list[str]] | None = None) -> list[Artifact]:
        why = None
        if not self.force:
            # a record under this run's key, or under a key an older edgedistill computed for the same inputs
            # (image sources stamped by mtime, ...), which is re-recorded under this one
            why = self._matching_record(stage, key)
            for old in (legacy_keys() if legacy_keys is not None and not why else []):
                why = self._matching_record(stage, old, rekey=key)
                if why:
                    break
        self._ranks_agree(stage, key, bool(why))
        if why:
            # later commands start from these settings: a source at a new path, which the key leaves out, is where it is now
            if self._record_config(stage):
                self.manifest.save()
            return self._reuse(stage, why)
        # What this stage and every later one made last time goes out of the manifest now: if the stage
        # fails, or no longer makes an artifact (another target profile), nothing downstream may pick up
        # an old file, and later artifacts were derived from this stage's old outputs anyway. Their records
        # are kept aside: a run that fails on a mistake, then a run with the old settings, finds them again
        # (files intact), instead of retraining a student that is still on disk.
        earlier = self.manifest.data.setdefault("earlier", {})
        for later in STAGES[STAGES.index(stage):]:
            record = self.manifest.data["stages"].pop(later, None) if later != stage else self.manifest.data["stages"].get(stage)
            outputs = {name: self.manifest.data["artifacts"].pop(name) for name in (record or {}).get("outputs", [])
                       if name in self.manifest.data["artifacts"]}
            if record and record.get("status") == "done":
                earlier[later] = {"record": record, "artifacts": outputs}
        if is_first_rank():  # it described the old outputs; a failed run must leave none
            shutil.rmtree(self.workdir / "report", ignore_errors=True)
        self.manifest.set_status("incomplete")
        for stale in ("failed_stage", "traceback", "selected", "changed_artifacts"):  # belonged to an earlier run
            self.manifest.data.pop(stale, None)
        self.manifest.save()  # on disk before the stage replaces any file: a killed run must not read as complete
        try:
            produced = work()
        except BaseException as exc:
            self.manifest.record_stage(stage, key, [], status="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            self.manifest.set_status("failed", failed_stage=stage)
            if not isinstance(exc, (EdgedistillError, KeyboardInterrupt)):
                self.manifest.data["traceback"] = traceback.format_exc()
            self.manifest.save()
            raise
        for artifact in produced:
            self.manifest.add(artifact)
        self.manifest.record_stage(stage, key, [a.name for a in produced])
        self._record_config(stage)
        replaced = self.manifest.data["earlier"].pop(stage, None)  # its files were replaced
        self.manifest.save()
        if replaced and is_first_rank():
            self._remove_unmade(replaced["artifacts"].values())
        return produced

    def _ranks_agree(self, stage: str, key: str, fresh: bool) -> None:
        """Under torchrun, every rank must reuse the stage or every rank run it: a rank that reuses it and
        exits leaves the others waiting for it in their first collective until the rendezvous times out.
        They disagree where each node has a build folder of its own (or other images or settings). Keys
        alone may differ where all run: a large source copied to each node's disk is stamped with its mtimes."""
        if self._ranks is None:
            return
        from .distill import distributed

        seen = distributed.gather_objects((key, fresh), self._ranks)
        if len({reuse for _, reuse in seen}) > 1:
            ways = ", ".join(f"rank {rank} would {'reuse' if reuse else 'run'} it" for rank, (_, reuse) in enumerate(seen))
            keys = " (with other settings or images)" if len({k for k, _ in seen}) > 1 else ""
            raise EdgedistillError(f"the processes of this torchrun job do not see the same build folder '{self.workdir}' (for its "
                                   f"{stage} stage, {ways}{keys})", "put the build folder on a file system every node shares (and the images, "
                                   "with the same settings everywhere), then relaunch the same torchrun command")

    @contextlib.contextmanager
    def _torchrun_job(self):
        """Under torchrun, the job's process group for the distill command: every rank joins it before any
        decides whether the stage is fresh, so no rank acts before rank 0 holds the folder's lock (it joins
        only then), and they decide alike (_ranks_agree). Outside torchrun, nothing."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            yield
            return
        from .distill import distributed
        from .distill.trainer import pick_device

        self._ranks = distributed.init(pick_device(self.cfg.distill.device).type)
        try:
            yield
        except BaseException:
            distributed.abandon(self._ranks)  # the other ranks may be gone: no barrier
            raise
        else:
            distributed.shutdown(self._ranks)
        finally:
            self._ranks = None

    def _record_config(self, stage: str) -> bool:
        """Save this run's settings of the stage's config sections as the build's; whether they changed."""
        current, saved, changed = self.cfg.to_dict(), self.manifest.data["config"], False
        for name in STAGE_SECTIONS[stage]:
            section, _, key = name.partition(".")
            into, field = (saved.setdefault(section, {}), key) if key else (saved, section)
            value = current[section][key] if key else current[section]
            changed |= into.get(field) != value
            into[field] = value
        return changed

    def _remove_unmade(self, old: Iterable[dict]) -> None:
        """Remove the files of a stage's earlier outputs that its new run did not make again (another target:
        no OpenVINO IR for arm64-cpu): no record describes them, yet they would go to the device with the
        folder. Only paths inside the build folder, and none that holds or lies in a recorded artifact."""
        root = self.workdir.resolve()
        kept = [Path(os.path.normpath(root / a.path)) for a in self.artifacts().values()]
        for record in old:
            path = Path(os.path.normpath(root / str(record.get("path") or ".")))
            inside = path != root and path.is_relative_to(root) and path.parent.resolve().is_relative_to(root)
            if not inside or any(path == k or path in k.parents or k in path.parents for k in kept):
                continue
            if path.exists() or path.is_symlink():
                remove_path(path)
            for folder in path.parents:  # openvino/ once its last IR is gone
                if folder == root or not folder.is_relative_to(root) or not folder.is_dir() or any(folder.iterdir()):
                    break
                folder.rmdir()

    def _reuse(self, stage: str, why: str) -> list[Artifact]:
        outputs = self.manifest.data["stages"][stage]["outputs"]
        if is_first_rank():  # under torchrun: once per job
            console.print(f"[dim]{stage}: {why}, reusing {', '.join(outputs) or 'nothing'}[/dim]")
        self.reused.update(outputs)
        return [self.artifacts()[n] for n in outputs]

    def _matching_record(self, stage: str, key: str, rekey: str | None = None) -> str | None:
        """Why the stage's recorded outputs stand for `key` ("unchanged", or a record set aside and put back), else None."""
        if self.manifest.stage_is_fresh(stage, key):
            why = "unchanged"
        elif self._restore_earlier(stage, key):
            why = "unchanged since an earlier run"
        else:
            return None
        if rekey is not None:
            self.manifest.data["stages"][stage]["key"] = rekey
            self.manifest.save()
        return why

    def _stage_artifacts(self, stage: str) -> list[dict]:
        """The records of what the stage last made, in the manifest or set aside by a later run."""
        data = self.manifest.data
        recorded = [data["artifacts"].get(name) for name in (data["stages"].get(stage) or {}).get("outputs", [])]
        return [a for a in recorded if a] + list(((data.get("earlier") or {}).get(stage) or {}).get("artifacts", {}).values())

    def _restore_earlier(self, stage: str, key: str) -> bool:
        """Put back the record a later run set aside, when its key is this run's and its files are intact."""
        kept = (self.manifest.data.get("earlier") or {}).get(stage)
        if not kept or kept["record"].get("key") != key or set(kept["artifacts"]) != set(kept["record"]["outputs"]):
            return False
        if not all(Artifact.from_dict(a).is_intact(self.workdir) for a in kept["artifacts"].values()):
            return False
        self.manifest.data["stages"][stage] = kept["record"]
        self.manifest.data["artifacts"].update(kept["artifacts"])
        del self.manifest.data["earlier"][stage]
        if self.manifest.data.get("failed_stage") == stage:  # the failure this record was set aside for is undone
            for stale in ("failed_stage", "traceback"):
                self.manifest.data.pop(stale, None)
            self.manifest.set_status("incomplete")
        self.manifest.save()
        return True

    # -- stages ----------------------------------------------------------------------------
    def _file_inputs(self, *sources: str | tuple | None, legacy: bool = False) -> list:
        """Content stamps of what the config only names by path (image sources, checkpoints, a teacher
        cache), so editing those files re-runs the stage; computed once per source and run. `legacy`:
        image sources stamped as before content stamps (data.source_stamp), for keys older builds recorded."""
        stamps = []
        for item in sources:
            if (legacy, item) not in self._stamps:
                self._stamps[legacy, item] = self._stamp(*(item if isinstance(item, tuple) else (item, None)), legacy)
            stamps.append(self._stamps[legacy, item])
        return stamps

    @staticmethod
    def _stamp(source: str | None, limit: int | None, legacy: bool):
        """(source, data.max_images) -> its stamp."""
        from .artifacts import file_digest, sha256_file
        from .data.source_stamp import source_stamp

        path = Path(source).expanduser() if source else None
        if path is not None and source != "bundled":
            restore_interrupted(path)  # a teacher cache a killed cache-teacher left aside: stamped as the stage will read it
        if not source or source == "bundled":
            return None
        if path.is_file() and path.suffix != ".txt" and not source.endswith(".tar"):
            return file_digest(path)  # a checkpoint or a recipe: the distill stage hashes the same checkpoint again
        if path.is_dir() and (path / "cache.json").is_file():
            return sha256_file(path / "cache.json")  # a teacher cache
        try:
            return source_stamp(source, limit, legacy=legacy)
        except EdgedistillError as exc:  # the stage itself reports it, and records the failure
            return f"unreadable: {exc}"

    def _paths_stood_for(self, data_stamp) -> set[str]:
        """Path settings whose files' content is in the key already, so their text is left out of it: a
        checkout or a cache restored at another path (or the same folder spelled `./imgs`) keeps its stages.
        data.source when its stamp is by content (data/source_stamp.py), the teachers' checkpoint files
        (further teachers' too), a teacher cache (its cache.json)."""
        from .data.source_stamp import CONTENT

        stood_for = {"data.source"} if str(data_stamp).startswith(CONTENT) else set()
        extra_checkpoints = any(isinstance(e, dict) and e.get("checkpoint") for e in self.cfg.teacher.extra or ())
        return stood_for | {name for name, value in (("teacher.checkpoint", self.cfg.teacher.checkpoint),
                                                     ("teacher.extra.checkpoint", extra_checkpoints),
                                                     ("distill.cache", self.cfg.distill.cache)) if value}

    def _teacher_checkpoints(self) -> list[str | None]:
        return [c.checkpoint for c in teacher_list(self.cfg.teacher)]

    # A stage's key needs only constants and config helpers: its module (torch, timm) is imported in the
    # work that runs it, so a rebuild whose stages are all unchanged imports no torch.
    def distill(self) -> list[Artifact]:
        # settings that change neither the arithmetic nor the data (log_every, num_workers, ...) do not re-train
        def key(legacy: bool = False, strategy: bool = False) -> str:
            stamps = self._file_inputs((self.cfg.data.source, self.cfg.data.max_images), self.cfg.distill.cache, *self._teacher_checkpoints(),
                                       legacy=legacy)
            ignore = {f"distill.{k}" for k in state_files.NOT_HASHED | state_files.inert_settings(self.cfg.distill)}
            ignore |= set() if legacy else self._paths_stood_for(stamps[0])
            if state_files.dime_fm_on(self.cfg.distill) and not legacy:  # by the stamp in its header (text_embeddings.py), not its path
                from .distill.text_embeddings import hash_stamp

                stamps, ignore = [*stamps, hash_stamp(self.cfg.distill.text_embeddings)], ignore | {"distill.text_embeddings"}
            if self.cfg.distill.finetune_labels and not legacy:  # step 3's images and labels (class folders), by content
                from .data.source_stamp import CONTENT

                labels = self._file_inputs(self.cfg.distill.finetune_labels)[0]
                stamps, ignore = [*stamps, labels], ignore | ({"distill.finetune_labels"} if str(labels).startswith(CONTENT) else set())
            # DDP and FSDP train the same student (and resume each other's checkpoints): keyed as DDP, a switch does
            # not re-train. `strategy`: the key before that, which FSDP builds recorded
            cfg = self.cfg if legacy or strategy else replace(self.cfg, distill=replace(self.cfg.distill, strategy="ddp"))
            return _key(cfg.section_hash("teacher", "student", "data", "distill", ignore=ignore), stamps)

        def work():
            from .distill.distilled import discard_distilled
            from .distill.stage import run

            if self.force and is_first_rank():  # a forced distill distils again, not only step 3 on the kept student
                discard_distilled(self.workdir)
            return [run(self.cfg, {}, self.workdir, keep_state=True)]

        weights = self.workdir / "student" / "student.safetensors"
        finished = self.workdir / state_files.STATE_DIR / state_files.FINISHED
        before = weights.stat().st_mtime_ns if finished.is_file() and weights.is_file() else None
        with self._torchrun_job():
            produced = self._run_stage("distill", key(), work, lambda: [key(strategy=True), key(legacy=True)])
            if before is not None and weights.is_file() and weights.stat().st_mtime_ns == before:
                self.reused.add("student")  # a run stopped before recording it had finished it: kept, not written
            if is_first_rank():
                state_files.discard_state(self.workdir)  # the manifest records the student now
        return produced

    def export(self) -> list[Artifact]:
        student = self.need("student")["student"]
        # teacher.dtype is how distillation runs the teacher; the evalset's teacher runs in fp32
        def key(legacy: bool = False) -> str:  # the eval views and the teacher's logits on them
            stamps = self._file_inputs(self.cfg.data.source, *self._teacher_checkpoints(), legacy=legacy)
            ignore = {"teacher.dtype"} | (set() if legacy else self._paths_stood_for(stamps[0]))
            return _key(self.cfg.section_hash("export", "teacher", "data", ignore=ignore), self.target.opset, self.cfg.bench.eval_images,
                        student.sha256 if legacy else model_digest(student), stamps)

        # A device's toolchain may parse only older opsets (JetPack 5's TensorRT 8.5: 16).
        cfg = replace(self.cfg, export=replace(self.cfg.export, opset=min(self.cfg.export.opset, self.target.opset)))
        if cfg.export.opset < self.cfg.export.opset and is_first_rank():
            console.print(f"[yellow]note:[/yellow] export.opset {self.cfg.export.opset} is above what {self.target.name}'s toolchain "
                          f"parses: exporting opset {cfg.export.opset} (the target profile's `opset`)")

        def work():
            from .export import stage
            from .export.evalset import write_evalset

            onnx = stage.run(cfg, {"student": student}, self.workdir)
            return [onnx, write_evalset(cfg, onnx.data_config, self.workdir, onnx.name)]

        return self._run_stage("export", key(), work, lambda: [key(legacy=True)])

    def quantize(self) -> list[Artifact]:
        from .backends.openvino_backend import ir_batch
        from .quantize import stage
        from .quantize.ort_static import NO_OUTPUT_QDQ

        onnx = self.need("onnx-fp32")["onnx-fp32"]
        self._check_eval_images()  # the images calibration keeps apart are the evaluation set's
        stage.sweep_scratch(self.workdir)  # a killed quantize's trial models, gone even when this one is reused
        try:
            recipe = stage.calibration_recipe(self.cfg, self.target)
            from .data.source_stamp import CONTENT

            [stamp] = self._file_inputs(recipe.source)
            picks = stage.evaluation_picks(self.cfg, recipe)  # handed to the stage too: found (decoded) once
            apart = stage.evaluation_key(picks)
            # the recipe's content and the images' stamp stand for where they are: a moved checkout is the same calibration
            calibration = [{**recipe.__dict__, "source": None if str(stamp).startswith(CONTENT) else recipe.source}, stamp, *apart]
        except EdgedistillError as exc:  # the stage itself reports it, and records the failure
            calibration, picks = f"unresolvable: {exc}", None
        # The Q/DQ layout too, so what an older edgedistill quantized is redone: with Q/DQ on MatMul outputs a
        # distilled ViT's int8 model scores cosine 0.906 on onnxruntime 1.18-1.31 (ort_static.NO_OUTPUT_QDQ)
        parts = (self.cfg.section_hash("quantize", ignore={"quantize.calibration"}), self.target.name, self.target.calibration,
                 self.target.backends, self.target.precisions, self.target.min_cosine, self.target.min_top1_agreement, onnx.sha256,
                 calibration, {"no_output_qdq": NO_OUTPUT_QDQ})
        # OpenVINO's INT8 IR is made for the device: saved at the profile's batch for an NPU (ir_batch), and recorded with it
        openvino = "openvino" in self.target.backends
        batch = ir_batch(self.target.device, self.target.batch_opt)
        key = _key(*parts, {"device": self.target.device, "ir_batch": batch}) if openvino else _key(*parts)

        def before_device() -> list[str]:
            """The key before the device was in it, which stands for an IR made for this device at a dynamic batch."""
            made = [a for a in self._stage_artifacts("quantize") if a.get("backend") == "openvino"]
            return [_key(*parts)] if openvino and batch is None and all(a.get("device") == self.target.device for a in made) else []

        return self._run_stage("quantize", key, lambda: stage.run(self.cfg, {"onnx": onnx, "evaluation_picks": picks}, self.workdir,
                                                                   self.target), before_device)

    def compile(self) -> list[Artifact]:
        from .backends import compile_stage

        found = self.need("onnx-fp32")
        inputs = {"onnx": found["onnx-fp32"], **{k: v for k, v in found.items() if k in ("onnxruntime-int8", "trt-calibration")}}
        key = _key(self.target, sorted(a.sha256 for a in inputs.values()))
        return self._run_stage("compile", key, lambda: compile_stage.run(self.cfg, inputs, self.workdir, self.target))

    def bench(self) -> list[Artifact]:
        from .backends.compile_stage import adopt_engines
        from .bench.host import measuring_host

        stages = self.manifest.data["stages"]
        undone = [s for s in STAGES[:STAGES.index("bench")] if (stages.get(s) or {}).get("status") != "done"]
        if undone:  # `quantize` alone drops compile's records: bench would time, and select from, what is left
            raise EdgedistillError(f"build folder '{self.workdir}' has not run {', '.join(undone)} since an earlier stage re-ran, so bench would "
                                   "measure only some of its models", f"run edgedistill {undone[0]} {self.workdir} first (or edgedistill build)")
        if self.target.runs_on_this_host()[0] and adopt_engines(self.manifest):  # engines build_engines.sh left on the device
            self.manifest.save()
        on_host = self.target.runs_on_this_host()[0]
        timed = [n for n, a in self.artifacts().items() if a.kind in RUNNABLE_KINDS and (on_host or a.kind == "onnx")]
        found = self.need("student", "onnx-fp32", "evalset", *timed)  # an artifact deleted or edited since is no artifact to time
        self._check_eval_images()
        # on_host: a folder benched on the workstation (estimates) and copied to the device is measured there; the
        # host: one restored from a CI cache onto another runner, or run under other runtimes, is measured again
        def key(before: bool = False, files_only: bool = False) -> str:
            """`before`: as keyed before a student was its weights (its folder holds train_log.csv's timings, so a
            re-training to the same weights re-ran bench) and the eval_dir its names and sizes (a relabelling kept it).
            `files_only`: as keyed before a build folder in efficiency_from was (its bench.json left out)."""
            inputs = sorted(model_digest(a) if name == "student" and not before else a.sha256
                            for name, a in found.items() if name != "bench")  # not its own last output: it never matched
            # the names of the logits' columns, which task top-1 maps eval_dir's classes by (absent: the key as before)
            classes = found["student"].extra.get("classes") if self.cfg.bench.eval_dir else None
            return _key(self.cfg.section_hash("bench"), self.target, inputs, self._bench_input_digests(before, files_only), on_host,
                        measuring_host(), *([classes] if classes else []))

        def work():
            from .bench import stage  # estimates' graph costing imports onnx: only when bench runs

            return [stage.run(self.cfg, self.artifacts(), self.workdir, self.target)]

        def older_keys() -> list[str]:
            """Keys earlier releases gave these inputs. One that left out a build folder's bench.json in efficiency_from
            stands for the figures it made; one that left out an eval_dir's content stands for no bench that had one
            (a relabelling kept its figures)."""
            folders = any(Path(p).is_dir() for p in self.cfg.bench.efficiency_from)
            no_eval_dir = not self.cfg.bench.eval_dir
            forms = [(folders, {"files_only": True}), (no_eval_dir, {"before": True}), (no_eval_dir and folders, {"before": True, "files_only": True})]
            return [key(**form) for applies, form in forms if applies]

        return self._run_stage("bench", key(), work, older_keys)

    def _check_eval_images(self) -> None:
        """bench.eval_images is export's: it wrote that many views into the evaluation set. Another count here
        would be saved as the build's without changing the set (bench.json said 48 images under a config
        saying 8), and the next build would re-export with it unasked."""
        evalset = self.artifacts().get("evalset")
        made, asked = (evalset.extra or {}).get("images") if evalset else None, self.cfg.bench.eval_images
        if made is not None and made != asked:
            again = shlex.join(["edgedistill", "build", "--out", str(self.workdir), "--set", f"bench.eval_images={asked}"])
            raise EdgedistillError(f"bench.eval_images is {asked}, but the evaluation set export wrote in '{self.workdir}' has {made} images",
                                   f"leave it at {made} (--set bench.eval_images={made}), or re-export with {asked}: {again}")

    def _bench_input_digests(self, before: bool = False, files_only: bool = False) -> list:
        """Content of files the bench config only names by path, so edits to them re-run bench: efficiency_from's
        bench.json files (a build folder's bench/bench.json, as bench reads it), the labelled eval_dir stamped as
        image sources are (by content, its class folders in the names)."""
        from .artifacts import sha256_file
        from .bench.estimate.efficiency import bench_json

        named = [Path(p) for p in self.cfg.bench.efficiency_from] if files_only else map(bench_json, self.cfg.bench.efficiency_from)
        digests = [sha256_file(path) for path in named if path.is_file()]
        if self.cfg.bench.zero_shot_head and Path(self.cfg.bench.zero_shot_head).expanduser().is_file():  # absent from older keys: unset then
            digests.append(sha256_file(Path(self.cfg.bench.zero_shot_head).expanduser()))
        if self.cfg.bench.eval_dir and Path(self.cfg.bench.eval_dir).is_dir():
            root = Path(self.cfg.bench.eval_dir)
            digests.append(sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file()) if before
                           else self._file_inputs(self.cfg.bench.eval_dir))
        return digests

    def report(self) -> dict:
        from .report_stage import write_build_report

        bench = self.need("bench")["bench"]
        report = write_build_report(self.workdir, bench.abspath(self.workdir), self.remaining_steps())
        self.manifest.data["selected"] = report.get("selected")
        stages = self.manifest.data["stages"]
        missing = [s for s in STAGES[:-1] if (stages.get(s) or {}).get("status") != "done"]
        changed = self.manifest.changed_artifacts()
        if missing or changed:  # a report over what exists, but the build is not finished
            self.manifest.set_status("incomplete", missing_stages=missing, changed_artifacts=changed)
        else:
            for stale in ("missing_stages", "changed_artifacts"):
                self.manifest.data.pop(stale, None)
            self.manifest.set_status("complete")
        self.manifest.save()
        return report

    def remaining_steps(self) -> list[str]:
        """What is left on the target device: none for a target this host ran, else copy, install, (compile
        the TensorRT bundle) and bench there, where measured rows replace the pending and estimated ones."""
        bundle = self.artifacts().get("tensorrt-bundle")
        pending_bundle = bundle is not None and bundle.status == "pending"
        if self.target.runs_on_this_host()[0] and not pending_bundle:
            return []
        steps = [f"copy the build folder '{self.workdir}' to the {self.target.name} device"]
        if python_too_old_on_device(self.target.jetpack):  # JetPack 5: Python 3.8, which edgedistill does not run on
            if pending_bundle:
                steps.append(f"there: {shlex.join(['bash', f'{bundle.path}/build_engines.sh'])}   (trtexec; edgedistill needs Python 3.10+, JetPack "
                             f"{self.target.jetpack} has 3.8, so its rows stay estimates)")
            return steps
        steps.append(f"there: {self._install_step()}")
        if pending_bundle:
            steps.append(f"there: {shlex.join(['edgedistill', 'compile', str(self.workdir / bundle.path)])}   (or run {bundle.path}/build_engines.sh with trtexec)")
        # quoted: a folder named with spaces or quotes is pasted into a shell as one argument
        steps.append(f"there: {shlex.join(['edgedistill', 'bench', str(self.workdir), '--target', self._target_argument()])}")
        return steps

    def _install_step(self) -> str:
        """How the device gets edgedistill and the runtimes its target's rows need."""
        target, parts = self.target, ["pip install edgedistill"]
        if "tensorrt" in target.backends:
            parts = (["pip install edgedistill, with the JetPack's own TensorRT Python bindings (python3-libnvinfer)"]
                     if target.jetpack or target.arch == "aarch64" else ["pip install 'edgedistill[tensorrt]'"])
        if "onnxruntime" in target.backends and device_family(target.device) in ("GPU", "DLA"):
            # the CPU build of onnxruntime, which edgedistill depends on, has no CUDA provider
            parts.append("pip uninstall -y onnxruntime && pip install onnxruntime-gpu" + (" (JetPack's build for a Jetson)" if target.jetpack else ""))
        return "; ".join(parts)

    def _target_argument(self) -> str:
        """What --target takes to name this build's target: its bundled name, or the profile kept in the folder."""
        return str(self.workdir / TARGET_FILE) if self.manifest.data.get("target_file") else self.target.name

    def _check_bench_inputs(self) -> None:
        """What bench reads besides the build, checked as bench checks it: a missing efficiency_from file, an
        eval_dir not in the labelled layout or a CPU this process cannot pin failed only once every model was made."""
        from .bench.affinity import require_usable
        from .bench.estimate.efficiency import load_samples
        from .bench.labelled import list_labelled
        from .list_settings import parse_cpus

        load_samples(self.cfg.bench.efficiency_from)
        if self.cfg.bench.eval_dir:
            list_labelled(self.cfg.bench.eval_dir, self.cfg.bench.eval_max_images)
        if self.cfg.bench.zero_shot_head:
            from .bench.zero_shot import check_zero_shot_head

            check_zero_shot_head(self.cfg)
        require_usable(parse_cpus(self.cfg.bench.pin_cpus))

    def build(self) -> dict:
        if "int8" in self.target.precisions:  # what quantize resolves: a typo there was found only after distillation and export
            from .quantize.calibration import check_source
            from .quantize.stage import calibration_recipe

            check_source(calibration_recipe(self.cfg, self.target), self.cfg.quantize.calibration or self.target.calibration)
        self._check_bench_inputs()
        for stage in STAGES[:-1]:
            getattr(self, stage)()
        return self.report()
