"""Build the offline English speech corpus: text plan (`plan.py`) -> synthesis -> VITA jsonl splits.

    out/
      asr/{train,val,test}.jsonl    "Convert the speech to text.\\n<|audio|>" -> transcript
      tts/{train,val,test}.jsonl    "Convert the text to speech.\\n<text>"     -> <|audio|> (hibari voice)
      sqa/{train,val,test}.jsonl    <|audio|> (question)                        -> "answer\\n<|audio|>"  (+ "answers")
      text/{train,val,test}.jsonl   question (text)                             -> answer (text; + "answers")
      wavs/<split>/*.wav            16 kHz mono 16-bit; paths in the jsonl are relative to the jsonl's folder
      stats.json, DONE              DONE holds the config hash: a rebuild with the same config is skipped
      BUILDING                      the config hash of a build in progress (an interrupted one resumes)

Spoken and text QA rows carry "fact_id" ("city:Anna"), "kind" ("open" | "yesno") and "transfer" (true: a question
about a text-only fact, never asked in speech in training). sqa/train holds questions about the spoken-trained facts;
sqa/{val,test} ask about the text-only facts in speech, text/{val,test} ask the same questions as text, and
text/train teaches every fact as text (`facts.py`, `plan.py`). ASR / TTS sentences are split per sentence, and no
val or test sentence occurs in train.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

from vita_audio.data.corpus.config import SPLITS, CorpusConfig
from vita_audio.data.corpus.facts import QA
from vita_audio.data.corpus.plan import plan_text
from vita_audio.data.corpus.synth import HIBARI, random_espeak_voice, render
from vita_audio.data.prompt import ASR_PROMPT, TTS_PROMPT

log = logging.getLogger(__name__)


def _seed(cfg: CorpusConfig, name: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{cfg.seed}:{name}".encode(), digest_size=4).digest(), "big")


def qa_fields(item: QA) -> dict:
    """The fields of a QA row that say which fact it asks about and how (the eval reports per subset)."""
    return {"fact_id": item.fact_id, "kind": item.kind, "transfer": item.transfer}


def qa_stats(plan: dict) -> dict:
    """Facts and questions of the plan: the split of the facts, the test's make-up, the thinnest word coverage."""
    facts = plan["facts"]
    test = plan["qa"]["test"]
    kinds = Counter(q.label for q in test)
    return {"facts": len(facts), "spoken_trained_facts": sum(f.spoken for f in facts),
            "text_only_facts": sum(not f.spoken for f in facts),
            "test_items": len(test), "test_open": kinds["open"], "test_yes": kinds["yes"], "test_no": kinds["no"],
            "test_facts": len({q.fact_id for q in test}), "spoken_train_items": len(plan["qa"]["train"]),
            "spoken_train_facts": len({q.fact_id for q in plan["qa"]["train"]}),
            "min_test_word_coverage": min(plan["coverage"].values(), default=0)}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def claim(out: Path, digest: str, force: bool) -> dict | None:
    """Make `out` ready for a build of config `digest`: the stats of a finished build of it (nothing to do), else
    None with `out/BUILDING` holding `digest`. Wav files are reused by name, so files of another or an unknown config
    (a finished or interrupted build of another config, or a folder without markers) are a `FileExistsError`, or
    deleted with `force`: a file name never hands one text's audio to another."""
    done, building = out / "DONE", out / "BUILDING"
    info = json.loads(done.read_text()) if done.is_file() else None
    owner = info.get("config_hash") if info else building.read_text().strip() if building.is_file() else None
    if info and owner == digest and not force:
        log.info("corpus at %s is complete (config %s): nothing to do", out, digest)
        return info["stats"]
    if owner != digest and (info or (out / "wavs").exists()):
        what = f"{'a' if info else 'an unfinished'} corpus of another config ({owner} != {digest})" if owner else \
            "wav files of an unknown config (no DONE or BUILDING marker)"
        if not force:
            raise FileExistsError(f"{out} holds {what}: pass --force to rebuild it, or choose another --out")
        log.warning("%s holds %s: deleting its wav files (--force)", out, what)
        shutil.rmtree(out / "wavs", ignore_errors=True)
    done.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    building.write_text(digest + "\n")
    return None


