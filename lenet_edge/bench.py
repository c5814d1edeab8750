"""Benchmarks, side by side in one run on this machine: training throughput, per-image
latency of every runtime, sizes, multiply-accumulates, Cortex-M4 instruction count.

    python -m lenet_edge.bench [--bundle export] [--out runs/bench] [--readme README.md]
    make bench          # the same, and updates README.md's benchmark table

The machine is noisy: every measurement is repeated in alternating rounds and the
median is reported; compare ratios within one run, not across runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

README_START = "<!-- bench:start (written by `python -m lenet_edge.bench --readme README.md`) -->"
README_END = "<!-- bench:end -->"


# ------------------------------------------------------------ training throughput
def plain_lenet5():
    """The tutorial LeNet-5: Conv/AvgPool/Dense with tanh and a softmax output, dense C3."""
    import tf_keras as keras
    L = keras.layers
    return keras.Sequential([
        keras.Input((32, 32, 1)),
        L.Conv2D(6, 5, activation="tanh"), L.AveragePooling2D(),
        L.Conv2D(16, 5, activation="tanh"), L.AveragePooling2D(),
        L.Flatten(), L.Dense(120, activation="tanh"), L.Dense(84, activation="tanh"),
        L.Dense(10, activation="softmax"),
    ], name="plain_lenet5")


def training_throughput(x: np.ndarray, y: np.ndarray, rounds: int = 3, batch: int = 32) -> dict:
    """Images per second of model.fit (Adam, batch 32) for both models, alternating rounds."""
    import tf_keras as keras

    from lenet_edge import training
    from lenet_edge.model import MapLoss, build_lenet5
    training.set_determinism(0)
    faithful = build_lenet5(0)
    faithful.compile(keras.optimizers.Adam(1e-3), MapLoss())
    plain = plain_lenet5()
    plain.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    models = {"faithful LeNet-5 (this package)": faithful, "plain Keras LeNet-5 (softmax)": plain}
    for m in models.values():  # trace and warm up
        m.fit(x[:batch * 20], y[:batch * 20], batch_size=batch, epochs=1, verbose=0)
    rates = {k: [] for k in models}
    for _ in range(rounds):
        for name, m in models.items():
            t0 = time.perf_counter()
            m.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            rates[name].append(len(x) / (time.perf_counter() - t0))
    out = {k: float(np.median(v)) for k, v in rates.items()}
    names = list(models)
    return {"images_per_s": out, "rounds": rates, "images_per_round": len(x), "batch": batch,
            "ratio_faithful_to_plain": out[names[0]] / out[names[1]]}


# ------------------------------------------------------------ inference latency
def _stats(us: np.ndarray) -> dict:
    us = np.asarray(us, np.float64)
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)), "n": int(us.size)}


def keras_latency(model, x: np.ndarray) -> np.ndarray:
    times = []
    for image in x:
        batch = image[None]
        t0 = time.perf_counter()
        model(batch, training=False).numpy()
        times.append((time.perf_counter() - t0) * 1e6)
    return np.array(times)


def litert_latency(model_bytes: bytes, x_q: np.ndarray) -> np.ndarray:
    from ai_edge_litert import interpreter as litert
    interpreter = litert.Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    outp = interpreter.get_output_details()[0]["index"]
    times = []
    for image in x_q:
        batch = image[None]
        t0 = time.perf_counter()
        interpreter.set_tensor(inp, batch)
        interpreter.invoke()
        interpreter.get_tensor(outp)
        times.append((time.perf_counter() - t0) * 1e6)
    return np.array(times)


def inference_latency(bundle: Path, x: np.ndarray, x_q: np.ndarray, keras_model, host_exe: Path,
                      rounds: int = 3) -> dict:
    """Per-image latency (each runtime called once per image, as a device would), alternating rounds."""
    from lenet_edge import firmware
    int8 = (bundle / "lenet5_int8.tflite").read_bytes()
    runs = {"Keras float (tf_keras, eager call)": [], "int8 LiteRT (default kernels)": [],
            "int8 TFLite Micro (tflite_micro Python)": [], "int8 host C engine (firmware_stub, -O2)": []}
    host_meds = []
    keras_latency(keras_model, x[:20])  # warm up tracing
    for _ in range(rounds):
        runs["Keras float (tf_keras, eager call)"].append(keras_latency(keras_model, x))
        runs["int8 LiteRT (default kernels)"].append(litert_latency(int8, x_q))
        runs["int8 TFLite Micro (tflite_micro Python)"].append(firmware.tflm_latency_us(int8, x_q))
        host = firmware.host_latency_us(host_exe, x_q, repeat=3)
        host_meds.append(host)
    out = {}
    for name, rs in runs.items():
        if name.startswith("int8 host"):
            med = float(np.median([h["median_us"] for h in host_meds]))
            p99 = float(np.median([h["p99_us"] for h in host_meds]))
            out[name] = {"median_us": med, "p99_us": p99, "n": host_meds[0]["inferences"],
                         "round_medians_us": [h["median_us"] for h in host_meds]}
        else:
            meds = [float(np.median(r)) for r in rs]
            out[name] = {"median_us": float(np.median(meds)), "p99_us": float(np.median([np.percentile(r, 99)
                                                                                      for r in rs])),
                         "n": int(rs[0].size), "round_medians_us": meds}
    return out


def batch_throughput(keras_model, x: np.ndarray, rounds: int = 3) -> dict:
    """Keras float on a batch of 1,000 (the int8 models take one image per invoke)."""
    keras_model.predict(x[:1000], batch_size=1000, verbose=0)
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        keras_model.predict(x, batch_size=1000, verbose=0)
        rates.append(len(x) / (time.perf_counter() - t0))
    return {"Keras float, predict(batch_size=1000)": float(np.median(rates))}


# ------------------------------------------------------------ sizes and work
def layer_work(model_bytes: bytes) -> list[dict]:
    """Per layer: multiply-accumulates of one inference (the paper's connections without the
    bias terms; C3 counts only Table I's connections), what a dense int8 kernel (TFLM) executes,
    and the paper's connection count (MACs + one bias per output)."""
    from lenet_edge import cengine
    g = cengine.read_graph(model_bytes)
    rows = []
    for name, layer in g["layers"].items():
        out = int(np.prod(layer["out_shape"][1:]))
        if layer["kind"] == "FULLY_CONNECTED":
            fan_in = dense = int(np.prod(layer["in_shape"][1:]))
        elif layer["kind"] == "DEPTHWISE_CONV_2D":
            fan_in = dense = int(np.prod(layer["kernel"]))
        else:
            k = int(np.prod(layer["kernel"]))
            dense = k * layer["in_shape"][-1]
            fan_in = dense
            if name == "C3":
                counts, _ = cengine.c3_connections(layer["weights"])
                fan_in = k * sum(counts) / len(counts)
        rows.append({"layer": name, "outputs": out, "macs": int(round(out * fan_in)), "dense_macs": out * dense,
                     "connections": int(round(out * (fan_in + 1)))})
    protos = g["sqdiff"]["prototypes"]
    rows.append({"layer": "RBF", "outputs": protos.shape[0], "macs": int(protos.size), "dense_macs": int(protos.size),
                 "connections": int(protos.size)})
    return rows


def sizes(bundle: Path) -> dict:
    from lenet_edge import export, firmware
    int8 = (bundle / "lenet5_int8.tflite").read_bytes()
    arena = export.measure_tflm_arena(int8)
    fw = firmware.size_report(bundle)
    return {"int8_tflite_bytes": len(int8), "float_tflite_bytes": (bundle / "lenet5_float.tflite").stat().st_size,
            "tflm_arena_bytes": arena["total"], "m4_flash_bytes": fw["engine_flash_bytes"],
            "m4_ram_bytes": fw["engine_ram_bytes"], "m4_instructions_per_inference": fw["instructions_per_inference"],
            "m4_instructions_per_tick": fw["instructions_per_tick"]}


# ------------------------------------------------------------ report
def format_tables(r: dict) -> str:
    t = r["training"]
    lines = [f"Measured by `python -m lenet_edge.bench` on {r['machine']} ({r['date']}); medians of "
             f"{r['rounds']} alternating rounds.", "",
             "| training throughput (model.fit, Adam, batch 32, CPU, TF op determinism on as in `make train`) "
             "| images/s, median | min - max over rounds |", "|---|---:|---:|"]
    for name, v in t["images_per_s"].items():
        rs = t.get("rounds", {}).get(name, [v])
        lines.append(f"| {name} | {v:,.0f} | {min(rs):,.0f} - {max(rs):,.0f} |")
    lines += [f"| ratio faithful / plain (of the medians) | {t['ratio_faithful_to_plain']:.2f} | |", "",
              f"| inference, one image per call ({r['latency_images']} test images) | median | p99 |",
              "|---|---:|---:|"]
    for name, v in r["latency"].items():
        lines.append(f"| {name} | {v['median_us']:,.1f} us | {v['p99_us']:,.1f} us |")
    host = r["latency"]["int8 host C engine (firmware_stub, -O2)"]["median_us"]
    tflm = r["latency"]["int8 TFLite Micro (tflite_micro Python)"]["median_us"]
    lines += [f"| host C engine speed-up over tflite_micro Python | {tflm / host:.1f}x | |", ""]
    for name, v in r["batch"].items():
        lines.append(f"Batch throughput: {name}: {v:,.0f} images/s; host C engine: {1e6 / host:,.0f} images/s "
                     "(one image per call).")
    s = r["sizes"]
    lines += ["", "| size | bytes |", "|---|---:|",
              f"| int8 `.tflite` | {s['int8_tflite_bytes']:,} |", f"| float `.tflite` | {s['float_tflite_bytes']:,} |",
              f"| TFLM arena, measured (64-bit host) | {s['tflm_arena_bytes']:,} |",
              f"| Cortex-M4 flash, engine + model | {s['m4_flash_bytes']:,} |",
              f"| Cortex-M4 RAM, engine (data + bss + stack high-water) | {s['m4_ram_bytes']:,} |", "",
              f"Cortex-M4 (QEMU mps2-an386, `-icount shift=0`): about {s['m4_instructions_per_inference']:,} "
              "instructions per inference. This is an instruction count, not a time: QEMU does not model "
              "cycles, wait states or caches.", "",
              "| layer | outputs | MACs (paper's connections without bias) | MACs a dense int8 kernel runs | "
              "connections (paper's count) |", "|---|---:|---:|---:|---:|"]
    for w in r["work"]:
        lines.append(f"| {w['layer']} | {w['outputs']:,} | {w['macs']:,} | {w['dense_macs']:,} | "
                     f"{w['connections']:,} |")
    tot = {k: sum(w[k] for w in r["work"]) for k in ("macs", "dense_macs", "connections")}
    lines.append(f"| total | | {tot['macs']:,} | {tot['dense_macs']:,} | {tot['connections']:,} |")
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, tables: str) -> None:
    from lenet_edge.fileio import atomic_write
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"error: {readme} has no benchmark markers ({README_START} ... {README_END}); add them "
                         "where the table belongs")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    atomic_write(readme, head + README_START + "\n\n" + tables + "\n" + README_END + tail)


