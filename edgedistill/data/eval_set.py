"""The evaluation views used for parity and fidelity: deterministic crops of real photos.

Their seed differs from every calibration recipe's, so fidelity is not measured on the very
views the quantizer calibrated on.
"""

from __future__ import annotations

from PIL import Image

from .crops import deterministic_crops
from .sources import ImageDecoder, resolve_image_paths

EVAL_SEED = 20261123


def evaluation_views(source: str = "bundled", count: int = 48, seed: int = EVAL_SEED) -> list[Image.Image]:
    images = ImageDecoder().load_all(resolve_image_paths(source))
    return deterministic_crops(images, count, seed)
