"""task=speed reports the ideal speed-up beside the measured one, from the measured step costs."""

from __future__ import annotations

import pytest

from tests.inference.conftest import tiny_lm
from vita_audio.eval.tasks import run_speed


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_step_costs_and_ideal_speedup_per_mode(clock):
    res = run_speed(tiny_lm(num_modules=10), modes=["vanilla", "boost"], rounds=1, new_tokens=16, prefill=32,
                    mctp_head="always", drafting="all", clock=clock)
    van, boost = res.metrics["vanilla"], res.metrics["boost"]
    assert res.info["clock"] == clock
    assert van["backbone_step_ms"] > 0 and van["ideal_speedup"] == 1.0
    assert "mctp_step_ms" not in van and "mctp_over_backbone_step" not in van
    assert boost["backbone_step_ms"] == van["backbone_step_ms"]  # one unit for every mode
    r = boost["mctp_over_backbone_step"]
    assert boost["mctp_step_ms"] > 0 and r == pytest.approx(boost["mctp_step_ms"] / boost["backbone_step_ms"])
    ideal = 1 / (boost["backbone_forwards_per_token"] + boost["mctp_steps_per_token"] * r)
    assert boost["ideal_speedup"] == pytest.approx(ideal)
    assert boost["backbone_forward_ms"] > 0 and "speedup_vs_vanilla" in boost


def test_unknown_clock_is_refused():
    with pytest.raises(ValueError, match="clock must be one of wall, cpu"):
        run_speed(tiny_lm(), modes=["vanilla"], clock="sundial")
