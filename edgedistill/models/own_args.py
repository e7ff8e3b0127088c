"""The timm.create_model arguments edgedistill passes itself, by role. One table serves the config's check of
model_args (config._check_model_args) and what is passed on (timm_create.without_own_keys), so the two cannot
drift. No torch or timm here: the config imports it."""

from __future__ import annotations

NEVER = object()  # edgedistill sets the key in a way no model_args value matches


def own_keys(role: str) -> dict[str, object]:
    """key -> the value edgedistill passes for `role` (teacher or student). model_args may hold that same value
    (built folders hold timm's headless idiom {num_classes: 0}); any other value is refused at config load.
    img_size is passed only when the section sets one, so it is checked apart (config._check_model_img_size)."""
    if role == "teacher":
        return {"pretrained": NEVER}  # a teacher's num_classes is its own
    return {"pretrained": False, "num_classes": 0, "pretrained_cfg_overlay": NEVER}


def without_own_keys(model_args: dict, img_size: int | None, role: str) -> dict:
    """model_args less the keys edgedistill passes itself: given twice, timm.create_model raises TypeError, and a
    student.json holding them broke the README's loading snippet. An img_size equal to the section's goes once."""
    own = set(own_keys(role)) | ({"img_size"} if img_size is not None and model_args.get("img_size") == img_size else set())
    return {k: v for k, v in dict(model_args).items() if k not in own}
