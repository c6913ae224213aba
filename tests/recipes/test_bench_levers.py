"""experiments/bench_levers.py: every lever's overrides compose onto demo/align and change what they say; a run's
files become its table row; a lever whose artefacts are missing says what to build."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from tests.conftest import compose_cfg
from tests.experiment_scripts import experiment_script


@pytest.fixture(scope="module")
def bench():
    with experiment_script("bench_levers") as mod:
        yield mod


def test_every_lever_composes_and_changes_what_it_names(bench, tmp_path):
    base = compose_cfg(tmp_path, ["+experiment=demo/align"])
    cfgs = {}
    for lever in bench.LEVERS:
        (_, train, _, _), (_, asr, _, _) = bench.commands(lever, tmp_path / "a", tmp_path / "o", 300, tts=False)
        overrides = train[train.index("+experiment=demo/align"):]
        cfgs[lever] = compose_cfg(tmp_path, overrides)
        assert cfgs[lever].trainer.max_steps == 300 and f"audio={bench.audio_of(bench.LEVERS[lever][1])}" in asr
    plain = lambda c: OmegaConf.to_container(c, resolve=False)  # noqa: E731
    assert plain(cfgs["demo"].data) == plain(base.data) and plain(cfgs["demo"].model) == plain(base.model)
    assert (cfgs["rows_1024"].data.max_len, cfgs["rows_1024"].data.batch_size) == (1024, 4)
    assert (base.data.max_len, base.data.batch_size) == (256, 16)  # the same 4,096 tokens a step
    ratios = {s.name: s.ratio for s in cfgs["tts_rows_2x"].data.train_sources}
    assert ratios == {"asr": 1.0, "tts": 2.0, "text": 1.0}
    assert cfgs["corpus_tokenizer"].model.backbone.tokenizer == str(tmp_path / "a" / "text_tokenizer")
    assert cfgs["tiny_shape"].model.backbone.config.num_hidden_layers == 4
    assert cfgs["acoustic_codec"].audio.get("codec_kind", "acoustic") != base.audio.codec_kind
    assert cfgs["lr_2e-3"].model.optimizer.lr == 2e-3
    shape = cfgs["shape_8x192"].model.backbone.config
    assert (shape.num_hidden_layers, shape.hidden_size, shape.intermediate_size) == (8, 192, 576)
    big = bench.big_corpus(tmp_path / "a")
    assert (cfgs["corpus_2x"].paths.corpus_dir, cfgs["corpus_2x"].paths.cache_dir) == (f"{big}/corpus", f"{big}/cache")
    assert plain(cfgs["corpus_2x"].data) == plain(base.data)  # the same sources, read from the other corpus
    assert {s.name: s.ratio for s in cfgs["asr_rows_2x"].data.train_sources} == {"asr": 2.0, "tts": 1.0, "text": 1.0}


def test_levers_joined_by_plus_apply_together(bench, tmp_path):
    (_, train, _, _), *_ = bench.commands("corpus_2x+asr_rows_2x", tmp_path / "a", tmp_path / "o", 700, tts=False)
    cfg = compose_cfg(tmp_path, train[train.index("+experiment=demo/align"):])
    assert cfg.paths.corpus_dir == f"{bench.big_corpus(tmp_path / 'a')}/corpus"
    assert cfg.data.train_sources[0].ratio == 2.0 and cfg.trainer.max_steps == 700
    what = bench.lever_spec("corpus_2x+asr_rows_2x")[0]
    assert what == f"{bench.LEVERS['corpus_2x'][0]}; {bench.LEVERS['asr_rows_2x'][0]}"
    with pytest.raises(SystemExit, match="unknown lever.*asr_rows_3x"):
        bench.lever_spec("corpus_2x+asr_rows_3x")


def test_a_run_becomes_a_row_and_missing_artefacts_are_named(bench, tmp_path):
    run = tmp_path / "demo"
    (run / "stages/demo/align").mkdir(parents=True)
    (run / "stages/demo/align/final_metrics.txt").write_text("train/loss\t2.0\nval/loss\t2.5\n")
    (run / "train.log").write_text("step 25/300 1,700 tok/s\nstep 300/300 loss 2.0  2,283 tok/s, eta 0.0 min\n")
    (run / "eval_asr").mkdir()
    (run / "eval_asr/metrics.json").write_text(json.dumps({"modes": {"vanilla": {
        "wer": 0.5, "wer_voice_hibari": 0.4, "wer_voice_espeak": 0.7}}}))
    r = bench.row("demo", run, {"train": 300.0})
    text = bench.table([r], 300, 1)
    assert "| demo | the demo's stage 1 as shipped (at --steps) | 5.0 | 2,283 | 2.000 | 2.500 | 50.0% | 40.0% | " \
           "70.0% | - | - | - |" in text

    with pytest.raises(SystemExit, match=r"train_codec .* audio=builtin"):
        bench.check_artifacts("acoustic_codec", tmp_path)
    (tmp_path / "codec/builtin_semantic").mkdir(parents=True)
    (tmp_path / "cache/builtin_semantic").mkdir(parents=True)
    (tmp_path / "cache/builtin_semantic/meta.json").write_text("{}")
    bench.check_artifacts("demo", tmp_path)
    with pytest.raises(SystemExit, match="vita_audio.cli.text_tokenizer"):
        bench.check_artifacts("corpus_tokenizer", tmp_path)
    hours = 2 * bench.CorpusConfig().hours  # no corpus yet: twice the default
    with pytest.raises(SystemExit, match=rf"vita_audio.data.corpus --hours {hours:g} .* vita_audio.cli.tokenize"):
        bench.check_artifacts("corpus_2x", tmp_path)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus/stats.json").write_text(json.dumps({"config": {"hours": 0.25}}))
    with pytest.raises(SystemExit, match=r"vita_audio.data.corpus --hours 0.5 "):
        bench.check_artifacts("corpus_2x", tmp_path)
