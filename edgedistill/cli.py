"""Command line: thin. Parse, load config and target, call one stage or the whole pipeline."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shlex
import sys
import traceback
from pathlib import Path

import click
from rich.markup import escape  # paths and pip extras like [tensorrt] are not markup

from .config import CACHE_DTYPES
from .errors import EdgedistillError
from .exits import DISK_FIXES, INTERNAL_ERROR, Terminated, cause_chain, sigterm_as_interrupt, terminated
from .ranks import is_first_rank

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class GateValue(click.ParamType):
    """A finite number in the gate's range: `--min-cosine nan` (a badly templated CI variable) turned the
    gate off, and `--max-latency-ms -1` or `--min-cosine 1.5` failed every build as if it were the model's fault."""

    name = "number"

    def __init__(self, low: float, high: float, low_open: bool):
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if number < self.low or (self.low_open and number == self.low) or number > self.high:
            self.fail(f"{value!r} is out of range ({'above' if self.low_open else 'from'} {self.low:g}"
                      f"{'' if math.isinf(self.high) else f' to {self.high:g}'})", param, ctx)
        return number


POSITIVE, SHARE = GateValue(0, math.inf, low_open=True), GateValue(-1, 1, low_open=False)


def _common(func):
    """--target / --config / --set shared by the stage commands."""
    func = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value, e.g. --set distill.steps=50 (repeatable).")(func)
    func = click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file (sections: teacher, student, data, distill, export, quantize, bench).")(func)
    func = click.option("--target", default=None, help="Target name (see `edgedistill targets`) or a profile .yaml path. Default: the build's, else x86-cpu.")(func)
    return func


def _pipeline(build_dir: Path, target: str | None, config_path: str | None, overrides: tuple, force: bool = False, alone: bool = True,
              existing: bool = False, unsaved: tuple[str, ...] = ()):
    """The pipeline over a build folder: its saved config and target under today's --config/--set/--target.
    `alone`: one stage runs, so the earlier ones must have been made for the same target. `existing`: the
    stage reads earlier stages' outputs, so a mistyped folder is named as such (not created empty).
    `unsaved`: section.key values of the saved config to leave at their defaults (--config and --set still apply)."""
    from .artifacts import MANIFEST, Manifest, newest_writer
    from .config import load_config
    from .pipeline import Pipeline
    from .targets import load_target
    from .versions import is_newer_than_installed

    if existing and not (Path(build_dir) / MANIFEST).is_file():
        raise EdgedistillError(f"'{build_dir}' is not a build folder (it has no {MANIFEST})",
                               f"check the path, or make one with edgedistill build --out {build_dir}")
    manifest = Manifest.load(build_dir)
    saved = {section: dict(values) if isinstance(values, dict) else values for section, values in manifest.data.get("config", {}).items()}
    for key in unsaved:
        section, _, name = key.partition(".")
        if isinstance(saved.get(section), dict):
            saved[section].pop(name, None)
    try:
        cfg = load_config(config_path, overrides, base=saved)
    except EdgedistillError as exc:
        made_by = newest_writer(manifest.data)
        if "unknown config key" in exc.cause and is_newer_than_installed(made_by):  # not the user's typo: a setting added since
            raise EdgedistillError(f"build folder '{build_dir}' was made by edgedistill {made_by}, newer than this one, and {exc.cause}",
                                   f"pip install -U 'edgedistill>={made_by}' where you run it") from exc
        raise
    # a profile file is reloaded from where it was (its name alone may be unknown, or a bundled target's)
    saved_file = manifest.data.get("target_file")
    if saved_file:
        saved_file = str(Path(build_dir) / saved_file)  # the copy kept in the folder (an absolute path stays as it is)
    if not target and saved_file and not Path(saved_file).is_file():
        raise EdgedistillError(f"build folder '{build_dir}' was built for the target profile file '{saved_file}', which is gone",
                               "pass --target with that profile's path (or a bundled target's name)")
    profile = load_target(target or saved_file or manifest.data.get("target", "x86-cpu"))
    built_for = manifest.data.get("target")
    if target and saved_file and not profile.given_as_file and Path(saved_file).is_file():
        # --target NAME, where the folder keeps its own profile of that name (a user's RTX 4090 file named
        # nvidia-gpu): by name alone the bundled one silently replaced it, and its figures
        kept = load_target(saved_file)
        if kept.name == profile.name and kept.content_hash() != profile.content_hash():
            raise EdgedistillError(f"build folder '{build_dir}' was built for its own profile file '{saved_file}', named {profile.name} "
                                   f"like the bundled target but with other settings",
                                   f"leave out --target (or pass --target {saved_file}) to keep it; for the bundled {profile.name}, "
                                   "use another --out; and give your profile a name of its own")
    if alone and built_for and profile.name != built_for and manifest.data.get("stages"):
        raise EdgedistillError(f"build folder '{build_dir}' was built for {built_for}, not {profile.name}, so its quantized models and engines are {built_for}'s",
                               f"edgedistill build --target {target or saved_file or profile.name} --out {build_dir} re-runs the stages that depend on the target (or use another --out)")
    return Pipeline(cfg, profile, build_dir, force=force)


