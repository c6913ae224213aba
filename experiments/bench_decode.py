"""Decoding speed of every mode, side by side: Vanilla, Balance, Boost, Turbo (and verified) vs `transformers`.

Models (`--sizes`):

    tiny         the `make demo` checkpoint (artifacts/stages/demo/mctp_all/hf) if it exists, else the tiny preset
                 (Qwen2, hidden 256, 4 layers, 2048 codes) with random weights; the table says which
    tiny-random  the tiny preset with random weights, whatever exists on disk
    0.5b         random weights in the Qwen2.5-0.5B shape: Qwen2, 24 layers, hidden 896, 14 heads / 2 KV heads,
                 intermediate 4864, tied embeddings resized to 168,072 rows (the real head), 16,384 audio codes
                 (the real restricted-head size), N = 10 MCTP modules
    test         hidden 64, 2 layers, 64 codes, N = 10 (the smoke test)
    LxH          random weights, L layers x hidden H (e.g. 16x128: 4 heads / 2 KV heads, intermediate 3H, 2,048
                 codes, N = 10), to compare shapes (`experiments/bench_shapes.py` runs several with training
                 throughput)

Each size runs batch 1 and 8 (`--batch`), fp32, 2 threads, 32-token prompts (TTS prompts of the tiny tokenizer),
`--new-tokens` (165) new tokens, greedy, `stop_ids=[]`. Within one size the modes run in rounds, the order rotated
each round, and the table gives medians over rounds, so the machine's load hits every mode alike.

Measured per mode (one `Decoder(...).steps()` iterator, a clock read at every step):

    tokens/s             rows x new tokens / wall time from building the `Decoder` to its last step (prefill included)
    forwards/token       backbone forwards per generated token of a row
    first chunk          time to the first decodable audio chunk: until the 11th new token (the first Boost chunk:
                         1 text token + <|begin_of_audio|> + 8 codes + <|end_of_audio|>), prefill included
    r = m / M            one MCTP step (model call, head, sampling) over one single-token backbone step: medians of the
                         per-step times of this mode's "m" steps and of Vanilla's "M" steps after the prefill.
                         Verified mode has no per-step split (its tokens arrive per cycle): it uses Turbo's r
    ideal                tokens / (backbone forwards + MCTP steps x r): the speed-up over Vanilla if every backbone
                         forward cost one single-token step and every MCTP step r (for a repeating cycle (a, b):
                         (a + b) / (a + b r))
    achieved, % ideal    tokens/s over Vanilla's tokens/s, and that over the ideal
    accepted             verified mode: mean tokens kept per backbone forward (GenerationOutput.mean_accepted)

Vanilla is also compared with `transformers`' own greedy `generate` on the same backbone
(`max_new_tokens = min_new_tokens = new tokens`). Verified mode decodes rows one by one (`generate` does so too).

    python experiments/bench_decode.py [--sizes tiny,0.5b --batch 1,8 --rounds 3 --rounds-big 2 --new-tokens 165
                                        --out experiments/plots/bench_decode.png --profile boost --clock wall]

`--clock cpu` times the process's CPU seconds (with `--threads 1`): other jobs on a shared machine do not inflate
them.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import subprocess
import time
from pathlib import Path

import torch

# the measuring part lives in the package (also `python eval.py task=speed`); re-exported here for the CLI and tests
from vita_audio.eval.tasks.speed import (  # noqa: F401
    CHUNK, HF, SENTENCES, Run, make_prompts, med, run_hf, split, summarize)
from vita_audio.eval.tasks.speed import bench as _bench
from vita_audio.eval.tasks.speed import run_mode as _run_mode
from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.mctp import MCTPStack

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "artifacts" / "stages" / "demo" / "mctp_all" / "hf"
MODES = ["vanilla", "balance", "boost", "turbo", "verified"]

TINY = dict(model_type="qwen2", hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=8192, rope_theta=10000.0, rms_norm_eps=1e-6,
            tie_word_embeddings=False)
TEST = dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False)
QWEN05 = dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
              num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
              rms_norm_eps=1e-6, tie_word_embeddings=True)
QWEN05_VOCAB = 168_072

# -- models ----------------------------------------------------------------------------------------------------
def build_model(size: str) -> tuple[VitaAudioLM, str]:
    """A model in eval mode and the words naming it in the table."""
    if size == "tiny" and (DEMO / "config.json").is_file():
        from vita_audio.checkpoint import load_pretrained

        lm = load_pretrained(str(DEMO), dtype=torch.float32).eval()
        return lm, f"demo checkpoint ({DEMO.relative_to(ROOT)}), {_params(lm)}"
    if size in ("tiny", "tiny-random"):
        lm = _random(TINY, 2048, None)
        return lm, f"tiny preset, random weights (hidden 256, 4 layers, 2048 codes), {_params(lm)}"
    if size == "test":
        lm = _random(TEST, 64, None)
        return lm, f"test size, random weights (hidden 64, 2 layers, 64 codes), {_params(lm)}"
    if re.fullmatch(r"\d+x\d+", size):
        lm = _random(shape_config(size), 2048, None)
        return lm, f"{size} shape, random weights, {_params(lm)}"
    if size == "0.5b":
        lm = _random(QWEN05, 16384, QWEN05_VOCAB)
        return lm, f"Qwen2.5-0.5B shape, random weights (24 layers, hidden 896, vocab 168,072, 16,384 codes), " \
            f"{_params(lm)}"
    raise ValueError(f"unknown size {size!r}: tiny, tiny-random, 0.5b, test or LAYERSxHIDDEN (e.g. 16x128)")


def shape_config(name: str) -> dict:
    """'16x128' -> a Qwen2 config: 16 layers, hidden 128, 4 heads / 2 KV heads, intermediate 3 x 128."""
    layers, hidden = (int(x) for x in name.lower().split("x"))
    if hidden % 4 or layers < 1:
        raise ValueError(f"shape {name!r}: hidden must be a multiple of the 4 attention heads, layers >= 1")
    return dict(TINY, hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers)


def _params(lm: VitaAudioLM) -> str:
    bb = sum(p.numel() for p in lm.backbone.parameters())
    mctp = sum(p.numel() for p in lm.mctp.parameters()) if lm.mctp is not None else 0
    return f"{bb / 1e6:.1f} M + {lm.num_mctp_modules} MCTP modules {mctp / 1e6:.1f} M parameters"


def _random(config: dict, codebook: int, vocab: int | None) -> VitaAudioLM:
    bb = Backbone(codebook, config=dict(config), tokenizer="tiny", seed=0)
    if vocab is not None:
        bb.model.resize_token_embeddings(vocab, mean_resizing=False)
    torch.manual_seed(0)
    return VitaAudioLM(bb, MCTPStack.for_backbone(bb, 10)).eval()


# -- output ----------------------------------------------------------------------------------------------------
def _f(x, fmt: str, unit: str = "") -> str:
    return "" if x is None or x != x else format(x, fmt) + unit


def table(rows: list[dict]) -> str:
    """The main table: one line per size, batch and mode."""
    out = ["| size | batch | mode | tokens/s | vs Vanilla | forwards / token | first chunk (s) | vs Vanilla | "
           "first chunk after prefill (s) | vs Vanilla | r = m / M | ideal | % of ideal | accepted |",
           "|" + "---|" * 3 + "---:|" * 11]
    for d in rows:
        frac = d.get("frac_ideal")
        out.append("| " + " | ".join([
            d["size"], str(d["batch"]), d["mode"], _f(d["tok_s"], ",.2f"), _f(d.get("achieved"), ".2f", "x"),
            _f(d.get("forwards_per_token"), ".3f"), _f(d.get("first_chunk_s"), ".3f"),
            _f(d.get("first_chunk_rel"), ".3f", "x"), _f(d.get("first_chunk_decode_s"), ".3f"),
            _f(d.get("first_chunk_decode_rel"), ".3f", "x"), _f(d.get("r"), ".3f"),
            _f(d.get("ideal"), ".2f", "x"), _f(None if frac is None else 100 * frac, ".0f", "%"),
            _f(d.get("accepted"), ".2f")]) + " |")
    return "\n".join(out)


def split_table(rows: list[dict]) -> str:
    """Where each decode's time goes: prefill, backbone ("M") and MCTP ("m") steps, medians over rounds."""
    out = ["| size | batch | mode | total (s) | prefill (s) | backbone steps: n, s, ms each, x Vanilla's | "
           "MCTP steps: n, s, ms each | verified cycles: n, s |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for d in rows:
        sp = d.get("split")
        if not sp:
            continue
        M = f"{sp['n_M']}, {sp['M']:.2f}, {1e3 * sp['M'] / sp['n_M']:.1f}, {d['M_rel']:.2f}" if sp["n_M"] else ""
        m = f"{sp['n_m']}, {sp['m']:.2f}, {1e3 * sp['m'] / sp['n_m']:.1f}" if sp["n_m"] else ""
        c = f"{sp['n_cycle']}, {sp['cycle']:.2f}" if sp["n_cycle"] else ""
        out.append(f"| {d['size']} | {d['batch']} | {d['mode']} | {sp['total']:.2f} | {sp['prefill']:.2f} | {M} | "
                   f"{m} | {c} |")
    return "\n".join(out)


def goals(rows: list[dict]) -> list[str]:
    """The issue's goals, at the 0.5B shape, batch 1 (when that block ran)."""
    b = {d["mode"]: d for d in rows if d["size"] == "0.5b" and d["batch"] == 1}
    if not b:
        return []
    out = []

    def check(name, ok, text):
        out.append(f"- [{'x' if ok else ' '}] {name}: {text}")

    check("Turbo >= 3x Vanilla", b["turbo"]["achieved"] >= 3, f"{b['turbo']['achieved']:.2f}x")
    check("Boost >= 2.5x Vanilla", b["boost"]["achieved"] >= 2.5, f"{b['boost']['achieved']:.2f}x")
    check("Boost first chunk <= 0.25x Vanilla's", b["boost"]["first_chunk_rel"] <= 0.25,
          f"{b['boost']['first_chunk_rel']:.3f}x ({b['boost']['first_chunk_s']:.2f} s vs "
          f"{b['vanilla']['first_chunk_s']:.2f} s)")
    for m in ("balance", "boost", "turbo", "verified"):
        if m in b:
            check(f"{m} >= 80% of its ideal", b[m]["frac_ideal"] >= 0.8,
                  f"{100 * b[m]['frac_ideal']:.0f}% ({b[m]['achieved']:.2f}x of {b[m]['ideal']:.2f}x)")
    hf = b["transformers generate"]
    check("Vanilla >= transformers generate", hf["vanilla_over_hf"] >= 1.0,
          f"{hf['vanilla_over_hf']:.2f}x ({b['vanilla']['tok_s']:.2f} vs {hf['tok_s']:.2f} tok/s)")
    return out


def run_mode(lm: VitaAudioLM, ids: torch.Tensor, mode: str, new_tokens: int) -> Run:
    # random weights never open an audio span: the MCTP steps write whatever comes next, as in the reference
    return _run_mode(lm, ids, mode, new_tokens, restrict_mctp=MCTP_HEAD[0], drafting="all", clock=CLOCK[0])


def bench(lm: VitaAudioLM, batch: int, modes: list[str], rounds: int, new_tokens: int, prefill: int,
          log=print) -> dict[str, list[Run]]:
    return _bench(lm, batch, modes, rounds, new_tokens, prefill, log=log, restrict_mctp=MCTP_HEAD[0], drafting="all",
                  clock=CLOCK[0])


def plot(rows: list[dict], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[dev]')")
        return None
    blocks = sorted({(d["size"], d["batch"]) for d in rows}, key=lambda x: (x[0] != "tiny", x))
    fig, axes = plt.subplots(2, len(blocks), figsize=(3.2 * len(blocks), 5.6), squeeze=False)
    for j, (size, batch) in enumerate(blocks):
        ds = [d for d in rows if d["size"] == size and d["batch"] == batch]
        names = [d["mode"].replace("transformers generate", "HF gen") for d in ds]
        ax = axes[0, j]
        ax.bar(names, [d["achieved"] for d in ds], color="tab:blue", label="achieved")
        ax.scatter(names, [d.get("ideal", float("nan")) for d in ds], color="tab:red", marker="_", s=300,
                   label="ideal", zorder=3)
        ax.set_title(f"{size}, batch {batch}", fontsize=9)
        ax.set_ylabel("speed-up over Vanilla" if j == 0 else "")
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        if j == 0:
            ax.legend(fontsize=7)
        ax = axes[1, j]
        fc = [(n, d["first_chunk_rel"]) for n, d in zip(names, ds) if d.get("first_chunk_rel") is not None]
        ax.bar([n for n, _ in fc], [v for _, v in fc], color="tab:green")
        ax.axhline(0.25, color="grey", linestyle=":", linewidth=1)
        ax.set_ylabel("first audio chunk, x Vanilla's" if j == 0 else "")
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def profile(lm: VitaAudioLM, ids: torch.Tensor, mode: str, new_tokens: int, top: int = 25) -> str:
    """cProfile of one decode (cumulative time, the top entries)."""
    pr = cProfile.Profile()
    pr.enable()
    run_mode(lm, ids, mode, new_tokens)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# -- CLI -------------------------------------------------------------------------------------------------------
# how MCTP steps pick their head (`Decoder(restrict_mctp=...)`): random weights never open an audio span, so the
# default "always" emulates a trained Boost checkpoint, whose MCTP runs are audio spans (restricted heads)
MCTP_HEAD = ["always"]
CLOCK = [time.perf_counter]  # `--clock`: elapsed time, or the process's CPU time


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="tiny,0.5b", help="comma list of tiny, tiny-random, 0.5b, test, LxH")
    ap.add_argument("--mctp-head", default="always", choices=["always", "span", "full"],
                    help="MCTP heads: restricted at every step (default: random weights never open an audio span), "
                         "inside audio spans (the decoder's default), or the full head")
    ap.add_argument("--batch", default="1,8", help="comma list of batch sizes")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per block (tiny / test sizes)")
    ap.add_argument("--rounds-big", type=int, default=2, help="rounds for the 0.5b blocks at batch 1")
    ap.add_argument("--rounds-big-batch", type=int, default=1, help="rounds for the 0.5b blocks at batch > 1")
    ap.add_argument("--new-tokens", type=int, default=165)
    ap.add_argument("--prefill", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: the process's CPU seconds")
    ap.add_argument("--modes", default=",".join(MODES), help="verified runs on the tiny sizes only")
    ap.add_argument("--verified-big", action="store_true", help="also run verified mode at the 0.5b shape")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "plots" / "bench_decode.png"), help="PNG path")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    ap.add_argument("--profile", default=None, help="cProfile one decode of this mode per 0.5b batch-1 block")
    return ap.parse_args(argv)


