"""What decoding each image once for its K consecutive views saves (edgedistill cache-teacher asks
for an image's K augmentations in a row).

Times AugmentedViews over the keys cache-teacher uses, (image, view 0..K-1) for every image, with
the one-image decode memo and with a decode per view, in one process (no DataLoader workers, so
the ratio is the per-view CPU cost). The images are the 12 bundled photos (PNG and JPEG, 451x300
to 1411x1411 px) cycled to --count files, so the decode cost is real.

  PYTHONPATH=. python benchmarks/view_decode.py --out runs/view_decode
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

import torch

from edgedistill.config import DataConfig
from edgedistill.data import augment
from edgedistill.data.augment import AugmentedViews
from edgedistill.data.images import ImageSource
from edgedistill.data.sample_photos import bundled_photo_paths

from distill_epoch import image_folder


class DecodeEveryView(AugmentedViews):
    """The same views, decoding the image again for each one (the behaviour before the memo)."""

    def _load(self, index: int):
        return self.source.load(index)


def views_per_s(views: AugmentedViews, keys: list, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):  # best of a few: these machines are shared
        start = time.perf_counter()
        for key in keys:
            views[key]
        best = max(best, len(keys) / (time.perf_counter() - start))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24, help="image files")
    parser.add_argument("--views", type=int, nargs="+", default=[1, 10], help="K: views per image, in a row")
    parser.add_argument("--size", type=int, default=224, help="view side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/view_decode"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    augment.PRELOAD_LIMIT = 0  # a real dataset is too large to keep decoded; the bundled set would be
    folder = image_folder(args.out, bundled_photo_paths(), args.count)
    source, cfg = ImageSource(str(folder)), DataConfig()
    rows = []
    for k in args.views:
        keys = [(i, seed) for i in range(len(source)) for seed in range(k)]
        memo, plain = AugmentedViews(source, args.size, cfg), DecodeEveryView(source, args.size, cfg)
        assert all(torch.equal(memo[key]["view"], plain[key]["view"]) for key in keys[: 2 * k])  # the same pixels
        rate = {"decode once": views_per_s(memo, keys, args.repeats), "decode per view": views_per_s(plain, keys, args.repeats)}
        rows.append({"views_per_image": k, **{f"{name} views/s": round(v, 1) for name, v in rate.items()},
                     "speedup": round(rate["decode once"] / rate["decode per view"], 2)})
        print(rows[-1], flush=True)
    result = {"date": dt.date.today().isoformat(), "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
              "python": platform.python_version(), "images": len(source), "view_size": args.size, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "view_decode.json").write_text(json.dumps(result, indent=2))
    print("| views per image (K) | decode once, views/s | decode per view, views/s | × |\n|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['views_per_image']} | {row['decode once views/s']} | {row['decode per view views/s']} | {row['speedup']} |")


if __name__ == "__main__":
    main()
