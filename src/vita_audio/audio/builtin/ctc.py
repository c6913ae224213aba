"""The semantic codec's CTC head: quantised vectors -> phoneme posteriors, and what is read from them.

    code vectors (B, N, D) --conv k=3 (one token of context each side)--> (B, N, C)
        --linear to labels_per_token * (P + 1)--> log-probs (B, N * labels_per_token, P + 1), blank = P

The head is small on purpose: the phoneme identity has to be in the codes, not in the head. `greedy_decode`
reads a phoneme sequence back (collapse repeats, drop blanks); `forced_align` gives each label frame a phoneme
of a known sequence (Viterbi over the CTC topology), which is how the benchmark gets frame-level phones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vita_audio.audio.builtin.config import CodecConfig


class CtcHead(nn.Module):
    """(B, N, D) code vectors -> (B, N * labels_per_token, P + 1) log-probabilities (blank last)."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.per_token, self.n_labels = cfg.ctc_labels_per_token, len(cfg.phonemes) + 1
        self.conv = nn.Conv1d(cfg.latent_dim, cfg.ctc_channels, 3, padding=1)
        self.out = nn.Linear(cfg.ctc_channels, self.per_token * self.n_labels)

    @property
    def blank(self) -> int:
        return self.n_labels - 1

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        b, n, _ = q.shape
        h = F.leaky_relu(self.conv(q.transpose(1, 2)), 0.1).transpose(1, 2)  # (B, N, C)
        logits = self.out(h).reshape(b, n * self.per_token, self.n_labels)  # (B, N*u, P+1)
        return logits.log_softmax(-1)


def greedy_decode(log_probs: torch.Tensor, blank: int) -> list[int]:
    """(T, P+1) -> phoneme ids: best label per frame, repeats collapsed, blanks dropped."""
    best = log_probs.argmax(-1).tolist()
    return [c for i, c in enumerate(best) if c != blank and (i == 0 or c != best[i - 1])]


def forced_align(log_probs: torch.Tensor, target: list[int], blank: int) -> list[int]:
    """(T, P+1) and a phoneme sequence -> a label per frame (blank or target phoneme), the best CTC path.

    Raises ValueError when T frames cannot hold the sequence (CTC needs a frame per label plus one between repeats)."""
    ext = [blank]
    for c in target:
        ext += [c, blank]  # the CTC topology: blank, p1, blank, p2, ..., blank
    s_len, t_len = len(ext), log_probs.shape[0]
    lp = log_probs[:, ext].double()  # (T, S)
    neg = torch.tensor(float("-inf"), dtype=torch.float64)
    score = torch.full((s_len,), float("-inf"), dtype=torch.float64)
    score[0] = lp[0, 0]
    if s_len > 1:
        score[1] = lp[0, 1]
    # a state may come from itself, the one before, or two before when that skips a blank between different labels
    skip_ok = torch.tensor([s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] for s in range(s_len)])
    back = torch.zeros(t_len, s_len, dtype=torch.long)
    for t in range(1, t_len):
        stay = score
        prev1 = torch.cat([neg[None], score[:-1]])
        prev2 = torch.where(skip_ok, torch.cat([neg[None].expand(2), score[:-2]]), neg)
        cand = torch.stack([stay, prev1, prev2])  # (3, S)
        best, arg = cand.max(0)
        score, back[t] = best + lp[t], arg
    ends = [s_len - 1] + ([s_len - 2] if s_len > 1 else [])
    s = max(ends, key=lambda e: score[e].item())
    if score[s].item() == float("-inf"):
        raise ValueError(f"{t_len} label frames cannot hold {len(target)} phonemes")
    path = [0] * t_len
    for t in range(t_len - 1, -1, -1):
        path[t] = ext[s]
        s -= int(back[t, s])
    return path


def edit_distance(ref: list[int], hyp: list[int]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]
