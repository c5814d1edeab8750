"""Conversion to TFLite (int8 and float) and the TFLite Micro deployment bundle.

Pure functions turn models into bytes and bytes into file contents; `write_bundle`
is the only function that touches the disk, and it does so atomically.

    int8 = to_int8_tflite(qat_model, calibration_images)      # bytes, checked
    files = bundle_files(int8, float_bytes, ...)               # {name: bytes}
    write_bundle("export", files, manifest)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from lenet_edge.fileio import atomic_write

import lenet_edge  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import flatbuffers
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

CLASS_LABELS = tuple(str(d) for d in range(10))
ARENA_MARGIN_BYTES = 1024  # stated margin on top of the measured host (64-bit) arena, for 32-bit targets

# TFLite builtin operator code -> name, and the TFLM resolver method for the ones this model may use.
_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
TFLM_RESOLVER_METHODS = {
    "CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "TANH": "AddTanh",
    "FULLY_CONNECTED": "AddFullyConnected", "RESHAPE": "AddReshape", "MUL": "AddMul",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SUM": "AddSum", "ADD": "AddAdd",
    "SUB": "AddSub", "AVERAGE_POOL_2D": "AddAveragePool2D", "STRIDED_SLICE": "AddStridedSlice",
}
_TENSOR_TYPES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


class ConversionError(RuntimeError):
    """A converted model is not what the bundle promises (float op, wrong I/O type, ...)."""


class ModelFileError(ValueError):
    """A .tflite file is truncated, corrupted or not a TFLite model."""


# ---------------------------------------------------------------- reading flatbuffers
def read_model(model_bytes: bytes) -> "schema.ModelT":
    """Parses a .tflite flatbuffer into the object API, with a clear error if it is not one."""
    if len(model_bytes) < 16 or model_bytes[4:8] != b"TFL3":
        raise ModelFileError(f"not a TFLite model ({len(model_bytes)} bytes, file identifier "
                             f"{bytes(model_bytes[4:8])!r}, expected b'TFL3'); the file is truncated or "
                             "corrupted: re-export it with `python -m lenet_edge.train` or restore it from git")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(model_bytes), 0))
    except Exception as e:  # noqa: BLE001 - any decoding failure means a damaged file
        raise ModelFileError(f"TFLite flatbuffer cannot be decoded ({type(e).__name__}: {e}); the file is "
                             "truncated or corrupted: re-export it or restore it from git") from None
    if not model.subgraphs or not model.buffers:
        raise ModelFileError("TFLite model has no subgraphs or buffers; the file is damaged")
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            if t.buffer >= len(model.buffers):
                raise ModelFileError("TFLite model references a missing buffer; the file is damaged")
    return model


def op_names(model: "schema.ModelT") -> list[str]:
    """The builtin operator names of the main subgraph, in execution order."""
    codes = model.operatorCodes
    names = []
    for op in model.subgraphs[0].operators:
        code = codes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append("CUSTOM:" + (code.customCode or b"").decode())
        else:
            names.append(_BUILTIN_NAMES.get(builtin, f"UNKNOWN_{builtin}"))
    return names


def tensor_type_name(tensor) -> str:
    return _TENSOR_TYPES.get(tensor.type, str(tensor.type))


def check_int8_model(model_bytes: bytes) -> list[str]:
    """Fails loudly unless the model is fully int8 with builtin ops only.

    Checks: int8 input and output; every op a builtin the TFLM resolver knows (no
    CUSTOM/Flex); no QUANTIZE or DEQUANTIZE; every activation tensor int8 and every
    constant int8 (weights) or int32 (biases, shapes, axes). Returns the op names.
    """
    model = read_model(model_bytes)
    sg = model.subgraphs[0]
    ops = op_names(model)
    problems = []
    for name in ops:
        if name.startswith("CUSTOM") or name in ("DEQUANTIZE", "QUANTIZE") or name not in TFLM_RESOLVER_METHODS:
            problems.append(f"operator {name} is not allowed in the int8 graph")
    for idx in list(sg.inputs) + list(sg.outputs):
        t = sg.tensors[idx]
        if tensor_type_name(t) != "INT8":
            problems.append(f"model I/O tensor {t.name.decode()} is {tensor_type_name(t)}, expected INT8")
    for t in sg.tensors:
        data = model.buffers[t.buffer].data
        kind = tensor_type_name(t)
        if data is None and kind != "INT8":
            problems.append(f"activation tensor {t.name.decode()} is {kind}, expected INT8")
        if data is not None and kind not in ("INT8", "INT32"):
            problems.append(f"constant tensor {t.name.decode()} is {kind}, expected INT8 or INT32")
    if problems:
        raise ConversionError("int8 conversion check failed:\n  - " + "\n  - ".join(problems))
    return ops


def check_float_model(model_bytes: bytes) -> list[str]:
    """The reference float model: float32 I/O, builtin ops only."""
    model = read_model(model_bytes)
    sg = model.subgraphs[0]
    ops = op_names(model)
    bad = [n for n in ops if n.startswith("CUSTOM") or n not in TFLM_RESOLVER_METHODS]
    io = [tensor_type_name(sg.tensors[i]) for i in list(sg.inputs) + list(sg.outputs)]
    if bad or any(t != "FLOAT32" for t in io):
        raise ConversionError(f"float conversion check failed: unexpected ops {bad}, I/O types {io}")
    return ops


# ---------------------------------------------------------------- conversion
def to_float_tflite(model) -> bytes:
    """The float32 reference .tflite of the (float) Keras model."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    model_bytes = converter.convert()
    check_float_model(model_bytes)
    return model_bytes


