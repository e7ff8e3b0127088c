"""open_clip image towers as teachers (the `[vl]` extra), imported lazily.

Name them `open_clip:ARCH` or `open_clip:ARCH/PRETRAINED` (e.g. open_clip:ViT-B-16/laion2b_s34b_b88k),
or `open_clip:hf-hub:ORG/REPO`. The summary token is the tower's projected image embedding
(the space the text tower shares); patch tokens are its final, ln_post-normed token map.
`edgedistill embed-text` builds the whole model (create_open_clip_model) to run the text tower once.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch
from torch import nn

from ..errors import EdgedistillError
from .hub_reach import offline_if_hub_unreachable

PREFIX = "open_clip:"


def import_open_clip():
    try:
        import open_clip
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        what = "the package 'open_clip_torch', which is not installed" if missing in ("", "open_clip") else f"'{missing}' (a dependency of open_clip_torch), which is not installed"
        raise EdgedistillError(f"open_clip teachers need {what}", "pip install 'edgedistill[vl]'") from exc
    return open_clip


class OpenClipVisual(nn.Module):
    """Wraps open_clip's `model.visual` so that one call gives (summary, patch tokens)."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        if not hasattr(visual, "output_tokens"):
            raise EdgedistillError(f"open_clip tower {type(visual).__name__} cannot return patch tokens", "use an open_clip ViT tower (ViT-B-16, ViT-L-14, ...)")
        visual.output_tokens = True
        self.visual = visual
        size = visual.image_size
        self.image_size = size if isinstance(size, (tuple, list)) else (size, size)
        self.mean = tuple(getattr(visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073))
        self.std = tuple(getattr(visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711))
        self.grid = tuple(visual.grid_size)

    def forward_targets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        pooled, tokens = self.visual(x)
        return pooled, tokens, self.grid

    def data_config(self) -> dict:
        return {"input_size": [3, *self.image_size], "interpolation": "bicubic", "mean": list(self.mean), "std": list(self.std), "crop_pct": 1.0, "crop_mode": "center"}


def create_open_clip_visual(name: str, pretrained: bool, checkpoint: str | None) -> OpenClipVisual:
    model, _ = create_open_clip_model(name, pretrained, checkpoint)
    return OpenClipVisual(model.visual)


def create_open_clip_model(name: str, pretrained: bool, checkpoint: str | None) -> tuple[nn.Module, str]:
    """The whole open_clip model (image and text towers) and the name open_clip knows its architecture by
    (ARCH, or hf-hub:ORG/REPO), which open_clip.get_tokenizer takes. Weights: the name's PRETRAINED tag,
    `checkpoint`, or random ones when `pretrained` is false."""
    spec = name[len(PREFIX):]
    arch, _, tag = spec.partition("/") if not spec.startswith("hf-hub:") else (spec, "", "")
    if pretrained and not tag and not checkpoint and not spec.startswith("hf-hub:"):  # open_clip would only warn and build random weights
        raise EdgedistillError(f"open_clip teacher '{name}' names no pretrained weights",
                               f"write open_clip:{arch}/PRETRAINED (open_clip.list_pretrained() lists them), set teacher.checkpoint, "
                               "or teacher.pretrained=false for random weights")
    open_clip = import_open_clip()
    weights = os.path.expanduser(checkpoint) if checkpoint else (tag if pretrained and tag else None)
    offline = None
    try:
        with offline_if_hub_unreachable() if weights and not checkpoint else nullcontext() as offline:
            model = open_clip.create_model(arch, pretrained=weights)
    except RuntimeError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Failed to download" in message:  # a known tag, but the hub cannot be reached (open_clip words it so)
            why = f"{offline} does not resolve (offline?) and the weights are not in the local hub cache" if offline else message[:240]
            raise EdgedistillError(f"could not fetch open_clip weights '{spec}': {why}",
                                   "connect to the internet, or set teacher.checkpoint=PATH to local open_clip weights") from exc
        raise EdgedistillError(f"open_clip cannot build '{spec}': {message[:160]}", "see open_clip.list_pretrained() for ARCH/PRETRAINED pairs") from exc
    return model, arch
