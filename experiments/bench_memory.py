"""Peak memory (RSS) of one training step: chunked cross-entropy vs full logits for every head.

    python experiments/bench_memory.py                      # the table (each variant in its own process)
    python experiments/bench_memory.py --child chunked 2048 # one measurement, printed as JSON

Model: hidden 256, 4 backbone layers (Qwen2 kind), N = 10 MCTP modules, vocabulary 168,072 (the reference size),
batch 1, float32, everything trainable (the heaviest stage). One step = forward of the backbone and all modules,
the main loss + mean of the 10 module losses, backward (and, with --optimizer, an AdamW step).

- chunked: `chunked_cross_entropy` per head (at most chunk_rows x V logits alive at a time).
- naive:   full logits (T x V) for every head, then cross-entropy; this needs ~30 GB at T = 2048, so it is run at
           short lengths only and extrapolated (its cost is linear in T; the analytic logits size is printed too).

Peak RSS per variant comes from the OS: `os.wait4` returns the child's own rusage (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HIDDEN, LAYERS, N_MODULES, VOCAB, SEQ = 256, 4, 10, 168_072, 2048


def _rss_now() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child(variant: str, seq: int, chunk_rows: int, optimizer: bool) -> None:
    import torch
    import torch.nn.functional as F

    from vita_audio.model.backbone import Backbone
    from vita_audio.model.lm import VitaAudioLM
    from vita_audio.model.loss import IGNORE_INDEX, chunked_cross_entropy, shifted_targets
    from vita_audio.model.mctp import MCTPStack
    from vita_audio.model.mctp_loss import mctp_losses, mctp_targets

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    config = dict(model_type="qwen2", hidden_size=HIDDEN, intermediate_size=4 * HIDDEN, num_hidden_layers=LAYERS,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                  tie_word_embeddings=False)
    bb = Backbone(64, config=config, tokenizer="tiny")
    bb.model.resize_token_embeddings(VOCAB, mean_resizing=False)  # the reference vocabulary size
    lm = VitaAudioLM(bb, MCTPStack(bb.config, N_MODULES)).train()
    n_params = sum(p.numel() for p in lm.parameters())
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-4) if optimizer else None
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (1, seq), generator=g)  # (1, T)
    labels = ids.clone()
    labels[:, : seq // 8] = IGNORE_INDEX  # a prompt
    rss_model = _rss_now()

    t0 = time.perf_counter()
    weight = bb.lm_head.weight
    if variant == "chunked":
        h0, levels = lm.hidden_states(ids)  # (1, T, H), [(1, T-k-1, H)]
        main_t = shifted_targets(labels, 1)  # (1, T-1)
        s, c, _ = chunked_cross_entropy(h0[:, :-1].reshape(-1, HIDDEN), weight, main_t.reshape(-1), chunk_rows)
        heads = mctp_losses(levels, labels, None, weight, chunk_rows)
        loss = s / c + sum(sk / ck for sk, ck, _ in heads) / len(heads)
    else:
        logits, mtp_logits = lm(ids)  # (1, T, V), [(1, T-k-1, V)]: every head's full logits at once
        loss = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=IGNORE_INDEX)
        mtp = [F.cross_entropy(lk[0], mctp_targets(labels, k)[0], ignore_index=IGNORE_INDEX)
               for k, lk in enumerate(mtp_logits)]
        loss = loss + sum(mtp) / len(mtp)
    loss.backward()
    if opt is not None:
        opt.step()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(variant=variant, seq=seq, chunk_rows=chunk_rows, optimizer=optimizer, params=n_params,
                          rss_model=rss_model, peak_self=peak, seconds=seconds, loss=float(loss.detach()))))


def measure(variant: str, seq: int, chunk_rows: int = 1024, optimizer: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, str(seq), "--chunk-rows", str(chunk_rows)]
    if optimizer:
        cmd.append("--optimizer")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return dict(variant=variant, seq=seq, chunk_rows=chunk_rows, optimizer=optimizer, error=proc.returncode)
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss"] = usage.ru_maxrss * 1024  # the OS's figure for that child alone
    return result


def naive_logits_bytes(seq: int) -> int:
    """Full logits of the main head (T-1 rows) and module k (T-k-1 rows), float32."""
    rows = (seq - 1) + sum(seq - k - 1 for k in range(N_MODULES))
    return rows * VOCAB * 4


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", nargs=2, metavar=("VARIANT", "SEQ"))
    p.add_argument("--chunk-rows", type=int, default=1024)
    p.add_argument("--optimizer", action="store_true")
    p.add_argument("--naive-seqs", default="128,256", help="sequence lengths at which the naive step is run")
    p.add_argument("--chunk-sizes", default="1024", help="chunk_rows of the chunked runs without optimizer")
    p.add_argument("--optimizer-chunk", type=int, default=256, help="chunk_rows of the chunked run with AdamW")
    args = p.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.chunk_rows, args.optimizer)
        return

    gib = 1024**3
    runs = [measure("chunked", SEQ, c) for c in map(int, args.chunk_sizes.split(","))]
    runs.append(measure("chunked", SEQ, args.optimizer_chunk, optimizer=True))
    naive = [measure("naive", s) for s in map(int, args.naive_seqs.split(","))]
    runs += naive
    print(f"hidden {HIDDEN}, {LAYERS} backbone layers, N = {N_MODULES}, vocab {VOCAB:,}, batch 1, float32, "
          f"{os.environ.get('BENCH_THREADS', '1')} thread(s)")
    print(f"{'variant':<10}{'seq':>6}{'chunk':>7}{'AdamW':>7}{'model RSS GiB':>15}{'peak RSS GiB':>14}{'time s':>8}")
    for r in runs:
        if "error" in r:
            print(f"{r['variant']:<10}{r['seq']:>6}  failed with exit code {r['error']}")
            continue
        chunk = r["chunk_rows"] if r["variant"] == "chunked" else "-"
        print(f"{r['variant']:<10}{r['seq']:>6}{chunk:>7}{'yes' if r['optimizer'] else 'no':>7}"
              f"{r['rss_model'] / gib:>15.2f}{r['peak_rss'] / gib:>14.2f}{r['seconds']:>8.1f}")
    ok = [r for r in naive if "error" not in r]
    if len(ok) >= 2:
        a, b = ok[-2], ok[-1]
        slope = (b["peak_rss"] - a["peak_rss"]) / (b["seq"] - a["seq"])
        est = b["peak_rss"] + slope * (SEQ - b["seq"])
        print(f"naive, extrapolated linearly to seq {SEQ}: {est / gib:.1f} GiB peak "
              f"({slope / 1024**2:.1f} MiB per token measured)")
    print(f"naive, analytic: full logits of 1 + {N_MODULES} heads at seq {SEQ} = "
          f"{naive_logits_bytes(SEQ) / gib:.1f} GiB (float32), about twice that with the log-softmax outputs kept "
          "for the backward")


if __name__ == "__main__":
    main()
