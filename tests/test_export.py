"""QAT, int8 conversion and the bundle, checked with the real runtimes (tflite_micro, LiteRT)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

import lenet_edge  # noqa: F401

from lenet_edge import export, training, verify
from lenet_edge.layers import C3_TABLE
from lenet_edge.quantization import load_qat_model

ROOT = Path(__file__).resolve().parents[1]


def test_only_int8_builtin_ops_and_int8_io(converted):
    ops = export.check_int8_model(converted["int8"])
    assert ops == ["CONV_2D", "TANH", "DEPTHWISE_CONV_2D", "TANH", "CONV_2D", "TANH", "DEPTHWISE_CONV_2D", "TANH",
                   "FULLY_CONNECTED", "TANH", "FULLY_CONNECTED", "TANH", "RESHAPE", "MUL", "SQUARED_DIFFERENCE", "SUM"]
    model = export.read_model(converted["int8"])
    sg = model.subgraphs[0]
    for i in list(sg.inputs) + list(sg.outputs):
        assert export.tensor_type_name(sg.tensors[i]) == "INT8"
    # TANH outputs carry TFLite's fixed int8 scale 1/128, zero point 0.
    for op, name in zip(sg.operators, ops):
        if name == "TANH":
            q = sg.tensors[op.outputs[0]].quantization
            assert q.scale[0] == pytest.approx(1 / 128) and q.zeroPoint[0] == 0


def test_check_rejects_float_islands(converted):
    with pytest.raises(export.ConversionError, match="FLOAT32"):
        export.check_int8_model(converted["float"])


def test_c3_kernel_in_flatbuffer_is_zero_exactly_where_table_i_has_no_x(converted):
    model = export.read_model(converted["int8"])
    sg = model.subgraphs[0]
    c3 = sg.operators[4]
    weights = sg.tensors[c3.inputs[1]]
    kernel = np.frombuffer(bytes(model.buffers[weights.buffer].data), np.int8).reshape(weights.shape)  # (16,5,5,6)
    for out_map in range(16):
        for in_map in range(6):
            block = kernel[out_map, :, :, in_map]
            if C3_TABLE[in_map, out_map]:
                assert np.any(block != 0), (in_map, out_map)
            else:
                assert np.all(block == 0), (in_map, out_map)


def test_qat_keeps_c3_zeros_and_fixed_prototypes(converted, mnist):
    qat = converted["qat"]
    rbf = qat.get_layer("quant_RBF")
    assert not any("prototypes" in w.name for w in rbf.trainable_weights)
    protos = [w for w in rbf.weights if "prototypes" in w.name][0].numpy()
    np.testing.assert_array_equal(np.abs(protos), 1.0)
    c3 = qat.get_layer("quant_C3").layer.effective_kernel().numpy()
    assert np.all(c3[:, :, ~C3_TABLE] == 0)


def test_tflm_and_litert_agree(converted, mnist):
    x = verify.quantize_for(converted["int8"], mnist.x_test[:300])
    tflm = verify.run_tflm(converted["int8"], x)
    ref = verify.run_litert(converted["int8"], x, delegates=False)
    assert np.abs(tflm.astype(int) - ref.astype(int)).max() <= 1
    assert np.mean(np.argmin(tflm, 1) == np.argmin(ref, 1)) >= 0.99


def test_in_place_arena_plan_changes_nothing_but_memory(converted):
    """The compacted model (offline plan, in-place TANH) equals an unplanned copy bit for bit."""
    model = export.read_model(converted["int8"])
    model.metadata = None
    import flatbuffers
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    unplanned = bytes(builder.Output())
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (50, 32, 32, 1), dtype=np.int8)
    np.testing.assert_array_equal(verify.run_tflm(converted["int8"], x), verify.run_tflm(unplanned, x))
    assert export.measure_tflm_arena(converted["int8"])["total"] < export.measure_tflm_arena(unplanned)["total"]


def test_c_array_parses_back_to_the_same_bytes(converted):
    files = export.model_data_files(converted["int8"])
    source = files["model_data.cc"].decode()
    assert export.parse_c_array(source) == converted["int8"]
    assert f"g_lenet5_model_data_size = {len(converted['int8'])};" in source
    assert "alignas(16) const unsigned char g_lenet5_model_data[]" in source


def test_op_resolver_lists_exactly_the_models_ops(converted):
    text = export.op_resolver_file(converted["int8"]).decode()
    methods = re.findall(r"resolver\.(Add\w+)\(\)", text)
    expected = sorted({export.TFLM_RESOLVER_METHODS[o] for o in export.op_names(export.read_model(converted["int8"]))})
    assert sorted(methods) == expected
    assert "MicroMutableOpResolver<kLenet5OpCount>" in text and f"kLenet5OpCount = {len(expected)}" in text


def test_arena_header_is_at_least_what_tflm_needs(converted):
    arena = export.measure_tflm_arena(converted["int8"])
    text = export.arena_size_file(arena).decode()
    measured = int(re.search(r"LENET5_TFLM_ARENA_MEASURED_BYTES (\d+)", text).group(1))
    margin = int(re.search(r"LENET5_TFLM_ARENA_MARGIN_BYTES (\d+)", text).group(1))
    assert export.tflm_runs_in(converted["int8"], measured + margin)
    assert export.tflm_runs_in(converted["int8"], measured)
    assert not export.tflm_runs_in(converted["int8"], measured - 64)


def test_model_settings_match_the_flatbuffer(converted):
    text = export.model_settings_file(converted["int8"]).decode()
    io = export.io_quantization(converted["int8"])
    assert float(re.search(r"LENET5_INPUT_SCALE ([0-9.e-]+)f", text).group(1)) == pytest.approx(io["input"]["scale"])
    assert int(re.search(r"LENET5_OUTPUT_ZERO_POINT \((-?\d+)\)", text).group(1)) == io["output"]["zero_point"]
    assert "SMALLEST" in text and '{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}' in text


def _bundle(converted, directory):
    files = {verify.INT8_MODEL: converted["int8"], verify.FLOAT_MODEL: converted["float"],
             **export.model_data_files(converted["int8"])}
    return export.write_bundle(directory, files, {"config": {}})


def test_tampered_or_truncated_bundle_is_refused(converted, tmp_path, capsys):
    bundle = _bundle(converted, tmp_path / "export")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["files"][verify.INT8_MODEL]["sha256"] == export.sha256_hex(converted["int8"])
    verify.check_bundle(bundle)
    data = bytearray(converted["int8"])
    data[len(data) // 2] ^= 0xFF
    (bundle / verify.INT8_MODEL).write_bytes(bytes(data))
    with pytest.raises(verify.BundleError, match="lenet5_int8.tflite: SHA-256"):
        verify.check_bundle(bundle)
    assert verify.main([str(bundle)]) == 2
    assert "does not match its manifest" in capsys.readouterr().err
    with pytest.raises(export.ModelFileError, match="truncated or corrupted"):
        export.read_model(converted["int8"][:100])
    with pytest.raises(export.ModelFileError, match="not a TFLite model"):
        export.read_model(b"\x00" * 64)


def test_write_bundle_is_atomic(converted, tmp_path, monkeypatch):
    bundle = _bundle(converted, tmp_path / "export")
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}

    def explode(*a, **k):
        raise KeyboardInterrupt

    files = {verify.INT8_MODEL: b"new", verify.FLOAT_MODEL: b"new"}
    monkeypatch.setattr(export.json, "dumps", explode)
    with pytest.raises(KeyboardInterrupt):
        export.write_bundle(bundle, files, {})
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_qat_model_saves_and_reloads(converted, tmp_path, mnist):
    path = tmp_path / "qat.h5"
    training.atomic_save_model(converted["qat"], path)
    again = load_qat_model(path)
    np.testing.assert_allclose(again.predict(mnist.x_test[:20], verbose=0),
                               converted["qat"].predict(mnist.x_test[:20], verbose=0), rtol=1e-5, atol=1e-4)


def test_committed_bundle_matches_manifest_and_its_report(mnist):
    """The bundle in git: hashes match, and TFLM on the full test set reproduces the report's figures."""
    bundle = ROOT / "export"
    if not (bundle / "manifest.json").exists():
        pytest.fail("export/ has no committed bundle; run `make train` and commit export/")
    manifest = verify.check_bundle(bundle)
    int8 = (bundle / verify.INT8_MODEL).read_bytes()
    export.check_int8_model(int8)
    x = verify.quantize_for(int8, mnist.x_test)
    errors = int(np.sum(np.argmin(verify.run_tflm(int8, x), 1) != mnist.y_test))
    claimed = {r["runtime"]: r for r in manifest["parity"]["rows"]}["int8 TFLite Micro"]
    assert errors == claimed["errors"]
    tflm_check = manifest["parity"]["checks"][0]
    assert tflm_check["ok"], "committed bundle misses the TFLM error target"
    assert f"| int8 TFLite Micro | {claimed['test_error']:.2f}% | {errors} |" in (bundle / "report.md").read_text()


