"""Decoding speed of one model in several decode modes, side by side (the measuring part of
`experiments/bench_decode.py`, also `python eval.py task=speed ckpt_path=...`).

    prompts (TTS prompts of exactly `prefill` tokens) -> for each round, every mode in a rotated order:
        Decoder(...).steps() with a clock read at every step -> Run -> medians over rounds -> one row per mode

Per mode (medians over rounds, so the machine's load hits every mode alike):

    tokens_per_s                 rows x new tokens / time from building the `Decoder` to its last step
    speedup_vs_vanilla           tokens/s over Vanilla's, measured in the same round
    backbone_forwards_per_token  backbone forwards per generated token of a row
    audio_token_share            the share of generated tokens that are audio (codes and the two audio markers)
    backbone_forwards_per_audio_token  backbone steps that emitted an audio token / audio tokens (Vanilla: 1; the
                                 speed-up of the audio spans alone, whatever the text costs)
    first_chunk_s                time to the first decodable audio chunk: the first <|end_of_audio|> of row 0 after
                                 an audio code (a span closed), or the 11th new token if that comes first (1 text
                                 token + <|begin_of_audio|> + 8 codes + <|end_of_audio|>), prefill included
    accepted                     verified mode: mean tokens kept per backbone forward
    tokens_per_answer            new tokens per prompt: with `stop`, each mode's mean answer length (a mode whose
                                 answers run longer on cheap drafted tokens looks faster: read the two together)
    backbone_step_ms             the median single-token backbone step of Vanilla (after the prefill): the unit
    mctp_step_ms                 the mode's median MCTP step (module on the level's backlog + head + sampling)
    mctp_over_backbone_step      r = mctp_step_ms / backbone_step_ms
    ideal_speedup                tokens / (backbone forwards + MCTP steps x r): the speed-up over Vanilla if every
                                 backbone forward cost one single-token step (for a cycle (a, b): (a+b) / (a+b r))
    backbone_forward_ms          the mode's own median backbone step (forwards after an MCTP run consume the run's
                                 tokens at once and cost more than a single-token step: the gap the ideal leaves out)

`clock="wall"` times elapsed seconds; `clock="cpu"` the process's CPU seconds (one torch thread), which other jobs'
load does not inflate: the one to compare shapes or code versions on a shared machine.

Every decode runs `new_tokens` tokens with `stop_ids=[]`, greedy, so all modes do the same amount of work whatever
the model emits. With `stop=True` each mode instead times whole answers: `batch` prompts decoded one at a time until
the answer stops (at most `new_tokens` tokens each), tokens/s over the tokens each mode wrote. That is the speed on
spoken answers of a trained checkpoint; without a stop, what a checkpoint writes after its answer (text, mostly,
which the backbone writes) is timed too. `drafting` ("audio" | "all", `inference/schedule.py`) applies to every mode
but verified.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from vita_audio.data.prompt import TTS_PROMPT, PromptBuilder
from vita_audio.eval.tasks.common import TaskResult, check_modes, resolve_modes
from vita_audio.inference.decoder import Decoder
from vita_audio.inference.schedule import DEFAULT_DRAFTING, check_drafting
from vita_audio.model.lm import VitaAudioLM

HF = "hf_generate"
CHUNK = 11  # the first Boost chunk: 1 text token + <boa> + 8 codes + <eoa>

SENTENCES = [
    "The capital of Greece is Athens, an old city by the sea.",
    "Rain fell softly on the roofs of the quiet mountain village.",
    "She opened the window and listened to the birds in the garden.",
    "Our train leaves at seven, so please be at the station early.",
    "A good cup of tea can make a cold morning feel much warmer.",
    "The little boat drifted slowly across the calm blue lake.",
    "He wrote a long letter to his friend who lived far away.",
    "Every autumn the leaves turn red and gold in the old park.",
]


def make_prompts(lm: VitaAudioLM, batch: int, length: int) -> torch.Tensor:
    """`batch` TTS prompts of exactly `length` tokens (ChatML, the demo's training format): (B, length)."""
    builder = PromptBuilder(lm.backbone.tokenizer, lm.backbone.audio_vocab)
    rows = []
    for i in range(batch):
        words = SENTENCES[i % len(SENTENCES)].split()
        ids = None
        for n in range(len(words), 0, -1):  # the longest prefix of the sentence that fits ...
            text = " ".join(words[:n])
            for pad in range(0, 40):  # ... then filler until it is exactly `length` tokens
                cand = builder.generation_prompt([("user", f"{TTS_PROMPT}\n{text}{'!' * pad}")])
                if len(cand) >= length:
                    break
            if len(cand) == length:
                ids = cand
                break
        if ids is None:
            raise ValueError(f"no prompt of exactly {length} tokens")
        rows.append(ids)
    return torch.tensor(rows, dtype=torch.long)


# -- one run ---------------------------------------------------------------------------------------------------
@dataclass
class Run:
    total: float  # seconds, prefill included
    first_chunk: float  # seconds until row 0's first <eoa> or its CHUNK-th new token, the earlier (nan if neither)
    first_chunk_decode: float  # the same, after the prefill (from the first new token on)
    tokens: int  # new tokens summed over rows
    forwards: int
    mctp_steps: int
    accepted: list[int] = field(default_factory=list)
    times: dict[str, list[float]] = field(default_factory=dict)  # per-step seconds by kind (prefill apart)
    audio_tokens: int = 0  # generated tokens that are audio codes or markers, summed over rows
    audio_forwards: int = 0  # of those, the ones a backbone step emitted


def run_mode(lm: VitaAudioLM, ids: torch.Tensor, mode: str, new_tokens: int,
             restrict_mctp: bool | str = True, drafting: str = DEFAULT_DRAFTING,
             clock: Callable[[], float] = time.perf_counter, stop: bool = False) -> Run:
    """One timed decode of `ids` (B, T) in `mode`; verified mode, and every mode with `stop` (each row until its
    answer stops, at most `new_tokens`), decode the rows one at a time. `clock`: see `CLOCKS`."""
    verify = mode == "verified"
    av = lm.backbone.audio_vocab
    markers = torch.tensor([av.begin_of_audio, av.end_of_audio])
    rows = [ids[i : i + 1] for i in range(ids.shape[0])] if verify or stop else [ids]
    times: dict[str, list[float]] = {"prefill": [], "M": [], "m": [], "cycle": []}
    first = first_dec = float("nan")
    forwards = mctp = audio = audio_forwards = tokens = codes = 0  # codes: row 0's audio codes so far
    accepted: list[int] = []
    t0 = clock()
    for r, row in enumerate(rows):
        dec = Decoder(lm, row, schedule="turbo" if verify else mode, max_new_tokens=new_tokens,
                      stop_ids=None if stop else [], verify=verify, restrict_mctp=restrict_mctp, drafting=drafting)
        last, n, steps = clock(), 0, []
        for step in dec.steps():
            now = clock()
            steps.append(step)
            n += 1
            if n == 1:
                times["prefill"].append(now - last)
            elif verify:
                if now - last > 1e-4:  # the first token of a cycle carries the cycle's cost; the rest are free
                    times["cycle"].append(now - last)
            else:
                times[step.kind].append(now - last)
            if r == 0 and n == 1:
                t1 = now
            if r == 0 and first != first:  # until row 0's first chunk: a span closed after a code, or CHUNK
                codes += bool(av.is_audio(step.tokens[:1])[0])
                if n == CHUNK or (codes and int(step.tokens[0]) == av.end_of_audio):
                    first, first_dec = now - t0, now - t1
            last = now
        forwards += dec.backbone_forwards
        mctp += dec.mctp_steps
        for step in steps:  # after the clock: which emitted tokens are audio, and which came from the backbone
            is_audio = av.is_audio(step.tokens) | torch.isin(step.tokens, markers.to(step.tokens.device))  # (B,)
            audio += int(is_audio.sum())
            audio_forwards += int((is_audio & (step.modules < 0)).sum())
        accepted += dec.accepted
        if n != new_tokens and not (stop and 0 < n < new_tokens):
            raise RuntimeError(f"{mode}: decoded {n} tokens, expected {new_tokens}")
        tokens += n * row.shape[0]
    total = clock() - t0
    return Run(total, first, first_dec, tokens, forwards, mctp, accepted, times, audio, audio_forwards)


def run_hf(lm: VitaAudioLM, ids: torch.Tensor, new_tokens: int, clock: Callable[[], float] = time.perf_counter) -> Run:
    """`transformers`' own greedy `generate` on the backbone, the same number of tokens."""
    model = lm.backbone.model
    tok = lm.backbone.tokenizer
    t0 = clock()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                             eos_token_id=None, top_k=None, top_p=None, temperature=None)
    total = clock() - t0
    if out.shape[1] - ids.shape[1] != new_tokens:
        raise RuntimeError(f"transformers generate gave {out.shape[1] - ids.shape[1]} tokens, not {new_tokens}")
    return Run(total, float("nan"), float("nan"), new_tokens * ids.shape[0], new_tokens, 0)


