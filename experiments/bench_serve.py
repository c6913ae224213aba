"""Load on the HTTP server: 1, 4 and 16 concurrent streaming speech-to-speech requests.

    python experiments/bench_serve.py [--levels 1,4,16 --rounds 3 --max-tokens 100 --slots 4 --size tiny]
    python experiments/bench_serve.py --no-stop --greedy     # the earlier set-up: every answer max_tokens long

The server is `python serve.py` in a subprocess (its own interpreter, so the clients do not share its GIL) on
127.0.0.1, serving:

    tiny   the tiny preset (Qwen2, hidden 256, 4 layers, 2048 codes) + 10 MCTP modules, random weights, exported
           like a stage; the built-in codec of artifacts/codec/builtin_semantic when it exists, else a random codec of the
           same shape (the table says which)
    test   hidden 64, 2 layers, 32 codes + a random tiny codec (the smoke test)
    --ckpt a trained checkpoint (e.g. artifacts/stages/demo/mctp_all/hf of `make demo`) with the built-in codec of
           artifacts/codec/builtin_semantic: answers that end on their own, as a real server's do

Each level runs `--rounds` waves of `level` requests sent at once (httpx, asyncio), after one warm-up request.
Every request: a spoken question (a corpus test wav, else a synthetic one) as input_audio, modalities text + audio,
pcm16, stream=true, Boost, at most `max_tokens` new tokens, as a real client sends it: the server's stop ids
(`<|im_end|>`, eos: answers end on their own, at different times, inside one batch) and sampling on (the server's
defaults, T 0.7 / top-k 20 / top-p 0.8, one seed per request so a run repeats). `--no-stop` (server.stop_ids=[])
and `--greedy` (temperature 0) give the earlier set-up in which every answer is exactly `max_tokens` long. Measured:

    first audio     client clock: from sending the request to the first SSE delta carrying audio (p50 / p95), over
                    the answers that have audio (an answer may stop before its first code)
    server first    the server's own first_audio_s (admission to first chunk) and queued_s (submission to admission)
    tokens/s        all completion tokens of the level / the level's wall time (waves back to back)
    stopped         answers that ended on a stop id before max_tokens; mean tokens per answer
    errors          non-200 answers, error events, answers with no tokens, more than max_tokens, or
                    `length` answers short of max_tokens
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CODEC = ROOT / "artifacts" / "codec" / "builtin_semantic"
CORPUS_WAVS = ROOT / "artifacts" / "corpus" / "wavs" / "test"
TINY = dict(model_type="qwen2", hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=8192, rope_theta=10000.0, rms_norm_eps=1e-6,
            tie_word_embeddings=False)
TEST = dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False)


def build_artefacts(size: str, out: Path) -> dict:
    """Export a random model of `size` and pick / save its codec; returns paths and words for the table."""
    from vita_audio.audio.builtin import save_codec
    from vita_audio.audio.builtin.config import CodecConfig
    from vita_audio.audio.builtin.model import CodecModel
    from vita_audio.checkpoint import export_pretrained
    from vita_audio.model.backbone import Backbone
    from vita_audio.model.lm import VitaAudioLM
    from vita_audio.model.mctp import MCTPStack

    codebook = 2048 if size == "tiny" else 32
    bb = Backbone(codebook, config=dict(TINY if size == "tiny" else TEST), tokenizer="tiny", seed=0)
    torch.manual_seed(0)
    lm = VitaAudioLM(bb, MCTPStack.for_backbone(bb, 10)).eval()
    hf = export_pretrained(lm, out / "hf", interleave_ratio=[1, 10, 4, 10])
    n = sum(p.numel() for p in lm.parameters()) / 1e6
    if size == "tiny" and (CODEC / "config.json").is_file():
        codec, codec_words = CODEC, f"the built-in codec ({CODEC.relative_to(ROOT)})"
    else:
        cfg = CodecConfig() if size == "tiny" else CodecConfig(codebook_size=32, latent_dim=8, enc_channels=32,
                                                                enc_blocks=1, dec_channels=32, dec_blocks=2,
                                                                gl_iters=4)
        torch.manual_seed(0)
        codec, codec_words = save_codec(CodecModel(cfg).eval(), out / "codec"), "a random codec"
    model_words = {"tiny": "tiny preset (hidden 256, 4 layers, 2048 codes)", "test": "test size (hidden 64, 2 layers)"}
    return {"hf": hf, "codec": codec, "codebook": codebook,
            "words": f"{model_words[size]} + 10 MCTP modules, random weights, {n:.1f} M parameters; {codec_words}"}


def trained_artefacts(ckpt: str) -> dict:
    """A trained checkpoint served with the trained built-in codec (the one it was trained with)."""
    if not (CODEC / "config.json").is_file():
        raise FileNotFoundError(f"--ckpt needs the trained built-in codec at {CODEC} (make demo trains it)")
    codebook = json.loads((CODEC / "config.json").read_text())["codebook_size"]
    return {"hf": Path(ckpt).resolve(), "codec": CODEC, "codebook": codebook,
            "words": f"the trained checkpoint {ckpt}; the built-in codec ({CODEC.relative_to(ROOT)})"}


def question_wav(out: Path) -> tuple[bytes, str]:
    wavs = sorted(CORPUS_WAVS.glob("*question*.wav")) if CORPUS_WAVS.is_dir() else []
    if wavs:
        return wavs[0].read_bytes(), str(wavs[0].relative_to(ROOT))
    from tests.audio.conftest import speechlike
    from vita_audio.audio.io import write_audio

    path = write_audio(out / "question.wav", torch.from_numpy(speechlike(2.0, seed=3)), 16000)
    return path.read_bytes(), "a synthetic 2 s speech-like wav"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(art: dict, slots: int, max_queue: int, threads: int, root: Path,
                 no_stop: bool = False) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    cmd = [sys.executable, "serve.py", f"ckpt_path={art['hf']}", f"port={port}", f"torch_threads={threads}",
           f"paths.root_dir={root}", f"paths.codec_dir={art['codec']}", f"audio.codebook_size={art['codebook']}",
           f"server.slots={slots}", f"server.max_batch={slots}", f"server.max_queue={max_queue}",
           "server.max_tokens=4096", "log_level=warning", *(["server.stop_ids=[]"] if no_stop else [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve.py exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            httpx.get(f"{url}/health", timeout=2)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("serve.py did not answer /health within 180 s")


async def one_request(client, url: str, wav_b64: str, max_tokens: int, mode: str, headers=None,
                      seed: int | None = None, greedy: bool = False) -> dict:
    body = {"model": "vita-audio", "stream": True, "modalities": ["text", "audio"], "audio": {"format": "pcm16"},
            "max_tokens": max_tokens, "mode": mode, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": wav_b64, "format": "wav"}}]}]}
    if greedy:
        body["temperature"] = 0
    elif seed is not None:
        body["seed"] = seed
    t0 = time.perf_counter()
    res = {"first_audio": None, "tokens": 0, "error": None, "server": None, "finish": None}
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
            if r.status_code != 200:
                res["error"] = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return res
            async for line in r.aiter_lines():
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                ev = json.loads(line[5:])
                if "error" in ev:
                    res["error"] = ev["error"]["message"]
                    return res
                if ev.get("usage"):
                    res["tokens"] = ev["usage"]["completion_tokens"]
                if ev.get("vita"):
                    res["server"] = ev["vita"]
                choice = ev["choices"][0] if ev.get("choices") else {}
                res["finish"] = choice.get("finish_reason") or res["finish"]
                if ((choice.get("delta") or {}).get("audio") or {}).get("data") and res["first_audio"] is None:
                    res["first_audio"] = time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - counted as an error of the bench, with its type
        res["error"] = f"{type(err).__name__}: {err}"
    if res["error"] is None:
        n, finish = res["tokens"], res["finish"]
        if not 1 <= n <= max_tokens or finish not in ("stop", "length") or (finish == "length" and n != max_tokens):
            res["error"] = f"{n} tokens (max {max_tokens}), finish_reason {finish!r}"
    return res


async def run_level(url: str, wav_b64: str, level: int, rounds: int, max_tokens: int, mode: str,
                    headers: dict | None = None, greedy: bool = False, seed0: int = 0) -> dict:
    """`rounds` waves of `level` concurrent requests; request i of the level is seeded `seed0 + i`."""
    import httpx

    limits = httpx.Limits(max_connections=level + 4, max_keepalive_connections=level + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        t0, results = time.perf_counter(), []
        for w in range(rounds):
            results += await asyncio.gather(*[one_request(client, url, wav_b64, max_tokens, mode, headers,
                                                          seed0 + w * level + i, greedy) for i in range(level)])
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["error"] is None]
    spoke = [r for r in ok if r["first_audio"] is not None]
    firsts = sorted(r["first_audio"] for r in spoke)
    return {"level": level, "requests": len(results), "errors": len(results) - len(ok),
            "error_samples": [r["error"] for r in results if r["error"]][:3],
            "stopped": sum(r["finish"] == "stop" for r in ok), "no_audio": len(ok) - len(spoke),
            "tokens_mean": statistics.mean(r["tokens"] for r in ok) if ok else float("nan"),
            "first_p50": pct(firsts, 50), "first_p95": pct(firsts, 95),
            "server_first_p50": pct(sorted(r["server"]["first_audio_s"] for r in spoke), 50),
            "queued_p95": pct(sorted(r["server"]["queued_s"] for r in ok), 95),
            "batch_mean": statistics.mean(r["server"]["batch"] for r in ok) if ok else float("nan"),
            "tokens_per_s": sum(r["tokens"] for r in ok) / wall, "wall_s": wall}


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (NaN when empty)."""
    if not xs:
        return float("nan")
    return xs[max(0, min(len(xs) - 1, int(round(q / 100 * len(xs) + 0.5)) - 1))]


