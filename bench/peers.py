"""Speed peers for `bench/compare.py`: the same model and batch in TensorFlow, ONNX Runtime,
OpenVINO and TFLite (XNNPACK), each timed in its own process so peak memory is its own.
Runtime "openvino" is OpenVINO in float32, "openvino-default" OpenVINO as it comes (bf16 on a CPU
with AVX512_BF16). The environment passes through (ONEDNN_MAX_CPU_ISA=AVX2 for the AVX2 rows).

    python peers.py prepare MODEL.h5 WORKDIR           # writes WORKDIR/model.onnx, model_b{1,8}.tflite
    python peers.py run RUNTIME MODEL.h5 WORKDIR BATCH ITERATIONS THREADS [ONNX]   # prints one JSON line
    python peers.py train MODEL.h5 BATCH ITERATIONS THREADS [UNFREEZE_FROM]     # TensorFlow distillation steps

ONNX: the file in WORKDIR that ONNX Runtime and OpenVINO run (default model.onnx; bench/int8_probe.py
passes its int8 model).
"""
import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")      # tf.keras = tf-keras 2.x, as the user's R keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def random_batch(shape, batch):
    rng = np.random.default_rng(0)
    return (rng.random((batch,) + tuple(shape)) * 255).astype(np.float32)


def load_keras(path):
    import tensorflow as tf
    return tf, tf.keras.models.load_model(path, compile=False)


def prepare(model_path, workdir):
    tf, model = load_keras(model_path)
    import tf2onnx
    os.makedirs(workdir, exist_ok=True)
    spec = (tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=os.path.join(workdir, "model.onnx"))
    for batch in (1, 8):
        fn = tf.function(lambda x: model(x, training=False))
        concrete = fn.get_concrete_function(tf.TensorSpec((batch,) + tuple(model.input_shape[1:]), tf.float32))
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
        with open(os.path.join(workdir, f"model_b{batch}.tflite"), "wb") as f:
            f.write(converter.convert())


# What a runner learnt about itself (OpenVINO's precision and kernels), added to its JSON line.
INFO = {}


def runner(name, model_path, workdir, batch, threads, onnx="model.onnx"):
    """Returns (callable running one batch, the batch)."""
    if name == "tensorflow":
        import tensorflow as tf
        # Thread pools must be set before TensorFlow initialises (loading the model does).
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf, model = load_keras(model_path)
        x = random_batch(model.input_shape[1:], batch)
        fn = tf.function(lambda t: model(t, training=False))
        xt = tf.constant(x)
        return (lambda: fn(xt).numpy()), x
    if name == "onnxruntime":
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(os.path.join(workdir, onnx), opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = random_batch(inp.shape[1:], batch)
        return (lambda: sess.run(None, {inp.name: x})), x
    if name in ("openvino", "openvino-default"):
        import openvino as ov
        core = ov.Core()
        model = core.read_model(os.path.join(workdir, onnx))
        shape = [batch] + [d.get_length() for d in model.inputs[0].get_partial_shape()[1:]]
        model.reshape({model.inputs[0].any_name: shape})
        # "openvino": float32 like every other runtime here. "openvino-default": what a user gets
        # without asking, which on CPUs with bfloat16 support is bf16 (outputs ~2e-2 from Keras's).
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        if name == "openvino":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = core.compile_model(model, "CPU", config)
        INFO["precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        # The kernels OpenVINO picked for the convolutions (jit_avx512_..., jit_avx2_...): shows
        # whether ONEDNN_MAX_CPU_ISA limited them.
        kinds = {}
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].value == "Convolution" and "primitiveType" in info:
                kind = info["primitiveType"].value
                kinds[kind] = kinds.get(kind, 0) + 1
        INFO["kernels"] = max(kinds, key=kinds.get) if kinds else "unknown"
        request = compiled.create_infer_request()
        x = random_batch(shape[1:], batch)
        return (lambda: request.infer({0: x})), x
    if name == "tflite":
        import tensorflow as tf
        interp = tf.lite.Interpreter(model_path=os.path.join(workdir, f"model_b{batch}.tflite"), num_threads=threads)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        out = interp.get_output_details()[0]
        x = random_batch(inp["shape"][1:], batch)

        def run():
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            return interp.get_tensor(out["index"])
        return run, x
    raise SystemExit(f"unknown runtime {name}")


def run(name, model_path, workdir, batch, iterations, threads, onnx="model.onnx"):
    fn, _ = runner(name, model_path, workdir, batch, threads, onnx)
    for _ in range(3):
        fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"runtime": name, "batch": batch, "img_s": batch * len(times) / sum(times),
                      "p50_ms": 1000 * times[len(times) // 2], "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))],
                      "peak_mb": peak_mb, **INFO}))


