"""task=speed: the decoding benchmark's figures for a checkpoint (tiny random model, a few tokens)."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir

from tests.inference.conftest import tiny_lm
from vita_audio.checkpoint import export_pretrained
from vita_audio.cli.common import CONFIG_DIR
from vita_audio.cli.eval import evaluate
from vita_audio.eval.tasks import run_speed, write_results
from vita_audio.eval.tasks.speed import bench_modes


def test_run_speed_figures_per_mode(tmp_path):
    lm = tiny_lm(num_modules=10)
    res = run_speed(lm, modes=["vanilla", "boost", "verified"], rounds=1, new_tokens=16, prefill=32,
                    mctp_head="always", drafting="all")  # random weights never open a span: MCTP steps write text
    assert list(res.metrics) == ["vanilla", "boost", "verified"]  # Turbo timed for verified's r, not reported
    van, boost, ver = (res.metrics[m] for m in ("vanilla", "boost", "verified"))
    assert van["backbone_forwards_per_token"] == 1.0 and van["speedup_vs_vanilla"] == 1.0
    # Boost [1, 10, 4, 10] over 16 tokens: prefill + 10 MCTP, then 4 backbone steps + 1 MCTP step = 5 forwards
    assert boost["backbone_forwards_per_token"] == pytest.approx(5 / 16)
    assert boost["mctp_steps_per_token"] == pytest.approx(11 / 16)
    assert 1.0 <= ver["accepted"] <= 11.0 and "accepted" not in van
    for m in res.metrics.values():
        assert m["tokens_per_s"] > 0 and m["first_chunk_s"] > 0
    assert res.info["new_tokens"] == 16 and res.info["rounds"] == 1 and "load_average_start" in res.info
    out = write_results(res, tmp_path)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["task"] == "speed" and saved["modes"]["boost"] == boost
    assert "| verified |" in (out / "metrics.md").read_text()


def test_speed_bad_input():
    lm = tiny_lm()
    with pytest.raises(ValueError, match="unknown decode mode 'warp'"):
        run_speed(lm, modes=["warp"])
    with pytest.raises(ValueError, match="mctp_head must be one of"):
        run_speed(lm, modes=["boost"], mctp_head="sometimes")
    with pytest.raises(ValueError, match="needs MCTP modules"):
        run_speed(tiny_lm(num_modules=0), modes=["turbo"])
    assert bench_modes(["verified"]) == ["vanilla", "turbo", "verified"]


def test_eval_cli_speed(tmp_path):
    hf = export_pretrained(tiny_lm(num_modules=10), tmp_path / "hf", interleave_ratio=[1, 4])
    overrides = ["task=speed", f"ckpt_path={hf}", f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path}/out",
                 "task.modes=[vanilla,turbo]", "task.rounds=1", "task.new_tokens=12", "task.compare_hf=true",
                 "logger=csv", "task.drafting=all"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=overrides)
    (tmp_path / "out").mkdir()
    metrics = evaluate(cfg)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(saved["modes"]) == {"vanilla", "turbo", "transformers_generate"}
    assert metrics["turbo/backbone_forwards_per_token"] == saved["modes"]["turbo"]["backbone_forwards_per_token"] < 1
    assert saved["ckpt_path"] == str(hf)
    (csv,) = (tmp_path / "out").rglob("metrics.csv")  # the figures also went to the configured logger
    assert "eval/speed/turbo/tokens_per_s" in csv.read_text().splitlines()[0]
    cfg.ckpt_path = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(cfg)


def test_run_speed_with_stop_times_whole_answers_one_prompt_at_a_time(monkeypatch):
    """stop=True: each of `batch` prompts decoded alone until its answer stops; tokens/s over the tokens written."""
    import vita_audio.inference.decoder as decoder
    from vita_audio.eval.tasks.speed import make_prompts, run_mode

    lm = tiny_lm(num_modules=10)
    ids = make_prompts(lm, 2, 32)
    free = run_mode(lm, ids[:1], "vanilla", 16, drafting="all")  # what Vanilla writes with no stop
    assert free.tokens == 16
    steps = decoder.Decoder(lm, ids[:1], schedule="vanilla", max_new_tokens=6, stop_ids=[]).steps()
    first = [int(step.tokens[0]) for step in steps][5]
    monkeypatch.setattr(decoder, "_default_stop_ids", lambda tok: [first])  # the 6th token of row 0 ends an answer
    stopped = run_mode(lm, ids, "vanilla", 16, drafting="all", stop=True)
    assert stopped.forwards == stopped.tokens < 2 * 16  # rows alone: one forward per Vanilla token, row 0 stopped
    res = run_speed(lm, modes=["vanilla", "boost"], batch=2, rounds=1, new_tokens=16, prefill=32,
                    mctp_head="always", drafting="all", stop=True)
    assert res.info["stop"] is True and res.metrics["vanilla"]["backbone_forwards_per_token"] == 1.0
    assert res.metrics["vanilla"]["tokens_per_answer"] < 16  # row 0 stopped early, row 1 at most the cap
    assert 0 < res.metrics["boost"]["backbone_forwards_per_token"] < 1
    with pytest.raises(ValueError, match="transformers generate cannot be compared"):
        run_speed(lm, modes=["vanilla"], stop=True, compare_hf=True)


def test_first_chunk_is_the_first_closed_audio_span_or_the_eleventh_token(monkeypatch):
    """A span the model closes after 7 codes is a decodable chunk at its <eoa> (token 10), not at token 11."""
    import torch

    import vita_audio.eval.tasks.speed as speed
    from vita_audio.inference.decoder import Step

    lm = tiny_lm(num_modules=10)
    av = lm.backbone.audio_vocab
    code = int(av.codes_to_ids(torch.tensor([0]))[0])
    assert bool(av.is_audio(torch.tensor([code]))[0])

    def script(n_codes: int) -> list[int]:
        head = [5, av.begin_of_audio, *[code] * n_codes, av.end_of_audio]
        return head + [5] * max(3, 14 - len(head))

    class Scripted:  # a decoder that writes `tokens`, one step each
        tokens: list[int] = []

        def __init__(self, *a, **k):
            self.backbone_forwards, self.mctp_steps, self.accepted = len(self.tokens), 0, []

        def steps(self):
            for t in self.tokens:
                yield Step("M", 0, torch.tensor([t]), torch.tensor([True]), torch.tensor([-1]))

    ticks = iter(range(1000))
    monkeypatch.setattr(speed, "Decoder", Scripted)
    # closed early after a code: its <eoa>; else the 11th new token (an empty span is no chunk)
    for n_codes, at in ((7, 10), (8, 11), (12, 11), (0, 11)):
        Scripted.tokens = script(n_codes)
        run = speed.run_mode(lm, torch.zeros(1, 4, dtype=torch.long), "vanilla", len(Scripted.tokens),
                             clock=lambda: float(next(ticks)))
        assert run.first_chunk == at + 1  # one clock read before the loop, one per step: token k at t0 + k + 1