def to_int8_tflite(qat_model, calibration: np.ndarray) -> bytes:
    """Full-integer conversion of the QAT model: int8 I/O, TFLITE_BUILTINS_INT8 only.

    The fake-quant ranges learned in QAT set every scale; the representative dataset
    (seeded training images) is required by the TF 2.21 converter for this op set.
    The result is post-processed (`compact_model`) and checked (`check_int8_model`).
    """
    calibration = np.asarray(calibration, np.float32)

    def representative():
        for image in calibration:
            yield [image[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    model_bytes = compact_model(converter.convert())
    check_int8_model(model_bytes)
    return model_bytes


# ---------------------------------------------------------------- post-processing
_NAME_SUFFIX = {"CONV_2D": "a", "DEPTHWISE_CONV_2D": "a", "FULLY_CONNECTED": "a", "TANH": "",
                "RESHAPE": "r", "MUL": "m", "SQUARED_DIFFERENCE": "d", "SUM": "s"}


def _short_tensor_names(model: "schema.ModelT") -> None:
    """Names every tensor with at most 3 characters (a flatbuffer string of <= 3 bytes costs
    no more than an empty one), instead of the converter's fused names (~1.5 KB).

    Scheme: <layer><role>, layer in C1 S2 C3 S4 C5 F6 R(BF); role: '' the squashed
    output, 'a' the pre-activation a (the TANH input), 'w' weights, 'b' biases,
    'r'/'m'/'d'/'s' the RBF's reshape/multiply/squared-difference/sum; 'in' and 'out'
    for the model's input and output.
    """
    sg = model.subgraphs[0]
    ops = op_names(model)

    def layer_of(name: str) -> str:
        for part in name.split(";")[0].split("/"):
            if part.startswith("quant_"):
                layer = part[len("quant_"):]
                return "R" if layer == "RBF" else layer[:2]
        return "X"

    renamed, used = {}, set()

    def assign(index, name):
        while name in used:
            name = name[:-1] + chr(ord(name[-1]) + 1) if len(name) >= 3 else name + "2"
        used.add(name)
        renamed[index] = name

    assign(sg.inputs[0], "in")
    assign(sg.outputs[0], "out")
    for op, op_name in zip(sg.operators, ops):
        layer = layer_of(sg.tensors[op.outputs[0]].name.decode())
        for i in op.outputs:
            if i not in renamed:
                assign(i, layer + _NAME_SUFFIX.get(op_name, "o"))
        for k, i in enumerate(op.inputs):
            if i >= 0 and i not in renamed and model.buffers[sg.tensors[i].buffer].data is not None:
                role = {1: "w", 2: "b"}[k] if _NAME_SUFFIX.get(op_name) == "a" and k in (1, 2) else f"k{k}"
                assign(i, layer + role)
    for i, t in enumerate(sg.tensors):
        t.name = renamed.get(i, f"t{i}").encode()


def _share_empty_buffers(model: "schema.ModelT") -> None:
    """Points every tensor without data at buffer 0 and drops the other empty buffers."""
    sg = model.subgraphs[0]
    meta_buffers = {m.buffer for m in model.metadata or []}
    keep = [0] + [b for b in range(1, len(model.buffers))
                  if model.buffers[b].data is not None or b in meta_buffers]
    new_index = {old: new for new, old in enumerate(keep)}
    for t in sg.tensors:
        t.buffer = new_index.get(t.buffer, 0)
    for m in model.metadata or []:
        m.buffer = new_index[m.buffer]
    model.buffers = [model.buffers[b] for b in keep]


def plan_arena(model: "schema.ModelT") -> tuple[list[int], int]:
    """An offline arena plan in which elementwise TANH and RESHAPE run in place.

    TFLite Micro's online planner gives every op output its own buffer, so C1's
    convolution output and its TANH output (4,704 bytes each) coexist. TANH's int8
    kernel reads element i before writing element i and RESHAPE does not move data,
    so their output may share the input's buffer. Tensors are grouped by such
    aliasing, then placed greedily (largest first, first fit, 16-byte aligned) among
    groups whose lifetimes overlap.

    Returns:
      (offset per tensor, -1 for constants; the head size in bytes).
    """
    sg = model.subgraphs[0]
    ops = op_names(model)
    n_tensors = len(sg.tensors)
    is_const = [model.buffers[t.buffer].data is not None for t in sg.tensors]
    group = list(range(n_tensors))

    def find(i):
        while group[i] != i:
            i = group[i]
        return i

    for op, name in zip(sg.operators, ops):
        if name in ("TANH", "RESHAPE"):
            group[find(op.outputs[0])] = find(op.inputs[0])
    first, last = {}, {}
    for step, op in enumerate(sg.operators):
        for i in list(op.inputs) + list(op.outputs):
            if i < 0 or is_const[i]:
                continue
            g = find(i)
            first[g] = min(first.get(g, step), step)
            last[g] = max(last.get(g, step), step)
    for i in sg.inputs:
        first[find(i)] = -1
    for i in sg.outputs:
        last[find(i)] = len(sg.operators)
    size = {}
    for i, t in enumerate(sg.tensors):
        if not is_const[i]:
            nbytes = int(np.prod(t.shape)) * {"INT8": 1, "INT32": 4}.get(tensor_type_name(t), 4)
            size[find(i)] = max(size.get(find(i), 0), nbytes)
    placed: dict[int, int] = {}
    for g in sorted(size, key=lambda g: (-size[g], first[g])):
        offset = 0
        for other, start in sorted(placed.items(), key=lambda kv: kv[1]):
            overlap = not (last[g] < first[other] or last[other] < first[g])
            if overlap and offset < start + size[other] and start < offset + size[g]:
                offset = (start + size[other] + 15) // 16 * 16
        placed[g] = offset
    offsets = [-1 if is_const[i] else placed[find(i)] for i in range(n_tensors)]
    head = max(placed[g] + size[g] for g in placed)
    return offsets, head


def _set_offline_plan(model: "schema.ModelT", offsets: list[int]) -> None:
    payload = struct.pack(f"<{3 + len(offsets)}i", 0, 0, len(offsets), *offsets)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, np.uint8).copy()
    model.buffers.append(buffer)
    meta = schema.MetadataT()
    meta.name = b"OfflineMemoryAllocation"
    meta.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != b"OfflineMemoryAllocation"] + [meta]


