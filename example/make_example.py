#!/usr/bin/env python3
"""Make the bundled example with REAL Keras (tf-keras 2.21): images, CSVs, teacher, student.

    /root/.cache/distillctl/venv/bin/python example/make_example.py

Writes, under example/:
  data/images/*.jpg          28x28 grayscale JPEGs (quality 95) cut from Debian's dataset-fashion-mnist
  data/train.csv             3000 labelled images (300 per class)  } drawn from Fashion-MNIST's
  data/val.csv               1000 labelled images (100 per class)  } 60000 training images,
  data/unlabelled.csv        2000 images, label cells empty        } disjoint
  data/train_unlabelled.csv  train.csv's rows then unlabelled.csv's (for `distill --train`)
  data/test.csv              1000 labelled images (100 per class) from Fashion-MNIST's 10000 test images
  teacher.h5                 small CNN trained here on train.csv (val.csv for monitoring only)
  student.h5                 smaller CNN, untrained (seeded random init)
  teacher_accuracy.json      the teacher's accuracy on train/val/test, measured below

CSV layout as in the seed (the R workflow): `image_id` (a file name under data/images/) then one
one-hot column per class. An unlabelled row has every class cell empty (R's NA / pandas' NaN).

Images are loaded exactly as Keras's image loader does (`load_img(color_mode="grayscale")` +
`img_to_array`: float32 0-255, shape 28x28x1); both models start with Rescaling(1/255).

Deterministic: fixed seeds everywhere, TF op determinism on, clear_session before each model; two
runs write byte-identical files (checked on this machine: same CPU, same library versions).
"""
import csv
import gzip
import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
IMAGES = os.path.join(DATA, "images")
FASHION = "/usr/share/datasets/fashion-mnist"

# Fashion-MNIST's classes in label order, as CSV-safe column names.
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "boot"]
# Images per class in each split.
PER_CLASS = {"train": 300, "val": 100, "unlabelled": 200, "test": 100}
SEED = 20240601
JPEG_QUALITY = 95

TEACHER_EPOCHS = 40
TEACHER_BATCH = 64
TEACHER_LR = 1e-3


def log(*a):
    print(*a, flush=True)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def pick(labels, counts, rng):
    """Per class, a random draw of sum(counts) indices split in order into the given counts."""
    out = {name: [] for name, _ in counts}
    for k in range(len(CLASSES)):
        idx = rng.permutation(np.flatnonzero(labels == k))
        start = 0
        for name, n in counts:
            out[name].extend(idx[start:start + n].tolist())
            start += n
    # Shuffle each split so the CSVs are not sorted by class.
    return {name: rng.permutation(np.array(v)).tolist() for name, v in out.items()}


def write_images(images, indices, prefix):
    names = []
    for i in indices:
        name = f"{prefix}_{i:05d}.jpg"
        Image.fromarray(images[i]).save(os.path.join(IMAGES, name), quality=JPEG_QUALITY, optimize=True)
        names.append(name)
    return names


def write_csv(path, names, labels):
    """labels: class indices, or None for an unlabelled split (empty class cells)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["image_id"] + CLASSES)
        for j, name in enumerate(names):
            if labels is None or labels[j] is None:
                w.writerow([name] + [""] * len(CLASSES))
            else:
                w.writerow([name] + [1 if k == labels[j] else 0 for k in range(len(CLASSES))])


def make_data():
    tr_x = read_idx(f"{FASHION}/train-images-idx3-ubyte.gz")
    tr_y = read_idx(f"{FASHION}/train-labels-idx1-ubyte.gz")
    te_x = read_idx(f"{FASHION}/t10k-images-idx3-ubyte.gz")
    te_y = read_idx(f"{FASHION}/t10k-labels-idx1-ubyte.gz")
    rng = np.random.RandomState(SEED)
    split = pick(tr_y, [("train", PER_CLASS["train"]), ("val", PER_CLASS["val"]),
                        ("unlabelled", PER_CLASS["unlabelled"])], rng)
    split.update(pick(te_y, [("test", PER_CLASS["test"])], rng))

    if os.path.isdir(DATA):
        shutil.rmtree(DATA)
    os.makedirs(IMAGES)
    rows = {}
    for name in ["train", "val", "unlabelled"]:
        files = write_images(tr_x, split[name], "fmnist_train")
        labels = None if name == "unlabelled" else [int(tr_y[i]) for i in split[name]]
        write_csv(os.path.join(DATA, f"{name}.csv"), files, labels)
        rows[name] = (files, labels)
    files = write_images(te_x, split["test"], "fmnist_test")
    labels = [int(te_y[i]) for i in split["test"]]
    write_csv(os.path.join(DATA, "test.csv"), files, labels)
    rows["test"] = (files, labels)
    # Labelled and unlabelled rows in one CSV, as `distillctl distill --train` takes them.
    both_files = rows["train"][0] + rows["unlabelled"][0]
    both_labels = rows["train"][1] + [None] * len(rows["unlabelled"][0])
    write_csv(os.path.join(DATA, "train_unlabelled.csv"), both_files, both_labels)
    for name, (files, _) in rows.items():
        log(f"{name}: {len(files)} images")


# ---------------------------------------------------------------- models (tf-keras 2.21)

def load_split(keras, csv_path):
    """(x, y) as Keras's loader gives them: x float32 0-255 (n, 28, 28, 1); y one-hot, zeros when unlabelled."""
    # The csv module rather than pandas (not in the venv scripts/install-deps.sh makes): an empty
    # cell (unlabelled) reads as 0, as pandas' fillna(0) gave.
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    x = np.stack([keras.utils.img_to_array(
        keras.utils.load_img(os.path.join(IMAGES, r["image_id"]), color_mode="grayscale")) for r in rows])
    y = np.array([[float(r[c]) if r[c] != "" else 0.0 for c in CLASSES] for r in rows], dtype="float32")
    return x.astype("float32"), y