def build_corpus(out_dir: str | Path, cfg: CorpusConfig = CorpusConfig(), jobs: int = 2, force: bool = False) -> dict:
    """Synthesise the corpus into `out_dir` (skipped when `out_dir/DONE` holds this config's hash).

    An interrupted build (`out_dir/BUILDING` holds its config's hash) resumes: finished wav files are kept and not
    synthesised again. Returns the stats."""
    out = Path(out_dir)
    finished = claim(out, cfg.digest(), force)
    if finished is not None:
        return finished
    t0 = time.time()
    plan = plan_text(cfg)
    rng = random.Random(cfg.seed + 1)
    jobs_list: list[tuple] = []
    records: dict[tuple[str, str], list[dict]] = defaultdict(list)
    index: dict[str, int] = {}  # relative path -> job

    def job(split: str, name: str, text: str, voice) -> str:
        path = out / "wavs" / split / f"{name}_{voice.tag}.wav"
        rel = os.path.relpath(path, out / "asr")  # every jsonl folder is one level below out/
        if rel not in index:
            index[rel] = len(jobs_list)
            jobs_list.append((str(path), text, voice, _seed(cfg, name + voice.tag), cfg.sample_rate))
        return rel

    for split in SPLITS:
        (out / "wavs" / split).mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(plan["sentences"][split]):
            name = f"{split}_s{i:05d}"
            rel = job(split, name, text, HIBARI)
            records["tts", split].append({"messages": [
                {"role": "user", "content": f"{TTS_PROMPT}\n{text}"}, {"role": "assistant", "content": "<|audio|>"}],
                "audios": [rel], "task": "tts", "voice": HIBARI.tag})
            voices = [HIBARI] + ([random_espeak_voice(rng)] if rng.random() < cfg.espeak_fraction else [])
            for v in voices:
                rel = job(split, name, text, v)
                records["asr", split].append({"messages": [
                    {"role": "user", "content": f"{ASR_PROMPT}\n<|audio|>"}, {"role": "assistant", "content": text}],
                    "audios": [rel], "task": "asr", "voice": v.tag})
        for i, item in enumerate(plan["qa"][split]):
            name = f"{split}_q{i:05d}"
            qv = HIBARI if rng.random() < 0.5 else random_espeak_voice(rng)
            q_rel = job(split, name + "_question", item.question, qv)
            a_rel = job(split, name + "_answer", item.answer, HIBARI)
            records["sqa", split].append({"messages": [
                {"role": "user", "content": "<|audio|>"},
                {"role": "assistant", "content": f"{item.answer}\n<|audio|>"}],
                "audios": [q_rel, a_rel], "task": "sqa", "question": item.question,
                "answers": list(item.aliases), "voice": qv.tag, **qa_fields(item)})
        records["text", split] = [{"messages": [{"role": "user", "content": it.question},
                                                {"role": "assistant", "content": it.answer}],
                                   "task": "text", "answers": list(it.aliases), **qa_fields(it)}
                                  for it in plan["text_qa"][split]]

    secs = _run_jobs(jobs_list, jobs)
    for (task, split), rows in records.items():
        _write_jsonl(out / task / f"{split}.jsonl", rows)
    hours: dict[str, float] = defaultdict(float)  # audio referenced by each task (ASR and TTS share files)
    for (task, split), rows in records.items():
        for r in rows:
            hours[f"{task}/{split}"] += sum(secs[index[a]] for a in r.get("audios", [])) / 3600
    stats = {
        "config": asdict(cfg), "config_hash": cfg.digest(), "files": len(jobs_list),
        "hours_total": round(sum(secs) / 3600, 4),
        "hours": {k: round(v, 4) for k, v in sorted(hours.items())},
        "records": {f"{t}/{s}": len(r) for (t, s), r in sorted(records.items())},
        "qa": qa_stats(plan),
        "build_seconds": round(time.time() - t0, 1), "jobs": jobs,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "DONE").write_text(json.dumps({"config_hash": cfg.digest(), "stats": stats}, indent=1))
    (out / "BUILDING").unlink()
    return stats


def _run_jobs(jobs_list: list[tuple], jobs: int) -> list[float]:
    if jobs <= 1:
        return [render(j) for j in jobs_list]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(jobs) as pool:
        return list(pool.imap(render, jobs_list, chunksize=8))