def main(argv=None, log=print) -> dict:
    args = parse(argv)
    MCTP_HEAD[0] = {"always": "always", "span": True, "full": False}[args.mctp_head]
    CLOCK[0] = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    batches = [int(b) for b in args.batch.split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if "vanilla" not in modes:
        modes.insert(0, "vanilla")
    if "verified" in modes and "turbo" not in modes:  # verified borrows Turbo's r
        modes.insert(modes.index("verified"), "turbo")
    start = uptime()
    log(f"start: {start}")
    rows, profiles = [], {}
    for size in sizes:
        t0 = time.perf_counter()
        lm, label = build_model(size)
        log(f"{size}: {label} (built in {time.perf_counter() - t0:.1f} s)")
        for batch in batches:
            big = size == "0.5b"
            rounds = args.rounds if not big else (args.rounds_big if batch == 1 else args.rounds_big_batch)
            ms = [m for m in modes if m != "verified" or not big or args.verified_big]
            runs = bench(lm, batch, ms, rounds, args.new_tokens, args.prefill, log=log)
            rows += summarize(size, label, batch, runs)
            if args.profile and big and batch == 1:
                profiles[args.profile] = profile(lm, make_prompts(lm, 1, args.prefill), args.profile,
                                                 args.new_tokens)
                log(profiles[args.profile])
        del lm
    end = uptime()
    tab = table(rows)
    log("\n" + tab + "\n\n" + split_table(rows) + "\n")
    for g in goals(rows):
        log(g)
    log(f"end: {end}")
    path = plot(rows, Path(args.out)) if args.out else None
    if path:
        log(f"plot: {path}")
    result = dict(rows=rows, table=tab, split_table=split_table(rows), goals=goals(rows), uptime_start=start,
                  uptime_end=end, plot=path, models={d["size"]: d["model"] for d in rows}, profiles=profiles)
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in result.items() if k != "plot"}, indent=1,
                                              default=str))
    return result


if __name__ == "__main__":
    main()
