"""Peak host memory (RSS): one training step (chunked CE vs full logits), starting a stage from its predecessor
(weights-only safetensors vs a full .ckpt), LoRA vs full fine-tuning.

    python experiments/bench_memory.py                      # the chunked-CE table (each variant in its own process)
    python experiments/bench_memory.py --child chunked 2048 # one measurement, printed as JSON
    python experiments/bench_memory.py --section init --shape 0.5b   # starting stage 2 from stage 1 (+ 7B on paper)
    python experiments/bench_memory.py --section lora                # LoRA vs full fine-tuning, stage-4 step
    python experiments/bench_memory.py --section samples --samples-n 20000   # a rank building vs mapping samples
    python experiments/bench_memory.py --section load --shape 0.5b  # loading a checkpoint for inference (.ckpt, HF dir)

Section `init` (PublishStage / init_from): a stage-1 predecessor of the given shape is written as a full training
checkpoint (weights + AdamW moments, what PublishStage wrote before) and as the weights-only `final.safetensors`
PublishStage writes now; a child process builds the stage-2 model, resets its peak RSS (/proc/self/clear_refs) and
loads the predecessor: `old` = torch.load of the whole .ckpt + load_state_dict (the former init_from), `ckpt` =
today's init_from on the same full .ckpt (memory-mapped), `safetensors` = today's init_from on the weights file
(streamed tensor by tensor). Reported: the model's RSS and the peak RSS during the load beyond the model.

Section `lora` (model/lora=backbone): one stage-4 step (forward, backward, AdamW step; 10 MCTP modules) of a
shape whose layer-to-vocabulary proportion is the 7B one, full fine-tuning vs LoRA r=16: trainable parameters, peak
RSS, seconds per step.

Section `samples` (VitaDataModule, map_samples): a synthetic VITA data set (ASR / TTS records, --samples-n of them,
50-150 audio codes and ~15 words each, codes in a filled audio-token cache); each child process loads the
tokenizer, resets its peak RSS, then runs the datamodule's setup: `build` = every rank builds every sample and keeps
the records (map_samples=false, the former behaviour), `build+write` = local rank 0 builds once and writes the
samples file (then maps it), `map` = every other rank of the node (and every later run) maps the file. Reported:
setup seconds, RSS growth and anonymous (private) RSS growth after setup, peak growth during setup, and the RSS
after reading one epoch of batches (mapped pages are file-backed and shared by the ranks of a node).

Section `load` (the public loader, for inference): a stage-4 model of the given shape (random weights; the backbone
of `conf/model/backbone/qwen2_5_0_5b.yaml` at `--shape 0.5b`, the reference vocabulary of 168,072 rows, --mctp MCTP
modules) is written as train.py writes it, a Lightning `.ckpt` (weights + AdamW moments + the training config), and
as its exported HF directory (`export_pretrained`). Each load runs in a fresh child process: after the imports it
resets its peak RSS, calls the public loader (`VitaAudioLM.from_pretrained`, `vita_audio.checkpoint.load_model` or
`vita_audio.inference.load_model`, the first that exists) and reports the peak RSS increase during the call (VmHWM:
private memory + resident pages of memory-mapped files), the peak private (RssAnon) increase (read every 2 ms by a
thread), both increases after the call (the model), the seconds, and whether Lightning or Hydra got imported.

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
from pathlib import Path

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
    p.add_argument("--section", choices=["chunked", "init", "lora", "samples", "load"], default="chunked")
    p.add_argument("--samples-n", type=int, default=20000, help="records of the synthetic data of --section samples")
    p.add_argument("--samples-child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    p.add_argument("--shape", choices=sorted(SHAPES), default="0.5b", help="backbone shape of --section init / load")
    p.add_argument("--workdir", default=None, help="where --section init / load write their files (temp dir)")
    p.add_argument("--mctp", type=int, default=10, help="MCTP modules of the --section load model")
    p.add_argument("--load-child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    p.add_argument("--init-child", nargs=3, metavar=("MODE", "SHAPE", "DIR"), help=argparse.SUPPRESS)
    p.add_argument("--lora-child", nargs=2, metavar=("MODE", "SEQ"), help=argparse.SUPPRESS)
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
    if args.init_child:
        init_child(*args.init_child)
        return
    if args.lora_child:
        lora_child(args.lora_child[0], int(args.lora_child[1]))
        return
    if args.section == "init":
        init_section(args.shape, args.workdir)
        return
    if args.load_child:
        load_child(*args.load_child)
        return
    if args.section == "load":
        load_section(args.shape, args.mctp, args.workdir)
        return
    if args.section == "lora":
        lora_section()
        return
    if args.samples_child:
        samples_child(*args.samples_child)
        return
    if args.section == "samples":
        samples_section(args.samples_n, args.workdir)
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


# -- starting a stage from its predecessor ------------------------------------------------------------------------
# Qwen2.5 shapes (hidden, intermediate, layers, heads, kv heads, tied), the reference vocabulary (168,072 rows)
SHAPES = {
    "test": (64, 128, 2, 4, 2, False),  # the smoke test's
    "tiny": (256, 768, 4, 4, 2, False),
    "0.5b": (896, 4864, 24, 14, 2, True),
    "1.5b": (1536, 8960, 28, 12, 2, True),
    "7b": (3584, 18944, 28, 28, 4, False),
}


def _config(shape: str) -> dict:
    hidden, inter, layers, heads, kv, tied = SHAPES[shape]
    return dict(model_type="qwen2", hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=8192,
                tie_word_embeddings=tied)


def _holder(shape: str, n_mctp: int):
    """A module whose state dict has the stage module's `lm.*` names: backbone (+ n_mctp MCTP modules)."""
    import torch

    from vita_audio.model.backbone import Backbone
    from vita_audio.model.lm import VitaAudioLM
    from vita_audio.model.mctp import MCTPStack

    bb = Backbone(64, config=_config(shape), tokenizer="tiny")
    bb.model.resize_token_embeddings(VOCAB, mean_resizing=False)
    holder = torch.nn.Module()
    holder.lm = VitaAudioLM(bb, MCTPStack(bb.config, n_mctp) if n_mctp else None)
    holder.hparams = {}
    return holder


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def prepare_predecessor(shape: str, workdir: str) -> dict:
    """Stage-1 weights of `shape` as a full training checkpoint (+ AdamW moments) and as final.safetensors."""
    import torch

    from vita_audio.training.callbacks import save_weights

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    holder = _holder(shape, 0)
    state = holder.state_dict()
    params = [p for p in holder.parameters()]
    optim = {"state": {i: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(p),
                           "exp_avg_sq": torch.zeros_like(p)} for i, p in enumerate(params)},
             "param_groups": [{"params": list(range(len(params))), "lr": 1e-3}]}
    full = os.path.join(workdir, "full.ckpt")
    torch.save({"state_dict": state, "optimizer_states": [optim], "hyper_parameters": {}}, full)
    del optim
    weights = os.path.join(workdir, "final.safetensors")
    from pathlib import Path

    save_weights(holder, Path(weights))
    return dict(params=sum(p.numel() for p in params), full_bytes=os.path.getsize(full),
                weights_bytes=os.path.getsize(weights))


