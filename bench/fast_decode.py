#!/usr/bin/env python3
"""What `--fast-decode` changes, measured (README, "Images while the step computes"):

1. Pixels: on the whole job's 800x600 photos (bench/make_jpegs.py) at the seed's 228x228, the
   difference between keras.utils.load_img and the fast decode (PIL's draft, which
   fixtures/make_fast_decode_fixtures.py and FastDecodeTests show gives our pixels exactly).
2. Accuracy: the bundled example's 1000 test images stored at 8x their size (224x224 JPEGs,
   PIL bicubic, quality 90, as a camera would give more pixels than the model takes): the
   example's teacher through `distillctl predict --images`, with and without --fast-decode,
   against the labels and against its accuracy on the original 28x28 images.

    bench/fast_decode.py --distillctl .build/release/distillctl [--photos DIR]
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def keras_pixels(path, size, fast):
    img = Image.open(path)
    if fast:
        img.draft(img.mode, (size[1], size[0]))
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(img, dtype=np.float32)


def accuracy(distillctl, csv_path, images, fast, labels):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "p.csv")
        cmd = [distillctl, "predict", os.path.join(ROOT, "example/teacher.h5"), "--images", csv_path,
               "--image-dir", images, "--output", out]
        subprocess.run(cmd + (["--fast-decode"] if fast else []), check=True, capture_output=True)
        with open(out) as f:
            rows = list(csv.reader(f))[1:]
    predicted = {r[0]: int(np.argmax([float(v) for v in r[1:]])) for r in rows}
    return np.array([predicted[name] for name in labels]), np.array(list(labels.values()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--distillctl", required=True)
    p.add_argument("--photos", default=os.path.expanduser("~/.cache/distillctl/whole-job-320"))
    args = p.parse_args()

    photos = os.path.join(args.photos, "images")
    if os.path.isdir(photos):
        names = sorted(os.listdir(photos))[:100]
        diffs = [np.abs(keras_pixels(os.path.join(photos, n), (228, 228), True)
                        - keras_pixels(os.path.join(photos, n), (228, 228), False)) for n in names]
        d = np.stack(diffs)
        print(f"pixels, {len(names)} photos 800x600 -> 228x228: mean |difference| {d.mean():.2f}, "
              f"95th percentile {np.percentile(d, 95):.0f}, max {d.max():.0f} (of 255)")

    example = os.path.join(ROOT, "example/data")
    with open(os.path.join(example, "test.csv")) as f:
        reader = csv.reader(f)
        header = next(reader)
        labels = {r[0]: int(np.argmax([int(v) for v in r[1:]])) for r in reader}
    with tempfile.TemporaryDirectory() as big:
        for name in labels:
            img = Image.open(os.path.join(example, "images", name))
            img.resize((224, 224), Image.BICUBIC).save(os.path.join(big, name), "JPEG", quality=90)
        csv_path = os.path.join(big, "test.csv")
        with open(csv_path, "w") as f:
            f.write("image_id,label\n" + "".join(f"{n},{labels[n]}\n" for n in labels))
        original, truth = accuracy(args.distillctl, csv_path, os.path.join(example, "images"), False, labels)
        keras, _ = accuracy(args.distillctl, csv_path, big, False, labels)
        fast, _ = accuracy(args.distillctl, csv_path, big, True, labels)
    print(f"teacher accuracy, {len(labels)} test images: 28x28 originals {np.mean(original == truth):.4f}; "
          f"stored at 224x224: Keras's decode {np.mean(keras == truth):.4f}, --fast-decode {np.mean(fast == truth):.4f}; "
          f"the two agree on {np.mean(keras == fast):.4f}")


if __name__ == "__main__":
    sys.exit(main())