def distillation_step(tf, teacher, student, alpha=0.9, temperature=3.0):
    """The seed's distillation step as a `tf.function`: the teacher (frozen) forward in inference
    mode, the student forward in training mode and backward, distillctl's loss (alpha weights the
    hard cross-entropy; KL(softmax(t/T) || softmax(s/T)) * T^2 on logits recovered from the softmax
    outputs), Adam."""
    optimizer = tf.keras.optimizers.Adam()

    def logits(p):
        return tf.math.log(tf.clip_by_value(p, 1e-7, 1.0))

    @tf.function(reduce_retracing=True)
    def step(x, y):
        t = teacher(x, training=False)
        with tf.GradientTape() as tape:
            s = student(x, training=True)
            hard = tf.reduce_mean(tf.keras.losses.categorical_crossentropy(y, s))
            pt = tf.nn.softmax(logits(t) / temperature)
            log_ps = tf.nn.log_softmax(logits(s) / temperature)
            soft = tf.reduce_mean(tf.reduce_sum(pt * (tf.math.log(tf.clip_by_value(pt, 1e-12, 1.0)) - log_ps), -1))
            loss = alpha * hard + (1 - alpha) * soft * temperature ** 2
        variables = student.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def train(model_path, batch, iterations, threads, unfreeze_from=None):
    """TensorFlow's distillation step of the seed's setup, compiled with `tf.function`: the teacher
    (frozen) forward in inference mode, the student forward in training mode and backward, the
    distillation loss as distillctl's (alpha weights the hard cross-entropy; KL(softmax(t/T) ||
    softmax(s/T)) * T^2 on logits recovered from the softmax outputs), Adam. The student's base is
    frozen (head only) or unfrozen from UNFREEZE_FROM as R's unfreeze_weights does."""
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    _, teacher = load_keras(model_path)
    _, student = load_keras(model_path)
    teacher.trainable = False
    base = student.layers[0]
    base.trainable = False
    if unfreeze_from:
        base.trainable = True
        names = [layer.name for layer in base.layers]
        start = names.index(unfreeze_from)
        for i, layer in enumerate(base.layers):
            layer.trainable = i >= start
    step = distillation_step(tf, teacher, student)
    x = tf.constant(random_batch(student.input_shape[1:], batch))
    classes = student.output_shape[-1]
    y = tf.one_hot([i % classes for i in range(batch)], classes)
    for _ in range(2):
        step(x, y).numpy()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        step(x, y).numpy()
        times.append(time.perf_counter() - start)
    times.sort()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"runtime": "tensorflow", "batch": batch, "unfreeze_from": unfreeze_from,
                      "trainable": int(sum(int(tf.size(v)) for v in student.trainable_variables)),
                      "s_step": times[len(times) // 2], "peak_mb": peak_mb}))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "run":
        run(*sys.argv[2:5], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), *sys.argv[8:9])
    elif sys.argv[1] == "train":
        train(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] if len(sys.argv) > 6 else None)
    else:
        raise SystemExit(__doc__)
