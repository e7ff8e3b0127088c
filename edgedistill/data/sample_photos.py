"""Real colour photos shipped inside scikit-image, scikit-learn and matplotlib: the default images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import EdgedistillError

# (package, folder inside the package, file names)
_PHOTOS = (
    ("skimage", "data", ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                         "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png")),
    ("sklearn", "datasets/images", ("china.jpg", "flower.jpg")),
    ("matplotlib", "mpl-data/sample_data", ("grace_hopper.jpg",)),
)


def bundled_photo_paths() -> list[Path]:
    """Paths of the bundled photos that are present, in a fixed order."""
    found = []
    for package, folder, names in _PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        root = Path(spec.origin).parent / folder
        found += [root / name for name in names if (root / name).is_file()]
    if not found:
        raise EdgedistillError("no bundled photos found", "pip install scikit-image scikit-learn matplotlib, or pass data.source=FOLDER")
    return found
