"""The vectorised MCTP cascade against a slow per-window reference, packed rows against samples run alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vita_audio.model.backbone import Backbone
from vita_audio.model.loss import IGNORE_INDEX
from vita_audio.model.mctp import MCTPStack, decoder_layer_class
from vita_audio.model.mctp_loss import mctp_losses, mctp_targets, token_range_filter

N = 3
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=2048, tie_word_embeddings=False)
CONFIGS = {"qwen2": dict(model_type="qwen2", **TINY), "llama": dict(model_type="llama", **TINY),
           "qwen3": dict(model_type="qwen3", head_dim=16, **TINY)}


def _build(model_type: str, seed: int = 0) -> tuple[Backbone, MCTPStack]:
    bb = Backbone(64, config=CONFIGS[model_type], tokenizer="tiny", seed=seed).eval()
    torch.manual_seed(seed + 1)
    stack = MCTPStack(bb.config, N).eval()
    with torch.no_grad():  # non-trivial norms so that a swapped norm would show
        for p in stack.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return bb, stack


@pytest.fixture(scope="module")
def qwen2():
    return _build("qwen2")


def _cascade(bb, stack, ids, pos=None, sids=None, n=None):
    if pos is None:
        pos = torch.arange(ids.shape[1]).expand_as(ids)
    h0 = bb(ids, pos, sids)
    return stack(h0, ids, pos, sids, bb.embed_tokens, bb.final_norm, bb.rotary_emb, num_levels=n)


def _reference_levels(bb, stack, ids, pos, n):
    """Every window recomputed from scratch: h^0[t] from a prefix forward, h^(k+1)[t] by running module k's layer
    over its inputs for windows 0..t and keeping the last row (which attends to all of them, i.e. causally)."""
    T = ids.shape[0]
    memo: dict[tuple[int, int], torch.Tensor] = {}

    def h(level: int, t: int) -> torch.Tensor:  # (H,)
        if (level, t) in memo:
            return memo[level, t]
        if level == 0:
            out = bb(ids[None, : t + 1], pos[None, : t + 1])[0, -1]
        else:
            m = level - 1  # module index; window j embeds x[j+m+1]
            rows = []
            for j in range(t + 1):
                e = bb.embed_tokens(ids[j + m + 1])
                rows.append(stack.projs[m](torch.cat([stack.embed_norms[m](e), stack.hidden_norms[m](h(m, j))])))
            u = torch.stack(rows)[None]  # (1, t+1, H)
            p = pos[None, m + 1 : m + 2 + t]  # (1, t+1) position of the embedded token
            cos_sin = bb.rotary_emb(u, p)
            full = torch.ones(1, 1, t + 1, t + 1, dtype=torch.bool)
            out = bb.final_norm(stack.layers[m](u, attention_mask=full, position_ids=p, position_embeddings=cos_sin))
            out = out[0, -1]
        memo[level, t] = out
        return out

    return [torch.stack([h(k + 1, t) for t in range(T - k - 1)]) for k in range(n)]


def _reference_losses(bb, levels, ids, labels):
    """CE sum / count per level from full logits: window t of level k predicts x[t+k+2]."""
    T = ids.shape[0]
    out = []
    for k, hk in enumerate(levels):
        logits = bb.lm_head(hk)  # (T-k-1, V)
        total, count = torch.zeros(()), 0
        for t in range(T - k - 1):
            if t + k + 2 < T and labels[t + k + 2] != IGNORE_INDEX:
                total = total + F.cross_entropy(logits[t], labels[t + k + 2])
                count += 1
        out.append((total, count))
    return out


@pytest.mark.parametrize("model_type", ["qwen2", "llama", "qwen3"])
def test_cascade_matches_per_window_reference(model_type, qwen2):
    bb, stack = qwen2 if model_type == "qwen2" else _build(model_type)
    assert type(stack.layers[0]) is type(bb.layers[0])
    assert [layer.self_attn.layer_idx for layer in stack.layers] == [2, 3, 4]
    torch.manual_seed(3)
    T = 11
    ids = torch.randint(0, bb.vocab_size, (T,))
    pos = torch.arange(T) + 5  # not starting at 0: the rotary position must follow the embedded token
    labels = ids.clone()
    labels[:3] = IGNORE_INDEX
    with torch.no_grad():
        fast = _cascade(bb, stack, ids[None], pos[None])
        ref = _reference_levels(bb, stack, ids, pos, N)
        assert [f.shape[1] for f in fast] == [T - 1, T - 2, T - 3]
        for f, r in zip(fast, ref):
            torch.testing.assert_close(f[0], r, atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(bb.lm_head(f[0]), bb.lm_head(r), atol=2e-5, rtol=1e-4)
        got = mctp_losses(fast, labels[None], None, bb.lm_head.weight, chunk_rows=4)
        for (s, c, _), (rs, rc) in zip(got, _reference_losses(bb, ref, ids, labels)):
            assert int(c) == rc
            torch.testing.assert_close(s, rs, atol=1e-4, rtol=1e-5)


# -- packed rows -----------------------------------------------------------------------------------------------
LENGTHS = (7, 5, 6)
PAD = 3


def _packed_row(samples):
    ids = torch.cat([*samples, torch.zeros(PAD, dtype=torch.long)])
    pos = torch.cat([torch.arange(len(s)) for s in samples] + [torch.zeros(PAD, dtype=torch.long)])
    sids = torch.cat([torch.full((len(s),), i) for i, s in enumerate(samples)] + [torch.full((PAD,), -1)])
    return ids[None], pos[None], sids[None]


def _samples(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g) for n in LENGTHS]


def _labels(ids, sids):
    labels = ids.clone()
    labels[sids < 0] = IGNORE_INDEX
    labels[:, 1] = IGNORE_INDEX  # an unsupervised token inside sample 0
    return labels


def test_packed_row_equals_samples_alone(qwen2):
    bb, stack = qwen2
    samples = _samples(bb.vocab_size, 1)
    ids, pos, sids = _packed_row(samples)
    labels = _labels(ids, sids)
    with torch.no_grad():
        packed = _cascade(bb, stack, ids, pos, sids)
        losses = mctp_losses(packed, labels, sids, bb.lm_head.weight, chunk_rows=5)
        alone_sums = torch.zeros(N)
        alone_counts = torch.zeros(N, dtype=torch.long)
        start = 0
        for s in samples:
            alone = _cascade(bb, stack, s[None])
            lab = labels[:, start : start + len(s)]
            for k in range(N):
                n_win = len(s) - k - 1
                torch.testing.assert_close(packed[k][0, start : start + n_win], alone[k][0], atol=2e-5, rtol=1e-4)
            for k, (total, count, _) in enumerate(mctp_losses(alone, lab, None, bb.lm_head.weight)):
                alone_sums[k] += total
                alone_counts[k] += count
            start += len(s)
        for k in range(N):
            assert int(losses[k][1]) == int(alone_counts[k])
            torch.testing.assert_close(losses[k][0], alone_sums[k], atol=1e-4, rtol=1e-5)


def _per_window_ce(bb, levels, labels, sids):
    out = []
    for k, h in enumerate(levels):
        tgt = mctp_targets(labels, k, sids)[0]  # (W,)
        ce = F.cross_entropy(bb.lm_head(h[0]), tgt, ignore_index=IGNORE_INDEX, reduction="none")
        out.append((ce, tgt))
    return out


def test_no_leakage_across_packed_samples(qwen2):
    bb, stack = qwen2
    samples = _samples(bb.vocab_size, 2)
    ids, pos, sids = _packed_row(samples)
    changed = [samples[0], torch.randint(0, bb.vocab_size, (LENGTHS[1],), generator=torch.Generator().manual_seed(9)),
               samples[2]]
    ids2, _, _ = _packed_row(changed)
    assert not torch.equal(ids, ids2)
    with torch.no_grad():
        a = _cascade(bb, stack, ids, pos, sids)
        b = _cascade(bb, stack, ids2, pos, sids)
        ce_a = _per_window_ce(bb, a, _labels(ids, sids), sids)
        ce_b = _per_window_ce(bb, b, _labels(ids2, sids), sids)
    s0, s1 = LENGTHS[0], LENGTHS[0] + LENGTHS[1]
    for k in range(N):
        # windows whose chain lies in sample 0 or sample 2 are bit-for-bit independent of sample 1's tokens
        first = slice(0, s0 - k - 1)
        third = slice(s1, s1 + LENGTHS[2] - k - 1)
        for sl in (first, third):
            torch.testing.assert_close(a[k][0, sl], b[k][0, sl], atol=0, rtol=0)
            torch.testing.assert_close(ce_a[k][0][sl], ce_b[k][0][sl], atol=0, rtol=0)
        # every window that has a target has its whole chain and target in one sample
        tgt = ce_a[k][1]
        for t in torch.nonzero(tgt != IGNORE_INDEX).flatten().tolist():
            assert len(set(sids[0, t : t + k + 3].tolist())) == 1
        assert (ce_a[k][0][tgt == IGNORE_INDEX] == 0).all()


def test_mctp_targets_definition():
    labels = torch.arange(10, 22)[None]  # (1, 12)
    labels[0, 4] = IGNORE_INDEX
    sids = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 1, -1, -1, -1]])
    for k in range(3):
        tgt = mctp_targets(labels, k, sids)[0]
        assert tgt.shape == (12 - k - 1,)
        for t in range(12 - k - 1):
            u = t + k + 2
            ok = u < 12 and len(set(sids[0, t : u + 1].tolist())) == 1 and labels[0, u] != IGNORE_INDEX
            assert int(tgt[t]) == (int(labels[0, u]) if ok else IGNORE_INDEX), (k, t)
    audio_only = mctp_targets(labels, 0, None, token_range_filter(15, 18))[0]
    kept = audio_only[audio_only != IGNORE_INDEX].tolist()
    assert kept == [15, 16, 17]


def test_eager_attention_and_checkpointing_match(qwen2):
    bb, stack = qwen2
    samples = _samples(bb.vocab_size, 4)
    ids, pos, sids = _packed_row(samples)
    with torch.no_grad():
        ref = _cascade(bb, stack, ids, pos, sids)
        stack.config._attn_implementation = "eager"
        try:
            eager = _cascade(bb, stack, ids, pos, sids)
        finally:
            stack.config._attn_implementation = "sdpa"
    for r, e in zip(ref, eager):
        # bool mask (sdpa) and additive mask (eager) agree on every window, invalid ones included
        torch.testing.assert_close(r, e, atol=2e-5, rtol=1e-4)

    labels = _labels(ids, sids)

    def grads(ckpt):
        stack.zero_grad()
        stack.train()
        stack.gradient_checkpointing = ckpt
        try:
            levels = _cascade(bb, stack, ids, pos, sids)
            total = sum(s for s, _, _ in mctp_losses(levels, labels, sids, bb.lm_head.weight, chunk_rows=7))
            total.backward()
        finally:
            stack.gradient_checkpointing = False
            stack.eval()
        return {n: p.grad.clone() for n, p in stack.named_parameters()}

    plain, ckpt = grads(False), grads(True)
    assert plain.keys() == ckpt.keys() and all(g.abs().sum() > 0 for g in plain.values() if g.dim() > 1)
    for n in plain:
        torch.testing.assert_close(plain[n], ckpt[n], atol=1e-6, rtol=1e-5)
    bb.zero_grad(set_to_none=True)


def test_stage_initialisers(qwen2):
    bb, _ = qwen2
    torch.manual_seed(0)
    stack = MCTPStack(bb.config, 4)
    assert decoder_layer_class(bb.config) is type(bb.layers[-1])
    for proj in stack.projs:
        assert proj.weight.shape == (64, 128) and proj.bias is None
        assert abs(proj.weight.std().item() - 0.02) < 0.003
    stack.init_module_from_layer(0, bb.layers[-1])
    for (n, p), (_, q) in zip(stack.layers[0].named_parameters(), bb.layers[-1].named_parameters()):
        assert torch.equal(p, q), n
    assert stack.layers[0].self_attn.layer_idx == 2
    assert torch.equal(stack.embed_norms[0].weight, torch.ones(64))
    assert torch.equal(stack.hidden_norms[0].weight, torch.ones(64))
    with torch.no_grad():  # "train" module 0
        for p in [*stack.layers[0].parameters(), *stack.projs[0].parameters(), stack.embed_norms[0].weight,
                  stack.hidden_norms[0].weight]:
            p.add_(torch.randn_like(p))
    stack.clone_first_module()
    for parts in (stack.layers, stack.embed_norms, stack.hidden_norms, stack.projs):
        first = parts[0].state_dict()
        for k in range(1, 4):
            other = parts[k].state_dict()
            assert all(torch.equal(first[n], other[n]) for n in first)
            assert all(a.data_ptr() != b.data_ptr() for a, b in zip(parts[0].parameters(), parts[k].parameters()))
    assert [layer.self_attn.layer_idx for layer in stack.layers] == [2, 3, 4, 5]