# -- a batch block ---------------------------------------------------------------------------------------------
def bench(lm: VitaAudioLM, batch: int, modes: list[str], rounds: int, new_tokens: int, prefill: int,
          log: Callable[[str], None] = print, restrict_mctp: bool | str = True,
          compare_hf: bool = True, drafting: str = DEFAULT_DRAFTING,
          clock: Callable[[], float] = time.perf_counter, stop: bool = False) -> dict[str, list[Run]]:
    """Warm-up, then `rounds` rounds of every mode (and `transformers` generate), the order rotated each round;
    `stop`: every row decoded alone until its answer stops (no `transformers` generate)."""
    if stop and compare_hf:
        raise ValueError("stop=True (task.stop) times each mode's own answers: transformers generate cannot be "
                         "compared there; set compare_hf=False (task.compare_hf=false)")
    ids = make_prompts(lm, batch, prefill)
    order = [*modes, HF] if compare_hf else list(modes)
    warm = min(new_tokens, CHUNK + 2)  # the prefill, a whole MCTP run and the forward after it

    def once(mode: str, n: int) -> Run:
        if mode == HF:
            return run_hf(lm, ids, n, clock)
        return run_mode(lm, ids, mode, n, restrict_mctp, drafting, clock, stop)  # warm-up too: the same path

    for mode in order:  # warm-up (allocator, lazy inits, first-call paths), untimed
        once(mode, warm)
    runs: dict[str, list[Run]] = {m: [] for m in order}
    for rnd in range(rounds):
        k = rnd % len(order)
        for mode in order[k:] + order[:k]:  # rotate the order each round
            run = once(mode, new_tokens)
            runs[mode].append(run)
            log(f"  round {rnd} batch {batch} {mode:>11}: {run.tokens / run.total:8.1f} tok/s  "
                f"({run.total:.2f} s)")
    return runs