def _print_written(pipe, produced) -> None:
    from .progress import console

    if not is_first_rank():  # under torchrun: once per job, as rank 0 alone writes
        return
    for artifact in produced:
        state = " (pending: finish on the device)" if artifact.status == "pending" else ""
        verb = "kept" if artifact.name in pipe.reused else "wrote"
        console.print(f"{verb} [bold]{artifact.name}[/bold] -> {escape(str(pipe.workdir / artifact.path))}{state}")


ASKS_HELP = "edgedistill.asks_help"


class _Commands(click.Group):
    """Notes a subcommand's --help before the group's callback runs (click has consumed the arguments by then)."""

    def parse_args(self, ctx, args):
        ctx.meta[ASKS_HELP] = any(arg in CONTEXT["help_option_names"] for arg in args)  # only prints: harmless on N ranks
        return super().parse_args(ctx, args)


@click.group(cls=_Commands, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="edgedistill")
@click.pass_context
def cli(ctx, debug):
    """Distil a vision foundation model into a small student and ship it to a device.

    \b
    edgedistill build --target x86-cpu --out runs/demo     # everything, on the embedded default
    edgedistill build --target jetson-orin --out runs/orin  # bundle for TensorRT on the Jetson
    edgedistill targets                                     # the device profiles
    """
    ctx.obj = {"debug": debug}
    command = ctx.invoked_subcommand
    if command != "distill" and not ctx.meta.get(ASKS_HELP) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # every rank would run it: N copies writing one folder, a benchmark timed with N copies contending
        raise EdgedistillError(f"only `edgedistill distill` runs under torchrun, not `edgedistill {command}`",
                               f"torchrun ... -m edgedistill distill BUILD, then edgedistill {command} ... on one process")


@cli.command(context_settings=CONTEXT)
@_common
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/build"), show_default=True, help="Build folder.")
@click.option("--force", is_flag=True, help="Re-run every stage even when its inputs are unchanged.")
def build(target, config_path, overrides, out, force):
    """Run distill -> export -> quantize -> compile -> bench -> report into one folder.

    \b
    Examples:
      edgedistill build --target x86-cpu --out runs/demo
      edgedistill build --target jetson-orin --set teacher.name=vit_large_patch14_dinov2.lvd142m \\
          --set student.name=vit_small_patch16_224 --set data.source=/data/imagenet/train --out runs/orin
      edgedistill build --target my-device.yaml --config recipe.yaml --out runs/mine
    """
    from .progress import console
    from .report import summary_table

    pipe = _pipeline(out, target, config_path, overrides, force, alone=False)
    report = pipe.build()
    console.print(summary_table(report))
    console.print(f"build folder: [bold]{escape(str(out))}[/bold]  (manifest.json, report/report.md, report/report.html)")
    for step in report.get("remaining_steps") or []:
        console.print(f"[yellow]remaining:[/yellow] {escape(step)}", soft_wrap=True)  # a command folded mid-path cannot be pasted