def init_child(mode: str, shape: str, workdir: str) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    if mode == "prepare":
        print(json.dumps(prepare_predecessor(shape, workdir)))
        return
    from vita_audio.training.init import initialize_from_checkpoint

    holder = _holder(shape, 1)  # stage 2: the backbone + one MCTP module (left to the stage's init)
    model_rss = _rss_now()
    reset = _reset_peak()
    t0 = time.perf_counter()
    if mode == "old":  # the former init_from: the whole checkpoint in memory, then load_state_dict
        ckpt = torch.load(os.path.join(workdir, "full.ckpt"), map_location="cpu", weights_only=True)
        holder.load_state_dict(ckpt["state_dict"], strict=False)
        del ckpt
    else:
        name = "full.ckpt" if mode == "ckpt" else "final.safetensors"
        initialize_from_checkpoint(holder, os.path.join(workdir, name), allow_missing_mctp=True)
    seconds = time.perf_counter() - t0
    peak = _status_bytes("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    check = float(holder.lm.backbone.layers[0].self_attn.q_proj.weight.detach().double().sum())
    print(json.dumps(dict(mode=mode, model_rss=model_rss, peak=peak, peak_reset=reset, seconds=seconds,
                          check=check)))


def _run_child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        return dict(error=proc.returncode)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _params_7b() -> dict:
    """Parameter counts of the Qwen2.5-7B stage model (analytic), for the projection on paper."""
    hidden, inter, layers, heads, kv, _ = SHAPES["7b"]
    kv_dim = hidden // heads * kv
    layer = hidden * (hidden + 2 * kv_dim) + (hidden + 2 * kv_dim) + hidden * hidden + 3 * hidden * inter + 2 * hidden
    embed = VOCAB * hidden
    backbone = 2 * embed + layers * layer + hidden  # untied embedding and head
    return dict(backbone=backbone, layer=layer, embed=embed, mctp_module=layer + 2 * hidden + 2 * hidden * hidden)


def init_section(shape: str, workdir: str | None) -> None:
    import tempfile

    gib = 1024**3
    with tempfile.TemporaryDirectory(prefix="bench_init_", dir=workdir) as tmp:
        prep = _run_child(["--init-child", "prepare", shape, tmp])
        if "error" in prep:
            print(f"preparing the predecessor failed (exit {prep['error']})")
            return
        rows = [(m, _run_child(["--init-child", m, shape, tmp])) for m in ("old", "ckpt", "safetensors")]
    print(f"starting stage 2 (backbone + 1 MCTP module) from a stage-1 predecessor, shape {shape} "
          f"({prep['params'] / 1e6:.0f} M parameters, vocab {VOCAB:,}), float32, "
          f"{os.environ.get('BENCH_THREADS', '1')} thread(s)")
    print(f"predecessor files: full .ckpt (weights + AdamW moments) {prep['full_bytes'] / gib:.2f} GiB, "
          f"final.safetensors {prep['weights_bytes'] / gib:.2f} GiB")
    print(f"{'init_from':<40}{'model RSS GiB':>15}{'peak GiB':>10}{'load peak GiB':>15}{'time s':>8}")
    labels = {"old": "full .ckpt, torch.load (before)", "ckpt": "full .ckpt, memory-mapped (now)",
              "safetensors": "final.safetensors, streamed (now)"}
    checks = set()
    for mode, r in rows:
        if "error" in r:
            print(f"{labels[mode]:<40}failed with exit code {r['error']}")
            continue
        checks.add(round(r["check"], 4))
        print(f"{labels[mode]:<40}{r['model_rss'] / gib:>15.2f}{r['peak'] / gib:>10.2f}"
              f"{(r['peak'] - r['model_rss']) / gib:>15.2f}{r['seconds']:>8.1f}")
    print(f"same weights loaded by every path: {len(checks) == 1}")
    n = _params_7b()
    params = n["backbone"]
    largest = n["embed"]
    print("projection to Qwen2.5-7B (untied, vocab 168,072), one rank, host memory to start stage 2 from stage 1:")
    print(f"  stage-1 weights {params / 1e9:.2f} B parameters; full .ckpt = fp32 weights + 2 AdamW moments "
          f"= {12 * params / gib:.0f} GiB")
    print(f"  before: backbone loaded in fp32 ({4 * params / gib:.0f} GiB) + whole .ckpt ({12 * params / gib:.0f} "
          f"GiB) = {16 * params / gib:.0f} GiB")
    print(f"  now:    backbone loaded in bf16 ({2 * params / gib:.0f} GiB) + one tensor at a time (largest: the "
          f"embedding, {4 * largest / gib:.1f} GiB fp32) = {(2 * params + 4 * largest) / gib:.0f} GiB")


# -- LoRA vs full fine-tuning --------------------------------------------------------------------------------------
# layers : (embedding + head) parameters as in Qwen2.5-7B (6.5 B : 1.2 B), scaled down to fit a CPU
LORA_SHAPE = dict(model_type="qwen2", hidden_size=512, intermediate_size=2816, num_hidden_layers=16,
                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=8192,
                  tie_word_embeddings=False)
LORA_VOCAB, LORA_MCTP = 8_192, 10


def lora_child(mode: str, seq: int) -> None:
    from functools import partial

    import torch

    from vita_audio.model.backbone import Backbone
    from vita_audio.model.lora import BackboneLoRA
    from vita_audio.model.mctp import MCTPStack
    from vita_audio.training.module import SpeechLMModule

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    bb = Backbone(64, config=dict(LORA_SHAPE), tokenizer="tiny")
    bb.model.resize_token_embeddings(LORA_VOCAB, mean_resizing=False)
    module = SpeechLMModule(
        bb, optimizer=partial(torch.optim.AdamW, lr=1e-4, weight_decay=0.1),
        mctp=partial(MCTPStack.for_backbone, num_modules=LORA_MCTP), lr_scales={"^mctp\\.": 10.0},
        lora=BackboneLoRA(rank=16, alpha=32, dropout=0.05) if mode == "lora" else None,
    )
    opt = module.configure_optimizers()["optimizer"]
    module.train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, LORA_VOCAB, (1, seq), generator=g)  # (1, T)
    batch = {"input_ids": ids, "labels": ids.clone()}
    model_rss = _rss_now()
    reset = _reset_peak()
    times = []
    for _ in range(3):  # AdamW allocates its moments in the first step
        t0 = time.perf_counter()
        loss = module.compute_losses(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    peak = _status_bytes("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(mode=mode, trainable=module.freeze_report.trainable, total=module.freeze_report.total,
                          model_rss=model_rss, peak=peak, seconds=sorted(times[1:])[0], loss=float(loss))))


