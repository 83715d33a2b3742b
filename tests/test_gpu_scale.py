"""benchmarks/gpu_scale.py: its CPU dry run (tiny models, synthetic sentences) measures every part and writes
the figures it printed."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_dry_run_writes_every_figure(tmp_path):
    out = tmp_path / "gpu_scale.json"
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_scale.py"), "--device", "cpu", "--dry-run",
                             "--data", str(tmp_path / "no-corpus"), "--threads", "1", "--json", str(out)],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["dry_run"]
    models, precisions = ["ptb-h256", "ptb-h1024", "yahoo"], ["fp32", "bf16"]
    # every model x precision x batch size, each with positive rates
    assert sorted((r["model"], r["precision"], r["batch_size"]) for r in report["train"]) == sorted(
        (m, p, b) for m in models for p in precisions for b in (4, 8))
    for row in report["train"] + report["lightning"]:
        assert "error" not in row, row
        assert row["tokens_per_s"] > 0 and row["sentences_per_s"] > 0 and row["steps"] == 2
        # target tokens per sentence: words + EOS of the synthetic sentences (at least 2, at most max_len + 1)
        assert 2 <= row["tokens_per_s"] / row["sentences_per_s"] <= 101
    assert {(r["model"], r["precision"]) for r in report["lightning"]} == {(m, p) for m in models for p in precisions}
    assert all(r["num_workers"] == 0 and r["train_repeats"] == 1 for r in report["lightning"])  # the defaults
    # IW-NLL of the PTB-size models over the first 8 test sentences at K = 5: an untrained model's outputs are
    # near uniform, so about log V nats per target token
    # textvae-eval's default chunk and 2 samples per decoder pass: the same bound from the same noise
    assert [(r["model"], r["precision"], r["chunk"]) for r in report["iw_nll"]] == [
        ("ptb-h256", p, c) for p in precisions for c in (None, 2)]
    fp32 = [r["iw_nll"] for r in report["iw_nll"] if r["precision"] == "fp32"]
    assert fp32[0] == pytest.approx(fp32[1], rel=1e-5)
    for row in report["iw_nll"]:
        assert "error" not in row, row
        assert row["sentences"] == 8 and row["samples"] == 5 and row["sentences_per_s"] > 0
        assert row["wall_seconds"] >= row["iw_seconds"] > 0
        per_token = row["iw_nll"] * row["sentences"] / row["tokens"]
        assert 0.9 * math.log(row["vocab_size"]) < per_token < 1.1 * math.log(row["vocab_size"]), row
    assert report["compiled"] == []  # no compilation on the CPU unless asked
    assert "IW-NLL:" in result.stdout and "[train]" in result.stdout


def test_gpu_sh_scale_dry_run_on_the_cpu(tmp_path):
    """benchmarks/gpu.sh scale, as a lease would run it, at tiny sizes on the CPU (TEXTVAE_GPU_DRY_RUN=1): both
    gpu_scale.py runs write their JSON; a stage it does not know, or a dry run of another stage, is refused."""
    out = tmp_path / "out"
    env = {**os.environ, "TEXTVAE_GPU_DRY_RUN": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "scale", str(out)], capture_output=True,
                            text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    assert "dry run on the CPU" in (out / "device.txt").read_text()
    sweep = json.loads((out / "gpu_scale.json").read_text())
    assert sweep["dry_run"] and sweep["device"] == "cpu" and sweep["train"] and sweep["iw_nll"]
    assert {r["model"] for r in sweep["iw_nll"]} == {"ptb-h256", "ptb-h1024"}
    loop = json.loads((out / "gpu_scale_lightning.json").read_text())
    assert loop["iw_nll"] == [] and loop["compiled"] == []
    assert sorted((r["precision"], r["num_workers"]) for r in loop["lightning"]) == [
        ("bf16", 0), ("bf16", 4), ("fp32", 0), ("fp32", 4)]
    assert all(r["train_repeats"] == 20 and r["tokens_per_s"] > 0 for r in loop["lightning"])
    for argv, env_dry in ((["bogus", str(out)], "0"), (["check", str(out)], "1")):
        refused = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), *argv], capture_output=True, text=True,
                                 timeout=60, env={**env, "TEXTVAE_GPU_DRY_RUN": env_dry}, cwd=ROOT)
        assert refused.returncode == 2 and "benchmarks/gpu.sh" in refused.stderr