def run(bundle: Path, rounds: int = 3, latency_images: int = 500, train_images: int = 16000,
        data_dir=None) -> dict:
    import tf_keras as keras

    import lenet_edge.model  # noqa: F401
    from lenet_edge import firmware, verify
    from lenet_edge.data import load_mnist
    data = load_mnist(data_dir, verbose=False)
    int8 = (bundle / verify.INT8_MODEL).read_bytes()
    x = data.x_test[:latency_images]
    x_q = verify.quantize_for(int8, x)
    build_dir = firmware.build(["host"], bundle)
    keras_model = keras.models.load_model(bundle / verify.KERAS_FLOAT, compile=False)
    result = {"machine": f"{platform.machine()}, {_cpu_name()}, {_cpus()} CPUs", "date": time.strftime("%Y-%m-%d"),
              "rounds": rounds, "latency_images": latency_images}
    result["training"] = training_throughput(data.x_train[:train_images], data.y_train[:train_images], rounds)
    result["latency"] = inference_latency(bundle, x, x_q, keras_model, build_dir / "host" / "lenet5_host", rounds)
    result["batch"] = batch_throughput(keras_model, data.x_test, rounds)
    result["sizes"] = sizes(bundle)
    result["work"] = layer_work(int8)
    return result


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _cpus() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lenet_edge.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="export")
    ap.add_argument("--out", default="runs/bench", help="directory for bench.json and bench.md")
    ap.add_argument("--readme", default=None, help="also replace the benchmark section of this README")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency-images", type=int, default=500)
    ap.add_argument("--train-images", type=int, default=16000)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    from lenet_edge import firmware, verify
    from lenet_edge.fileio import atomic_write
    bundle = Path(args.bundle)
    if args.rounds < 1 or args.latency_images < 10 or args.train_images < 640:
        print("error: --rounds >= 1, --latency-images >= 10 and --train-images >= 640", file=sys.stderr)
        return 2
    try:
        verify.check_bundle(bundle)
        result = run(bundle, args.rounds, args.latency_images, args.train_images, args.data_dir)
    except (verify.BundleError, firmware.FirmwareError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tables = format_tables(result)
    print(tables)
    out = Path(args.out)
    atomic_write(out / "bench.json", json.dumps(result, indent=1) + "\n")
    atomic_write(out / "bench.md", tables)
    print(f"written to {out / 'bench.json'} and {out / 'bench.md'}")
    if args.readme:
        update_readme(Path(args.readme), tables)
        print(f"benchmark section of {args.readme} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