def med(xs) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def split(rs: list[Run]) -> dict[str, float]:
    """Where a decode's time goes (medians over rounds): prefill, backbone steps, MCTP steps (seconds, counts)."""
    return dict(total=med([r.total for r in rs]), prefill=med([sum(r.times["prefill"]) for r in rs]),
                M=med([sum(r.times["M"]) for r in rs]), n_M=len(rs[0].times["M"]),
                m=med([sum(r.times["m"]) for r in rs]), n_m=len(rs[0].times["m"]),
                cycle=med([sum(r.times["cycle"]) for r in rs]), n_cycle=len(rs[0].times["cycle"]))


def summarize(size: str, label: str, batch: int, runs: dict[str, list[Run]], stop: bool = False) -> list[dict]:
    """One row per mode (medians over rounds) and one for `transformers` generate when it ran.

    Needs Vanilla among the modes (every ratio is over it) and Turbo beside verified (verified borrows Turbo's r).
    `stop`: the runs decoded their rows one at a time (forwards and MCTP steps are already per row's token)."""
    van = runs["vanilla"]
    c_M = med([med(r.times["M"]) for r in van])  # one single-token backbone step (s)
    tps = {m: med([r.tokens / r.total for r in rs]) for m, rs in runs.items()}
    ratio = {m: med([r.tokens / r.total / (v.tokens / v.total) for r, v in zip(rs, van)]) for m, rs in runs.items()}
    r_mode: dict[str, float] = {}
    for m, rs in runs.items():
        if m not in (HF, "vanilla", "verified"):
            r_mode[m] = med([med(r.times["m"]) for r in rs]) / c_M
    r_mode["vanilla"] = float("nan")
    rows = []
    for m, rs in runs.items():
        if m == HF:
            continue
        r0 = rs[0]
        alone = stop or m == "verified"  # rows decoded one at a time: forwards counted per row
        per_row = r0.tokens / batch if m != "verified" else r0.tokens  # verified counts forwards over all rows
        r = r_mode.get("turbo" if m == "verified" else m, float("nan"))
        forwards = r0.forwards / r0.tokens * (1 if alone else batch)
        mctp = r0.mctp_steps / r0.tokens * (1 if alone else batch)
        ideal = 1.0 if m == "vanilla" else 1.0 / (forwards + mctp * r)
        acc = med([sum(x.accepted) / len(x.accepted) for x in rs]) if r0.accepted else float("nan")
        M_mode = med([med(x.times["M"]) for x in rs]) if m != "verified" else float("nan")  # this mode's own
        M_rel = M_mode / c_M
        rows.append(dict(size=size, model=label, batch=batch, mode=m, tok_s=tps[m], forwards_per_token=forwards,
                         mctp_per_token=mctp, first_chunk_s=med([x.first_chunk for x in rs]),
                         first_chunk_rel=med([x.first_chunk / v.first_chunk for x, v in zip(rs, van)]),
                         first_chunk_decode_s=med([x.first_chunk_decode for x in rs]),
                         first_chunk_decode_rel=med([x.first_chunk_decode / v.first_chunk_decode
                                                     for x, v in zip(rs, van)]),
                         split=split(rs),
                         r=r, M_rel=M_rel, ideal=ideal, achieved=ratio[m], frac_ideal=ratio[m] / ideal,
                         accepted=acc, rounds=len(rs), prefill_s=med([med(x.times["prefill"]) for x in rs]),
                         step_M_ms=c_M * 1e3, step_M_mode_ms=M_mode * 1e3,
                         step_m_ms=med([med(x.times["m"]) for x in rs]) * 1e3, per_row=per_row,
                         answer_tokens=r0.tokens / batch,
                         audio_share=r0.audio_tokens / r0.tokens,
                         forwards_per_audio=r0.audio_forwards / r0.audio_tokens if r0.audio_tokens else float("nan")))
    if HF in runs:
        rows.append(dict(size=size, model=label, batch=batch, mode="transformers generate", tok_s=tps[HF],
                         forwards_per_token=1.0, achieved=ratio[HF], rounds=len(runs[HF]),
                         vanilla_over_hf=med([(v.tokens / v.total) / (h.tokens / h.total)
                                              for v, h in zip(van, runs[HF])])))
    return rows


