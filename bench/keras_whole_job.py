#!/usr/bin/env python3
"""Keras's side of the whole job (bench/whole_job.sh --keras): one epoch of the seed's distillation
as the blog post's user would write it in tf-keras, without its bugs: ImageDataGenerator with the
seed's augmentation + flow_from_dataframe (800x600 JPEGs to 228x228, batch 8, shuffled), the
EfficientNetB0 fixture as teacher and as student with its base frozen, bench/peers.py's
`tf.function` distillation step (alpha 0.9, T 3, Adam), 2 threads.

Prints one JSON line: `epoch_s`, the epoch loop alone (images and steps; the first step, which
traces the function, is run and excluded before the clock starts, as are imports and loading), and
`process_s`, the whole process.

    keras_whole_job.py MODEL.h5 DATA_DIR [THREADS]     (DATA_DIR: train.csv and images/)
"""
import json
import os
import sys
import time

START = time.time()
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import distillation_step  # noqa: E402  (the same step as bench --train's peer)


def main():
    model_path, data = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras = tf.keras
    frame = pd.read_csv(os.path.join(data, "train.csv"))
    classes = [c for c in frame.columns if c != "image_id"]
    generator = keras.preprocessing.image.ImageDataGenerator(
        rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2,
        zoom_range=0.5, horizontal_flip=True, fill_mode="reflect")
    teacher = keras.models.load_model(model_path, compile=False)
    student = keras.models.load_model(model_path, compile=False)
    size = tuple(student.input_shape[1:3])
    flow = generator.flow_from_dataframe(frame, directory=os.path.join(data, "images"), x_col="image_id",
                                         y_col=classes, class_mode="raw", target_size=size, batch_size=8,
                                         shuffle=True, seed=1)
    teacher.trainable = False
    student.layers[0].trainable = False
    step = distillation_step(tf, teacher, student)

    # Trace on a batch of the right shape (and the last, partial one's) before the clock starts.
    x0 = tf.zeros((8,) + size + (3,))
    y0 = tf.one_hot([0] * 8, len(classes))
    step(x0, y0).numpy()
    last = len(frame) % 8
    if last:
        step(x0[:last], y0[:last]).numpy()
    start = time.time()
    for i in range(len(flow)):
        x, y = flow[i]
        step(tf.constant(x), tf.constant(y, dtype=tf.float32)).numpy()
    epoch = time.time() - start
    print(json.dumps({"runtime": "keras", "images": len(frame), "epoch_s": epoch, "process_s": time.time() - START}))


if __name__ == "__main__":
    main()