def lora_section(seq: int = 256) -> None:
    gib = 1024**3
    rows = [(m, _run_child(["--lora-child", m, str(seq)])) for m in ("full", "lora")]
    print(f"stage-4 step (backbone hidden {LORA_SHAPE['hidden_size']}, {LORA_SHAPE['num_hidden_layers']} layers, "
          f"vocab {LORA_VOCAB:,} untied, {LORA_MCTP} MCTP modules, seq {seq}, AdamW), "
          f"{os.environ.get('BENCH_THREADS', '1')} thread(s)")
    print(f"{'mode':<6}{'trainable':>14}{'of total':>14}{'share':>8}{'model RSS GiB':>15}{'step peak GiB':>15}"
          f"{'s/step':>8}")
    for mode, r in rows:
        if "error" in r:
            print(f"{mode:<6}failed with exit code {r['error']}")
            continue
        print(f"{mode:<6}{r['trainable']:>14,}{r['total']:>14,}{100 * r['trainable'] / r['total']:>7.1f}%"
              f"{r['model_rss'] / gib:>15.2f}{r['peak'] / gib:>15.2f}{r['seconds']:>8.2f}")
    n = _params_7b()
    hidden, inter, layers, heads, kv, _ = SHAPES["7b"]
    kv_dim = hidden // heads * kv
    r = 16
    adapters = layers * r * ((hidden + hidden) * 2 + (hidden + kv_dim) * 2 + 2 * (hidden + inter) + (inter + hidden))
    rows_audio = 4096 + 3
    mctp = 10 * n["mctp_module"]
    full = n["backbone"] + mctp
    print(f"Qwen2.5-7B stage 4 on paper (r = {r}, 10 MCTP modules): full fine-tuning trains {full / 1e9:.2f} B; "
          f"LoRA trains {(adapters + mctp + 2 * rows_audio * hidden) / 1e9:.2f} B (adapters {adapters / 1e6:.0f} M, "
          f"MCTP {mctp / 1e9:.2f} B, audio rows {2 * rows_audio * hidden / 1e6:.0f} M), while the row-masked "
          f"embedding and head keep full gradients and AdamW moments ({2 * n['embed'] / 1e9:.2f} B parameters)")


