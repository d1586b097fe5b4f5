#!/usr/bin/env python3
"""A second teacher for the bundled example, for distilling from two teachers: make_example.py's
teacher recipe (same architecture, data, augmentation, optimizer, 40 epochs) from another seed, so a
different network, not the first teacher twice.

    /root/.cache/distillctl/venv/bin/python example/make_second_teacher.py

Writes example/teacher2.h5 and example/teacher2_accuracy.json. Deterministic as make_example.py is
(fixed seed, TF op determinism, a fresh session). Needs example/data/ (make_example.py).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_example as ex  # sets TF_USE_LEGACY_KERAS before TensorFlow loads

SECOND_SEED = ex.SEED + 2   # SEED made the first teacher, SEED + 1 the student


def main():
    import tensorflow as tf
    import tf_keras
    keras = tf.keras
    tf.config.experimental.enable_op_determinism()
    xtr, ytr = ex.load_split(keras, os.path.join(ex.DATA, "train.csv"))
    xva, yva = ex.load_split(keras, os.path.join(ex.DATA, "val.csv"))
    xte, yte = ex.load_split(keras, os.path.join(ex.DATA, "test.csv"))
    teacher, hist, seconds = ex.train_teacher(keras, SECOND_SEED, xtr, ytr, xva, yva)
    path = os.path.join(HERE, "teacher2.h5")
    teacher.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    teacher.save(path, include_optimizer=False)
    t = keras.models.load_model(path)
    result = {"keras": "tf-keras " + tf_keras.__version__, "tensorflow": tf.__version__, "seed": SECOND_SEED,
              "params": int(t.count_params()), "file_bytes": os.path.getsize(path),
              "train_accuracy": ex.accuracy(t, xtr, ytr), "val_accuracy": ex.accuracy(t, xva, yva),
              "test_accuracy": ex.accuracy(t, xte, yte), "train_seconds": round(seconds)}
    with open(os.path.join(HERE, "teacher2_accuracy.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    ex.log(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