def _stage_command(name: str, doc: str):
    @click.argument("build_dir", type=click.Path(file_okay=False, path_type=Path))
    @_common
    @click.option("--force", is_flag=True, help="Re-run even when inputs are unchanged.")
    def command(build_dir, target, config_path, overrides, force):
        pipe = _pipeline(build_dir, target, config_path, overrides, force, existing=name != "distill")
        produced = getattr(pipe, name)()
        _print_written(pipe, produced)

    command.__doc__ = doc
    return cli.command(name=name, context_settings=CONTEXT)(command)


_stage_command("distill", """Distil the teacher into a student: BUILD_DIR/student/.

\b
Examples:
  edgedistill distill runs/exp --set distill.steps=2000 --set data.source=/data/images
  edgedistill distill runs/exp --config recipe.yaml
""")
_stage_command("export", """Export BUILD_DIR/student to model.onnx, checked against torch.

\b
Example:
  edgedistill export runs/exp --set export.simplify=false
""")
_stage_command("quantize", """Quantize model.onnx to INT8 (ONNX Runtime QDQ, OpenVINO/NNCF) with calibration data.

\b
Examples:
  edgedistill quantize runs/exp --target x86-cpu
  edgedistill quantize runs/exp --set quantize.calibration=/data/calib_images --set quantize.method=entropy
""")


@cli.command(name="compile", context_settings=CONTEXT)
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@_common
@click.option("--force", is_flag=True, help="Re-run even when inputs are unchanged.")
def compile_command(path, target, config_path, overrides, force):
    """Build engines for the target. PATH is a build folder, or a TensorRT bundle on the device.

    \b
    Examples:
      edgedistill compile runs/exp
      edgedistill compile runs/orin/trt_bundle          # on the Jetson: builds the TensorRT engines
    """
    from .progress import console

    if (path / "bundle.json").is_file():
        from .artifacts import MANIFEST
        from .backends.compile_stage import record_device_engines
        from .backends.trt_bundle import compile_bundle
        from .folder_lock import LOCK, FolderLock

        parent = path.resolve().parent  # a bundle inside a build folder: that folder's manifest records the engines
        in_build = (parent / MANIFEST).is_file()
        with FolderLock(parent / LOCK, f"build folder '{parent}'", "wait for that run to finish") if in_build else contextlib.nullcontext():
            engines = compile_bundle(path)
            for engine in engines:
                console.print(f"wrote engine {escape(str(engine))}", soft_wrap=True)
            build = record_device_engines(path, engines)
        if build is not None:
            console.print(escape(f"recorded the engines in {build / 'manifest.json'}: edgedistill bench {shlex.quote(str(build))} "
                                 "--target TARGET times them"), soft_wrap=True)  # escaped: a '[v2]' in the path is no markup
        return
    pipe = _pipeline(path, target, config_path, overrides, force, existing=True)
    _print_written(pipe, pipe.compile())


