"""Smoke test of experiments/bench_serve.py's client side against the in-process test server: two levels, a few
tokens, sampling on with a seed per request (as the bench runs), zero errors and the table's figures filled in."""

from __future__ import annotations

import asyncio
import base64

import pytest

from tests.experiment_scripts import experiment_script
from tests.serve.conftest import API_KEY, wait_idle


@pytest.fixture(scope="module")
def bench():
    with experiment_script("bench_serve") as mod:
        yield mod


def test_bench_levels(bench, served, artefacts):
    wait_idle(served)
    wav = base64.b64encode(artefacts["wav"].read_bytes()).decode()
    rows = [asyncio.run(bench.run_level(served.url, wav, n, 1, 12, "boost", {"Authorization": f"Bearer {API_KEY}"}))
            for n in (1, 2)]
    assert [r["errors"] for r in rows] == [0, 0], [r["error_samples"] for r in rows]
    assert all(r["first_p95"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert rows[1]["batch_mean"] >= 1 and "| 2 | 2 | 0 |" in bench.table(rows)
    assert all(r["stopped"] + r["no_audio"] >= 0 and 1 <= r["tokens_mean"] <= 12 for r in rows)
    assert bench.pct([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and bench.pct([1.0, 2.0, 3.0, 4.0], 95) == 4.0
