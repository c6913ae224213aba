"""Build the offline English speech corpus: text plan -> synthesis -> VITA jsonl splits.

    out/
      asr/{train,val,test}.jsonl    "Convert the speech to text.\\n<|audio|>" -> transcript
      tts/{train,val,test}.jsonl    "Convert the text to speech.\\n<text>"     -> <|audio|> (hibari voice)
      sqa/{train,val,test}.jsonl    <|audio|> (question)                        -> "answer\\n<|audio|>"  (+ "answers")
      text/train.jsonl              text-only questions and answers (train groups only)
      wavs/<split>/*.wav            16 kHz mono 16-bit; paths in the jsonl are relative to the jsonl's folder
      stats.json, DONE              DONE holds the config hash: a rebuild with the same config is skipped

Splits are decided per *group* (a sentence, or all questions about one fact / one arithmetic problem) by a hash
of (seed, group), and a text is never used in two splits: no test or val sentence occurs in train.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from vita_audio.data.corpus.synth import HIBARI, random_espeak_voice, render
from vita_audio.data.corpus.templates import QA, fact_table, qa_item, sentence
from vita_audio.data.prompt import ASR_PROMPT, TTS_PROMPT

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CORPUS_VERSION = 1  # bump when the builder's output changes for the same config


@dataclass(frozen=True)
class CorpusConfig:
    """Sizes and mix. `hours` is the approximate total audio (all splits, all tasks)."""

    hours: float = 1.5
    seed: int = 0
    eval_fraction: float = 0.05  # share of items in val, and again in test
    min_eval: int = 4  # at least this many sentences and questions in val and in test
    espeak_fraction: float = 0.5  # sentences also spoken by a random espeak voice (extra ASR inputs)
    qa_share: float = 0.3  # share of the audio that is spoken QA
    text_qa_factor: float = 4.0  # text-only QA items per spoken train QA item
    sample_rate: int = 16000

    def digest(self) -> str:
        blob = json.dumps({**asdict(self), "version": CORPUS_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def quotas(self, n: int) -> dict[str, int]:
        ev = max(self.min_eval, round(n * self.eval_fraction))
        return {"train": max(1, n - 2 * ev), "val": ev, "test": ev}

    def item_counts(self) -> tuple[int, int]:
        """(sentences, spoken QA items) for `hours` at about 2.6 s a sentence, 4.3 s a QA pair."""
        sec = self.hours * 3600
        n_sent = int(sec * (1 - self.qa_share) / (2.6 * (1 + self.espeak_fraction)))
        n_qa = int(sec * self.qa_share / 4.3)
        return max(n_sent, 1), max(n_qa, 1)


TINY = CorpusConfig(hours=0.03, min_eval=2)


def split_of(group: str, seed: int, eval_fraction: float) -> str:
    u = int.from_bytes(hashlib.blake2b(f"{seed}:{group}".encode(), digest_size=8).digest(), "big") / 2**64
    return "test" if u < eval_fraction else "val" if u < 2 * eval_fraction else "train"


class _Claims:
    """Texts already used and their split: a text may appear in one split only."""

    def __init__(self) -> None:
        self.split: dict[str, str] = {}

    def free(self, texts: tuple[str, ...], split: str) -> bool:
        return all(self.split.get(t, split) == split for t in texts)

    def take(self, texts: tuple[str, ...], split: str) -> None:
        for t in texts:
            self.split[t] = split


def plan_text(cfg: CorpusConfig) -> dict:
    """The corpus as text: {"sentences": {split: [text]}, "qa": {split: [QA]}, "text_qa": [QA]} (no audio)."""
    rng = random.Random(cfg.seed)
    facts = fact_table()
    claims = _Claims()
    n_sent, n_qa = cfg.item_counts()
    sentences: dict[str, list[str]] = {s: [] for s in SPLITS}
    for f in facts:  # every fact is stated in train, so held-out questions about it are answerable
        sentences["train"].append(f.statement)
        claims.take((f.statement,), "train")
    quota = cfg.quotas(n_sent + len(facts))
    seen: set[str] = set(sentences["train"])
    for _ in range(200 * sum(quota.values())):
        if all(len(sentences[s]) >= quota[s] for s in SPLITS):
            break
        _, text = sentence(rng)
        split = split_of(text, cfg.seed, cfg.eval_fraction)
        if text in seen or len(sentences[split]) >= quota[split] or not claims.free((text,), split):
            continue
        seen.add(text)
        claims.take((text,), split)
        sentences[split].append(text)

    qa: dict[str, list[QA]] = {s: [] for s in SPLITS}
    quota = cfg.quotas(n_qa)
    seen_q: set[str] = set()
    for _ in range(200 * sum(quota.values())):
        if all(len(qa[s]) >= quota[s] for s in SPLITS):
            break
        item = qa_item(rng, facts)
        split = split_of(item.group, cfg.seed, cfg.eval_fraction)
        texts = (item.question, item.answer)
        if item.question in seen_q or len(qa[split]) >= quota[split] or not claims.free(texts, split):
            continue
        seen_q.add(item.question)
        claims.take(texts, split)
        qa[split].append(item)
    short = {s: f"{len(sentences[s])}/{len(qa[s])}" for s in SPLITS if not sentences[s] or not qa[s]}
    if short:
        log.warning("corpus plan: some splits are empty (sentences/qa): %s", short)

    text_qa: list[QA] = list(qa["train"])
    for _ in range(int(cfg.text_qa_factor * len(qa["train"])) * 20):
        if len(text_qa) >= (1 + cfg.text_qa_factor) * len(qa["train"]):
            break
        item = qa_item(rng, facts)
        texts = (item.question, item.answer)
        if split_of(item.group, cfg.seed, cfg.eval_fraction) != "train" or item.question in seen_q:
            continue
        if not claims.free(texts, "train"):
            continue
        seen_q.add(item.question)
        claims.take(texts, "train")
        text_qa.append(item)
    return {"sentences": sentences, "qa": qa, "text_qa": text_qa}


def _seed(cfg: CorpusConfig, name: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{cfg.seed}:{name}".encode(), digest_size=4).digest(), "big")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def build_corpus(out_dir: str | Path, cfg: CorpusConfig = CorpusConfig(), jobs: int = 2, force: bool = False) -> dict:
    """Synthesise the corpus into `out_dir` (skipped when `out_dir/DONE` holds this config's hash).

    Interrupted builds resume: finished wav files are kept and not synthesised again. Returns the stats."""
    out = Path(out_dir)
    done = out / "DONE"
    if done.is_file() and not force:
        info = json.loads(done.read_text())
        if info.get("config_hash") == cfg.digest():
            log.info("corpus at %s is complete (config %s): nothing to do", out, cfg.digest())
            return info["stats"]
        raise FileExistsError(
            f"{out} holds a corpus of another config ({info.get('config_hash')} != {cfg.digest()}): "
            "pass --force to rebuild it, or choose another --out")
    done.unlink(missing_ok=True)
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
                "answers": list(item.aliases), "voice": qv.tag})
    records["text", "train"] = [{"messages": [{"role": "user", "content": it.question},
                                              {"role": "assistant", "content": it.answer}],
                                 "task": "text", "answers": list(it.aliases)} for it in plan["text_qa"]]

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
        "build_seconds": round(time.time() - t0, 1), "jobs": jobs,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    done.write_text(json.dumps({"config_hash": cfg.digest(), "stats": stats}, indent=1))
    return stats


def _run_jobs(jobs_list: list[tuple], jobs: int) -> list[float]:
    if jobs <= 1:
        return [render(j) for j in jobs_list]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(jobs) as pool:
        return list(pool.imap(render, jobs_list, chunksize=8))
