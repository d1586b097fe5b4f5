"""Photos of Cassava's size for the whole-job benchmark: N JPEGs of 800x600 (quality 90) with
smooth colour fields, edges and fine grain (so they compress and decode like photographs, not
like flat colour), and a train.csv with five one-hot classes (the seed teacher's five).

    python bench/make_jpegs.py OUT_FOLDER [N]
"""
import os
import sys

import numpy as np
from PIL import Image


def photo(rng):
    h, w = 600, 800
    coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.float32)
    base = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(12):   # leaves: ellipses of another colour
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(20, 150), rng.uniform(20, 150)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        base[inside] = 0.4 * base[inside] + 0.6 * rng.uniform(0, 255, size=3)
    base += rng.normal(0, 12, size=base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 320
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["image_id,c0,c1,c2,c3,c4"]
    for i in range(n):
        name = f"photo_{i:04d}.jpg"
        photo(rng).save(os.path.join(out, "images", name), quality=90)
        label = ["0"] * 5
        label[i % 5] = "1"
        rows.append(name + "," + ",".join(label))
    with open(os.path.join(out, "train.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