@cli.command(context_settings=CONTEXT)
@click.argument("build_dir", type=click.Path(file_okay=False, path_type=Path))
@_common
@click.option("--force", is_flag=True, help="Measure again even when nothing changed.")
@click.option("--iterations", type=int, help="Timed runs per artifact (after warm-up).")
@click.option("--warmup", type=int, help="Untimed runs before timing.")
@click.option("--time-budget", type=float, help="Stop timing an artifact after this many seconds (without --iterations the budget alone decides). Bench flags are kept in the build for later runs.")
@click.option("--batch-sizes", help="Throughput sweep, e.g. 1,4,8.")
@click.option("--threads", type=int, help="Runtime threads.")
@click.option("--pin-cpus", help="Pin the process to these CPUs while timing, e.g. 0-3.")
@click.option("--eval-dir", type=click.Path(exists=True, file_okay=False), help="Labelled folder (one subfolder per class) for kNN / linear-probe accuracy, and task top-1 when the student names its classes.")
@click.option("--efficiency-from", multiple=True, type=click.Path(exists=True), help="Measured bench.json, or a build folder holding one, to learn the estimator's efficiency from (repeatable).")
def bench(build_dir, target, config_path, overrides, force, iterations, warmup, time_budget, batch_sizes, threads, pin_cpus, eval_dir, efficiency_from):
    """Time every artifact that runs here and measure its fidelity: BUILD_DIR/bench/bench.json.

    Artifacts for a device that is not here get roofline estimates, labelled "estimated".

    \b
    Examples:
      edgedistill bench runs/exp --force --iterations 500 --threads 4 --pin-cpus 0-3
      edgedistill bench runs/exp --batch-sizes 1,8,32 --eval-dir /data/val_labelled
      edgedistill bench runs/nano --target jetson-orin-nano --efficiency-from orin-bench.json
    """
    import json

    from .progress import console
    from .report import summary_table

    options = {"iterations": iterations, "warmup": warmup, "time_budget_s": time_budget, "batch_sizes": batch_sizes,
               "threads": threads, "pin_cpus": pin_cpus, "eval_dir": eval_dir, "efficiency_from": list(efficiency_from) or None}
    extra = tuple(f"bench.{key}={json.dumps(value)}" for key, value in options.items() if value is not None)
    # the flags persist in the build: an --iterations saved by an earlier bench would still cap a time budget
    unsaved = ("bench.iterations",) if time_budget is not None and iterations is None else ()
    pipe = _pipeline(build_dir, target, config_path, overrides + extra, force, existing=True, unsaved=unsaved)
    pipe.bench()
    console.print(summary_table(pipe.report()))


@cli.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write report.{json,md,html} here.")
@click.option("--max-latency-ms", type=POSITIVE, help="Gate: fail if the selected artifact's measured p50 is above this.")
@click.option("--min-cosine", type=SHARE, help="Gate: fail if the selected artifact's cosine vs fp32 is below this.")
@click.option("--max-size-mb", type=POSITIVE, help="Gate: fail if the selected artifact is larger than this.")
@click.option("--min-task-top1", type=SHARE, help="Gate: fail if the selected artifact's task top-1 on bench.eval_dir (a share, e.g. 0.85) is below this.")
@click.option("--min-zero-shot-top1", type=SHARE, help="Gate: fail if the selected artifact's zero-shot top-1 (bench.zero_shot_head on bench.eval_dir) is below this.")
def report(paths, out, max_latency_ms, min_cosine, max_size_mb, min_task_top1, min_zero_shot_top1):
    """Merge builds and bench.json files into one comparison; print Markdown; apply CI gates.

    \b
    Examples:
      edgedistill report runs/demo
      edgedistill report runs/orin jetson/bench.json --out comparison/
      edgedistill report runs/demo --max-latency-ms 20 --min-cosine 0.98 >> $GITHUB_STEP_SUMMARY
    """
    from .errors import GateError
    from .progress import console
    from .report import check_gates, load_reports, make_report, merge_reports, render_markdown, summary_table, write_report

    docs = load_reports(list(paths))
    if len(docs) == 1:
        doc = docs[0] if str(docs[0].get("schema", "")).startswith("edgedistill.report") else make_report(docs[0])
    else:
        doc = merge_reports(docs)
    unfinished = _unfinished_builds(paths)
    if unfinished:  # in every rendering too: a step summary must not show an earlier run's figures as this build's
        doc = {**doc, "warnings": unfinished}
    if out:
        _refuse_a_builds_own_report(out, paths, doc)
        write_report(doc, out)
    gates = {"max latency ms": max_latency_ms, "min cosine": min_cosine, "max size MB": max_size_mb, "min task top-1": min_task_top1,
             "min zero-shot top-1": min_zero_shot_top1}
    violations = check_gates(doc, max_latency_ms=max_latency_ms, min_cosine=min_cosine, max_size_mb=max_size_mb,
                             min_task_top1=min_task_top1, min_zero_shot_top1=min_zero_shot_top1)
    if unfinished and any(g is not None for g in gates.values()):
        violations = unfinished + violations  # a report.json left by an earlier run must not pass CI for a broken build
    # stdout only, so `>> $GITHUB_STEP_SUMMARY` gets clean Markdown, with the gates' verdict in it
    click.echo(render_markdown(doc) + _gates_markdown(gates, violations))
    console.print(summary_table(doc))
    for line in unfinished:
        console.print(f"[yellow]note:[/yellow] {line}")
    if violations:
        raise GateError("gate failed: " + "; ".join(violations))


