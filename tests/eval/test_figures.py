"""Evaluation figures mean what their names say (issue 20, fault 6): one normaliser per figure, each row scored by its
language, too-short input counted, per-sample seeds, injective file names, modes resolved as infer.py does, one
meaning per speed column, and a TTS baseline on the same samples as the model's figure."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from tests.audio.conftest import speechlike
from tests.eval.conftest import ParrotJudge, ScriptedSpeech, SlowDetokenizer, WholeFramesTokenizer
from tests.inference.conftest import tiny_lm
from vita_audio.audio.io import write_audio
from vita_audio.eval.adapters import EvalSample, SpokenQA
from vita_audio.eval.columns import COLUMNS
from vita_audio.eval.filenames import safe_name
from vita_audio.eval.tasks import run_asr, run_sqa, run_tts
from vita_audio.eval.tasks.common import save_wav
from vita_audio.inference import Sampling, SpeechLM
from vita_audio.inference.generate import default_schedule
from vita_audio.inference.schedule import resolve_decode

SPEED_COLUMNS = {"lm_tokens_per_s", "e2e_tokens_per_s", "backbone_forwards_per_token"}


def asr_samples(*rows: tuple[str, str, str]) -> list[EvalSample]:
    """(id, reference, language) -> samples whose audio path is `<id>.wav` (the scripted answers' key)."""
    return [EvalSample(id=i, text=t, audio=Path(f"{i}.wav"), language=lang) for i, t, lang in rows]


def test_per_sample_and_corpus_wer_use_one_normaliser(world):
    samples = asr_samples(("a", "Hello, World.", "en"), ("b", "good night", "en"))
    speech = ScriptedSpeech(world[1], {"a.wav": "hello world", "b.wav": "good night"})
    res = run_asr(speech, samples, normalizer="none")
    per = [p["error_rate"] for p in res.predictions]
    assert per == [1.0, 0.0]  # "none" keeps case and punctuation, per sample as in the corpus
    assert res.metrics["vanilla"]["wer"] == pytest.approx((1.0 * 2 + 0.0 * 2) / 4)
    res = run_asr(speech, samples, normalizer="seed_tts")
    assert [p["error_rate"] for p in res.predictions] == [0.0, 0.0] and res.metrics["vanilla"]["wer"] == 0.0


def test_mixed_language_set_scores_each_row_by_its_language(world):
    samples = asr_samples(("en", "hello world", "en"), ("zh", "今天天气很好", "zh"))
    speech = ScriptedSpeech(world[1], {"en.wav": "hello word", "zh.wav": "今天天汽很好。"})
    res = run_asr(speech, samples, normalizer="seed_tts")
    m = res.metrics["vanilla"]
    assert m["wer"] == pytest.approx(1 / 2) and m["cer"] == pytest.approx(1 / 6)  # each over its own rows
    assert res.info["wer_samples"] == 1 and res.info["cer_samples"] == 1
    assert [(p["metric"], p["error_rate"]) for p in res.predictions] == [("wer", 0.5), ("cer", pytest.approx(1 / 6))]


def test_a_clip_too_short_for_one_code_is_a_failed_sample(world, tmp_path):
    root, speech, _, _, codec = world
    short = tmp_path / "short.wav"
    write_audio(short, torch.from_numpy(speechlike(0.02, seed=4)), 16000)  # 320 samples: under one 40-ms frame
    strict = SpeechLM(speech.lm, WholeFramesTokenizer(codec), speech.detokenizer)
    samples = [EvalSample(id="ok", text="seven times five", audio=root / "wavs" / "u0.wav"),
               EvalSample(id="short", text="hello there", audio=short, answers=("hello",))]
    res = run_asr(strict, samples, max_new_tokens=4)
    m = res.metrics["vanilla"]
    assert m["failed"] == 1 and m["wer"] >= 2 / 5  # scored as deletions, kept in the denominator
    assert "too short" in res.predictions[1]["error"] and res.predictions[0]["error"] is None
    res = run_sqa(strict, samples[1:], ParrotJudge("hello"), max_new_tokens=4)
    assert res.metrics["vanilla"]["failed"] == 1 and res.metrics["vanilla"]["s2t_accuracy"] == 0.0
    texts = [EvalSample(id="blank", text=" "), EvalSample(id="ok", text="hello there")]  # a text with nothing to say
    res = run_tts(strict, texts, ParrotJudge("hello there"), max_new_tokens=4)
    assert res.metrics["vanilla"]["failed"] == 1 and "non-empty text" in res.predictions[0]["error"]


def test_sampled_eval_seeds_each_sample_by_its_id(world):
    root, speech = world[0], world[1]
    sampling = Sampling(seed=5, temperature=1.0, top_k=0, top_p=1.0)
    scripted = ScriptedSpeech(speech, {"a.wav": "x", "b.wav": "y"})
    run_asr(scripted, asr_samples(("a", "x", "en"), ("b", "y", "en")), sampling=sampling)
    run_asr(scripted, asr_samples(("b", "y", "en"), ("a", "x", "en")), sampling=sampling)
    seeds = [(c["input"], c["sampling"].seed) for c in scripted.calls]
    assert seeds[0] == seeds[3] and seeds[1] == seeds[2]  # a sample's seed is the same in any order
    assert seeds[0][1] != seeds[1][1] and 5 not in {s for _, s in seeds}  # its own stream, not the run's
    # the same audio under two ids: two draws; the same id again: the same draw
    same = [EvalSample(id=i, text="x", audio=root / "wavs" / "u0.wav") for i in ("q1", "q2", "q1")]
    got = [p["prediction"] for p in run_asr(speech, same, max_new_tokens=8, sampling=sampling).predictions]
    assert got[0] != got[1] and got[0] == got[2]


def test_sample_ids_map_to_distinct_files(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    import soundfile as sf

    ids = ["a/b", "a_b", "a:b", "a%3Ab", "", "x" * 300, "x" * 299 + "y"]
    assert len({safe_name(i) for i in ids}) == len(ids) and all("/" not in safe_name(i) for i in ids)
    wav = torch.from_numpy(speechlike(0.2, 0))
    paths = {save_wav(tmp_path / "audio", "boost", i, wav, 16000) for i in ids}
    assert len(paths) == len(ids) and all(Path(p).is_file() for p in paths)
    blobs = []
    for seed in (1, 2):
        buf = io.BytesIO()
        sf.write(buf, speechlike(0.2, seed), 16000, format="WAV")
        blobs.append(buf.getvalue())
    pq.write_table(pa.table({"id": ["a/b", "a_b"], "question": ["q", "q"],
                             "audio": [{"path": None, "bytes": b} for b in blobs], "answers": [["x"], ["y"]]}),
                   tmp_path / "qa.parquet")
    s1, s2 = SpokenQA(tmp_path / "qa.parquet").samples()
    assert s1.audio != s2.audio and [s1.audio.read_bytes(), s2.audio.read_bytes()] == blobs


def test_modes_resolve_as_infer_and_the_server_do(world):
    lm = tiny_lm(num_modules=10)
    speech = ScriptedSpeech(world[1], {"a.wav": "hello"})
    speech.lm = lm
    res = run_asr(speech, asr_samples(("a", "hello", "en")), modes=["vanilla", "Turbo", "verified"])
    want = {m: resolve_decode(m, None, default_schedule(lm), lm.num_mctp_modules)
            for m in ("vanilla", "turbo", "verified")}
    assert [(c["schedule"], c["verify"]) for c in speech.calls] == [(d.schedule, d.verify) for d in want.values()]
    assert res.info["decodes"]["verified"] == {"schedule": [1, 10, 4, 10], "verify": True}  # the stored default
    assert list(res.metrics) == ["vanilla", "turbo", "verified"]
    assert all(c["sampling"] == Sampling(do_sample=False) for c in speech.calls)  # greedy, no penalty passed
    with pytest.raises(ValueError, match="unknown decode mode 'warp'"):
        run_asr(speech, [], modes=["warp"])


def test_speed_columns_mean_one_thing_in_every_task(world):
    root, speech, _, _, codec = world
    slow = SpeechLM(speech.lm, speech.tokenizer, SlowDetokenizer(codec))
    scripted = ScriptedSpeech(slow, {"a.wav": "hello", "hello there": "hello there"}, audio=True)
    tts = run_tts(scripted, [EvalSample(id="t", text="hello there")], ParrotJudge("hello there"))
    m = tts.metrics["vanilla"]
    # 8 codec pushes of 20 ms each: in the end-to-end figure, never in the LM's (10 tokens in < 160 ms of LM work)
    assert m["e2e_tokens_per_s"] < 10 / (8 * SlowDetokenizer.delay) < m["lm_tokens_per_s"]
    asr = run_asr(scripted, asr_samples(("a", "hello", "en")))
    sqa = run_sqa(scripted, [EvalSample(id="q", text="hello", audio=Path("a.wav"), answers=("hello",))],
                  ParrotJudge("hello"))
    for res in (asr, tts, sqa):
        keys = set(res.metrics["vanilla"])
        assert SPEED_COLUMNS <= keys and keys <= set(COLUMNS), (res.task, keys - set(COLUMNS))
    assert "first_audio_s" in tts.metrics["vanilla"] and "first_audio_s" not in asr.metrics["vanilla"]


def test_tts_baseline_and_model_figure_cover_the_same_samples(world, tmp_path):
    root, speech = world[0], world[1]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000")
    samples = [EvalSample(id="1", text="hello there", ref_audio=root / "wavs" / "u1.wav"),
               EvalSample(id="2", text="good morning"),  # no original recording
               EvalSample(id="3", text="hello there", ref_audio=broken)]  # an original that cannot be read
    scripted = ScriptedSpeech(speech, {s.text: "" for s in samples}, audio=True)
    res = run_tts(scripted, samples, ParrotJudge("hello there"))
    assert res.info["baseline_samples"] == 1 and res.info["baseline_unreadable"] == 1
    assert res.info["judge_wer_on_original_audio"] == 0.0
    m = res.metrics["vanilla"]
    assert m["judge_wer"] == pytest.approx(2 / 6)  # "good morning" heard as "hello there": 2 of 6 words
    assert m["judge_wer_on_baseline_samples"] == 0.0  # sample 1 alone, as the baseline
