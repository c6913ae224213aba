"""The Plus recipes train on the tiny corpus (fast_dev_run, each stage from its predecessor), keep the encoder
frozen bit for bit, publish reference-layout exports, and the stage-4 export transcribes (ASR) on CPU."""

from pathlib import Path

import hydra
import pytest
import torch

from tests.conftest import TEST_SIZE, compose_cfg, corpus_overrides
from tests.training.helpers import fit
from vita_audio.audio.io import read_audio
from vita_audio.checkpoint import load_pretrained
from vita_audio.data.prompt import ASR_PROMPT, PromptBuilder
from vita_audio.inference.decoder import Decoder
from vita_audio.inference.generate import run_decoder

FDR = ["trainer=cpu", "model/backbone=tiny", "trainer.fast_dev_run=true", "audio.codebook_size=64", *TEST_SIZE,
       "callbacks.publish_stage.force=true", "data.max_len=512",
       # a narrower tiny encoder still (the default is already CPU-sized)
       "model.audio_encoder.output_size=32", "model.audio_encoder.linear_units=32", "model.audio_encoder.num_blocks=1"]


def _encoder_state(model):
    return {k: v.clone() for k, v in model.lm.audio_encoder.state_dict().items()}


VANILLA = pytest.param(["plus_vanilla_stage1", "plus_vanilla_stage4"], marks=pytest.mark.slow)


@pytest.mark.parametrize("chain", [["plus_stage1", "plus_stage2", "plus_stage3", "plus_stage4"], VANILLA])
def test_plus_chain_trains_frozen_encoder_and_decodes(tmp_path, tiny_corpus_cache, chain):
    overrides = corpus_overrides(tiny_corpus_cache)  # the feature cache fills beside the tiny corpus' token cache
    encoder_before = None
    for name in chain:
        cfg = compose_cfg(tmp_path, [f"+experiment={name}", *FDR, *overrides])
        model, trainer, losses = fit(cfg)
        assert len(losses) == 1 and torch.isfinite(torch.tensor(losses)).all(), name
        lm = model.lm
        assert lm.is_plus and not any(p.requires_grad for p in lm.audio_encoder.parameters()), name
        adapter_trains = any(p.requires_grad for p in lm.audio_adapter.parameters())
        assert adapter_trains == (name.endswith(("stage1", "stage4"))), name  # frozen with the LLM in 2 and 3
        state = _encoder_state(model)
        if encoder_before is None:  # stage 1 trained one step with everything else: the encoder did not move
            fresh = hydra.utils.instantiate(cfg.model.audio_encoder).state_dict()
            assert all(torch.equal(state[k], fresh[k]) for k in fresh), name
        else:  # loaded from the predecessor and never changed: bit-identical
            assert state.keys() == encoder_before.keys()
            assert all(torch.equal(state[k], encoder_before[k]) for k in state), name
        encoder_before = state
        published = Path(cfg.callbacks.publish_stage.dirpath)
        assert (published / "final.ckpt").is_file() and (published / "hf" / "am.mvn").is_file(), name

    # ASR with the last stage's export: a continuous-audio prompt, the frames scattered at the prefill
    lm = load_pretrained(published / "hf")
    assert all(torch.equal(lm.audio_encoder.state_dict()[k], encoder_before[k]) for k in encoder_before)
    corpus = Path(tiny_corpus_cache[0])
    wav_path = sorted((corpus / "wavs").rglob("*.wav"))[0]
    wav, sr = read_audio(wav_path, lm.audio_encoder.sample_rate)
    frames = lm.encode_audio(wav, sr)
    prompt = PromptBuilder(lm.backbone.tokenizer, lm.backbone.audio_vocab).generation_prompt(
        [("user", f"{ASR_PROMPT}\n<|audio|>")], [frames])
    assert prompt.count(lm.backbone.audio_vocab.context) == frames.shape[0]
    out = run_decoder(Decoder(lm, [prompt], schedule="boost" if lm.num_mctp_modules else "vanilla",
                              max_new_tokens=12, audio_features=frames))
    assert 1 <= out.lengths[0] <= 12 and out.backbone_forwards >= 1
    text = lm.backbone.tokenizer.decode(out.rows()[0], skip_special_tokens=True)
    assert isinstance(text, str)

    # the user-facing path: load_model reads the stage's final.ckpt (encoder rebuilt from the training config) and
    # its hf/ export alike, and SpeechLM transcribes the wav through the encoder (no audio tokenizer)
    from vita_audio.inference import SpeechLM, load_model

    schedule = "boost" if lm.num_mctp_modules else "vanilla"
    by_ckpt, by_hf = (SpeechLM(load_model(published / kind)).run("asr", wav_path, schedule=schedule,
                                                                 max_new_tokens=12, stop_ids=[])
                      for kind in ("final.ckpt", "hf"))
    assert by_ckpt.tokens == by_hf.tokens and len(by_hf.tokens) == 12
