"""Build, run and measure the C firmware in firmware_stub/ from Python.

    python -m lenet_edge.firmware check  [BUNDLE]   # C engine builds == TFLM on 10,000 test + random inputs
    python -m lenet_edge.firmware report [BUNDLE]   # Cortex-M4 build + QEMU run; sizes into the bundle report

The C engine reads its parameters from the bundle (lenet5_engine_params.{h,c},
sample_digits.h, written by `python -m lenet_edge.train` or
`python -m lenet_edge.cengine export`).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware_stub"
CLASSES = 10
INPUT_SIZE = 32 * 32
FLASH_TARGET = 70 * 1024  # bytes: engine + model, what a user's firmware links
RAM_TARGET = 8 * 1024     # bytes: engine data + bss (activation buffer, tanh tables) + stack high-water mark
TOOLS = {"gcc": "gcc (build-essential)", "make": "make", "arm-none-eabi-gcc": "gcc-arm-none-eabi",
         "arm-none-eabi-size": "binutils-arm-none-eabi", "qemu-system-arm": "qemu-system-arm"}
SETUP_HINT = ("install them with `make firmware-tools` (Debian: apt-get install gcc-arm-none-eabi "
              "libnewlib-arm-none-eabi qemu-system-arm)")


class FirmwareError(RuntimeError):
    """A firmware build or run failed, or a tool is missing."""


def missing_tools(names=None) -> list[str]:
    return [n for n in (names or TOOLS) if shutil.which(n) is None]


def _require(names) -> None:
    missing = missing_tools(names)
    if missing:
        raise FirmwareError(f"missing tools: {', '.join(missing)}; {SETUP_HINT}")


def build(targets: list[str], bundle: Path, build_dir: Path | None = None) -> Path:
    """make -C firmware_stub TARGETS with the given bundle; returns the build directory."""
    _require(["make", "gcc"] + (["arm-none-eabi-gcc"] if any(t in ("m4", "size") for t in targets) else []))
    bundle = Path(bundle).resolve()
    for name in ("lenet5_engine_params.h", "lenet5_engine_params.c", "sample_digits.h"):
        if not (bundle / name).exists():
            raise FirmwareError(f"{bundle / name} is missing; generate it with "
                                f"`python -m lenet_edge.cengine export {bundle}`")
    build_dir = Path(build_dir or FIRMWARE_DIR / "build").resolve()
    cmd = ["make", "-s", "-C", str(FIRMWARE_DIR), f"BUNDLE={bundle}", f"BUILD={build_dir}", *targets]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise FirmwareError(f"`{' '.join(cmd)}` failed (exit {r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return build_dir


def run_host(executable: Path, images_int8: np.ndarray, extra_args=()) -> tuple[np.ndarray, str]:
    """Runs a host build on raw int8 images; returns (N x 10 int8 outputs, its stderr)."""
    images = np.ascontiguousarray(images_int8, dtype=np.int8).reshape(-1, INPUT_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        x_path, y_path = Path(tmp) / "images.bin", Path(tmp) / "outputs.bin"
        images.tofile(x_path)
        r = subprocess.run([str(executable), "--images", str(x_path), "--outputs", str(y_path), *extra_args],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise FirmwareError(f"{executable} exited {r.returncode}:\n{r.stderr[-3000:]}")
        return np.fromfile(y_path, dtype=np.int8).reshape(-1, CLASSES), r.stderr


_LINE = re.compile(r"image (\d+) \(test #(\d+)\) label (\d+): predicted (\d+)  rbf_int8((?: -?\d+){10})  tflm (\w+)")


def parse_run(text: str) -> dict:
    """The firmware's printed lines -> outputs per image, stack and tick figures."""
    images = []
    for m in _LINE.finditer(text):
        images.append({"image": int(m[1]), "test_index": int(m[2]), "label": int(m[3]), "predicted": int(m[4]),
                       "outputs": [int(v) for v in m[5].split()], "embedded_tflm": m[6]})
    stack = re.search(r"engine stack high-water mark: (\d+) bytes", text)
    ticks = re.search(r"systick: (\d+) ticks per inference; calibration: (\d+) ticks for (\d+) loop instructions",
                      text)
    out = {"images": images, "stack_bytes": int(stack[1]) if stack else None, "ticks_per_inference": None}
    if ticks:
        out.update(ticks_per_inference=int(ticks[1]), calibration_ticks=int(ticks[2]),
                   calibration_instructions=int(ticks[3]))
    return out