def _gates_markdown(gates: dict, violations: list[str]) -> str:
    """A "Gates" section for the Markdown summary when any gate was asked for ("" otherwise)."""
    from .report.render_markdown import md

    asked = ", ".join(f"{name} {value:g}" for name, value in gates.items() if value is not None)
    if not asked:
        return ""
    verdict = ["**Passed.**"] if not violations else ["**Failed:**", ""] + [f"- {md(v)}" for v in violations]
    return "\n".join(["", "## Gates", "", f"Asked: {asked}.", "", *verdict])


def _refuse_a_builds_own_report(out: Path, paths, doc: dict) -> None:
    """A comparison written to BUILD/report would replace that build's own report (and the remaining
    steps only its pipeline knows); the build's manifest would then describe a file it did not write."""
    from .report.schema import kind_of

    for given in paths:
        build = _build_folder_of(given)
        if build is not None and kind_of(doc) == "comparison" and Path(out).resolve() == (build / "report").resolve():
            raise EdgedistillError(f"--out {out} is build {build}'s own report folder, which a comparison would replace",
                                   "write the comparison to a folder of its own, e.g. --out comparison/")


def _build_folder_of(path) -> Path | None:
    """The build folder a report input belongs to: the folder itself, or the one holding the report.json
    or bench.json given (gating BUILD/report/report.json is gating that build)."""
    from .report.merge import IN_FOLDER

    path = Path(path)
    if path.is_dir():
        return path if (path / "manifest.json").is_file() else None
    for root in path.resolve().parents[:2]:
        if (root / "manifest.json").is_file() and path.resolve().relative_to(root).as_posix() in IN_FOLDER:
            return root
    return None


def _unfinished_builds(paths) -> list[str]:
    """One line per build whose manifest is not complete (its report may predate a failure)."""
    from .artifacts import Manifest

    lines = []
    for given in paths:
        path = _build_folder_of(given)
        if path is not None:
            manifest = Manifest.load(path)
            data = manifest.data
            if data.get("status") != "complete":
                where = (data.get("failed_stage") or ", ".join(data.get("missing_stages") or [])
                         or (f"{', '.join(data['changed_artifacts'])} changed on disk" if data.get("changed_artifacts") else "a stage"))
                lines.append(f"build {path} is {data.get('status')} ({where}), so its report may not describe it")
            elif changed := manifest.changed_artifacts():  # a partial copy to the device, or a file edited after bench
                lines.append(f"build {path} has artifacts missing or changed since they were benched ({', '.join(changed)}), "
                             "so its report does not describe them; re-run edgedistill build or bench")
    return lines