# -- section load: host memory to load a checkpoint for inference ------------------------------------------------
LOAD_RATIO = [1, 10, 4, 10]  # Boost's interleave ratio: the checkpoint's stored default schedule
TINY_TOKENS = 1024 + 3  # the offline `tiny` tokenizer + the three audio markers (special_tokens=audio_markers)
HEAVY_MODULES = ("lightning", "hydra")  # what an inference load should not import


def public_loader():
    """(name, function) of the public checkpoint loader: `VitaAudioLM.from_pretrained` once the model API has it,
    else `vita_audio.checkpoint.load_model`, else `vita_audio.inference.load_model` (the loader before the
    checkpoint package)."""
    import importlib

    from vita_audio.model.lm import VitaAudioLM

    if hasattr(VitaAudioLM, "from_pretrained"):
        return "VitaAudioLM.from_pretrained", VitaAudioLM.from_pretrained
    for module in ("vita_audio.checkpoint", "vita_audio.inference"):
        load = getattr(importlib.import_module(module), "load_model", None)
        if load is not None:
            return f"{module}.load_model", load
    raise ImportError("no public checkpoint loader: neither VitaAudioLM.from_pretrained nor a load_model in "
                      "vita_audio.checkpoint / vita_audio.inference")


def _weights_check(lm) -> float:
    """A checksum of one backbone and one MCTP weight: equal when two loads hold the same weights."""
    w = float(lm.backbone.layers[0].self_attn.q_proj.weight.detach().double().sum())
    return w + (float(lm.mctp.state_dict()[next(iter(lm.mctp.state_dict()))].double().sum()) if lm.mctp else 0.0)


