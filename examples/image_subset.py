"""A smaller image folder cut from a larger one, for studies that must fit a shared CPU: the first
--train and --test images of a fixed seeded permutation of each split, written as PNGs into
OUT/train/<class>/ and OUT/test/<class>/ (nbkit's image-folder layout).

    python examples/image_subset.py ../shared/data/cifar10-images.tar.xz data/cifar10-5k --train 5000 --test 2000
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="an image folder or archive nbkit reads (--dataset PATH)")
    p.add_argument("out", help="the folder to write (must not exist)")
    p.add_argument("--train", type=int, default=5000, help="training images kept (default 5000)")
    p.add_argument("--test", type=int, default=2000, help="test images kept (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutation (default 0)")
    p.add_argument("--data-dir", default="data", help="nbkit's data directory, for its cache (default data/)")
    args = p.parse_args(argv)

    import numpy as np
    from PIL import Image

    from nbkit.training.data import load_dataset

    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; expected a new folder")
    ds = load_dataset(args.source, args.data_dir)
    rng = np.random.default_rng(args.seed)
    for split, keep in (("train", args.train), ("test", args.test)):
        n = ds.size(split)
        if not 0 < keep <= n:
            raise SystemExit(f"--{split} expects 1 to {n:,} images, got {keep}")
        for k, i in enumerate(np.sort(rng.permutation(n)[:keep])):
            folder = out / split / ds.classes[int(ds.labels[split][i])]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ds.images[split][i].permute(1, 2, 0).numpy()).save(folder / f"{k:05d}.png")
    print(f"{out}: {args.train:,} training and {args.test:,} test images in {ds.num_classes} classes")


if __name__ == "__main__":
    main()
