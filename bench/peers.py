"""Speed peers for `bench/compare.py`: the same model and batch in TensorFlow, ONNX Runtime,
OpenVINO and TFLite (XNNPACK), each timed in its own process so peak memory is its own.

    python peers.py prepare MODEL.h5 WORKDIR           # writes WORKDIR/model.onnx, model_b{1,8}.tflite
    python peers.py run RUNTIME MODEL.h5 WORKDIR BATCH ITERATIONS THREADS   # prints one JSON line
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


def runner(name, model_path, workdir, batch, threads):
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
        sess = ort.InferenceSession(os.path.join(workdir, "model.onnx"), opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = random_batch(inp.shape[1:], batch)
        return (lambda: sess.run(None, {inp.name: x})), x
    if name == "openvino":
        import openvino as ov
        core = ov.Core()
        model = core.read_model(os.path.join(workdir, "model.onnx"))
        shape = [batch] + [d.get_length() for d in model.inputs[0].get_partial_shape()[1:]]
        model.reshape({model.inputs[0].any_name: shape})
        # float32 like every other runtime here: on CPUs with bfloat16 support OpenVINO otherwise
        # picks bf16 and its outputs move by ~2e-2 from Keras's.
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                                     "INFERENCE_PRECISION_HINT": "f32"})
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


def run(name, model_path, workdir, batch, iterations, threads):
    fn, _ = runner(name, model_path, workdir, batch, threads)
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
                      "peak_mb": peak_mb}))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]))
    else:
        raise SystemExit(__doc__)
