#!/usr/bin/env python3
"""The reference: the bundled example's distillation recipe in REAL Keras (tf-keras 2.21).

    python example/keras_distill.py --epochs 10 --batch-size 32 --alpha 0.9 --temperature 3 \\
        --learning-rate 0.001 --seed 1                 # (a) distil teacher.h5 into student.h5
    python example/keras_distill.py --no-teacher ...   # (b) plain supervised training of the student
    python example/keras_distill.py --unlabelled ...   # (c) (a) plus data/unlabelled.csv's images
    python example/keras_distill.py --evaluate M.h5    # test (and val) accuracy of a saved model

Prints one JSON line: the settings, test/val accuracy of the trained student, per-epoch losses, seconds.

The recipe, the keras.io "Knowledge Distillation" Distiller with this project's convention (alpha weights the hard loss):
  - images loaded as Keras's loader does: load_img(color_mode="grayscale") + img_to_array, 0-255,
    no augmentation (the models start with Rescaling(1/255));
  - student logits = the input of the student's trailing softmax; teacher logits likewise, the
    teacher in inference mode; the student in training mode (BatchNormalization uses batch
    statistics and updates its moving averages, as model.fit does);
  - loss = alpha * hard + (1 - alpha) * soft, where
        hard = CategoricalCrossentropy(from_logits=True)(y, s)                 (mean over rows)
        soft = KLDivergence()(softmax(t / T), softmax(s / T)) * T^2           (mean over rows)
    (KLDivergence clips both distributions to [1e-7, 1], as Keras does);
  - Adam(learning_rate) with Keras's defaults otherwise; model.fit over the training rows shuffled
    anew each epoch, batch_size rows per step, the last partial batch used.
  --no-teacher: loss = CategoricalCrossentropy(from_logits=True)(y, s), nothing else changes.
  --unlabelled: data/unlabelled.csv's rows are appended to train.csv's and shuffled with them into
    one stream (5000 rows per epoch, batches mix both). An unlabelled row has no hard term: hard =
    mean cross-entropy over the batch's LABELLED rows only; soft = mean over ALL rows. A batch
    without a labelled row has loss (1 - alpha) * soft. With every row labelled this is exactly
    the formula above (as distillctl's Runtime/Training/Distillation.swift defines it).
Per-epoch losses are Keras's: the mean over the epoch's steps of each step's batch loss.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "boot"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default=os.path.join(HERE, "teacher.h5"))
    p.add_argument("--student", default=os.path.join(HERE, "student.h5"))
    p.add_argument("--data", default=os.path.join(HERE, "data"),
                   help="folder with train/val/test/unlabelled.csv and images/")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--alpha", type=float, default=0.9, help="weight of the hard-label loss")
    p.add_argument("--temperature", type=float, default=3.0)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--no-teacher", action="store_true", help="plain supervised training of the student")
    mode.add_argument("--evaluate", metavar="MODEL_H5", help="only report the accuracy of a saved model")
    p.add_argument("--unlabelled", action="store_true", help="add data/unlabelled.csv's images (soft term only)")
    p.add_argument("--output", help="save the trained student (full model .h5)")
    p.add_argument("--verbose", action="store_true", help="Keras's per-epoch log on stderr")
    a = p.parse_args(argv)
    if a.unlabelled and a.no_teacher:
        p.error("--unlabelled needs a teacher")
    return a


def load_split(keras, data, name):
    """(x, y): x float32 0-255 (n, 28, 28, 1) via load_img + img_to_array; y one-hot, zeros when unlabelled."""
    import csv
    with open(os.path.join(data, f"{name}.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    images = os.path.join(data, "images")
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(os.path.join(images, r["image_id"]), color_mode="grayscale"))
                  for r in rows]).astype("float32")
    # An unlabelled row has every class cell empty: zeros, as pandas' fillna(0) gave.
    y = np.array([[float(r[c]) if r[c] not in ("", "NA") else 0.0 for c in CLASSES] for r in rows], dtype="float32")
    return x, y


def logits_model(keras, model):
    """A model sharing `model`'s weights whose output is the input of its trailing softmax."""
    last = model.layers[-1]
    is_softmax = (isinstance(last, keras.layers.Softmax)
                  or (isinstance(last, keras.layers.Activation)
                      and keras.activations.serialize(last.activation) == "softmax"))
    if is_softmax:
        return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
    raise SystemExit(f"{model.name}: the last layer is not Activation('softmax') or Softmax; cannot find its logits")