def bench_modes(modes: Sequence[str]) -> list[str]:
    """The modes to time: the asked ones, plus Vanilla (every ratio's base) and Turbo before verified."""
    modes = [str(m) for m in modes]
    if "vanilla" not in modes:
        modes.insert(0, "vanilla")
    if "verified" in modes and "turbo" not in modes:
        modes.insert(modes.index("verified"), "turbo")
    return modes


def load_average() -> str:
    import os

    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# -- the eval task ---------------------------------------------------------------------------------------------
KEYS = {"tok_s": "tokens_per_s", "achieved": "speedup_vs_vanilla", "forwards_per_token": "backbone_forwards_per_token",
        "mctp_per_token": "mctp_steps_per_token", "audio_share": "audio_token_share",
        "forwards_per_audio": "backbone_forwards_per_audio_token", "first_chunk_s": "first_chunk_s",
        "first_chunk_rel": "first_chunk_vs_vanilla", "ideal": "ideal_speedup", "accepted": "accepted",
        "step_M_ms": "backbone_step_ms", "step_m_ms": "mctp_step_ms", "r": "mctp_over_backbone_step",
        "step_M_mode_ms": "backbone_forward_ms", "answer_tokens": "tokens_per_answer"}
CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,  # elapsed time: what a user waits (the machine's load included)
    "cpu": time.process_time,  # CPU seconds of this process: the work alone, robust to other jobs' load; with
    #                            one torch thread (threads=1), else idle worker threads' spinning counts too
}


