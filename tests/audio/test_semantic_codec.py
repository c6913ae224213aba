"""The semantic built-in codec: trained end to end on tiny jsonl rows, recorded as its kind, refused where the other
kind is expected, told apart by its identity; the CTC pieces it is made of."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer, CodecConfig, TrainArgs, load_codec, \
    train_codec
from vita_audio.audio.builtin.ctc import CtcHead, edit_distance, forced_align, greedy_decode
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.audio.builtin.phonemes import INVENTORY
from vita_audio.audio.builtin.transcripts import read_utterances

from .conftest import TINY

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt install espeak-ng)")
SEM = CodecConfig(**{**TINY.to_dict(), "kind": "semantic", "ctc_channels": 16})
SEM_ARGS = TrainArgs(steps=6, batch_size=3, lr=5e-3, warmup_steps=2, restart_every=3, num_threads=1)
SENTENCES = ["The cat sat on the mat.", "Open the window please.", "Seven green apples."]


def _espeak_wav(path, text, voice):
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path.name


@pytest.fixture(scope="module")
def rows_jsonl(tmp_path_factory):
    """ASR rows in two 'voices' (hibari: the reconstruction voice), a TTS row, and a sentence with no phonemes."""
    d = tmp_path_factory.mktemp("semantic_rows")
    rows = []
    for i, text in enumerate(SENTENCES):
        for voice, ev in (("hibari", "en-us"), ("espeak-en-gb", "en-gb")):
            wav = _espeak_wav(d / f"s{i}_{voice}.wav", text, ev)
            rows.append({"messages": [{"role": "user", "content": "Convert the speech to text.\n<|audio|>"},
                                      {"role": "assistant", "content": text}],
                         "audios": [wav], "task": "asr", "voice": voice})
    rows.append({"messages": [{"role": "user", "content": "Convert the text to speech.\n..."},
                              {"role": "assistant", "content": "<|audio|>"}],
                 "audios": [_espeak_wav(d / "dots.wav", "hmm", "en-us")], "task": "tts", "voice": "hibari"})
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d / "train.jsonl"


@pytest.fixture(scope="module")
def semantic_dir(rows_jsonl, tmp_path_factory):
    torch.manual_seed(0)
    return train_codec(rows_jsonl, tmp_path_factory.mktemp("codec") / "semantic", SEM, SEM_ARGS)


@needs_espeak
def test_semantic_training_writes_a_semantic_codec(semantic_dir):
    cfg = json.loads((semantic_dir / "config.json").read_text())
    assert cfg["kind"] == "semantic" and cfg["phonemes"] == list(INVENTORY)
    info = json.loads((semantic_dir / "training.json").read_text())
    assert info["finished"] and info["kind"] == "semantic" and info["voices"] == ["espeak-en-gb", "hibari"]
    assert info["files"] == 7 and info["skipped"] == 1 and "no phonemes for '...'" in info["skipped_first"][0][1]
    assert all(h["ctc"] > 0 for h in info["history"])
    model = load_codec(semantic_dir, expected_kind="semantic")
    assert model.ctc is not None and model.ctc.n_labels == len(INVENTORY) + 1
    tok = BuiltinTokenizer(semantic_dir, expected_kind="semantic")
    codes = tok.encode(torch.zeros(16000).uniform_(-0.1, 0.1), 16000)
    assert tok.kind == "semantic" and codes.numel() == 25
    assert BuiltinDetokenizer(semantic_dir, expected_kind="semantic").decode(codes)[0].numel() == 25 * 640


@needs_espeak
def test_the_other_kind_is_refused_naming_both_and_the_fix(semantic_dir, codec_dir):
    with pytest.raises(ValueError, match=r"of kind 'semantic' but the config expects kind 'acoustic'.*"
                                         r"audio=builtin_semantic"):
        BuiltinTokenizer(semantic_dir, expected_kind="acoustic")
    with pytest.raises(ValueError, match=r"of kind 'acoustic' but the config expects kind 'semantic'.*"
                                         r"audio=builtin\b"):
        BuiltinDetokenizer(codec_dir, expected_kind="semantic")


def test_a_codec_dir_without_kind_is_acoustic_and_keeps_its_identity(codec_dir):
    """The acoustic config.json is the layout of before (no semantic keys), so old identities stay valid."""
    stored = json.loads((codec_dir / "config.json").read_text())
    assert "kind" not in stored and "phonemes" not in stored
    assert load_codec(codec_dir, expected_kind="acoustic").cfg.kind == "acoustic"
    tok = BuiltinTokenizer(codec_dir)
    assert tok.kind == "acoustic" and tok.identity.startswith("builtin-25hz-32-")


@needs_espeak
def test_identity_differs_between_kinds(semantic_dir, codec_dir):
    sem, ac = BuiltinTokenizer(semantic_dir).identity, BuiltinTokenizer(codec_dir).identity
    assert sem.startswith("builtin-semantic-25hz-32-") and ac.startswith("builtin-25hz-") and sem != ac
    torch.manual_seed(0)
    mem_sem = BuiltinTokenizer(CodecModel(SEM)).identity
    assert mem_sem.startswith("builtin-mem-semantic-") and "semantic" not in BuiltinTokenizer(CodecModel(TINY)).identity


def test_config_kind_validation():
    assert CodecConfig(kind="semantic").phonemes == INVENTORY
    with pytest.raises(ValueError, match="codec kind 'phonetic'"):
        CodecConfig(kind="phonetic")
    with pytest.raises(ValueError, match="acoustic codec has no phoneme inventory"):
        CodecConfig(phonemes=("a",))
    with pytest.raises(ValueError, match="ctc_hop_frames"):
        CodecConfig(kind="semantic", frames_per_token=4, ctc_hop_frames=3)
    assert CodecConfig.from_dict(CodecConfig(kind="semantic", frames_per_token=8).to_dict()).ctc_labels_per_token == 4


def test_transcripts_follow_the_task_and_voice(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "<|audio|>"},
                          {"role": "assistant", "content": "Yes, it is.\n<|audio|>"}],
             "audios": ["q.wav", "a.wav"], "task": "sqa", "question": "Is it?", "voice": "espeak-x"},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<|audio|>"}],
             "audios": ["z.wav"], "task": "chat", "voice": "hibari"},
            {"messages": [{"role": "user", "content": "no audio"}], "task": "text"}]
    (tmp_path / "x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    utts, skipped = read_utterances(tmp_path / "x.jsonl")
    assert [(u.path.name, u.text, u.voice) for u in utts] == [("a.wav", "Yes, it is.", "hibari"),
                                                               ("q.wav", "Is it?", "espeak-x")]
    assert len(skipped) == 1 and "x.jsonl:2" in skipped[0][0] and "'chat'" in skipped[0][1]
    with pytest.raises(ValueError, match="trains on VITA jsonl files"):
        read_utterances(tmp_path)


def test_ctc_loss_decreases_on_a_toy_batch():
    """The head learns two fixed phoneme sequences from fixed code vectors (what training asks of it)."""
    torch.manual_seed(0)
    head = CtcHead(SEM)
    q = torch.randn(2, 10, SEM.latent_dim)  # (B, N, D): 10 tokens, 2 labels each
    targets, tlens = torch.tensor([3, 5, 5, 7, 1, 2, 3]), torch.tensor([4, 3])
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(200):
        loss = F.ctc_loss(head(q).transpose(0, 1), targets, torch.tensor([20, 20]), tlens, blank=head.blank)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    lp = head(q)
    assert greedy_decode(lp[0], head.blank) == [3, 5, 5, 7] and greedy_decode(lp[1], head.blank) == [1, 2, 3]
    path = forced_align(lp[0], [3, 5, 5, 7], head.blank)
    assert greedy_decode(F.one_hot(torch.tensor(path), head.n_labels).float(), head.blank) == [3, 5, 5, 7]


def test_forced_align_against_a_known_path():
    blank, path = 4, [4, 1, 1, 4, 2, 4, 4, 2, 3, 4]
    lp = torch.full((len(path), 5), -5.0)
    lp[torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert forced_align(lp.log_softmax(-1), [1, 2, 2, 3], blank) == path
    with pytest.raises(ValueError, match="cannot hold"):
        forced_align(lp[:3].log_softmax(-1), [1, 2, 2, 3], blank)
    assert edit_distance([1, 2, 3], [1, 3, 4]) == 2 and edit_distance([], [1]) == 1


@needs_espeak
def test_cli_trains_the_semantic_kind_from_the_audio_group(tmp_path, rows_jsonl):
    """`train_codec audio=builtin_semantic` (the demo's codec step): the group's kind, rate and directory."""
    from tests.audio.test_config import TINY_OVERRIDES, compose_codec
    from vita_audio.cli.train_codec import run

    cfg = compose_codec(tmp_path, ["audio=builtin_semantic", f"wavs=[{rows_jsonl}]", "codec.ctc_channels=8",
                                   *TINY_OVERRIDES])
    out = run(cfg)
    assert out == tmp_path / "artifacts/codec/builtin_semantic"
    tok = instantiate(cfg.audio.tokenizer)
    assert tok.kind == "semantic" and tok.frame_rate == 25.0 and tok.codebook_size == 32
    acoustic = compose_codec(tmp_path, [f"paths.codec_dir={out}", *TINY_OVERRIDES])
    with pytest.raises(Exception, match="kind 'semantic' but the config expects kind 'acoustic'"):
        instantiate(acoustic.audio.tokenizer)


def test_semantic_arguments_leave_the_acoustic_run_key_alone(wav_dir):
    """A finished acoustic codec is not retrained because TrainArgs grew semantic-only fields."""
    from vita_audio.audio.builtin.train import _run_key, collect_wavs

    paths, other = collect_wavs(wav_dir), TrainArgs(ctc_weight=2.0, recon_voices=["x"])
    assert _run_key(TINY, TrainArgs(), paths) == _run_key(TINY, other, paths)
    assert _run_key(SEM, TrainArgs(), paths) != _run_key(SEM, other, paths)


@needs_espeak
def test_a_model_trained_on_one_kind_refuses_the_other(semantic_dir, codec_dir):
    """A checkpoint stores its tokenizer's identity; the kind is in it, so the error names both kinds."""
    from vita_audio.checkpoint.codec import CodecMismatchError, check_codec, codec_record

    sem = BuiltinTokenizer(semantic_dir)
    stored = codec_record("builtin", sem.codebook_size, sem.frame_rate, sem.identity)
    check_codec(stored, sem, None)
    with pytest.raises(CodecMismatchError, match=r"'builtin-semantic-25hz-32-.*but the one given is 'builtin-25hz-32-"):
        check_codec(stored, BuiltinTokenizer(codec_dir), None)


@needs_espeak
def test_cli_semantic_at_12_5_hz_follows_the_audio_group(tmp_path, rows_jsonl):
    from tests.audio.test_config import TINY_OVERRIDES, compose_codec
    from vita_audio.cli.train_codec import run

    cfg = compose_codec(tmp_path, ["audio=builtin_semantic", "audio.frame_rate=12.5", "audio.frames_per_token=8",
                                   f"wavs=[{rows_jsonl}]", "codec.ctc_channels=8", *TINY_OVERRIDES])
    run(cfg)
    model = instantiate(cfg.audio.detokenizer).model
    assert model.cfg.frame_rate == 12.5 and model.cfg.ctc_labels_per_token == 4