def test_verify_cli_on_the_committed_bundle_in_a_fresh_process():
    """`python -m lenet_edge.verify export` as a user runs it: loads the Keras models, passes."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "lenet_edge.verify", str(ROOT / "export"), "--no-write"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "All parity checks passed." in proc.stdout
    assert "| int8 TFLite Micro |" in proc.stdout


def test_report_sections_are_replaced_in_place_or_appended():
    text = "# t\n\nintro\n\n## Parity on x\n\nold table\n\n## Cortex-M4 firmware\n\nsizes\n"
    once = export.replace_section(text, "## Parity", "## Parity on y\n\nnew table\n")
    assert once == "# t\n\nintro\n\n## Parity on y\n\nnew table\n\n## Cortex-M4 firmware\n\nsizes\n"
    assert export.replace_section(once, "## Parity", "## Parity on y\n\nnew table\n") == once
    last = export.replace_section(once, "## Cortex-M4 firmware", "## Cortex-M4 firmware\n\nsmaller\n")
    assert last.endswith("## Cortex-M4 firmware\n\nsmaller\n") and "new table" in last
    assert export.replace_section("# t\n", "## New", "## New\n\nx\n") == "# t\n\n## New\n\nx\n"


def test_update_bundle_writes_files_sections_and_manifest(converted, tmp_path):
    bundle = tmp_path / "bundle"
    export.write_bundle(bundle, {verify.INT8_MODEL: converted["int8"], verify.FLOAT_MODEL: converted["float"],
                                 "report.md": b"# r\n\n## Parity\n\nold\n"}, {"x": 1})
    export.update_bundle(bundle, {"extra.h": b"// x\n"}, {"## Parity": "## Parity\n\nnew\n"}, firmware={"a": 2})
    manifest = verify.check_bundle(bundle)  # every hash still matches
    assert manifest["firmware"] == {"a": 2} and manifest["x"] == 1 and "extra.h" in manifest["files"]
    assert (bundle / "report.md").read_text() == "# r\n\n## Parity\n\nnew\n"
    assert not list(bundle.glob(".*tmp"))