def _drop_reshape_before_fully_connected(model: "schema.ModelT") -> None:
    """Removes a RESHAPE whose only consumer is FULLY_CONNECTED.

    FULLY_CONNECTED (keep_num_dims=false) flattens its input itself in TFLite and in
    TFLite Micro, so the RESHAPE only costs a tensor, an op and a copy.
    """
    sg = model.subgraphs[0]
    ops = op_names(model)
    consumers: dict[int, list[int]] = {}
    for k, op in enumerate(sg.operators):
        for i in op.inputs:
            consumers.setdefault(i, []).append(k)
    drop_ops, drop_tensors = set(), set()
    for k, (op, name) in enumerate(zip(sg.operators, ops)):
        out = op.outputs[0]
        users = consumers.get(out, [])
        if name != "RESHAPE" or out in sg.outputs or len(users) != 1 or ops[users[0]] != "FULLY_CONNECTED":
            continue
        fc = sg.operators[users[0]]
        if fc.builtinOptions is not None and getattr(fc.builtinOptions, "keepNumDims", False):
            continue
        fc.inputs = [op.inputs[0] if i == out else i for i in fc.inputs]
        drop_ops.add(k)
        drop_tensors.add(out)
        if len(op.inputs) > 1 and len(consumers.get(op.inputs[1], [])) == 1:
            drop_tensors.add(op.inputs[1])
    if not drop_ops:
        return
    sg.operators = [op for k, op in enumerate(sg.operators) if k not in drop_ops]
    keep = [i for i in range(len(sg.tensors)) if i not in drop_tensors]
    new_index = {old: new for new, old in enumerate(keep)}
    for i in drop_tensors:
        model.buffers[sg.tensors[i].buffer].data = None
    sg.tensors = [sg.tensors[i] for i in keep]
    for op in sg.operators:
        op.inputs = [new_index[i] if i >= 0 else i for i in op.inputs]
        op.outputs = [new_index[i] for i in op.outputs]
    sg.inputs = [new_index[i] for i in sg.inputs]
    sg.outputs = [new_index[i] for i in sg.outputs]