@cli.command(name="cache-teacher", context_settings=CONTEXT)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML config file (teacher, data and distill sections; the student's img_size sizes the views).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (repeatable).")
@click.option("--augmentations", "-k", type=int, default=10, show_default=True, help="Augmented views stored per image.")
@click.option("--store-views", is_flag=True, help="Also store the views' uint8 pixels, so training skips decoding and augmentation (and needs no images).")
@click.option("--dtype", type=click.Choice(CACHE_DTYPES), default="float16", show_default=True,
              help="How teacher outputs are stored; bfloat16 or float32 for teachers whose outputs exceed fp16's range (65504).")
def cache_teacher_command(out_dir, config_path, overrides, augmentations, store_views, dtype):
    """Run the teacher(s) once over K augmented views per image and store their outputs (fp16 by default).

    Distillation can then train from the cache without loading the teacher.

    \b
    Examples:
      edgedistill cache-teacher cache/ --set data.source=/data/images -k 10
      edgedistill cache-teacher cache/ --set data.source=/data/images -k 4 --store-views
      edgedistill distill runs/exp --set distill.cache=cache/
    """
    from .config import load_config
    from .distill.cache import cache_teacher
    from .progress import console

    written = cache_teacher(load_config(config_path, overrides), out_dir, augmentations, dtype=dtype, store_views=store_views)
    console.print(f"wrote teacher cache -> {escape(str(written))}")


@cli.command(name="transfer-set", context_settings=CONTEXT)
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--pool", required=True, help="Unlabelled images to choose from: a folder (searched recursively), a .txt list or 'bundled'.")
@click.option("--targets", required=True, help="A few images of the target task: a folder, a .txt list, .tar shards or 'bundled'.")
@click.option("--per-target", "-k", type=int, help="Pool images kept for each target image; the list is their union. [default: 100]")
@click.option("--size", "-n", type=int, help="Images in the list instead: each target's nearest in rounds until there are N.")
@click.option("--pool-embeddings", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep the pool's embeddings in this .safetensors file and reuse them while teacher and pool images are unchanged.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file (its primary teacher embeds the images; teacher.extra is not used).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (repeatable), e.g. teacher.name=...")
def transfer_set_command(out, pool, targets, per_target, size, pool_embeddings, config_path, overrides):
    """Choose a task-oriented transfer set: the pool images nearest a few target images in the teacher's embedding space.

    OUT is a .txt image list for data.source or cache-teacher, in rounds: every target image's nearest,
    then every one's second nearest, and so on, so a list cut short stays balanced over the targets. Embeddings are the teacher's
    summary token on its evaluation view; the search is exact cosine (faiss). Unreadable images are skipped and counted.

    \b
    Examples:
      edgedistill transfer-set runs/transfer.txt --pool /data/unlabelled --targets /data/task_images -k 200
      edgedistill transfer-set runs/task2.txt --pool /data/unlabelled --targets /data/task2 --size 50000 --pool-embeddings runs/pool.safetensors
      edgedistill build --target x86-cpu --set data.source=runs/transfer.txt
    """
    from .config import load_config
    from .distill.transfer_set import build_transfer_set
    from .progress import console

    cfg = load_config(config_path, overrides)
    made = build_transfer_set(cfg, pool, targets, per_target, out, pool_embeddings, size)
    skipped = [f"{n} unreadable {what} image(s) skipped" for n, what in ((made.pool_unreadable, "pool"), (made.targets_unreadable, "target")) if n]
    console.print(f"wrote transfer set -> {escape(str(out))}: {len(made.paths)} of {made.pool} pool images, "
                  f"nearest {made.targets} target images (cosine {float(made.scores.min()):.3f}..{float(made.scores.max()):.3f})"
                  + "".join(f"; {line}" for line in skipped))


@cli.command(name="embed-text", context_settings=CONTEXT)
@click.argument("sentences", type=click.Path(path_type=Path))  # no click checks: embed_sentences says what is wrong in one line
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--batch-size", type=int, default=256, show_default=True, help="Sentences per text-tower batch.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML config file (its primary teacher's text tower embeds the sentences; teacher.extra is not used).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (repeatable), e.g. teacher.name=...")
def embed_text_command(sentences, out, batch_size, config_path, overrides):
    """Embed unpaired sentences once with the teacher's text tower, for DIME-FM distillation (distill.text_embeddings).

    SENTENCES is a UTF-8 text file, one sentence per line (blank lines are skipped). OUT is a .safetensors file of
    L2-normalised float16 rows, stamped with the teacher and its logit scale; distillation refuses it for another
    teacher. The teacher must be an open_clip model (open_clip:ARCH/PRETRAINED or open_clip:hf-hub:ORG/REPO).

    \b
    Examples:
      edgedistill embed-text captions.txt runs/text.safetensors --set teacher.name=open_clip:ViT-L-14/openai
      edgedistill distill runs/exp --set teacher.name=open_clip:ViT-L-14/openai --set distill.text_embeddings=runs/text.safetensors
    """
    from .config import load_config
    from .distill.embed_text import embed_sentences
    from .progress import console

    stamp = embed_sentences(load_config(config_path, overrides), sentences, out, batch_size)
    console.print(escape(f"wrote {stamp['count']} text embeddings ({stamp['dim']}-d, teacher {stamp['teacher']['name']}, "
                         f"logit scale {stamp['logit_scale']:.4g}) -> {out}"), soft_wrap=True)


@cli.command(name="zero-shot-head", context_settings=CONTEXT)
@click.argument("classes", type=click.Path(path_type=Path))  # no click checks: read_classes says what is wrong in one line
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--template", "templates", multiple=True, metavar="TEXT",
              help="A prompt with {} for the class name (repeatable); CLIP's 80 ImageNet prompts when none is given.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file (its primary teacher's text tower embeds the prompts).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (repeatable), e.g. teacher.name=...")
def zero_shot_head_command(classes, out, templates, config_path, overrides):
    """Make the open_clip teacher's zero-shot classifier for a set of classes, to score students' zero-shot classification.

    CLASSES is a labelled folder (one subfolder per class, as bench.eval_dir) or a UTF-8 text file with one class
    name per line (optionally NAME<TAB>what the prompts call it). Folder names that are ImageNet synsets (n01440764)
    are prompted with CLIP's ImageNet class names; others with underscores as spaces. OUT is a .safetensors file of
    one unit row per class (the prompts' text embeddings averaged, as open_clip's zero-shot classifier), stamped with
    the teacher; bench refuses it for another teacher.

    \b
    Examples:
      edgedistill zero-shot-head data/val runs/head.safetensors --set teacher.name=open_clip:ViT-B-16/laion2b_s34b_b88k
      edgedistill build --out runs/exp --set bench.eval_dir=data/val --set bench.zero_shot_head=runs/head.safetensors ...
    """
    from .config import load_config
    from .distill.zero_shot_head import build_zero_shot_head
    from .progress import console

    stamp = build_zero_shot_head(load_config(config_path, overrides), classes, out, tuple(templates))
    prompts = len(stamp["templates"])
    console.print(escape(f"wrote zero-shot head ({len(stamp['classes'])} classes x {prompts} prompt{'s' * (prompts != 1)}, {stamp['dim']}-d, "
                         f"teacher {stamp['teacher']['name']}) -> {out}"), soft_wrap=True)
    labelled = f" (and --set bench.eval_dir={shlex.quote(str(classes))} for zero-shot top-1)" if classes.is_dir() else ""
    console.print(escape(f"bench with it: --set bench.zero_shot_head={shlex.quote(str(out))}{labelled}"), soft_wrap=True)


@cli.command(name="finetune-teacher", context_settings=CONTEXT)
@click.argument("labels", type=click.Path(path_type=Path))  # no click checks: list_labelled says what is wrong in one line
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--steps", type=int, default=300, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Images per step.")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="The backbone's peak rate (AdamW, cosine); the new classifier's is 10x.")
@click.option("--holdout", type=float, default=0.2, show_default=True, help="Share of each class held out and scored before and after (0: none).")
@click.option("--head-init", type=click.Choice(["random", "probe"]), default="random", show_default=True,
              help="The new classifier's start: timm's random init, or a linear probe of the frozen teacher's features (LP-FT).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file (its primary teacher is fine-tuned; data.auto_augment and data.scale_min augment).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value (repeatable), e.g. teacher.name=...")
