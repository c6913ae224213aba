import pytest
import torch

from vita_audio.audio.io import AudioError
from vita_audio.eval.metrics import wer


def test_wer():
    assert wer(["the cat sat"], ["The cat, sat."]) == 0.0  # default normaliser: seed_tts
    assert wer(["the cat sat"], ["The cat, sat."], "none") == pytest.approx(3 / 3)
    assert wer(["the cat sat", "a b"], ["the sat", "a b c"]) == pytest.approx(2 / 5)
    assert wer([""], [""]) == 0.0
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])


def test_pocketsphinx_transcribes_tts_speech():
    pytest.importorskip("pocketsphinx")
    hibari = pytest.importorskip("hibari")
    from vita_audio.eval.judges import PocketSphinxJudge

    torch.set_num_threads(1)
    text = "the old man walked to the store in the morning"
    wav = torch.from_numpy(hibari.Hibari()(text, seed=0))  # 24 kHz: the judge resamples
    judge = PocketSphinxJudge()
    hyp = judge.transcribe(wav, 24000)
    assert wer([text], [hyp]) <= 0.3, hyp
    assert judge.transcribe(wav, 24000) == hyp  # deterministic, decoder reusable
    with pytest.raises(AudioError, match="silent"):
        judge.transcribe(torch.zeros(16000), 16000)
