"""bench_memory.py --section init / load: their measurements, in-process at a test shape; the streamed load adds
less memory than the full checkpoint and loads the same weights."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "experiments" / "bench_memory.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_memory_init_measurements(tmp_path, capsys):
    bench = _bench()
    prep = bench.prepare_predecessor("test", str(tmp_path))
    assert prep["full_bytes"] > 2.5 * prep["weights_bytes"]  # weights + two AdamW moments vs weights
    capsys.readouterr()
    rows = {}
    for mode in ("old", "safetensors"):
        bench.init_child(mode, "test", str(tmp_path))
        rows[mode] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rows["old"]["check"] == rows["safetensors"]["check"]
    if rows["old"]["peak_reset"]:  # the peak is reset once the model is built: the load's own cost
        added = {m: r["peak"] - r["model_rss"] for m, r in rows.items()}
        assert added["safetensors"] < added["old"], added
    n = bench._params_7b()
    assert 7.5e9 < n["backbone"] < 8e9  # Qwen2.5-7B + the 168,072-row vocabulary, untied


def test_bench_memory_load_measurements(tmp_path, capsys):
    """--section load at a test shape, in-process: both checkpoint kinds load the written weights through the
    public loader, and the figures are there."""
    bench = _bench()
    prep = bench.prepare_load("test", 2, str(tmp_path), vocab=1096)
    assert prep["ckpt_bytes"] > 2.5 * 4 * prep["params"]  # fp32 weights + two AdamW moments
    capsys.readouterr()
    for mode in ("ckpt", "hf"):
        bench.load_child(mode, str(tmp_path))
        r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert r["loader"] == bench.public_loader()[0]
        assert r["params"] == prep["params"] and r["check"] == pytest.approx(prep["check"])
        assert r["peak"] >= 0 and r["private_peak"] >= r["private_after"] - 2**20 and r["seconds"] > 0
        assert isinstance(r["heavy"], list)