def finetune_teacher_command(labels, out, steps, batch_size, lr, holdout, head_init, config_path, overrides):
    """Fine-tune the teacher on a few labelled images (step 1 of task-oriented transfer).

    LABELS is a folder with one subfolder of images per class (the ImageFolder layout). The primary teacher gets a
    new classifier for those classes and is trained whole; OUT is a .safetensors timm checkpoint, stamped with what it
    was fine-tuned from and on. The command prints the --set lines that distil from it with its task outputs (step 2).

    \b
    Examples:
      edgedistill finetune-teacher data/labelled runs/teacher_ft.safetensors --set teacher.name=vit_base_patch14_dinov2.lvd142m
      edgedistill build --out runs/exp --set data.source=runs/transfer.txt --set teacher.checkpoint=runs/teacher_ft.safetensors ...
    """
    from .config import load_config
    from .distill.finetune import FinetuneSettings
    from .distill.finetune_teacher import distill_settings, finetune_teacher
    from .progress import console

    settings = FinetuneSettings(steps=steps, batch_size=batch_size, lr=lr, holdout=holdout)
    stamp = finetune_teacher(load_config(config_path, overrides), labels, out, settings, head_init)
    before, after = stamp["held_out_top1_before"], stamp["held_out_top1_after"]
    scored = f"; held-out top-1 {100 * before:.1f}% -> {100 * after:.1f}% on {stamp['held_out_images']} images" if after is not None else ""
    console.print(escape(f"wrote fine-tuned teacher ({len(stamp['classes'])} classes, {stamp['train_images']} training images{scored}) -> {out}"),
                  soft_wrap=True)
    console.print(escape("distil from it: " + " ".join(f"--set {shlex.quote(line)}" for line in distill_settings(out, stamp))), soft_wrap=True)


