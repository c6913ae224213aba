"""A Plus checkpoint through the user-facing paths: `load_model` -> `SpeechLM` (asr / s2s read the input wav with
the checkpoint's own encoder, no audio tokenizer), `python infer.py` and `python eval.py task=asr`."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.audio.conftest import TINY as TINY_CODEC
from tests.audio.conftest import speechlike
from tests.eval.conftest import eval_cli
from tests.inference.conftest import tiny_lm
from tests.model.test_plus import plus_lm
from vita_audio.audio.builtin import BuiltinDetokenizer, save_codec
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.audio.io import read_audio, write_audio
from vita_audio.checkpoint import export_pretrained
from vita_audio.cli.common import CONFIG_DIR
from vita_audio.data.prompt import ASR_PROMPT, PromptBuilder
from vita_audio.inference import SpeechLM, load_model
from vita_audio.inference.decoder import Decoder
from vita_audio.inference.generate import run_decoder

GREEDY = dict(max_new_tokens=10, stop_ids=[])


@pytest.fixture(scope="module")
def plus(tmp_path_factory):
    root = tmp_path_factory.mktemp("plus_routing")
    hf = export_pretrained(plus_lm(num_modules=10), root / "hf", interleave_ratio=[1, 4])
    wav = write_audio(root / "q.wav", torch.from_numpy(speechlike(0.8, seed=5)), 16000)
    torch.manual_seed(0)
    codec_dir = save_codec(CodecModel(TINY_CODEC).eval(), root / "codec")
    return root, hf, wav, codec_dir


def _by_hand(lm, wav_path, schedule) -> list[int]:
    """The ASR decode written out: encoder frames, one placeholder each, scattered at the prefill."""
    wav, sr = read_audio(wav_path, lm.audio_encoder.sample_rate)
    frames = lm.encode_audio(wav, sr)
    prompt = PromptBuilder(lm.backbone.tokenizer, lm.backbone.audio_vocab).generation_prompt(
        [("user", f"{ASR_PROMPT}\n<|audio|>")], [frames])
    assert prompt.count(lm.backbone.audio_vocab.context) == frames.shape[0] > 0
    return run_decoder(Decoder(lm, [prompt], schedule=schedule, audio_features=frames, **GREEDY)).rows()[0]


@pytest.mark.parametrize("schedule", ["vanilla", "boost"])
def test_speechlm_reads_input_audio_with_the_encoder(plus, schedule):
    _, hf, wav, _ = plus
    lm = load_model(hf)
    assert lm.is_plus
    speech = SpeechLM(lm)  # no audio tokenizer: a Plus model does not need one for its input audio
    assert speech.is_plus and speech.input_sample_rate == lm.audio_encoder.sample_rate
    ids, frames = speech.inputs("asr", wav)
    assert frames is not None and ids.count(lm.backbone.audio_vocab.context) == frames.shape[0]
    out = speech.run("asr", wav, schedule=schedule, **GREEDY)
    assert out.tokens == _by_hand(lm, wav, schedule)
    # frames computed beforehand give the same answer; frames of the wrong width are refused
    assert speech.run("asr", frames, schedule=schedule, **GREEDY).tokens == out.tokens
    with pytest.raises(ValueError, match="width"):
        speech.inputs("asr", torch.zeros(5, frames.shape[1] + 1))
    # tts has no input audio: no frames
    assert speech.inputs("tts", "hello")[1] is None


def test_s2s_on_a_plus_model_speaks_through_the_codec(plus):
    _, hf, wav, codec_dir = plus
    speech = SpeechLM(load_model(hf), detokenizer=BuiltinDetokenizer(str(codec_dir)))
    out = speech.run("s2s", wav, schedule="boost", max_new_tokens=24, stop_ids=[])
    assert len(out.tokens) == 24


def test_inputs_a_model_cannot_read_are_clear_errors(plus):
    _, _, wav, _ = plus
    discrete = SpeechLM(tiny_lm())
    with pytest.raises(ValueError, match="not a Plus variant"):  # frames to a model without an encoder
        discrete.inputs("asr", torch.zeros(4, 32))
    with pytest.raises(ValueError, match="audio tokenizer"):
        discrete.inputs("asr", wav)
    with pytest.raises(ValueError, match="not a Plus variant"):
        Decoder(tiny_lm(), [[1, 2, 3]], audio_features=torch.zeros(1, 32), schedule="vanilla",
                max_new_tokens=2)


def test_infer_cli_on_a_plus_checkpoint_needs_no_codec_for_asr(plus, tmp_path):
    from vita_audio.cli.infer import infer

    root, hf, wav, _ = plus
    overrides = [f"paths.root_dir={root}", f"paths.codec_dir={tmp_path / 'no_codec_here'}", "stop_ids=[]",
                 "max_new_tokens=10", "task=asr", f"ckpt_path={hf}", f"input={wav}", "sampling.do_sample=false",
                 "sampling.repetition_penalty=1.0", "mode=vanilla"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="infer", overrides=overrides)
    cfg.paths.output_dir = str(tmp_path / "out")
    (tmp_path / "out").mkdir()
    result = infer(cfg)
    info = json.loads((tmp_path / "out" / "result.json").read_text())
    assert info["input_audio"] == "encoder frames" and info["text"] == result.text
    assert result.tokens == _by_hand(load_model(hf), wav, "vanilla")


def test_eval_asr_on_a_plus_checkpoint(plus, tmp_path):
    root, hf, wav, codec_dir = plus
    rows = [{"messages": [{"role": "user", "content": f"{ASR_PROMPT}\n<|audio|>"},
                          {"role": "assistant", "content": "seven times five"}], "audios": [str(wav)], "task": "asr"}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = ["task=asr", f"ckpt_path={hf}", "dataset=vita_jsonl", f"dataset.path={tmp_path / 'test.jsonl'}",
                 f"paths.codec_dir={codec_dir}", "task.modes=[vanilla,boost]", "task.max_new_tokens=8"]
    metrics, saved = eval_cli(tmp_path, overrides)
    assert set(saved["modes"]) == {"vanilla", "boost"}
    for mode in ("vanilla", "boost"):
        assert saved["modes"][mode]["wer"] == metrics[f"{mode}/wer"] >= 0.0
    preds = (tmp_path / "out").rglob("*.jsonl")
    assert any(p.read_text().strip() for p in preds)


def test_generate_batches_plus_rows_and_verifies_them(plus):
    """Two Plus prompts of different lengths in one batch: each row's frames at its own placeholders (row-major),
    so the batch equals the rows one by one; verified greedy decoding equals Vanilla's, row by row."""
    from vita_audio.inference.generate import generate

    _, hf, wav, _ = plus
    lm = load_model(hf)
    speech = SpeechLM(lm)
    one = speech.inputs("asr", wav)
    two = speech.inputs("s2s", (torch.from_numpy(speechlike(0.5, seed=9)), 16000))
    assert len(one[0]) != len(two[0])
    frames = torch.cat([one[1], two[1]])
    alone = [generate(lm, [ids], schedule="vanilla", audio_features=f, **GREEDY).rows()[0] for ids, f in (one, two)]
    batch = generate(lm, [one[0], two[0]], schedule="vanilla", audio_features=frames, **GREEDY).rows()
    assert batch == alone
    verified = generate(lm, [one[0], two[0]], schedule="boost", verify=True, audio_features=frames, **GREEDY)
    assert verified.rows() == alone
    with pytest.raises(ValueError, match="encoder frame"):
        generate(lm, [one[0], two[0]], schedule="boost", verify=True, audio_features=one[1], **GREEDY)
