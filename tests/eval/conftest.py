"""The evaluation tests' world: a tiny random model and codec, a tiny VITA jsonl set, and test doubles whose outputs
are scripted so the scoring arithmetic can be checked by hand."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import torch

from tests.audio.conftest import TINY as TINY_CODEC
from tests.audio.conftest import speechlike
from tests.inference.conftest import tiny_lm
from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer, save_codec
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.audio.io import write_audio
from vita_audio.checkpoint import export_pretrained
from vita_audio.inference import SpeechLM
from vita_audio.inference.stream import Finished, collect


class ParrotJudge:
    """A judge that 'hears' a fixed sentence: makes the scoring arithmetic checkable."""

    sample_rate = 16000

    def __init__(self, heard: str) -> None:
        self.heard = heard

    def transcribe(self, wav, sample_rate):
        return self.heard


class ScriptedSpeech:
    """A SpeechLM double: the real tiny model for modes, the answer to each input scripted (`answers[str(input)]`).
    With `audio`, the answer's 8 codes go through the detokenizer's streaming session inside the timed loop, as
    `inference/stream.py` does. Offers `stream` and `run`, so any task loop can drive it; every call's keyword
    arguments are kept in `calls`."""

    def __init__(self, speech: SpeechLM, answers: dict[str, str], audio: bool = False) -> None:
        self.lm, self.tokenizer, self.detokenizer = speech.lm, speech.tokenizer, speech.detokenizer
        self.input_sample_rate = speech.input_sample_rate
        self.answers, self.audio, self.calls = answers, audio, []

    def stream(self, task: str, inp, **kwargs) -> Iterator[Finished]:
        self.calls.append({"task": task, "input": str(inp), **kwargs})
        text = self.answers[str(inp)]

        def events() -> Iterator[Finished]:
            t0 = time.perf_counter()
            wav, first = None, None
            if self.audio and task != "asr":
                session = self.detokenizer.stream()
                pieces = [session.push(torch.tensor([c])) for c in range(8)] + [session.finish()]
                wav, first = torch.cat(pieces), time.perf_counter() - t0
            yield Finished(tokens=[1] * 10, text=text, codes=torch.arange(8), wav=wav,
                           sample_rate=self.detokenizer.sample_rate if wav is not None else None, backbone_forwards=10,
                           mctp_steps=0, first_audio_s=first, elapsed=time.perf_counter() - t0)

        return events()

    def run(self, task: str, inp, **kwargs) -> Finished:
        return collect(self.stream(task, inp, **kwargs))


class WholeFramesTokenizer(BuiltinTokenizer):
    """The built-in tokenizer keeping whole codec frames only, like codecs that drop a partial last frame: a clip
    shorter than one frame gives no code at all."""

    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        frames = int(wav.numel() * self.frame_rate // sample_rate)
        return super().encode(wav, sample_rate)[:frames]


class SlowDetokenizer(BuiltinDetokenizer):
    """The built-in detokenizer with `delay` seconds added to every streaming push (a slow codec)."""

    delay = 0.02

    def stream(self):
        session, delay = super().stream(), self.delay

        class Slow:
            def push(self, codes):
                time.sleep(delay)
                return session.push(codes)

            def finish(self):
                return session.finish()

        return Slow()


@pytest.fixture(scope="package")
def world(tmp_path_factory):
    """(root with test.jsonl and wavs/, SpeechLM, codec dir, exported checkpoint dir, codec model)."""
    root = tmp_path_factory.mktemp("evalset")
    (root / "wavs").mkdir()
    for i in range(3):
        write_audio(root / "wavs" / f"u{i}.wav", torch.from_numpy(speechlike(0.8, seed=i)), 16000)
    (root / "wavs" / "broken.wav").write_bytes(b"RIFF0000")
    rows = [
        {"messages": [{"role": "user", "content": "Convert the speech to text.\n<|audio|>"},
                      {"role": "assistant", "content": "seven times five"}], "audios": ["wavs/u0.wav"], "task": "asr"},
        {"messages": [{"role": "user", "content": "Convert the speech to text.\n<|audio|>"},
                      {"role": "assistant", "content": "hello there"}], "audios": ["wavs/broken.wav"], "task": "asr"},
        {"messages": [{"role": "user", "content": "Convert the text to speech.\nhello there"},
                      {"role": "assistant", "content": "<|audio|>"}], "audios": ["wavs/u1.wav"], "task": "tts"},
        {"messages": [{"role": "user", "content": "<|audio|>"},
                      {"role": "assistant", "content": "It is thirty five.\n<|audio|>"}],
         "audios": ["wavs/u2.wav", "wavs/u0.wav"], "answers": ["thirty five", "35"], "task": "sqa"},
        {"messages": [{"role": "user", "content": "no audio here"}]},  # invalid: counted, never silently dropped
    ]
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.manual_seed(0)
    codec = CodecModel(TINY_CODEC).eval()
    codec_dir = save_codec(codec, root / "codec")
    lm = tiny_lm()
    hf = export_pretrained(lm, root / "hf", interleave_ratio=[1, 4])
    speech = SpeechLM(lm, BuiltinTokenizer(codec), BuiltinDetokenizer(codec))
    return root, speech, codec_dir, hf, codec


def eval_cli(tmp_path, overrides: list[str]) -> tuple[dict, dict]:
    """eval.py as the command line runs it: conf/eval.yaml composed with `overrides`, outputs under tmp_path/out.
    Returns (the metrics `evaluate` returns, the metrics.json it saved)."""
    from hydra import compose, initialize_config_dir

    from vita_audio.cli.common import CONFIG_DIR
    from vita_audio.cli.eval import evaluate

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="eval", overrides=[*overrides, f"paths.root_dir={tmp_path}",
                                                     f"paths.output_dir={tmp_path}/out"])
    (tmp_path / "out").mkdir()
    metrics = evaluate(cfg)
    return metrics, json.loads((tmp_path / "out" / "metrics.json").read_text())


def world_eval_overrides(world, task: str, *extra: str) -> list[str]:
    """eval.py's overrides for `task` on the world's checkpoint, codec and jsonl set, Vanilla mode."""
    root, _, codec_dir, hf, _ = world
    return [f"task={task}", f"ckpt_path={hf}", "dataset=vita_jsonl", f"dataset.path={root / 'test.jsonl'}",
            f"paths.codec_dir={codec_dir}", "audio.codebook_size=32", f"audio.frame_rate={TINY_CODEC.frame_rate}",
            "task.modes=[vanilla]", *extra]