def conv_bn_relu(keras, x, filters, name):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def build_teacher(keras):
    inp = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inp)
    x = conv_bn_relu(keras, x, 32, "block1")
    x = keras.layers.MaxPooling2D(name="block1_pool")(x)           # 14x14
    x = conv_bn_relu(keras, x, 64, "block2")
    x = keras.layers.MaxPooling2D(name="block2_pool")(x)           # 7x7
    x = conv_bn_relu(keras, x, 128, "block3")
    x = keras.layers.MaxPooling2D(name="block3_pool")(x)           # 3x3
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.4, name="dropout1")(x)
    x = keras.layers.Dense(128, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(0.4, name="dropout2")(x)
    x = keras.layers.Dense(len(CLASSES), name="logits")(x)
    out = keras.layers.Activation("softmax", name="probs")(x)
    return keras.Model(inp, out, name="teacher")


def build_student(keras):
    inp = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inp)
    x = conv_bn_relu(keras, x, 16, "block1")
    x = keras.layers.MaxPooling2D(name="block1_pool")(x)           # 14x14
    x = conv_bn_relu(keras, x, 32, "block2")
    x = keras.layers.MaxPooling2D(name="block2_pool")(x)           # 7x7
    x = conv_bn_relu(keras, x, 32, "block3")
    x = keras.layers.MaxPooling2D(name="block3_pool")(x)           # 3x3
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    x = keras.layers.Dense(len(CLASSES), name="logits")(x)
    out = keras.layers.Activation("softmax", name="probs")(x)
    return keras.Model(inp, out, name="student")


def accuracy(model, x, y):
    p = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(p, 1) == np.argmax(y, 1)))


def train_teacher(keras, seed, xtr, ytr, xva, yva):
    """The teacher recipe from a fresh session seeded with `seed`: (model, history, seconds)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    teacher = build_teacher(keras)
    # Light augmentation while training only (mirror, shift by up to 2 px); the saved teacher is
    # the inner model without these layers.
    inp = keras.Input((28, 28, 1), name="image")
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal"),
                                keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant")],
                               name="augment")
    trainer = keras.Model(inp, teacher(augment(inp)), name="teacher_training")
    trainer.compile(optimizer=keras.optimizers.Adam(TEACHER_LR),
                    loss="categorical_crossentropy", metrics=["accuracy"])
    t0 = time.time()
    hist = trainer.fit(xtr, ytr, validation_data=(xva, yva), epochs=TEACHER_EPOCHS,
                       batch_size=TEACHER_BATCH, shuffle=True, verbose=2)
    return teacher, hist, time.time() - t0


def make_models():
    import tensorflow as tf
    import tf_keras
    keras = tf.keras
    assert keras.layers.Dense is tf_keras.layers.Dense, "need tf.keras = tf-keras 2 (TF_USE_LEGACY_KERAS=1)"
    tf.config.experimental.enable_op_determinism()

    xtr, ytr = load_split(keras, os.path.join(DATA, "train.csv"))
    xva, yva = load_split(keras, os.path.join(DATA, "val.csv"))
    xte, yte = load_split(keras, os.path.join(DATA, "test.csv"))

    teacher, hist, train_seconds = train_teacher(keras, SEED, xtr, ytr, xva, yva)
    teacher_path = os.path.join(HERE, "teacher.h5")
    teacher.compile(loss="categorical_crossentropy", metrics=["accuracy"])  # a training_config, as users' files have
    teacher.save(teacher_path, include_optimizer=False)

    keras.backend.clear_session()
    keras.utils.set_random_seed(SEED + 1)
    student = build_student(keras)
    student_path = os.path.join(HERE, "student.h5")
    student.save(student_path)

    # Measure from the saved files, as a user would load them.
    t = keras.models.load_model(teacher_path)
    s = keras.models.load_model(student_path)
    result = {
        "keras": "tf-keras " + tf_keras.__version__,
        "tensorflow": tf.__version__,
        "teacher": {
            "params": int(t.count_params()),
            "file_bytes": os.path.getsize(teacher_path),
            "augmentation": "RandomFlip(horizontal) + RandomTranslation(0.08, 0.08, constant), training only",
            "epochs": TEACHER_EPOCHS, "batch_size": TEACHER_BATCH, "learning_rate": TEACHER_LR,
            "train_accuracy": accuracy(t, xtr, ytr),
            "val_accuracy": accuracy(t, xva, yva),
            "test_accuracy": accuracy(t, xte, yte),
            "val_accuracy_per_epoch": [round(v, 4) for v in hist.history["val_accuracy"]],
        },
        "student_untrained": {
            "params": int(s.count_params()),
            "file_bytes": os.path.getsize(student_path),
            "test_accuracy": accuracy(s, xte, yte),
        },
    }
    with open(os.path.join(HERE, "teacher_accuracy.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    log(json.dumps(result, indent=2))
    log(f"teacher trained in {train_seconds:.0f} s")


def main():
    t0 = time.time()
    make_data()
    make_models()
    log(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
