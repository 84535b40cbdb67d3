"""benchmarks/train_throughput.py (the GPU tier's throughput figures) checked on a tiny CPU model: its
FLOPs arithmetic, the peak by device name, and one run whose MFU follows from its own tokens/s."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_flops_and_peaks():
    # 6 x 1.1e9 + 12 x 22 layers x 2048 x 4096 tokens of attention
    assert bench.flops_per_token(1_100_000_000, 22, 2048, 4096) == 6.6e9 + 12 * 22 * 2048 * 4096
    assert bench.peak_of("NVIDIA H200") == 989.0 and bench.peak_of("NVIDIA A100-SXM4-80GB") == 312.0
    assert bench.peak_of("cpu") is None
    with pytest.raises(SystemExit, match="give --peak-tflops"):
        bench.main(["--device", "cpu", "--steps", "1", "--warmup", "0"])


def test_a_tiny_cpu_run_reports_consistent_figures():
    r = bench.main([
        "--device", "cpu", "--dtype", "float32", "--hidden", "64", "--layers", "2", "--heads", "4",
        "--kv-heads", "2", "--intermediate", "128", "--vocab", "512", "--seq-len", "64", "--batch", "2",
        "--steps", "2", "--warmup", "1", "--peak-tflops", "1",
    ])  # fmt: skip
    assert r["tokens_per_s"] == pytest.approx(2 * 2 * 64 / (2 * r["step_s"]))
    fpt = bench.flops_per_token(r["params"], 2, 64, 64)
    assert r["mfu"] == pytest.approx(fpt * r["tokens_per_s"] / 1e12)
    assert r["params"] > 0 and all(x > 0 for x in r["loss_first_last"])
