"""Parity report: the int8 and TFLite Micro models against the float model, on all 10,000 test images.

    python -m lenet_edge.verify [BUNDLE]      # default BUNDLE: export/

Runs Keras float, Keras QAT, float TFLite, int8 LiteRT (default kernels), int8
LiteRT without delegates, and int8 TFLite Micro (the `tflite_micro` runtime), prints
the table, writes it to BUNDLE/report.md and the figures to BUNDLE/manifest.json,
and exits non-zero when a threshold is not met. A bundle whose files do not match
its manifest, or a damaged .tflite, is refused with a clear error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import lenet_edge  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from lenet_edge import export

# Thresholds (issue #4). Accuracy parity gates; size and arena are reported against targets.
MAX_ERROR_INCREASE_PP = 0.05      # TFLM int8 test error <= float test error + 0.05 pp
MIN_AGREEMENT_PCT = 99.9          # argmin agreement TFLM vs Keras float
TARGET_INT8_BYTES = 66 * 1024     # int8 .tflite size target (66 KiB)
TARGET_ARENA_BYTES = 10 * 1024    # measured TFLM arena target (10 KiB)

INT8_MODEL = "lenet5_int8.tflite"
FLOAT_MODEL = "lenet5_float.tflite"
KERAS_FLOAT = "keras_float.keras"
KERAS_QAT = "keras_qat.h5"  # tfmot QAT models reload reliably only from HDF5


class BundleError(RuntimeError):
    """The bundle is incomplete or its files do not match the manifest."""


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float images -> int8 with the given input scale and zero point."""
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def quantize_for(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """float images -> the int8 input of this int8 model (its own input scale and zero point)."""
    q = export.io_quantization(model_bytes)["input"]
    return quantize_input(x, q["scale"], q["zero_point"])


def run_tflm(model_bytes: bytes, x_int8: np.ndarray) -> np.ndarray:
    """int8 outputs of the TFLite Micro runtime, one image per invoke."""
    interpreter = export.tflm_interpreter(model_bytes)
    out = []
    for image in x_int8:
        interpreter.set_input(image[None], 0)
        interpreter.invoke()
        out.append(interpreter.get_output(0)[0])
    return np.stack(out)


def run_litert(model_bytes: bytes, x: np.ndarray, delegates: bool = True) -> np.ndarray:
    """Outputs of the LiteRT interpreter, one image per invoke.

    delegates=True: the default op resolver (XNNPACK applied where it can be);
    False: BUILTIN_WITHOUT_DEFAULT_DELEGATES (TFLite's builtin kernels only).
    """
    from ai_edge_litert import interpreter as litert
    kind = (litert.OpResolverType.AUTO if delegates
            else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter = litert.Interpreter(model_content=model_bytes, experimental_op_resolver_type=kind)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    outp = interpreter.get_output_details()[0]["index"]
    out = []
    for image in x:
        interpreter.set_tensor(inp, image[None])
        interpreter.invoke()
        out.append(interpreter.get_tensor(outp)[0].copy())
    return np.stack(out)


def parity_rows(outputs: dict, labels: np.ndarray, reference: str = "Keras float",
                int8_reference: str = "int8 TFLite Micro") -> list[dict]:
    """Test error, agreement with the float reference and max int8 LSB difference per runtime."""
    ref_pred = np.argmin(outputs[reference], axis=1)
    rows = []
    for name, out in outputs.items():
        pred = np.argmin(out, axis=1)
        row = {"runtime": name, "test_error": float(np.mean(pred != labels) * 100),
               "errors": int(np.sum(pred != labels)),
               "agreement_with_float": float(np.mean(pred == ref_pred) * 100), "max_lsb_diff": None}
        if out.dtype == np.int8 and int8_reference in outputs:
            diff = np.abs(out.astype(np.int32) - outputs[int8_reference].astype(np.int32))
            row["max_lsb_diff"] = int(diff.max())
        rows.append(row)
    return rows


def check_bundle(bundle: Path) -> dict:
    """Loads manifest.json and checks every listed file's size and SHA-256."""
    manifest_path = bundle / "manifest.json"
    if not manifest_path.exists():
        raise BundleError(f"{bundle} has no manifest.json; it is not a lenet_edge bundle "
                          "(create one with `python -m lenet_edge.train`)")
    try:
        manifest = json.loads(manifest_path.read_text())
        listed = manifest["files"]
    except (json.JSONDecodeError, KeyError) as e:
        raise BundleError(f"{manifest_path} is damaged ({e}); restore it from git or re-export") from None
    problems = []
    for name, entry in listed.items():
        path = bundle / name
        if not path.exists():
            problems.append(f"{name}: missing")
            continue
        digest = export.sha256_hex(path.read_bytes())
        if digest != entry["sha256"]:
            problems.append(f"{name}: SHA-256 {digest[:16]}... does not match the manifest's "
                            f"{entry['sha256'][:16]}... ({path.stat().st_size} bytes, manifest says {entry['bytes']})")
    for required in (INT8_MODEL, FLOAT_MODEL):
        if required not in listed:
            problems.append(f"{required}: not listed in the manifest")
    if problems:
        raise BundleError(f"bundle {bundle} does not match its manifest:\n  - " + "\n  - ".join(problems) +
                          "\nThe files were modified or damaged: restore them (git checkout -- "
                          f"{bundle}) or re-export with `python -m lenet_edge.train`.")
    return manifest


def evaluate(int8_bytes: bytes, float_tflite: bytes, x_test: np.ndarray, y_test: np.ndarray,
             keras_float=None, keras_qat=None) -> dict:
    """Runs every runtime on the test set; returns rows, thresholds and pass/fail."""
    export.check_int8_model(int8_bytes)
    io = export.io_quantization(int8_bytes)
    x_q = quantize_for(int8_bytes, x_test)
    outputs = {}
    if keras_float is not None:
        outputs["Keras float"] = keras_float.predict(x_test, batch_size=1000, verbose=0)
    if keras_qat is not None:
        outputs["Keras QAT"] = keras_qat.predict(x_test, batch_size=1000, verbose=0)
    outputs["float TFLite"] = run_litert(float_tflite, x_test)
    if keras_float is None:
        outputs = {"Keras float": outputs.pop("float TFLite"), **outputs}
    outputs["int8 LiteRT (default)"] = run_litert(int8_bytes, x_q, delegates=True)
    outputs["int8 LiteRT (no delegates)"] = run_litert(int8_bytes, x_q, delegates=False)
    outputs["int8 TFLite Micro"] = run_tflm(int8_bytes, x_q)
    rows = parity_rows(outputs, y_test)
    by_name = {r["runtime"]: r for r in rows}
    arena = export.measure_tflm_arena(int8_bytes)
    float_error = by_name["Keras float"]["test_error"]
    tflm = by_name["int8 TFLite Micro"]
    checks = [
        {"check": "TFLM int8 test error <= float + 0.05 pp", "target": f"<= {float_error + MAX_ERROR_INCREASE_PP:.2f}%",
         "measured": f"{tflm['test_error']:.2f}%", "ok": tflm["test_error"] <= float_error + MAX_ERROR_INCREASE_PP + 1e-9},
        {"check": "argmin agreement TFLM vs Keras float", "target": f">= {MIN_AGREEMENT_PCT}%",
         "measured": f"{tflm['agreement_with_float']:.2f}%", "ok": tflm["agreement_with_float"] >= MIN_AGREEMENT_PCT},
        {"check": "int8 .tflite size", "target": f"<= {TARGET_INT8_BYTES} bytes (66 KiB)",
         "measured": f"{len(int8_bytes)} bytes", "ok": len(int8_bytes) <= TARGET_INT8_BYTES},
        {"check": "TFLM arena (measured, host)", "target": f"<= {TARGET_ARENA_BYTES} bytes (10 KiB)",
         "measured": f"{arena['total']} bytes", "ok": arena["total"] <= TARGET_ARENA_BYTES},
    ]
    return {"rows": rows, "checks": checks, "arena": {k: v for k, v in arena.items() if k != "report"},
            "int8_bytes": len(int8_bytes), "float_tflite_bytes": len(float_tflite),
            "io": io, "ops": export.op_names(export.read_model(int8_bytes)),
            "ok": all(c["ok"] for c in checks), "images": int(len(y_test)),
            "tflm_outputs": outputs["int8 TFLite Micro"]}


def format_report(result: dict) -> str:
    """The parity table and checks as Markdown (also printed)."""
    lines = [f"{PARITY_HEADING} on the {result['images']:,} MNIST test images", "",
             "Prediction = argmin of the RBF distances.", "",
             "| runtime | test error | errors | argmin agreement with Keras float | max diff vs TFLM (int8 LSB) |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lsb = "-" if r["max_lsb_diff"] is None else str(r["max_lsb_diff"])
        lines.append(f"| {r['runtime']} | {r['test_error']:.2f}% | {r['errors']} | "
                     f"{r['agreement_with_float']:.2f}% | {lsb} |")
    lines += ["", "| check | target | measured | result |", "|---|---|---|---|"]
    for c in result["checks"]:
        lines.append(f"| {c['check']} | {c['target']} | {c['measured']} | {'PASS' if c['ok'] else 'MISS'} |")
    a = result["arena"]
    lines += ["", f"int8 model: {result['int8_bytes']} bytes; float TFLite: {result['float_tflite_bytes']} bytes; "
              f"TFLM arena {a['total']} bytes (head {a['head']}, tail {a['tail']}, 64-bit host build).",
              f"Operators: {', '.join(result['ops'])}.",
              f"Input int8: scale {result['io']['input']['scale']:.9g}, zero point {result['io']['input']['zero_point']}; "
              f"output int8: scale {result['io']['output']['scale']:.9g}, zero point {result['io']['output']['zero_point']}."]
    return "\n".join(lines) + "\n"


PARITY_HEADING = "## Parity"
PARITY_KEYS = ("rows", "checks", "arena", "int8_bytes", "ok", "images")


def parity_summary(result: dict) -> dict:
    """The part of an evaluate() result that the manifest keeps."""
    return {k: result[k] for k in PARITY_KEYS}


def verify_bundle(bundle: Path, data_dir=None, verbose: bool = True, write: bool = True) -> dict:
    """Checks the manifest, runs every runtime on the test set and records the result."""
    from lenet_edge.data import load_mnist
    bundle = Path(bundle)
    check_bundle(bundle)
    int8_bytes = (bundle / INT8_MODEL).read_bytes()
    float_bytes = (bundle / FLOAT_MODEL).read_bytes()
    export.read_model(int8_bytes)
    export.read_model(float_bytes)
    keras_float = keras_qat = None
    if (bundle / KERAS_FLOAT).exists():
        import tf_keras as keras

        import lenet_edge.model  # noqa: F401  (registers the custom layers for deserialization)
        keras_float = keras.models.load_model(bundle / KERAS_FLOAT, compile=False)
    if (bundle / KERAS_QAT).exists():
        from lenet_edge.quantization import load_qat_model
        keras_qat = load_qat_model(bundle / KERAS_QAT)
    data = load_mnist(data_dir, verbose=False)
    result = evaluate(int8_bytes, float_bytes, data.x_test, data.y_test, keras_float, keras_qat)
    if verbose:
        print(format_report(result))
    if write:
        export.update_bundle(bundle, report_sections={PARITY_HEADING: format_report(result)},
                             parity=parity_summary(result))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lenet_edge.verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", nargs="?", default="export", help="bundle directory (default: export)")
    parser.add_argument("--data-dir", default=None, help="directory with the MNIST IDX files")
    parser.add_argument("--no-write", action="store_true", help="do not update report.md / manifest.json")
    args = parser.parse_args(argv)
    from lenet_edge.data import DataError
    try:
        result = verify_bundle(Path(args.bundle), args.data_dir, write=not args.no_write)
    except (BundleError, export.ModelFileError, export.ConversionError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not result["ok"]:
        missed = [c["check"] for c in result["checks"] if not c["ok"]]
        print(f"FAILED: {'; '.join(missed)}", file=sys.stderr)
        return 1
    print("All parity checks passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