def make_distiller(keras, tf, student_logits, teacher_logits, alpha, temperature):
    alpha = float(alpha)
    T = float(temperature)

    class Distiller(keras.Model):
        def __init__(self):
            super().__init__()
            self.student = student_logits
            self.teacher = teacher_logits
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.hard_tracker = keras.metrics.Mean(name="hard")
            self.soft_tracker = keras.metrics.Mean(name="soft")
            self.acc_tracker = keras.metrics.CategoricalAccuracy(name="accuracy")

        @property
        def metrics(self):
            return [self.loss_tracker, self.hard_tracker, self.soft_tracker, self.acc_tracker]

        def losses_of(self, x, y, training):
            s = self.student(x, training=training)
            labelled = tf.cast(tf.reduce_sum(y, axis=1) > 0, s.dtype)
            n_labelled = tf.reduce_sum(labelled)
            ce = keras.losses.categorical_crossentropy(y, s, from_logits=True)     # per row
            hard = tf.math.divide_no_nan(tf.reduce_sum(ce * labelled), n_labelled)
            if self.teacher is None:
                return s, hard, tf.constant(0.0), hard, labelled
            t = self.teacher(x, training=False)
            kl = keras.losses.kl_divergence(tf.nn.softmax(t / T, axis=1), tf.nn.softmax(s / T, axis=1))
            soft = tf.reduce_mean(kl) * (T * T)
            total = tf.where(n_labelled > 0, alpha * hard, 0.0) + (1.0 - alpha) * soft
            return s, hard, soft, total, labelled

        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                s, hard, soft, total, labelled = self.losses_of(x, y, training=True)
            variables = self.student.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
            self.loss_tracker.update_state(total)
            self.hard_tracker.update_state(hard)
            self.soft_tracker.update_state(soft)
            self.acc_tracker.update_state(y, s, sample_weight=labelled)
            return {m.name: m.result() for m in self.metrics}

        def test_step(self, data):
            x, y = data
            s = self.student(x, training=False)
            self.acc_tracker.update_state(y, s)
            return {"accuracy": self.acc_tracker.result()}

        def call(self, x):
            return self.student(x)

    return Distiller()


def accuracy(model, x, y):
    p = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(p, 1) == np.argmax(y, 1)))


def main(argv=None):
    a = parse_args(argv)
    t_start = time.time()
    import tensorflow as tf
    import tf_keras
    keras = tf.keras
    assert keras.layers.Dense is tf_keras.layers.Dense, "need tf.keras = tf-keras 2 (TF_USE_LEGACY_KERAS=1)"
    tf.config.experimental.enable_op_determinism()

    xte, yte = load_split(keras, a.data, "test")
    xva, yva = load_split(keras, a.data, "val")
    if a.evaluate:
        model = keras.models.load_model(a.evaluate, compile=False)
        print(json.dumps({"model": a.evaluate, "test_accuracy": accuracy(model, xte, yte),
                          "val_accuracy": accuracy(model, xva, yva)}), flush=True)
        return 0

    xtr, ytr = load_split(keras, a.data, "train")
    if a.unlabelled:
        xun, yun = load_split(keras, a.data, "unlabelled")
        assert not yun.any(), "unlabelled.csv has labels"
        xtr, ytr = np.concatenate([xtr, xun]), np.concatenate([ytr, yun])

    keras.backend.clear_session()
    keras.utils.set_random_seed(a.seed)
    student = keras.models.load_model(a.student, compile=False)
    teacher = None if a.no_teacher else keras.models.load_model(a.teacher, compile=False)
    distiller = make_distiller(keras, tf, logits_model(keras, student),
                               None if teacher is None else logits_model(keras, teacher),
                               a.alpha, a.temperature)
    distiller.compile(optimizer=keras.optimizers.Adam(learning_rate=a.learning_rate))
    # Reseed right before fit: the shuffling order then depends on the seed and the row count only,
    # not on what was built before, so (a) and (b) see the same batches for the same seed.
    keras.utils.set_random_seed(a.seed)
    t_fit = time.time()
    hist = distiller.fit(xtr, ytr, batch_size=a.batch_size, epochs=a.epochs, shuffle=True,
                         validation_data=(xva, yva), validation_batch_size=256,
                         verbose=2 if a.verbose else 0)
    fit_seconds = time.time() - t_fit
    if a.output:
        student.save(a.output)

    h = hist.history
    setting = "train" if a.no_teacher else ("distill+unlabelled" if a.unlabelled else "distill")
    result = {
        "tool": "keras", "keras": "tf-keras " + tf_keras.__version__, "setting": setting,
        "epochs": a.epochs, "batch_size": a.batch_size, "alpha": None if a.no_teacher else a.alpha,
        "temperature": None if a.no_teacher else a.temperature, "learning_rate": a.learning_rate,
        "seed": a.seed, "train_rows": int(len(xtr)), "labelled_rows": int((ytr.sum(1) > 0).sum()),
        "test_accuracy": accuracy(student, xte, yte),
        "val_accuracy": accuracy(student, xva, yva),
        "per_epoch": [{"epoch": e + 1, "loss": round(h["loss"][e], 5),
                       "hard": round(h["hard"][e], 5),
                       "soft": None if a.no_teacher else round(h["soft"][e], 5),
                       "train_accuracy": round(h["accuracy"][e], 4),
                       "val_accuracy": round(h["val_accuracy"][e], 4)} for e in range(a.epochs)],
        "fit_seconds": round(fit_seconds, 1),
        "seconds": round(time.time() - t_start, 1),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
