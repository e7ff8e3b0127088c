"""What the pipeline needs of the distill stage to compute its key and tidy its checkpoints, without
torch: a build whose stages are all unchanged never imports the training code (distill/stage.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

STATE_DIR = "distill_state"
FINISHED = "finished.json"  # in STATE_DIR: student/ holds this run's finished training, not yet recorded
# Settings that change neither the arithmetic nor the data: a checkpoint stays valid across them.
NOT_HASHED = {"resume", "checkpoint_every", "tensorboard", "num_workers", "device", "compile", "compile_mode", "overlap_teacher", "log_every"}


# Step 3 (fine-tuning on labels) runs after training: it keys the student, never a training checkpoint
FINETUNE_SETTINGS = {"finetune_labels", "finetune_steps", "finetune_lr", "finetune_holdout"}


def dime_fm_on(distill) -> bool:
    """Whether DIME-FM's terms train: text embeddings given and a weight above 0."""
    return bool(distill.text_embeddings) and (distill.vl_weight > 0 or distill.pvl_weight > 0)


def inert_settings(distill) -> set[str]:
    """Token-term settings that do nothing as the others stand (DIME-FM off, no task-output weight), so
    changing them neither re-trains a student nor drops a checkpoint."""
    inert = set() if dime_fm_on(distill) else {"text_embeddings", "vl_weight", "pvl_weight", "vl_texts", "vl_temperature"}
    inert |= set() if distill.finetune_labels else FINETUNE_SETTINGS
    return inert | (set() if distill.logit_weight else {"logit_temperature"})


def discard_state(workdir: Path) -> None:
    """The student a run finished is recorded: its checkpoints are no longer needed. A state without the
    finished mark (a later run's, stopped mid-training) stays for that run to resume."""
    state = Path(workdir) / STATE_DIR
    if (state / FINISHED).is_file():
        shutil.rmtree(state, ignore_errors=True)
