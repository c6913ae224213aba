"""The export stores the audio codec the model was trained with; `SpeechLM` refuses another codec of the same size
(its codes mean other sounds) with a clear error, and `SpeechLM.from_pretrained` opens the stored kind."""

from __future__ import annotations

import pytest
import torch

from tests.audio.conftest import TINY as TINY_CODEC
from tests.checkpoint.conftest import tiny
from vita_audio.audio.builtin import BuiltinDetokenizer, BuiltinTokenizer, save_codec
from vita_audio.audio.builtin.model import CodecModel
from vita_audio.checkpoint import export_pretrained, load_model
from vita_audio.checkpoint.codec import CodecMismatchError, CodecParts, codec_record
from vita_audio.inference import SpeechLM


@pytest.fixture(scope="module")
def codecs(tmp_path_factory):
    root = tmp_path_factory.mktemp("codecs")
    out = []
    for seed in (0, 1):  # two codecs of the same size and rate, different weights
        torch.manual_seed(seed)
        out.append(save_codec(CodecModel(TINY_CODEC).eval(), root / f"codec{seed}"))
    return out


@pytest.fixture(scope="module")
def exported(codecs, tmp_path_factory):
    trained_with = BuiltinTokenizer(codecs[0])
    record = codec_record("builtin", trained_with.codebook_size, trained_with.frame_rate, trained_with.identity)
    return export_pretrained(tiny(2), tmp_path_factory.mktemp("hf") / "hf", interleave_ratio=[1, 2],
                             audio_codec=record)


def test_the_codec_it_was_trained_with_is_accepted(exported, codecs):
    speech = SpeechLM.from_pretrained(exported, codec_dir=codecs[0])  # the kind comes from the checkpoint
    assert isinstance(speech.tokenizer, BuiltinTokenizer) and isinstance(speech.detokenizer, BuiltinDetokenizer)
    assert SpeechLM.from_pretrained(exported, codec_dir=codecs[0], task="asr").detokenizer is None
    assert SpeechLM.from_pretrained(exported, codec_dir=codecs[0], task="tts").tokenizer is None


def test_another_codec_of_the_same_size_is_refused(exported, codecs):
    with pytest.raises(CodecMismatchError, match=r"trained with audio tokenizer 'builtin-.*but the one given is"):
        SpeechLM.from_pretrained(exported, codec_dir=codecs[1])
    lm = load_model(exported)
    with pytest.raises(CodecMismatchError, match="same size with other weights"):
        SpeechLM(lm, BuiltinTokenizer(codecs[1]), BuiltinDetokenizer(codecs[1]))


def test_a_codec_of_another_kind_is_refused(codecs, tmp_path):
    record = codec_record("glm4voice", 32, 12.5, None)
    hf = export_pretrained(tiny(2), tmp_path / "hf", audio_codec=record)
    with pytest.raises(CodecMismatchError, match=r"trained with the 'glm4voice' audio codec.*'builtin' one"):
        SpeechLM(load_model(hf), detokenizer=BuiltinDetokenizer(codecs[0]))
    with pytest.raises(ValueError, match="stores no audio codec kind"):
        SpeechLM.from_pretrained(export_pretrained(tiny(2), tmp_path / "bare"), codec_dir=codecs[0])


def test_a_config_of_the_other_codec_kind_is_refused_with_the_override_that_fixes_it():
    """Before any codec directory is opened (whose absence would say nothing about the cause), the kind of codes a
    checkpoint was trained with (its stored tokenizer identity) is compared with the one the audio config expects."""
    def never():
        raise AssertionError("opened")

    semantic = {"kind": "builtin", "identity": "builtin-semantic-25hz-2048-0123456789abcdef"}
    acoustic = {"kind": "builtin", "identity": "builtin-25hz-2048-0123456789abcdef"}
    with pytest.raises(CodecMismatchError, match="semantic built-in codec .* add audio=builtin_semantic"):
        CodecParts("builtin", never, never, "acoustic").check_variant(semantic, "ckpt")
    with pytest.raises(CodecMismatchError, match="acoustic built-in codec .* add audio=builtin$"):
        CodecParts("builtin", never, never, "semantic").check_variant(acoustic, "ckpt")
    for parts, stored in ((CodecParts("builtin", never, never, "semantic"), semantic),
                          (CodecParts("builtin", never, never, "acoustic"), acoustic),
                          (CodecParts("builtin", never, never, None), semantic),  # from a directory: checked on open
                          (CodecParts("builtin", never, never, "acoustic"), None)):  # nothing stored
        parts.check_variant(stored, "ckpt")
