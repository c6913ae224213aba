"""Cache identities cover every byte of the weight files: a same-shape fine-tune (same size, same first and last
MiB) gets a new identity, so its audio-token cache is refused instead of being reused stale."""

import os

import numpy as np

from vita_audio.audio import digest
from vita_audio.audio.glm4voice.tokenizer import PREPROCESSOR_FILE, _fingerprint

MIB = 1 << 20


def _tokenizer_dir(root, weights: bytes):
    root.mkdir()
    (root / "config.json").write_text('{"quantize_vocab_size": 16384}')
    (root / PREPROCESSOR_FILE).write_text('{"sampling_rate": 16000}')
    (root / "model.safetensors").write_bytes(weights)
    return root


def test_same_size_weights_differing_in_the_middle_get_different_identities(tmp_path):
    base = np.random.default_rng(0).integers(0, 256, 5 * MIB, dtype=np.uint8).tobytes()  # 5 MiB of "weights"
    tuned = bytearray(base)
    tuned[len(base) // 2] ^= 0xFF  # one byte, far from both ends
    a = _tokenizer_dir(tmp_path / "base", base)
    b = _tokenizer_dir(tmp_path / "tuned", bytes(tuned))
    assert _fingerprint(a) != _fingerprint(b)
    assert _fingerprint(a) == _fingerprint(_tokenizer_dir(tmp_path / "copy", base))  # content, not location


def test_weights_digest_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    calls = []
    real = digest.file_digest
    monkeypatch.setattr(digest, "file_digest", lambda p: calls.append(p) or real(p))
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"a" * 3000)
    first = digest.weights_digest(f)
    assert digest.weights_digest(f) == first and len(calls) == 1  # read once per process
    f.write_bytes(b"a" * 1500 + b"b" + b"a" * 1499)  # same size, rewritten in place
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a later mtime, even on a coarse clock
    assert digest.weights_digest(f) != first and len(calls) == 2
    assert digest.weights_digest(f) == digest.file_digest(f)
