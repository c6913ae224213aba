"""Smoke test of experiments/bench_decode.py: its main function at the test size, a few tokens."""

from __future__ import annotations

import pytest

from tests.experiment_scripts import experiment_script


@pytest.fixture(scope="module")
def bench():
    with experiment_script("bench_decode") as mod:
        yield mod


def test_bench_decode_smoke(bench, tmp_path):
    png = tmp_path / "bench.png"
    res = bench.main(["--sizes", "test", "--batch", "1", "--rounds", "1", "--new-tokens", "16", "--out", str(png),
                      "--json", str(tmp_path / "rows.json")], log=lambda *a: None)
    modes = {d["mode"]: d for d in res["rows"]}
    assert set(modes) == {*bench.MODES, "transformers generate"}
    for m in bench.MODES:
        assert f"| test | 1 | {m} |" in res["table"]
        d = modes[m]
        assert d["tok_s"] > 0 and d["first_chunk_s"] > 0 and d["ideal"] > 0 and d["frac_ideal"] > 0
    assert modes["vanilla"]["forwards_per_token"] == 1.0 and modes["vanilla"]["achieved"] == 1.0
    assert modes["turbo"]["forwards_per_token"] < modes["boost"]["forwards_per_token"] < 1.0
    assert modes["turbo"]["r"] > 0 and modes["boost"]["ideal"] > 0  # timings: no speed claim in a test
    assert 1.0 <= modes["verified"]["accepted"] <= 11.0
    assert modes["transformers generate"]["tok_s"] > 0
    assert (tmp_path / "rows.json").is_file()
    if res["plot"] is not None:
        assert png.is_file() and png.stat().st_size > 1000


def test_prompts_have_the_asked_length(bench):
    lm, _ = bench.build_model("test")
    ids = bench.make_prompts(lm, 8, 32)
    assert ids.shape == (8, 32) and len({tuple(r) for r in ids.tolist()}) == 8
