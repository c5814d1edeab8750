"""Train the faithful LeNet-5, fine-tune it quantization-aware, export and verify the int8 bundle.

    python -m lenet_edge.train                     # the default run (`make train`)
    python -m lenet_edge.train --distort --run-dir runs/distort
    python -m lenet_edge.train --config my.json --epochs 5
    python -m lenet_edge.train --resume            # continue an interrupted run

Every Config field (lenet_edge/config.py) is a flag: --batch-size 64, --no-distort, ...
This module only parses flags; `train_and_evaluate` does the work.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

import lenet_edge
from lenet_edge.config import Config, load_config
from lenet_edge.fileio import atomic_write


# Fields that do not change float training: they may differ on --resume (re-quantize a finished
# run, or resume a run directory that was moved).
POST_TRAINING_FIELDS = ("qat_epochs", "qat_learning_rate", "calibration_size", "export_dir", "run_dir")


def evaluate_classes(predictions: np.ndarray, labels: np.ndarray) -> dict:
    """Test error, per-class error and the confusion matrix (rows: true, columns: predicted)."""
    from lenet_edge.model import confusion_matrix
    confusion = confusion_matrix(labels, predictions)
    per_class = 100.0 * (1.0 - np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1))
    return {
        "error": float(100.0 * np.mean(predictions != labels)),
        "misclassified": int(np.sum(predictions != labels)),
        "count": int(len(labels)),
        "per_class_error": [round(float(e), 4) for e in per_class],
        "confusion": confusion.tolist(),
    }


def train_and_evaluate(config: Config, resume: bool = False, verbose: int = 1) -> dict:
    """The whole job: data, float training, metrics; then QAT, export and verification.

    Args:
      config: a validated Config.
      resume: continue from the newest checkpoint in config.run_dir.
      verbose: 0 silent, 1 progress bars and summaries.

    Returns:
      The metrics dict also written to <run_dir>/metrics.json.
    """
    from lenet_edge import training
    from lenet_edge.data import load_mnist
    from lenet_edge.model import build_lenet5, predict_classes

    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.json"
    if resume and saved.exists():
        previous = json.loads(saved.read_text())
        current = dataclasses.asdict(config)
        # QAT/export settings may change on resume (a finished float run can be re-quantized).
        changed = sorted(k for k in current if k not in POST_TRAINING_FIELDS and previous.get(k) != current[k])
        if changed:
            raise ValueError(f"--resume with a different float-training config than the run in {run_dir} "
                             f"(fields {changed}); use the same flags, or a new --run-dir")
    atomic_write(saved, config.to_json() + "\n")

    t0 = time.perf_counter()
    data = load_mnist(config.data_dir, validation_size=config.validation_size, verbose=bool(verbose))
    x_train, y_train = data.x_train, data.y_train
    if config.train_subset:
        x_train, y_train = x_train[:config.train_subset], y_train[:config.train_subset]
    if verbose:
        print(data.describe())
        print(f"Training on {len(x_train)} images, {config.epochs} epochs, {config.optimizer} "
              f"with the '{config.schedule}' schedule, distortions {'on' if config.distort else 'off'}")

    training.set_determinism(config.seed)
    model = build_lenet5(config.seed)
    if verbose:
        model.summary()
    state = training.fit_float(model, x_train, y_train, data.x_val, data.y_val, config, run_dir,
                               resume=resume, verbose=verbose)
    train_seconds = sum(r["seconds"] for r in state["history"])
    training.atomic_save_model(model, run_dir / "model_float.keras")
    atomic_write(run_dir / "history.json", json.dumps(state["history"], indent=1) + "\n")

    test_pred = predict_classes(model.predict(data.x_test, batch_size=1000, verbose=0))
    metrics = {
        "float": {
            "test": evaluate_classes(test_pred, data.y_test),
            "train_error": training.error_rate(model, x_train, y_train),
            "val_error": state["best_val_error"],
            "best_epoch": state["best_epoch"],
            "train_seconds": round(train_seconds, 1),
        },
    }
    if verbose:
        f = metrics["float"]
        print(f"\nFloat LeNet-5: test error {f['test']['error']:.2f}% "
              f"({f['test']['misclassified']}/{f['test']['count']}), training error {f['train_error']:.2f}%, "
              f"validation error {f['val_error'] if f['val_error'] is None else round(f['val_error'], 2)}% "
              f"(best epoch {f['best_epoch']}), training time {train_seconds:.0f} s")
        print(f"Per-class test error (%): {' '.join(f'{e:.2f}' for e in f['test']['per_class_error'])}")
    if config.qat_epochs or config.export_dir:
        metrics.update(quantize_export_verify(model, data, x_train, y_train, config, run_dir, verbose))
    atomic_write(run_dir / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    if verbose:
        print(f"Run directory: {run_dir} (total {time.perf_counter() - t0:.0f} s)")
    return metrics


def quantize_export_verify(model, data, x_train, y_train, config: Config, run_dir: Path, verbose: int) -> dict:
    """QAT fine-tuning from the float weights, int8/float conversion, bundle export and parity check."""
    import subprocess

    import tf_keras as keras

    from lenet_edge import cengine, export, firmware, training, verify
    from lenet_edge.model import ArgminAccuracy, MapLoss, predict_classes
    from lenet_edge.quantization import quantize_model

    t0 = time.perf_counter()
    qat = quantize_model(model)
    qat.compile(optimizer=keras.optimizers.Adam(config.qat_learning_rate), loss=MapLoss(config.map_j),
                metrics=[ArgminAccuracy()])
    qat_history = []
    for k in range(config.qat_epochs):
        if verbose:
            print(f"QAT epoch {k + 1}/{config.qat_epochs} (learning rate {config.qat_learning_rate:g})")
        logs = qat.fit(training.epoch_dataset(x_train, y_train, config, config.epochs + k), epochs=1,
                       verbose=verbose).history
        val = training.error_rate(qat, data.x_val, data.y_val) if len(data.x_val) else None
        qat_history.append({"epoch": k + 1, "loss": float(logs["loss"][-1]),
                            "train_error": 100.0 * (1.0 - float(logs["accuracy"][-1])), "val_error": val})
        if not np.isfinite(logs["loss"][-1]):
            raise training.TrainingDiverged("QAT loss became NaN/inf; lower --qat-learning-rate")
    training.atomic_save_model(qat, run_dir / "model_qat.h5")
    atomic_write(run_dir / "qat_history.json", json.dumps(qat_history, indent=1) + "\n")
    qat_test = evaluate_classes(predict_classes(qat.predict(data.x_test, batch_size=1000, verbose=0)), data.y_test)
    qat_seconds = time.perf_counter() - t0
    out = {"qat": {"test": qat_test, "history": qat_history, "seconds": round(qat_seconds, 1)}}
    if not config.export_dir:
        return out

    t1 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    calibration = x_train[rng.choice(len(x_train), min(config.calibration_size, len(x_train)), replace=False)]
    int8_bytes = export.to_int8_tflite(qat, calibration)
    float_bytes = export.to_float_tflite(model)
    result = verify.evaluate(int8_bytes, float_bytes, data.x_test, data.y_test, model, qat)
    files = {verify.INT8_MODEL: int8_bytes, verify.FLOAT_MODEL: float_bytes,
             **export.model_data_files(int8_bytes),
             "model_settings.h": export.model_settings_file(int8_bytes),
             "op_resolver.h": export.op_resolver_file(int8_bytes),
             "arena_size.h": export.arena_size_file(result["arena"]),
             **cengine.bundle_engine_files(int8_bytes, data.x_test, data.y_test)}
    for name, path in ((verify.KERAS_FLOAT, run_dir / "model_float.keras"), (verify.KERAS_QAT, run_dir / "model_qat.h5")):
        files[name] = path.read_bytes()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    manifest = {"lenet_edge_version": lenet_edge.__version__, "git_commit": commit or None,
                "config": json.loads(config.to_json())}
    export_seconds = time.perf_counter() - t1
    prefix = (f"# lenet_edge int8 bundle\n\nWritten by `python -m lenet_edge.train` (run dir `{run_dir}`); "
              f"QAT {config.qat_epochs} epochs at {config.qat_learning_rate:g} took {qat_seconds:.0f} s, "
              f"conversion + export + verification {export_seconds:.0f} s.\n\n")
    files["report.md"] = (prefix + verify.format_report(result)).encode()
    manifest["parity"] = verify.parity_summary(result)
    bundle = Path(config.export_dir)
    export.write_bundle(bundle, files, manifest)
    if verbose:
        print("\n" + verify.format_report(result))
        print(f"Bundle written to {bundle}/ (export + verify {export_seconds:.0f} s)")
    out["export"] = {"bundle": str(bundle), "seconds": round(export_seconds, 1),
                     "parity": verify.parity_summary(result)}
    if not result["ok"]:
        missed = "; ".join(c["check"] for c in result["checks"] if not c["ok"])
        print(f"WARNING: parity/size targets missed: {missed} (see {bundle}/report.md)", file=sys.stderr)
    # Pictures of the run (the int8 ones from the TFLM outputs the parity check just computed).
    try:
        from lenet_edge import pictures
        pictures.write_all(run_dir, bundle, model, data, np.argmin(result["tflm_outputs"], axis=1),
                           verbose=bool(verbose))
    except ImportError as e:
        print(f"Pictures not drawn ({e}); `pip install -e '.[plots]'`, then "
              f"`python -m lenet_edge.pictures --run-dir {run_dir}`", file=sys.stderr)
    # The C firmware on the emulated Cortex-M4: sizes, stack, outputs vs TFLM (into report.md).
    missing = firmware.missing_tools()
    if missing:
        print(f"Firmware not built: {', '.join(missing)} missing; {firmware.SETUP_HINT}, then run "
              f"`python -m lenet_edge.firmware report {bundle}`", file=sys.stderr)
        return out
    try:
        fw = firmware.size_report(bundle)
    except firmware.FirmwareError as e:
        print(f"WARNING: firmware build/run failed: {e}", file=sys.stderr)
        return out
    firmware.record_size_report(bundle, fw)
    out["firmware"] = fw
    if verbose:
        print("\n" + firmware.format_size_report(fw))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lenet_edge.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file with config fields (flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --run-dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for field in dataclasses.fields(Config):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if isinstance(default, bool):
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(flag, dest=field.name, type=kind, default=None,
                                help=f"default: {default!r}")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)}
    try:
        config = load_config(args.config, overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from lenet_edge.data import DataError
    from lenet_edge.training import TrainingDiverged
    try:
        train_and_evaluate(config, resume=args.resume, verbose=0 if args.quiet else 1)
    except (DataError, TrainingDiverged, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last complete epoch is checkpointed in {config.run_dir}/checkpoints. "
              "Continue with the same flags plus --resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
