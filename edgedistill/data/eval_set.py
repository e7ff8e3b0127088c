"""The evaluation views used for parity and fidelity: deterministic crops of real photos.

Their seed differs from every calibration recipe's (load_recipe refuses this one), so fidelity is
not measured on the very crops the quantizer calibrated on; calibration keeps apart from these images
too where its source holds enough others (quantize.calibration.evaluation_indices). Any source distillation reads (a folder, a .txt list, tar
shards, 'bundled') works: images come through ImageSource, only the ones used are decoded.
"""

from __future__ import annotations

from PIL import Image

from .crops import source_crops
from .images import ImageSource

EVAL_SEED = 20261123


def evaluation_views(source: str | ImageSource = "bundled", count: int = 48, seed: int = EVAL_SEED) -> list[Image.Image]:
    """`count` crops of images spread over the whole source (several per image when it holds fewer)."""
    return source_crops(source if isinstance(source, ImageSource) else ImageSource(source), count, seed)[1]
