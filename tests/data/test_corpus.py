"""The offline corpus: a tiny build has valid splits, no test sentence or question occurs in train, builds are
deterministic and resumable; the cache command and the corpus data config work on it end to end. The plan's fact
world and transfer split: test_corpus_plan.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import vita_audio.data.corpus.build as build_mod
from vita_audio.cli.tokenize import main as tokenize_main
from vita_audio.data.corpus import TINY, CorpusConfig, build_corpus, plan_text
from vita_audio.data.prompt import ASR_PROMPT, TTS_PROMPT
from vita_audio.data.records import read_jsonl

CONF = Path(__file__).resolve().parents[2] / "conf"
TASKS = {"asr": ("train", "val", "test"), "tts": ("train", "val", "test"), "sqa": ("train", "val", "test"),
         "text": ("train", "val", "test")}


def texts_of(rec) -> set[str]:
    """The sentences of an ASR / TTS row; the question of a QA row (answers are the facts, shared on purpose)."""
    if rec.extra["task"] in ("sqa", "text"):
        return {rec.extra.get("question") or rec.messages[0][1]}
    out = set()
    for _, c in rec.messages:
        c = c.replace("<|audio|>", "").replace(ASR_PROMPT, "").replace(TTS_PROMPT, "").strip()
        if c:
            out.add(c)
    return out


def test_tiny_build_every_split_valid(tiny_corpus):
    out, stats = tiny_corpus
    texts = {s: set() for s in ("train", "val", "test")}
    for task, splits in TASKS.items():
        for split in splits:
            recs = list(read_jsonl(out / task / f"{split}.jsonl"))  # validates, checks audio files exist
            assert recs, f"{task}/{split} is empty"
            for r in recs:
                assert r.extra["task"] == task
                texts[split] |= texts_of(r)
                for a in r.audios:
                    info = sf.info(a)
                    assert info.samplerate == 16000 and info.channels == 1 and 0.3 < info.duration < 15
                if task in ("sqa", "text"):
                    assert r.extra["answers"] and all(isinstance(x, str) for x in r.extra["answers"])
                    assert r.extra["kind"] in ("open", "yesno") and isinstance(r.extra["transfer"], bool)
                    assert r.extra["transfer"] == (split != "train") or task == "text"  # text/train: every fact
                    assert r.extra["fact_id"].split(":")[0] in ("city", "pet", "color", "job", "keys")
                if task != "text":
                    assert r.extra["voice"] == "hibari" or r.extra["voice"].startswith("espeak-")
    assert not texts["test"] & texts["train"] and not texts["val"] & texts["train"]
    for split in ("val", "test"):  # the spoken val / test questions, asked as text too
        spoken = [r.extra["question"] for r in read_jsonl(out / "sqa" / f"{split}.jsonl")]
        assert [r.messages[0][1] for r in read_jsonl(out / "text" / f"{split}.jsonl")] == spoken
    taught = {r.extra["fact_id"] for r in read_jsonl(out / "text" / "train.jsonl")}
    asked = {r.extra["fact_id"] for s in ("val", "test") for r in read_jsonl(out / "sqa" / f"{s}.jsonl")}
    assert asked <= taught and len(taught) < 100  # the tiny corpus keeps TINY.text_rows, the asked facts first
    assert stats["qa"]["facts"] == 100 and stats["qa"]["test_items"] == TINY.qa_test
    assert stats["files"] == len(list((out / "wavs").rglob("*.wav")))
    assert json.loads((out / "DONE").read_text())["config_hash"] == TINY.digest()


def test_default_plan_sizes_and_sentences_disjoint():
    cfg = CorpusConfig()
    plan = plan_text(cfg)
    assert plan["sentences"] == plan_text(cfg)["sentences"] != plan_text(CorpusConfig(seed=1))["sentences"]
    train = set(plan["sentences"]["train"])
    assert not set(plan["sentences"]["test"]) & train and not set(plan["sentences"]["val"]) & train
    n_sent, n_qa = cfg.item_counts()
    assert len(plan["sentences"]["test"]) >= 40 and len(plan["qa"]["test"]) == cfg.qa_test
    assert len(set(plan["sentences"]["train"])) == len(plan["sentences"]["train"]) >= n_sent * 0.85
    every = sum(len(f.relation.open) + 2 * len(f.relation.yesno) for f in plan["facts"] if f.spoken)  # 500
    # the spoken QA audio budget, test and val included, up to every question about the spoken-trained facts
    assert sum(len(q) for q in plan["qa"].values()) == n_qa < every
    big = CorpusConfig(hours=6.0)
    assert sum(len(q) for q in plan_text(big)["qa"].values()) == every + big.qa_test + big.qa_val < big.item_counts()[1]


def test_done_marker_and_resume(tiny_corpus, monkeypatch, tmp_path):
    out, stats = tiny_corpus

    def no_render(job):
        raise AssertionError("a finished corpus must not be synthesised again")

    monkeypatch.setattr(build_mod, "render", no_render)
    assert build_corpus(out, TINY, jobs=1)["config_hash"] == stats["config_hash"]
    with pytest.raises(FileExistsError, match="--force"):
        build_corpus(out, CorpusConfig(hours=0.05), jobs=1)
    monkeypatch.undo()

    # interrupted build: BUILDING instead of DONE and one file gone -> only that file is synthesised, identically
    victim = sorted((out / "wavs" / "train").glob("*.wav"))[3]
    before = victim.read_bytes()
    victim.unlink()
    (out / "DONE").unlink()
    (out / "BUILDING").write_text(TINY.digest())
    rendered, real = [], build_mod.render

    def counting(job):
        if not Path(job[0]).is_file():
            rendered.append(job[0])
        return real(job)

    monkeypatch.setattr(build_mod, "render", counting)
    build_corpus(out, TINY, jobs=1)
    assert rendered == [str(victim)] and victim.read_bytes() == before and (out / "DONE").is_file()


def test_wav_files_of_another_config_are_never_reused(monkeypatch, tmp_path):
    """Files are reused by name, so a build never runs over the wav files of another config: it refuses them, or
    deletes them with --force (no synthesis here: `render` writes the text it was given, and reuses a file as the
    real one does)."""
    def fake_render(job):
        path = Path(job[0])
        if not path.is_file():
            path.write_text(job[1])
        return 1.0

    monkeypatch.setattr(build_mod, "render", fake_render)
    other = dataclasses.replace(TINY, seed=1)
    build_corpus(tmp_path, TINY, jobs=1)
    (tmp_path / "DONE").unlink()  # an interrupted build of TINY ...
    (tmp_path / "BUILDING").write_text(TINY.digest())
    with pytest.raises(FileExistsError, match="unfinished corpus of another config"):
        build_corpus(tmp_path, other, jobs=1)  # ... is not resumed by another config
    (tmp_path / "BUILDING").unlink()
    with pytest.raises(FileExistsError, match="unknown config"):
        build_corpus(tmp_path, other, jobs=1)
    build_corpus(tmp_path, other, jobs=1, force=True)
    rows = [r for t in ("asr", "sqa") for r in read_jsonl(tmp_path / t / "train.jsonl")]
    for r in rows:
        spoken = r.extra.get("question") or r.messages[1][1]
        assert Path(r.audios[0]).read_text() == spoken  # every file holds its own row's text
    assert not (tmp_path / "BUILDING").exists() and (tmp_path / "DONE").is_file()


def test_tokenize_command_and_corpus_config(tiny_corpus, tok_av, tmp_path):
    out, _ = tiny_corpus
    overrides = [f"paths.corpus_dir={out}", f"paths.cache_dir={tmp_path / 'cache'}", "++data.cache_name=energy",
                 "++audio.tokenizer={_target_: conftest.EnergyTokenizer}", "++audio.codebook_size=1024"]
    sqa = [x for s in ("train", "val") for x in ("--jsonl", str(out / "sqa" / f"{s}.jsonl"))]
    stats = tokenize_main(["--data", "corpus", *sqa, *overrides])
    assert stats["encoded"] == stats["total"] > 0 and stats["failed"] == 0
    manifest = json.loads((tmp_path / "cache" / "energy" / "manifest" / "0-of-1.json").read_text())["entries"]
    assert len(manifest) == stats["total"]  # training takes the content hashes from here
    again = tokenize_main(["--data", "corpus_sft", *overrides])  # a subset: nothing left to encode
    assert again["encoded"] == 0 and again["cached"] == again["total"]
    fresh = tokenize_main(["--data", "corpus", "--jobs", "2", "--rebuild", *overrides])  # 2 processes, shards
    assert fresh["encoded"] == fresh["total"] > 0 and fresh["cached"] == 0
    assert sorted(p.name for p in (tmp_path / "cache" / "energy" / "manifest").iterdir()) == ["0-of-2.json",
                                                                                              "1-of-2.json"]
    tok, av = tok_av
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=corpus", *overrides])
    dm = instantiate(cfg.data, tokenizer=tok, audio_vocab=av, max_len=512, batch_size=2)
    dm.setup("fit")
    assert dm.skip_counts() == {} and len(dm.train_set.store.records) > 50
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (2, 512) and (batch["labels"] != -100).any()


def test_old_tokenize_module_points_to_the_command():
    import runpy

    with pytest.raises(SystemExit, match="python -m vita_audio.cli.tokenize --data"):
        runpy.run_module("vita_audio.data.tokenize", run_name="__main__")