@cli.command(context_settings=CONTEXT)
@click.argument("profiles", nargs=-1)
def targets(profiles: tuple[str, ...]):
    """List the bundled target profiles, or the PROFILES given (names or your own files, which are
    checked as a build would check them), and whether each can run on this host.

    \b
    Examples:
      edgedistill targets
      edgedistill targets my-device.yaml          # check your profile before a build
    """
    from rich.console import Console
    from rich.table import Table

    from .targets import list_targets, load_target

    table = Table(title="targets", header_style="bold")
    for column in ("name", "backends", "precisions", "device", "runs here"):
        table.add_column(column)
    for profile in [load_target(p) for p in profiles] or list_targets():
        ok, why = profile.runs_on_this_host()
        table.add_row(profile.name, ", ".join(profile.backends), ", ".join(profile.precisions), profile.device, "yes" if ok else escape(f"no: {why}"))
    out = Console()  # the listing is the command's output: stdout, so `edgedistill targets | grep ...` sees it
    if not out.is_terminal:  # a pipe or a file: one line per profile, not 80 columns' wrapping
        out.width = 10_000
    out.print(table)


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        with sigterm_as_interrupt():
            cli.main(args=argv, standalone_mode=False)
    except EdgedistillError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc.one_line()}", err=True)
        return exc.exit_code
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, Terminated):  # click wraps a KeyboardInterrupt in Abort
            return terminated()
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except Terminated:  # arrived outside click's own handling
        return terminated()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        interrupt = next((e for e in cause_chain(exc) if isinstance(e, KeyboardInterrupt)), None)
        if interrupt is not None:  # a C extension's import (onnxruntime's) turns Ctrl-C or SIGTERM into ImportError
            return terminated() if isinstance(interrupt, Terminated) else 130
        from .artifacts import os_error_in

        code = exc.errno if isinstance(exc, OSError) else os_error_in(str(exc))  # a writer that words its OS errors
        if code not in DISK_FIXES:  # a bug: its traceback, and a code CI can tell from a failed gate (1) or a mistake (2)
            traceback.print_exc()
            click.echo(f"error: edgedistill crashed ({type(exc).__name__}); this is a bug: please report it with the traceback above", err=True)
            return INTERNAL_ERROR
        if debug:
            traceback.print_exc()
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else os.strerror(code)
        # a copy or rename names its source first: the file being written is the destination
        written = getattr(exc, "filename2", None) or getattr(exc, "filename", None)
        where = f" writing '{written}'" if written else ""
        click.echo(f"error: {cause}{where} (fix: {DISK_FIXES[code]}; outputs written before are kept)", err=True)
        # a full disk or a size limit is the machine's; the rest, the --out chosen
        return 1 if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry_point() -> None:
    sys.exit(main())