def prepare_load(shape: str, n_mctp: int, workdir: str, vocab: int = VOCAB) -> dict:
    """A stage-4 model of `shape` with random weights and `vocab` embedding rows, written as train.py's `.ckpt`
    (weights + AdamW moments + the training config, `model.ckpt`) and as its exported HF directory (`hf/`)."""
    import torch

    from vita_audio.checkpoint import export_pretrained
    from vita_audio.model.backbone import Backbone
    from vita_audio.model.lm import VitaAudioLM
    from vita_audio.model.mctp import MCTPStack

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    codebook = vocab - TINY_TOKENS  # the extended tiny tokenizer is exactly `vocab` tokens (a multiple of 8)
    backbone_cfg = {"_target_": "vita_audio.model.backbone.Backbone", "audio_codebook_size": codebook,
                    "pretrained": None, "config": _config(shape), "tokenizer": "tiny"}
    bb = Backbone(**{k: v for k, v in backbone_cfg.items() if k != "_target_"})
    if bb.vocab_size != vocab:
        raise ValueError(f"--section load needs a vocabulary that is a multiple of 8 above {TINY_TOKENS}, got {vocab}")
    lm = VitaAudioLM(bb, MCTPStack.for_backbone(bb, n_mctp) if n_mctp else None).eval()
    config = {"model": {"backbone": backbone_cfg,
                        "mctp": {"_target_": "vita_audio.model.mctp.MCTPStack.for_backbone", "_partial_": True,
                                 "num_modules": n_mctp} if n_mctp else None},
              "interleave": {"ratio": LOAD_RATIO}}
    params = [p for p in lm.parameters()]
    optim = {"state": {i: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(p),
                           "exp_avg_sq": torch.zeros_like(p)} for i, p in enumerate(params)},
             "param_groups": [{"params": list(range(len(params))), "lr": 1e-4}]}
    ckpt = os.path.join(workdir, "model.ckpt")
    torch.save({"state_dict": {f"lm.{k}": v for k, v in lm.state_dict().items()}, "optimizer_states": [optim],
                "hyper_parameters": {"config": config}, "epoch": 0, "global_step": 10}, ckpt)
    del optim
    hf = export_pretrained(lm, os.path.join(workdir, "hf"), interleave_ratio=LOAD_RATIO)
    return dict(params=sum(p.numel() for p in params), ckpt_bytes=os.path.getsize(ckpt),
                hf_bytes=sum(f.stat().st_size for f in Path(hf).iterdir()), check=_weights_check(lm))


class PrivatePeak:
    """The largest private (anonymous) RSS seen while the block runs, read every `every` seconds by a thread.

    VmHWM also counts the resident pages of memory-mapped files (a `.ckpt` read with mmap, safetensors), which are
    shared with the page cache and dropped under pressure; RssAnon is the memory the process owns."""

    def __init__(self, every: float = 0.002) -> None:
        import threading

        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, _status_bytes("RssAnon"))

    def __enter__(self) -> PrivatePeak:
        self.peak = _status_bytes("RssAnon")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_bytes("RssAnon"))


