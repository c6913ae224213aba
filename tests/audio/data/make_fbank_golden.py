"""Writes fbank_golden.json: the Kaldi fbank of `kaldi_test_signal()` (tests/audio/test_sensevoice.py) computed by
kaldi-native-fbank, an independent C++ implementation of Kaldi's compute-fbank-feats, with SenseVoice's front-end
options. kaldi-native-fbank is not a dependency of the project; to regenerate:

    .venv/bin/pip install --target /tmp/knf kaldi-native-fbank
    PYTHONPATH=/tmp/knf .venv/bin/python -m tests.audio.data.make_fbank_golden
"""

from __future__ import annotations

import json
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np

from tests.audio.test_sensevoice import FBANK_GOLDEN, SR, kaldi_test_signal

#: frames kept: the first ones, every ninth, the last voiced / first silent ones and the end
FRAMES = sorted({0, 1, 2, *range(0, 118, 9), 97, 98, 99, 100, 117})


def main() -> None:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SR
    opts.frame_opts.frame_length_ms, opts.frame_opts.frame_shift_ms = 25.0, 10.0
    opts.frame_opts.dither, opts.frame_opts.window_type, opts.frame_opts.snip_edges = 0.0, "hamming", True
    opts.mel_opts.num_bins, opts.mel_opts.low_freq = 80, 20.0
    opts.energy_floor = 0.0
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(SR, (kaldi_test_signal() * 32768.0).tolist())  # Kaldi reads 16-bit sample values
    fb.input_finished()
    values = np.stack([fb.get_frame(i) for i in FRAMES])  # (len(FRAMES), 80)
    FBANK_GOLDEN.write_text(json.dumps({
        "produced_by": f"kaldi-native-fbank {knf.__version__}, {Path(__file__).name}",
        "options": "samp_freq 16000, frame 25 ms / shift 10 ms, snip_edges, dither 0, remove_dc, preemph 0.97, "
                   "hamming, round_to_power_of_two (512), 80 bins from 20 Hz to Nyquist, power, log",
        "num_frames": fb.num_frames_ready, "frames": FRAMES,
        "values": [[round(float(v), 5) for v in row] for row in values]}) + "\n")


if __name__ == "__main__":
    main()
