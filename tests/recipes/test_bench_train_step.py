"""Smoke test of experiments/bench_train_step.py's modes at a tiny size (1 step each), and its FLOPs accounting."""

from __future__ import annotations

import re

import pytest

from tests.experiment_scripts import experiment_script

TINY = ["--shape", "tiny", "--modules", "2", "--batch", "1", "--seq", "48", "--threads", "1"]


@pytest.fixture(scope="module")
def bench():
    with experiment_script("bench_train_step") as mod:
        yield mod


def test_every_mode_runs_one_step(bench, capsys):
    bench.main(["--section", "modes", *TINY, "--steps", "1", "--warmup", "0", "--rounds", "1"])
    out = capsys.readouterr().out
    rows = {m.group(1): m for m in re.finditer(r"^(\S+)\s+\|\s+([\d,]+) \|\s+([\d.]+) \|\s+([\d,]+) \|\s+([\d.]+)",
                                                 out, re.M)}
    assert set(rows) == set(bench.MODES), out
    for m in rows.values():
        assert float(m.group(3)) > 0 and int(m.group(4).replace(",", "")) > 0
    assert float(rows["stage4"].group(5)) == 1.0
    trainable = {k: int(m.group(2).replace(",", "")) for k, m in rows.items()}
    assert trainable["stage3"] < trainable["stage4"] and trainable["stage4+lora"] < trainable["stage4"]
    assert trainable["stage4+gc"] == trainable["stage4"]
    assert re.search(r"stage-3 step / stage-4 step: [\d.]+", out)


def test_model_flops_follow_what_trains(bench):
    shape = bench.SHAPES["tiny"]
    flops = {}
    for name in ("stage4", "stage3", "stage4+gc", "stage4+lora", "stage1"):
        module = bench.MODES[name].build(shape, None, 2)
        batch = bench.make_batches(module, 1, 1, 48)[0]
        flops[name] = bench.model_flops(module, batch)
    assert flops["stage4+gc"] == flops["stage4"]  # recomputation is not model FLOPs
    # frozen backbone: forward only; LoRA: input gradients but no weight gradients of the base layers
    assert flops["stage3"] < flops["stage4+lora"] < flops["stage4"] and flops["stage1"] < flops["stage4"]


def test_peak_table_knows_common_cards(bench):
    assert bench.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert bench.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert bench.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert bench.peak_flops("NVIDIA L40S") == 362e12 and bench.peak_flops("NVIDIA L4") == 121e12
    assert bench.peak_flops("Some Unknown GPU") is None
