#!/usr/bin/env python3
"""Keras 3's own distiller (keras.distillation.Distiller, Keras 3.15) on the bundled example, with
the recipe of compare_losses.py: one run, one seed; prints one JSON line (test accuracy, seconds
per epoch of fit).

    /root/.cache/distillctl/venv/bin/python example/keras3_distiller.py --seed 1 [--features]

- teacher.h5 and student.h5 loaded with Keras 3 (their untrained student weights are the ones
  distillctl starts from); each cut at the input of its trailing softmax (the logits), sharing
  weights, since LogitsDistillation and the student loss take logits;
- images loaded as Keras's loader does (load_img grayscale + img_to_array, 0-255; the models
  start with Rescaling(1/255)); no augmentation;
- Distiller(student_loss_weight=alpha, LogitsDistillation(T, loss=keras.losses.KLDivergence())),
  compiled with Adam(learning_rate) and CategoricalCrossentropy(from_logits=True); fit(batch_size,
  epochs, shuffle=True) after keras.utils.set_random_seed(seed). The KLDivergence instance matters:
  LogitsDistillation's default loss="kl_divergence" resolves to the function, which its
  isinstance(KLDivergence) test misses, and then no softmax and no T^2 are applied.
- --features adds FeatureDistillation(loss=FEATURE_LOSS, teacher_layer_name=LAYER,
  student_layer_name=LAYER) with weight FEATURE_WEIGHT (Keras multiplies it by 1 - alpha). Keras
  needs equal shapes and has no adaptor: in the example the only teacher/student layer pair of equal
  shape is "logits" (10 values), so that is the pair by default.
"""
import argparse
import csv
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np
import keras

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def load_split(data, name):
    with open(os.path.join(data, f"{name}.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    images = os.path.join(data, "images")
    x = np.stack([keras.utils.img_to_array(keras.utils.load_img(os.path.join(images, r["image_id"]), color_mode="grayscale"))
                  for r in rows]).astype("float32")
    y = np.array([[float(r[c]) for c in CLASSES] for r in rows], dtype="float32")
    return x, y


def logits_model(model):
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Activation), f"{model.name}: no trailing softmax"
    return keras.Model(model.inputs, last.input, name=f"{model.name}_logits")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--alpha", type=float, default=0.9)
    p.add_argument("--temperature", type=float, default=3.0)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--features", action="store_true")
    p.add_argument("--feature-layer", default="logits")
    p.add_argument("--feature-loss", default="mse")
    p.add_argument("--feature-weight", type=float, default=1.0)
    a = p.parse_args()
    data = os.path.join(HERE, "data")
    xtr, ytr = load_split(data, "train")
    xte, yte = load_split(data, "test")
    keras.utils.set_random_seed(a.seed)
    teacher = logits_model(keras.models.load_model(os.path.join(HERE, "teacher.h5"), compile=False))
    student = logits_model(keras.models.load_model(os.path.join(HERE, "student.h5"), compile=False))
    losses = [keras.distillation.LogitsDistillation(temperature=a.temperature, loss=keras.losses.KLDivergence())]
    weights = [1.0]
    if a.features:
        losses.append(keras.distillation.FeatureDistillation(loss=a.feature_loss, teacher_layer_name=a.feature_layer,
                                                             student_layer_name=a.feature_layer))
        weights.append(a.feature_weight)
    distiller = keras.distillation.Distiller(teacher=teacher, student=student, distillation_losses=losses,
                                             distillation_loss_weights=weights, student_loss_weight=a.alpha)
    distiller.compile(optimizer=keras.optimizers.Adam(a.learning_rate),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    start = time.time()
    distiller.fit(xtr, ytr, batch_size=a.batch_size, epochs=a.epochs, shuffle=True, verbose=0)
    seconds = (time.time() - start) / a.epochs
    predictions = student.predict(xte, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(predictions, 1) == np.argmax(yte, 1)))
    print(json.dumps({"keras": keras.__version__, "seed": a.seed, "features": a.features,
                      "test_accuracy": accuracy, "seconds_per_epoch": seconds}))


if __name__ == "__main__":
    main()
