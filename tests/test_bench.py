"""The benchmark's counting and reporting (its timings are not tested: the machine is noisy)."""
from pathlib import Path

import pytest

import lenet_edge  # noqa: F401
from lenet_edge import bench

ROOT = Path(__file__).resolve().parents[1]


def test_layer_work_counts_the_papers_connections():
    rows = {r["layer"]: r for r in bench.layer_work((ROOT / "export" / "lenet5_int8.tflite").read_bytes())}
    # The paper's connection counts (Section II.B; ../shared/paper/FACTS.md).
    paper = {"C1": 122_304, "S2": 5_880, "C3": 151_600, "S4": 2_000, "C5": 48_120, "F6": 10_164, "RBF": 840}
    assert {k: v["connections"] for k, v in rows.items()} == paper
    assert rows["C3"]["macs"] == 150_000 and rows["C3"]["dense_macs"] == 240_000
    assert rows["C1"]["macs"] == rows["C1"]["dense_macs"] == 28 * 28 * 6 * 25


def test_training_throughput_runs_both_models(mnist):
    t = bench.training_throughput(mnist.x_train[:640], mnist.y_train[:640], rounds=1)
    assert set(t["images_per_s"]) == {"faithful LeNet-5 (this package)", "plain Keras LeNet-5 (softmax)"}
    assert all(v > 0 for v in t["images_per_s"].values()) and t["ratio_faithful_to_plain"] > 0
    assert bench.plain_lenet5().count_params() == 61_706  # the tutorial model: dense C3, softmax output


def _fake_result():
    lat = {k: {"median_us": m, "p99_us": 2 * m, "n": 10} for k, m in (
        ("Keras float (tf_keras, eager call)", 5000.0), ("int8 LiteRT (default kernels)", 30.0),
        ("int8 TFLite Micro (tflite_micro Python)", 1200.0), ("int8 host C engine (firmware_stub, -O2)", 100.0))}
    return {"machine": "test", "date": "2026-01-01", "rounds": 1, "latency_images": 10,
            "training": {"images_per_s": {"a": 10.0, "b": 20.0}, "ratio_faithful_to_plain": 0.5,
                         "rounds": {"a": [9.0, 10.0, 12.0], "b": [20.0]}},
            "latency": lat, "batch": {"Keras float, predict(batch_size=1000)": 1000.0},
            "sizes": {"int8_tflite_bytes": 1, "float_tflite_bytes": 2, "tflm_arena_bytes": 3, "m4_flash_bytes": 4,
                      "m4_ram_bytes": 5, "m4_instructions_per_inference": 6},
            "work": [{"layer": "C1", "outputs": 1, "macs": 2, "dense_macs": 3, "connections": 4}]}


def test_tables_and_readme_update(tmp_path):
    tables = bench.format_tables(_fake_result())
    assert "| host C engine speed-up over tflite_micro Python | 12.0x | |" in tables
    assert "| a | 10 | 9 - 12 |" in tables
    assert "instruction count, not a time" in tables
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{bench.README_START}\nold table\n{bench.README_END}\n\nafter\n")
    bench.update_readme(readme, tables)
    text = readme.read_text()
    assert "old table" not in text and tables in text and text.endswith("after\n")
    bad = tmp_path / "other.md"
    bad.write_text("no markers")
    with pytest.raises(SystemExit, match="no benchmark markers"):
        bench.update_readme(bad, tables)