def compact_model(model_bytes: bytes) -> bytes:
    """Short tensor names, no converter bookkeeping metadata, and an in-place arena plan.

    Drops the converter's metadata (CONVERSION_METADATA, min_runtime_version), the
    signature defs and shape signatures (no runtime here needs them: the batch is 1
    and inputs and outputs are addressed by index), the empty per-tensor buffers,
    and a RESHAPE feeding FULLY_CONNECTED. Every byte counts on the target's flash.
    """
    model = read_model(model_bytes)
    _drop_reshape_before_fully_connected(model)
    _short_tensor_names(model)
    for t in model.subgraphs[0].tensors:
        t.shapeSignature = None  # fixed batch of 1; only dynamic-shape runtimes read it
    for m in model.metadata or []:
        model.buffers[m.buffer].data = None
    model.metadata = None
    model.signatureDefs = None
    model.description = None
    model.subgraphs[0].name = None
    _share_empty_buffers(model)
    offsets, _ = plan_arena(model)
    _set_offline_plan(model, offsets)
    builder = flatbuffers.Builder(len(model_bytes))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# ---------------------------------------------------------------- TFLite Micro
def tflm_interpreter(model_bytes: bytes, arena_size: int | None = None):
    from tflite_micro.python.tflite_micro import runtime
    return runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_size or 64 * 1024)


