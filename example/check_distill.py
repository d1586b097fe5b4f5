"""CI check of the main job: `distillctl distill` on the bundled example writes a student that real
Keras (tf-keras 2.21 and Keras 3) loads, and Keras measures the test accuracy distillctl reported.

    python example/check_distill.py [--distillctl .build/release/distillctl]

Prints one line per Keras version and `N passed, M failed`; exits non-zero on a failure. The two
accuracies may differ by at most 0.002 (2 of the 1000 test images): float32 arithmetic in two
runtimes can flip an argmax between near-equal classes.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# The test accuracy of a saved model in Keras 3, images loaded as keras_distill.py loads them.
KERAS3_EVALUATE = r"""
import csv, json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
model = keras.models.load_model(sys.argv[1], compile=False)
data = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "data")
data = os.environ.get("EXAMPLE_DATA", data)
rows = list(csv.DictReader(open(os.path.join(data, "test.csv"))))
classes = [c for c in rows[0] if c != "image_id"]
x = np.stack([keras.utils.img_to_array(keras.utils.load_img(os.path.join(data, "images", r["image_id"]), color_mode="grayscale")) for r in rows])
y = np.array([[float(r[c]) for c in classes] for r in rows])
p = model.predict(x, batch_size=64, verbose=0)
print(json.dumps({"test_accuracy": float((p.argmax(1) == y.argmax(1)).mean())}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--distillctl", default=os.path.join(ROOT, ".build/release/distillctl"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "student.h5")
        run = subprocess.run([args.distillctl, "distill", "--teacher", f"{HERE}/teacher.h5", "--student", f"{HERE}/student.h5",
                              "--train", f"{HERE}/data/train.csv", "--val", f"{HERE}/data/val.csv",
                              "--test", f"{HERE}/data/test.csv", "--images", f"{HERE}/data/images", "--output", out,
                              "--epochs", "10", "--batch-size", "32", "--alpha", "0.9", "--temperature", "3",
                              "--learning-rate", "0.001", "--seed", "1"], capture_output=True, text=True)
        print(run.stdout.strip().splitlines()[-3:] if run.returncode == 0 else run.stderr)
        if run.returncode != 0:
            print("0 passed, 1 failed")
            sys.exit(1)
        ours = float(re.search(r"student test accuracy ([\d.]+)", run.stdout).group(1))
        passed = failed = 0
        for name, command in [("tf-keras 2.21", [f"{HERE}/keras_distill.py", "--evaluate", out]),
                              ("Keras 3", ["-c", KERAS3_EVALUATE, out])]:
            ev = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                                env=dict(os.environ, EXAMPLE_DATA=f"{HERE}/data"))
            try:
                theirs = json.loads(ev.stdout.strip().splitlines()[-1])["test_accuracy"]
            except (IndexError, ValueError, KeyError):
                print(f"FAIL {name}: could not load or evaluate the student: {ev.stderr[-400:]}")
                failed += 1
                continue
            ok = abs(theirs - ours) <= 0.002
            print(f"{'OK  ' if ok else 'FAIL'} {name}: Keras test accuracy {theirs:.4f}, distillctl reported {ours:.4f}")
            passed += ok
            failed += not ok
        print(f"{passed} passed, {failed} failed")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