def table(rows: list[dict]) -> str:
    out = ["| concurrent | requests | errors | stopped / no audio | mean tokens | first audio p50 | first audio p95 | "
           "server first p50 | queued p95 | mean batch | total tokens/s |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['level']} | {r['requests']} | {r['errors']} | {r['stopped']} / {r['no_audio']} | "
                   f"{r['tokens_mean']:.0f} | {r['first_p50'] * 1e3:.0f} ms | {r['first_p95'] * 1e3:.0f} ms | "
                   f"{r['server_first_p50'] * 1e3:.0f} ms | {r['queued_p95'] * 1e3:.0f} ms | {r['batch_mean']:.1f} | "
                   f"{r['tokens_per_s']:.0f} |")
    return "\n".join(out)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1,4,16", help="concurrent requests per wave, comma list")
    ap.add_argument("--rounds", type=int, default=3, help="waves per level")
    ap.add_argument("--max-tokens", type=int, default=100)
    ap.add_argument("--mode", default="boost")
    ap.add_argument("--slots", type=int, default=4, help="server.slots (and server.max_batch)")
    ap.add_argument("--max-queue", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    ap.add_argument("--size", default="tiny", choices=["tiny", "test"])
    ap.add_argument("--ckpt", default=None, help="serve this trained checkpoint instead of a random --size model")
    ap.add_argument("--no-stop", action="store_true", help="server.stop_ids=[]: every answer max_tokens long")
    ap.add_argument("--greedy", action="store_true", help="temperature 0 instead of the server's sampling")
    ap.add_argument("--json", default=None, help="write the rows here")
    return ap.parse_args(argv)


def main(argv=None, log=print) -> dict:
    args = parse(argv)
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        art = trained_artefacts(args.ckpt) if args.ckpt else build_artefacts(args.size, tmp)
        wav, wav_words = question_wav(tmp)
        wav_b64 = base64.b64encode(wav).decode()
        load_before = uptime()
        proc, url = start_server(art, args.slots, args.max_queue, args.threads, tmp, args.no_stop)
        try:
            asyncio.run(run_level(url, wav_b64, 1, 1, args.max_tokens, args.mode, greedy=args.greedy))  # warm-up
            rows = [asyncio.run(run_level(url, wav_b64, n, args.rounds, args.max_tokens, args.mode,
                                          greedy=args.greedy, seed0=1000 * n)) for n in levels]
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    res = {"rows": rows, "model": art["words"], "input": wav_words, "load_before": load_before,
           "load_after": uptime(), "args": vars(args)}
    stops = "no stop ids (every answer max_tokens long)" if args.no_stop else "the server's stop ids"
    picks = "greedy (temperature 0)" if args.greedy else "sampling on (server defaults, a seed per request)"
    log(f"model: {art['words']}\ninput: {wav_words}\nslots {args.slots}, mode {args.mode}, at most {args.max_tokens} "
        f"tokens per answer, {stops}, {picks}, {args.rounds} waves per level, server torch threads {args.threads}")
    log(f"uptime before: {load_before}\nuptime after:  {res['load_after']}\n")
    log(table(rows))
    by = {r["level"]: r for r in rows}
    if 1 in by:
        res["ratios_vs_1"] = {n: {"first_p95": by[n]["first_p95"] / by[1]["first_p95"],
                                  "tokens_per_s": by[n]["tokens_per_s"] / by[1]["tokens_per_s"]} for n in by if n != 1}
        for n, q in res["ratios_vs_1"].items():
            log(f"at {n} / at 1: p95 first audio x{q['first_p95']:.2f}, total tokens/s x{q['tokens_per_s']:.2f}")
    if 1 in by and 4 in by:
        res["p95_ratio_4_vs_1"] = by[4]["first_p95"] / by[1]["first_p95"]
        log(f"\np95 first audio at 4 / at 1: {res['p95_ratio_4_vs_1']:.2f} (goal <= 2); errors: "
            f"{sum(r['errors'] for r in rows)} (goal 0)")
    for r in rows:
        for e in r["error_samples"]:
            log(f"error at {r['level']}: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