def _capture_fd2(fn) -> str:
    """Runs fn() and returns what it wrote to the C-level stderr (file descriptor 2)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")


def measure_tflm_arena(model_bytes: bytes) -> dict:
    """The arena TFLite Micro actually uses for this model (host build), from its recording allocator.

    `tflm_runs_in` tells whether the model runs in a given arena size (the tests use it
    to show this figure is enough and a smaller one is not).
    """
    interpreter = tflm_interpreter(model_bytes)
    interpreter.set_input(np.zeros((1, 32, 32, 1), np.int8), 0)
    interpreter.invoke()
    text = _capture_fd2(interpreter.print_allocations)
    figures = {}
    for key in ("total", "head", "tail"):
        for line in text.splitlines():
            if f"Arena allocation {key} " in line:
                figures[key] = int(line.split(f"Arena allocation {key} ")[1].split()[0])
    if "total" not in figures:
        raise RuntimeError(f"could not read the TFLM arena size from print_allocations():\n{text[-500:]}")
    figures["report"] = text.strip()
    return figures


def tflm_runs_in(model_bytes: bytes, arena_size: int) -> bool:
    try:
        interpreter = tflm_interpreter(model_bytes, arena_size)
        interpreter.set_input(np.zeros((1, 32, 32, 1), np.int8), 0)
        interpreter.invoke()
        return True
    except RuntimeError:
        return False


# ---------------------------------------------------------------- bundle files
def io_quantization(model_bytes: bytes) -> dict:
    """Input/output shape, scale and zero point, read from the flatbuffer."""
    model = read_model(model_bytes)
    sg = model.subgraphs[0]

    def q(index):
        t = sg.tensors[index]
        return {"shape": [int(d) for d in t.shape], "scale": float(t.quantization.scale[0]),
                "zero_point": int(t.quantization.zeroPoint[0])}

    return {"input": q(sg.inputs[0]), "output": q(sg.outputs[0])}


GENERATED = "// Generated by lenet_edge.export from lenet5_int8.tflite; do not edit.\n"


def model_data_files(model_bytes: bytes) -> dict[str, bytes]:
    """model_data.h/.cc: the int8 model as an alignas(16) const byte array plus its size."""
    header = (GENERATED + "#ifndef LENET_EDGE_EXPORT_MODEL_DATA_H_\n#define LENET_EDGE_EXPORT_MODEL_DATA_H_\n\n"
              "#include <stdint.h>\n\n"
              "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
              "extern const unsigned char g_lenet5_model_data[];\n"
              "extern const unsigned int g_lenet5_model_data_size;\n\n"
              "#ifdef __cplusplus\n}\n#endif\n\n#endif  // LENET_EDGE_EXPORT_MODEL_DATA_H_\n")
    rows = []
    for start in range(0, len(model_bytes), 16):
        rows.append("  " + ", ".join(f"0x{b:02x}" for b in model_bytes[start:start + 16]) + ",")
    source = (GENERATED + '#include "model_data.h"\n\n'
              f"// {len(model_bytes)} bytes, SHA-256 {hashlib.sha256(model_bytes).hexdigest()}\n"
              "alignas(16) const unsigned char g_lenet5_model_data[] = {\n" + "\n".join(rows) + "\n};\n"
              f"const unsigned int g_lenet5_model_data_size = {len(model_bytes)};\n")
    return {"model_data.h": header.encode(), "model_data.cc": source.encode()}


def parse_c_array(source: str) -> bytes:
    """The bytes of the g_lenet5_model_data initializer in a generated model_data.cc."""
    body = source.split("g_lenet5_model_data[] = {", 1)[1].split("};", 1)[0]
    return bytes(int(tok, 16) for tok in body.replace("\n", " ").split(",") if tok.strip())


def model_settings_file(model_bytes: bytes) -> bytes:
    io = io_quantization(model_bytes)
    shape = io["input"]["shape"]
    labels = ", ".join(f'"{c}"' for c in CLASS_LABELS)
    text = (GENERATED + "#ifndef LENET_EDGE_EXPORT_MODEL_SETTINGS_H_\n#define LENET_EDGE_EXPORT_MODEL_SETTINGS_H_\n\n"
            f"// Input: int8 image, NHWC {shape}; real = scale * (q - zero_point).\n"
            f"#define LENET5_INPUT_HEIGHT {shape[1]}\n#define LENET5_INPUT_WIDTH {shape[2]}\n"
            f"#define LENET5_INPUT_CHANNELS {shape[3]}\n"
            f"#define LENET5_INPUT_SIZE {int(np.prod(shape))}\n"
            f"#define LENET5_INPUT_SCALE {io['input']['scale']!r}f\n"
            f"#define LENET5_INPUT_ZERO_POINT ({io['input']['zero_point']})\n\n"
            "// Output: the ten Euclidean RBF distances y_i, int8.\n"
            "// The predicted class is the one with the SMALLEST distance (argmin), not the largest.\n"
            f"#define LENET5_NUM_CLASSES {io['output']['shape'][-1]}\n"
            f"#define LENET5_OUTPUT_SCALE {io['output']['scale']!r}f\n"
            f"#define LENET5_OUTPUT_ZERO_POINT ({io['output']['zero_point']})\n"
            "#define LENET5_PREDICTION_IS_ARGMIN 1\n\n"
            f"#define LENET5_CLASS_LABELS {{{labels}}}\n\n"
            "#endif  // LENET_EDGE_EXPORT_MODEL_SETTINGS_H_\n")
    return text.encode()


def op_resolver_file(model_bytes: bytes) -> bytes:
    ops = sorted(set(op_names(read_model(model_bytes))))
    adds = "\n".join(f"  if (resolver.{TFLM_RESOLVER_METHODS[o]}() != kTfLiteOk) return kTfLiteError;" for o in ops)
    text = (GENERATED + "#ifndef LENET_EDGE_EXPORT_OP_RESOLVER_H_\n#define LENET_EDGE_EXPORT_OP_RESOLVER_H_\n\n"
            '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
            f"// Exactly the operators of lenet5_int8.tflite: {', '.join(ops)}.\n"
            f"constexpr int kLenet5OpCount = {len(ops)};\n"
            "using Lenet5OpResolver = tflite::MicroMutableOpResolver<kLenet5OpCount>;\n\n"
            "inline TfLiteStatus RegisterLenet5Ops(Lenet5OpResolver& resolver) {\n"
            f"{adds}\n  return kTfLiteOk;\n}}\n\n#endif  // LENET_EDGE_EXPORT_OP_RESOLVER_H_\n")
    return text.encode()


def arena_size_file(arena: dict) -> bytes:
    text = (GENERATED + "#ifndef LENET_EDGE_EXPORT_ARENA_SIZE_H_\n#define LENET_EDGE_EXPORT_ARENA_SIZE_H_\n\n"
            f"// Measured with the tflite_micro runtime (64-bit host build): {arena['total']} bytes\n"
            f"// (head {arena['head']} for activations, tail {arena['tail']} for interpreter structures).\n"
            f"// A 32-bit target needs less for the structures; {ARENA_MARGIN_BYTES} bytes of margin are added\n"
            "// for kernel variants and allocator alignment on other targets.\n"
            f"#define LENET5_TFLM_ARENA_MEASURED_BYTES {arena['total']}\n"
            f"#define LENET5_TFLM_ARENA_MARGIN_BYTES {ARENA_MARGIN_BYTES}\n"
            "#define LENET5_TFLM_ARENA_SIZE (LENET5_TFLM_ARENA_MEASURED_BYTES + LENET5_TFLM_ARENA_MARGIN_BYTES)\n\n"
            "#endif  // LENET_EDGE_EXPORT_ARENA_SIZE_H_\n")
    return text.encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_entry(data: bytes) -> dict:
    return {"sha256": sha256_hex(data), "bytes": len(data)}


def replace_section(text: str, heading: str, section: str) -> str:
    """Markdown `text` with the section whose heading line starts with `heading` (up to the
    next "## " heading) replaced by `section`; appended if there is no such section."""
    lines = text.rstrip("\n").split("\n") if text else []
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    new = section.rstrip("\n").split("\n")
    if start is None:
        lines += ([""] if lines else []) + new
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new + ([""] if end < len(lines) else [])
    return "\n".join(lines) + "\n"


def update_bundle(bundle: str | os.PathLike, files: dict[str, bytes] | None = None,
                  report_sections: dict[str, str] | None = None, **manifest_fields) -> dict:
    """Adds or replaces files, sections of report.md (heading -> section text) and manifest
    fields in an existing bundle. Each file is written atomically, manifest.json last, so
    the manifest never lists a hash of a file that is not there yet. Returns the manifest."""
    from lenet_edge.verify import check_bundle
    bundle = Path(bundle)
    manifest = check_bundle(bundle)
    files = dict(files or {})
    if report_sections:
        report = (bundle / "report.md").read_text() if (bundle / "report.md").exists() else ""
        for heading, section in report_sections.items():
            report = replace_section(report, heading, section)
        files["report.md"] = report.encode()
    for name, data in files.items():
        atomic_write(bundle / name, data)
        manifest["files"][name] = manifest_entry(data)
    manifest.update(manifest_fields)
    atomic_write(bundle / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def write_bundle(directory: str | os.PathLike, files: dict[str, bytes], manifest: dict) -> Path:
    """Writes files plus manifest.json (with each file's SHA-256) into `directory`, atomically.

    Everything is written into a temporary sibling directory first, which then
    replaces `directory`; an interrupted export leaves the previous bundle intact.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    manifest = dict(manifest)
    manifest["files"] = {name: manifest_entry(data) for name, data in sorted(files.items())}
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.new."))
    old = None
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the bundle is for everyone to read
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if directory.exists():
            old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.old."))
            os.rmdir(old)
            os.replace(directory, old)
        os.replace(tmp, directory)
    except BaseException:
        if old is not None and old.exists() and not directory.exists():
            os.replace(old, directory)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return directory