def load_child(mode: str, workdir: str) -> None:
    """One load (`mode`: ckpt | hf) by the public loader; prints its memory figures as JSON."""
    import gc

    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    if mode == "prepare":
        shape, n_mctp, vocab = json.loads(Path(workdir, "args.json").read_text())
        print(json.dumps(prepare_load(shape, n_mctp, workdir, vocab)))
        return
    path = os.path.join(workdir, "model.ckpt" if mode == "ckpt" else "hf")
    name, load = public_loader()
    gc.collect()
    rss0, anon0 = _status_bytes("VmRSS"), _status_bytes("RssAnon")
    reset = _reset_peak()
    t0 = time.perf_counter()
    with PrivatePeak() as private:
        lm = load(path)
    seconds = time.perf_counter() - t0
    peak = _status_bytes("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gc.collect()
    print(json.dumps(dict(mode=mode, loader=name, rss0=rss0, peak=peak - rss0, peak_reset=reset,
                          private_peak=private.peak - anon0, after=_status_bytes("VmRSS") - rss0,
                          private_after=_status_bytes("RssAnon") - anon0, seconds=seconds, check=_weights_check(lm),
                          params=sum(p.numel() for p in lm.parameters()),
                          heavy=[m for m in HEAVY_MODULES if m in sys.modules])))


def load_section(shape: str, n_mctp: int, workdir: str | None, vocab: int = VOCAB) -> None:
    import tempfile

    gib = 1024**3
    with tempfile.TemporaryDirectory(prefix="bench_load_", dir=workdir) as tmp:
        Path(tmp, "args.json").write_text(json.dumps([shape, n_mctp, vocab]))
        prep = _run_child(["--load-child", "prepare", tmp])
        if "error" in prep:
            print(f"writing the checkpoints failed (exit {prep['error']})")
            return
        rows = [(m, _run_child(["--load-child", m, tmp])) for m in ("ckpt", "hf")]
    loaders = sorted({r["loader"] for _, r in rows if "loader" in r})
    print(f"loading a stage-4 checkpoint for inference, shape {shape} ({prep['params'] / 1e6:.0f} M parameters: "
          f"backbone + {n_mctp} MCTP modules, vocab {vocab:,}), float32, loader {', '.join(loaders)}, "
          f"{os.environ.get('BENCH_THREADS', '1')} thread(s), load average {os.getloadavg()[0]:.1f}")
    print("\n| checkpoint | file GiB | peak RSS increase GiB | peak private increase GiB | RSS increase after GiB | "
          "private after GiB | time s | imports |")
    print("|---|---|---|---|---|---|---|---|")
    labels = {"ckpt": "`.ckpt` (weights + AdamW moments)", "hf": "exported HF directory (safetensors)"}
    sizes = {"ckpt": prep["ckpt_bytes"], "hf": prep["hf_bytes"]}
    for mode, r in rows:
        if "error" in r:
            print(f"| {labels[mode]} | {sizes[mode] / gib:.2f} | failed (exit {r['error']}) | | | | | |")
            continue
        peak = f"{r['peak'] / gib:.2f}" + ("" if r["peak_reset"] else " (process peak)")
        print(f"| {labels[mode]} | {sizes[mode] / gib:.2f} | {peak} | {r['private_peak'] / gib:.2f} | "
              f"{r['after'] / gib:.2f} | {r['private_after'] / gib:.2f} | {r['seconds']:.1f} | "
              f"{', '.join(r['heavy']) or 'neither Lightning nor Hydra'} |")
    same = all("error" not in r and abs(r["check"] - prep["check"]) < 1e-6 * max(1.0, abs(prep["check"]))
               for _, r in rows)
    print(f"\nmodel weights {4 * prep['params'] / gib:.2f} GiB (float32); every load holds the written weights: {same}")


# -- section samples: a rank building every sample vs mapping the node's samples file ----------------------------
WORDS = "the a speech model audio token text reads writes hears says one two three four five six seven".split()


def prepare_samples_data(n: int, workdir: str) -> None:
    """`n` ASR / TTS records over n / 2 distinct tiny audio files whose codes are put in an audio-token cache."""
    import numpy as np
    import torch

    from vita_audio.data.cache import AudioCodeCache, content_hash

    root = Path(workdir)
    cache = AudioCodeCache(root / "cache", "bench")
    cache.root.mkdir(parents=True, exist_ok=True)
    cache.meta_path.write_text(json.dumps({"identity": "bench", "codebook_size": 1024, "frame_rate": 12.5}))
    rng = np.random.default_rng(0)
    audio = root / "audio"
    audio.mkdir(exist_ok=True)
    paths = []
    for i in range(max(1, n // 2)):
        f = audio / f"{i}.wav"
        f.write_bytes(f"bench audio {i}".encode())  # never decoded: its codes are in the cache
        cache.put(content_hash(f), torch.from_numpy(rng.integers(0, 1024, int(rng.integers(50, 151)))))
        paths.append(str(f))
    cache.write_manifest(paths)
    with open(root / "train.jsonl", "w") as out:
        for i in range(n):
            text = " ".join(rng.choice(WORDS, int(rng.integers(8, 22))))
            wav = paths[i % len(paths)]
            if i % 2:
                msgs = [{"role": "user", "content": "Convert the speech to text.\n<|audio|>"},
                        {"role": "assistant", "content": text}]
            else:
                msgs = [{"role": "user", "content": f"Convert the text to speech.\n{text}"},
                        {"role": "assistant", "content": "<|audio|>"}]
            out.write(json.dumps({"messages": msgs, "audios": [wav]}) + "\n")


def samples_child(mode: str, workdir: str) -> None:
    import gc

    from vita_audio.data.datamodule import VitaDataModule
    from vita_audio.model.text_tokenizer import load_text_tokenizer
    from vita_audio.model.vocab import extend_tokenizer

    import torch

    torch.set_num_threads(1)
    root = Path(workdir)
    tok = load_text_tokenizer("tiny")
    av = extend_tokenizer(tok, 1024)
    gc.collect()
    rss0, anon0 = _status_bytes("VmRSS"), _status_bytes("RssAnon")
    peak_ok = _reset_peak()
    dm = VitaDataModule(tok, av, [{"path": str(root / "train.jsonl")}], interleave_ratio=[1, 10, 4, 10],
                        max_len=2048, batch_size=8, cache_dir=str(root / "cache"), cache_name="bench",
                        map_samples=mode != "build", shuffle=True)
    t = time.perf_counter()
    dm.setup("fit")
    secs = time.perf_counter() - t
    gc.collect()
    rss1, anon1, peak = _status_bytes("VmRSS"), _status_bytes("RssAnon"), _status_bytes("VmHWM")
    for _ in dm.train_dataloader():
        pass
    rss2, anon2 = _status_bytes("VmRSS"), _status_bytes("RssAnon")
    files = sorted((root / "cache" / "samples").glob("*.samples"))
    print(json.dumps(dict(mode=mode, seconds=secs, samples=dm.train_set.store.num_samples,
                          tokens=int(dm.train_set.store.lengths.sum()), builds=dm.sample_builds,
                          maps=dm.sample_maps, rss=rss1 - rss0, anon=anon1 - anon0,
                          peak=(peak - rss0) if peak_ok else None, rss_epoch=rss2 - rss0, anon_epoch=anon2 - anon0,
                          file=files[0].stat().st_size if files else 0)))


def samples_section(n: int, workdir: str | None) -> None:
    import shutil
    import tempfile

    mb = 1024**2
    tmp = workdir or tempfile.mkdtemp(prefix="bench_samples_")
    t = time.perf_counter()
    prepare_samples_data(n, tmp)
    print(f"synthetic data: {n} records in {time.perf_counter() - t:.1f} s under {tmp}; load: {os.getloadavg()}")
    shutil.rmtree(Path(tmp) / "cache" / "samples", ignore_errors=True)
    rows = [_run_child(["--samples-child", mode, tmp]) for mode in ("build", "build+write", "map", "map")]
    print(f"\n| rank | setup s | RSS after setup MB | private (anon) MB | peak during setup MB | RSS after an epoch "
          "MB | private after an epoch MB | builds / maps |")
    print("|---|---|---|---|---|---|---|---|")
    names = ["every rank builds (before)", "local rank 0 builds + writes", "other rank maps", "later run maps"]
    for name, r in zip(names, rows):
        if "error" in r:
            print(f"| {name} | failed (exit {r['error']}) |")
            continue
        peak = "n/a" if r["peak"] is None else f"{r['peak'] / mb:.1f}"
        print(f"| {name} | {r['seconds']:.2f} | {r['rss'] / mb:.1f} | {r['anon'] / mb:.1f} | {peak} | "
              f"{r['rss_epoch'] / mb:.1f} | {r['anon_epoch'] / mb:.1f} | {r['builds']} / {r['maps']} |")
    ok = [r for r in rows if "error" not in r]
    if ok:
        r = ok[-1]
        print(f"\n{r['samples']} samples, {r['tokens']} tokens; samples file {r['file'] / mb:.1f} MB "
              f"({r['file'] / max(1, r['tokens']):.2f} B/token); per sample: build {rows[0]['anon'] / r['samples']:.0f} "
              f"B private, map {rows[2]['anon'] / r['samples']:.0f} B private; load {os.getloadavg()}")
    if workdir is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