def run_speed(lm: VitaAudioLM, modes: Sequence[str] = ("vanilla", "boost", "turbo", "verified"), batch: int = 1,
              rounds: int = 3, new_tokens: int = 165, prefill: int = 32, mctp_head: str = "span",
              compare_hf: bool = False, threads: int | None = None, log: Callable[[str], None] | None = None,
              label: str = "checkpoint", drafting: str | None = None, clock: str = "wall", stop: bool = False,
              **_) -> TaskResult:
    """The decoding benchmark's figures for one model, as an evaluation task (metrics per mode).

    mctp_head: "span" (restricted MCTP heads inside audio spans: the decoder's default, right for a trained
    checkpoint), "always" (restricted at every MCTP step) or "full". drafting: "audio" | "all" (None = the
    decoder's default); a random-weight model never opens an audio span, so it shows MCTP speed only with "all".
    clock: "wall" | "cpu" (`CLOCKS`). stop: time whole answers, `batch` prompts one at a time until each stops (at
    most `new_tokens`), instead of `new_tokens` with no stop in a batch (the module docstring).

    Beside the measured speed-up, the ideal one from the measured step costs: `backbone_step_ms` (the median
    single-token backbone step of Vanilla, after the prefill: the unit), `mctp_step_ms` (the median MCTP step of
    the mode: its module on the level's backlog, head, sampling), `mctp_over_backbone_step` r (their ratio) and
    `ideal_speedup` = tokens / (backbone forwards + MCTP steps x r): the speed-up if every backbone forward cost
    one single-token step. `backbone_forward_ms` is the mode's own median backbone step (after an MCTP run a
    forward consumes the run's tokens at once; what that costs beyond a single-token step is the gap the ideal
    leaves out)."""
    heads = {"span": True, "always": "always", "full": False}
    if mctp_head not in heads:
        raise ValueError(f"mctp_head must be one of {', '.join(heads)}, got {mctp_head!r}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if rounds < 1 or new_tokens < 1 or batch < 1:
        raise ValueError(f"rounds, new_tokens and batch must be >= 1 (got {rounds}, {new_tokens}, {batch})")
    asked = check_modes(modes, lm.num_mctp_modules)
    timed = bench_modes(asked)
    drafting = check_drafting(DEFAULT_DRAFTING if drafting is None else drafting)
    resolve_modes(timed, lm, drafting)  # a drafting the model cannot honour fails before any timing
    if threads:
        torch.set_num_threads(int(threads))
    load_start = load_average()
    t0 = time.perf_counter()
    runs = bench(lm, batch, timed, rounds, new_tokens, prefill, log=log or (lambda *a: None),
                 restrict_mctp=heads[mctp_head], compare_hf=compare_hf, drafting=drafting, clock=CLOCKS[clock],
                 stop=stop)
    rows = summarize("ckpt", label, batch, runs, stop)
    result = TaskResult("speed", info={"batch": batch, "rounds": rounds, "new_tokens": new_tokens,
                                       "prefill_tokens": prefill, "mctp_head": mctp_head, "drafting": drafting,
                                       "clock": clock, "stop": bool(stop),
                                       "torch_threads": torch.get_num_threads(), "load_average_start": load_start,
                                       "load_average_end": load_average(),
                                       "wall_s": round(time.perf_counter() - t0, 2)})
    for d in rows:
        mode = "transformers_generate" if d["mode"] == "transformers generate" else d["mode"]
        if mode not in asked and mode != "transformers_generate":
            continue
        metrics = {}
        for k, name in KEYS.items():
            v = d.get(k)
            if v is not None and v == v:  # drop NaN (e.g. accepted outside verified mode)
                metrics[name] = float(v)
        result.metrics[mode] = metrics
        result.predictions.append({"mode": mode, **{k: v for k, v in d.items() if k not in ("model", "size")}})
    return result