def _qemu_command(elf: Path, args=(), icount: bool = True) -> list[str]:
    semihosting = ",".join(["enable=on", "target=native", "arg=lenet5_m4", *(f"arg={a}" for a in args)])
    return ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", semihosting, *(["-icount", "shift=0"] if icount else []), "-kernel", str(elf)]


def run_m4(elf: Path, icount: bool = True, timeout: int = 180) -> dict:
    """Runs the Cortex-M4 image under QEMU (mps2-an386, semihosting) on its embedded digits.

    With icount (-icount shift=0) every instruction advances QEMU's virtual clock
    by 1 ns, so the 25 MHz SysTick counts one tick per 40 instructions; the
    firmware times a loop of known length to measure that ratio.
    """
    _require(["qemu-system-arm"])
    cmd = _qemu_command(elf, icount=icount)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FirmwareError(f"QEMU did not finish within {timeout} s: {' '.join(cmd)}") from None
    result = parse_run(r.stdout)
    result.update(returncode=r.returncode, stdout=r.stdout, stderr=r.stderr)
    if r.returncode != 0 or not result["images"]:
        raise FirmwareError(f"Cortex-M4 run failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    if result["ticks_per_inference"] is not None and icount and result["calibration_ticks"]:
        per_tick = result["calibration_instructions"] / result["calibration_ticks"]
        result["instructions_per_tick"] = per_tick
        result["instructions_per_inference"] = int(round(result["ticks_per_inference"] * per_tick, -2))
    return result


def run_m4_images(elf: Path, images_int8: np.ndarray, timeout: int = 600) -> np.ndarray:
    """The Cortex-M4 build's int8 outputs for raw int8 images (files passed through semihosting)."""
    _require(["qemu-system-arm"])
    images = np.ascontiguousarray(images_int8, dtype=np.int8).reshape(-1, INPUT_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        x_path, y_path = Path(tmp) / "images.bin", Path(tmp) / "outputs.bin"
        images.tofile(x_path)
        cmd = _qemu_command(elf, ["--images", str(x_path), "--outputs", str(y_path)], icount=False)
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FirmwareError(f"QEMU did not finish within {timeout} s") from None
        if r.returncode != 0 or not y_path.exists():
            raise FirmwareError(f"Cortex-M4 run failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        return np.fromfile(y_path, dtype=np.int8).reshape(-1, CLASSES)


def arm_size(paths: list[Path]) -> dict[str, dict]:
    """arm-none-eabi-size (Berkeley format) per file: text (code + rodata), data, bss."""
    _require(["arm-none-eabi-size"])
    r = subprocess.run(["arm-none-eabi-size", *map(str, paths)], capture_output=True, text=True, check=True)
    out = {}
    for line in r.stdout.splitlines()[1:]:
        text, data, bss, _dec, _hex, name = line.split(None, 5)
        out[Path(name).name] = {"text": int(text), "data": int(data), "bss": int(bss)}
    return out


def size_report(bundle: Path, build_dir: Path | None = None) -> dict:
    """Builds the Cortex-M4 image, runs it, and measures flash and RAM."""
    build_dir = build(["m4"], bundle, build_dir)
    engine_objs = [build_dir / "m4" / "engine" / n for n in ("lenet5_engine.o", "lenet5_engine_params.o")]
    elf = build_dir / "m4" / "lenet5_m4.elf"
    sizes = arm_size(engine_objs + [elf])
    run = run_m4(elf)
    engine = {k: sum(sizes[p.name][k] for p in engine_objs) for k in ("text", "data", "bss")}
    flash = engine["text"] + engine["data"]
    ram = engine["data"] + engine["bss"] + (run["stack_bytes"] or 0)
    matches = [img["embedded_tflm"] == "match" for img in run["images"]]
    return {
        "engine_objects": {p.name: sizes[p.name] for p in engine_objs},
        "engine_flash_bytes": flash, "engine_ram_bytes": ram,
        "engine_static_ram_bytes": engine["data"] + engine["bss"], "stack_high_water_bytes": run["stack_bytes"],
        "image": sizes[elf.name],
        "instructions_per_inference": run.get("instructions_per_inference"),
        "instructions_per_tick": run.get("instructions_per_tick"),
        "m4_images": len(run["images"]), "m4_match_embedded_tflm": int(sum(matches)),
        "targets": {"flash_ok": flash <= FLASH_TARGET, "ram_ok": ram <= RAM_TARGET,
                    "flash_target": FLASH_TARGET, "ram_target": RAM_TARGET},
    }


def format_size_report(r: dict) -> str:
    img = r["image"]
    objs = "; ".join(f"`{n}` text {v['text']:,}, data {v['data']:,}, bss {v['bss']:,}"
                     for n, v in r["engine_objects"].items())
    ok = lambda b: "yes" if b else "**NO**"  # noqa: E731
    return "\n".join([
        f"{FIRMWARE_HEADING} (firmware_stub, mps2-an386 under QEMU)", "",
        "Measured by `python -m lenet_edge.firmware report` (arm-none-eabi-gcc -O2, Cortex-M4F hard float; "
        "`arm-none-eabi-size`, stack painted before each inference and scanned after).", "",
        "| | bytes | target | met |", "|---|---:|---:|---|",
        f"| flash, engine + model (text + data of the engine objects) | {r['engine_flash_bytes']:,} | "
        f"≤ {r['targets']['flash_target']:,} | {ok(r['targets']['flash_ok'])} |",
        f"| RAM, engine (data + bss {r['engine_static_ram_bytes']:,} + stack high-water "
        f"{r['stack_high_water_bytes']:,}) | {r['engine_ram_bytes']:,} | ≤ {r['targets']['ram_target']:,} | "
        f"{ok(r['targets']['ram_ok'])} |",
        f"| whole image with libc + semihosting: text | {img['text']:,} | reported | |",
        f"| whole image: data + bss (incl. 16 KiB heap and 16 KiB stack reserved for libc) | "
        f"{img['data'] + img['bss']:,} | reported | |", "",
        f"Engine objects: {objs}.",
        f"Instructions per inference (QEMU -icount shift=0, SysTick, {r['instructions_per_tick']:g} "
        f"instructions per tick by the calibration loop): about {r['instructions_per_inference']:,} "
        "(an instruction count, not a time)." if r.get("instructions_per_inference") else "",
        f"Embedded sample digits whose int8 outputs equal TFLM's on the Cortex-M4: "
        f"{r['m4_match_embedded_tflm']}/{r['m4_images']}.", ""])


FIRMWARE_HEADING = "## Cortex-M4 firmware"


def record_size_report(bundle: Path, report: dict) -> None:
    """Replaces the firmware section of report.md and the manifest's "firmware" entry (atomically)."""
    from lenet_edge import export
    export.update_bundle(bundle, report_sections={FIRMWARE_HEADING: format_size_report(report)}, firmware=report)


def saturation_inputs(count: int = 400, seed: int = 0) -> np.ndarray:
    """Random int8 images that drive the saturation paths: uniform, all-min/all-max, and +/-extreme."""
    rng = np.random.default_rng(seed)
    half = count // 2
    return np.concatenate([
        rng.integers(-128, 128, (half - 1, INPUT_SIZE)),
        np.full((1, INPUT_SIZE), -128), np.full((1, INPUT_SIZE), 127),
        rng.choice([-128, 127], (count - half - 1, INPUT_SIZE)),
    ]).astype(np.int8)


def tflm_latency_us(model_bytes: bytes, x_int8: np.ndarray, repeat: int = 1) -> np.ndarray:
    """Per-image wall time of the tflite_micro Python runtime: set_input + invoke + get_output."""
    import time

    from lenet_edge import export
    interpreter = export.tflm_interpreter(model_bytes)
    times = []
    for _ in range(repeat):
        for image in x_int8.reshape(-1, 1, 32, 32, 1):
            t0 = time.perf_counter()
            interpreter.set_input(image, 0)
            interpreter.invoke()
            interpreter.get_output(0)
            times.append((time.perf_counter() - t0) * 1e6)
    return np.array(times)


_HOST_TIME = re.compile(r"host engine: (\d+) inferences, median ([\d.]+) us, p99 ([\d.]+) us, mean ([\d.]+) us")


def host_latency_us(executable: Path, x_int8: np.ndarray, repeat: int = 1) -> dict:
    """The host binary's own per-inference timing (clock_gettime around lenet5_engine_invoke)."""
    _, stderr = run_host(executable, x_int8, ["--repeat", str(repeat)])
    m = _HOST_TIME.search(stderr)
    if not m:
        raise FirmwareError(f"no timing line in the host binary's output:\n{stderr[-1000:]}")
    return {"inferences": int(m[1]), "median_us": float(m[2]), "p99_us": float(m[3]), "mean_us": float(m[4])}


def throughput(model_bytes: bytes, x_int8: np.ndarray, build_dir: Path, rounds: int = 3) -> dict:
    """Host C engine vs tflite_micro Python, per image, medians of alternating rounds in one run."""
    tflm, host = [], []
    for _ in range(rounds):
        tflm.append(float(np.median(tflm_latency_us(model_bytes, x_int8))))
        host.append(host_latency_us(build_dir / "host" / "lenet5_host", x_int8, repeat=3)["median_us"])
    t, h = float(np.median(tflm)), float(np.median(host))
    return {"tflm_python_us": t, "host_c_us": h, "ratio": t / h, "images": len(x_int8), "rounds": rounds}


def check_host(bundle: Path, data_dir=None, verbose: bool = True) -> dict:
    """Host, portable-C, sanitizer and Cortex-M4 (QEMU) builds vs the tflite_micro runtime on the
    test set + random inputs."""
    from lenet_edge import verify
    from lenet_edge.data import load_mnist
    bundle = Path(bundle)
    model_bytes = (bundle / verify.INT8_MODEL).read_bytes()
    build_dir = build(["host", "portable", "sanitize", "m4"], bundle)
    data = load_mnist(data_dir, verbose=False)
    x = np.concatenate([verify.quantize_for(model_bytes, data.x_test).reshape(-1, INPUT_SIZE),
                        saturation_inputs()])
    reference = verify.run_tflm(model_bytes, x.reshape(-1, 32, 32, 1)).reshape(-1, CLASSES)
    result = {"images": len(x), "test_images": len(data.x_test)}
    for name, exe in (("host", build_dir / "host" / "lenet5_host"),
                      ("portable", build_dir / "portable" / "lenet5_host"),
                      ("sanitize", build_dir / "asan" / "lenet5_host"),
                      ("cortex-m4", build_dir / "m4" / "lenet5_m4.elf")):
        out = run_m4_images(exe, x) if name == "cortex-m4" else run_host(exe, x)[0]
        same = np.all(out == reference, axis=1)
        result[name] = {"identical": int(same.sum()), "first_difference": int(np.flatnonzero(~same)[0])
                        if not same.all() else None}
        if verbose:
            print(f"{name:10s} C engine vs TFLM: {int(same.sum()):,}/{len(x):,} inputs identical "
                  f"({len(data.x_test):,} test images + {len(x) - len(data.x_test)} random int8)")
    result["ok"] = all(result[n]["identical"] == len(x) for n in ("host", "portable", "sanitize", "cortex-m4"))
    result["throughput"] = tp = throughput(model_bytes, x[:1000], build_dir)
    if verbose:
        print(f"per image (median of {tp['rounds']} rounds over {tp['images']} test images): tflite_micro Python "
              f"{tp['tflm_python_us']:.0f} us, host C engine {tp['host_c_us']:.1f} us -> {tp['ratio']:.1f}x "
              f"(target >= 10x: {'met' if tp['ratio'] >= 10 else 'MISSED'})")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lenet_edge.firmware", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["check", "report"],
                    help="check: C engine vs TFLM on the host; report: Cortex-M4 sizes into the bundle report")
    ap.add_argument("bundle", nargs="?", default="export", help="bundle directory (default: export)")
    ap.add_argument("--data-dir", default=None, help="MNIST IDX directory (default: the cache)")
    ap.add_argument("--no-write", action="store_true", help="report: print only, leave the bundle as it is")
    args = ap.parse_args(argv)
    bundle = Path(args.bundle)
    from lenet_edge import verify
    try:
        verify.check_bundle(bundle)
        if args.command == "check":
            return 0 if check_host(bundle, args.data_dir)["ok"] else 1
        report = size_report(bundle)
        print(format_size_report(report))
        if not args.no_write:
            record_size_report(bundle, report)
            print(f"written into {bundle / 'report.md'} and {bundle / 'manifest.json'}")
        return 0 if report["targets"]["flash_ok"] and report["targets"]["ram_ok"] else 1
    except (FirmwareError, verify.BundleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
