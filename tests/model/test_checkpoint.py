"""Export -> import round trips, and a checkpoint hand-written in the reference layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch.utils._python_dispatch import TorchDispatchMode

from vita_audio.checkpoint import export_pretrained, load_pretrained
from vita_audio.model.backbone import Backbone
from vita_audio.model.lm import VitaAudioLM
from vita_audio.model.mctp import MCTPStack

N = 3
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=2048)


def _lm(model_type="qwen2", tied=False, n=N, seed=0) -> VitaAudioLM:
    bb = Backbone(64, config=dict(model_type=model_type, tie_word_embeddings=tied, **TINY), tokenizer="tiny", seed=seed)
    torch.manual_seed(seed + 1)
    stack = MCTPStack(bb.config, n) if n else None
    if stack is not None:
        with torch.no_grad():  # norms away from 1 so that a mix-up of norms would show
            for p in stack.parameters():
                if p.dim() == 1:
                    p.add_(0.1 * torch.randn_like(p))
    return VitaAudioLM(bb, stack).eval()


@pytest.fixture(scope="module")
def lm():
    return _lm()


def _assert_same_logits(a: VitaAudioLM, b: VitaAudioLM, vocab: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (2, 13), generator=g)
    sids = torch.tensor([[0] * 6 + [1] * 7, [0] * 10 + [-1] * 3])
    pos = torch.cat([torch.arange(6), torch.arange(7)])[None].repeat(2, 1)
    with torch.no_grad():
        for kwargs in ({}, dict(position_ids=pos, sample_ids=sids)):
            la, lka = a(ids, **kwargs)
            lb, lkb = b(ids, **kwargs)
            assert torch.equal(la, lb)
            assert len(lka) == len(lkb) == a.num_mctp_modules
            for x, y in zip(lka, lkb):
                assert torch.equal(x, y)


@pytest.mark.parametrize("max_shard_size", ["5GB", 150_000])
def test_export_import_round_trip(lm, tmp_path, max_shard_size):
    out = export_pretrained(lm, tmp_path / "ckpt", interleave_ratio=[1, 10, 4, 10],
                            extra_generation_config={"temperature": 0.7}, max_shard_size=max_shard_size)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "qwen2_mtp" and cfg["num_hidden_layers"] == 2 + N
    assert cfg["num_nextn_predict_layers"] == N and "auto_map" not in cfg and cfg["architectures"]
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["mtp_inference_mode"] == [1, 10, 4, 10] and gen["audio_codebook_size"] == 64
    assert gen["temperature"] == 0.7
    sharded = (out / "model.safetensors.index.json").is_file()
    assert sharded == (max_shard_size == 150_000)
    if sharded:
        index = json.loads((out / "model.safetensors.index.json").read_text())
        names = set(index["weight_map"])
        assert len(set(index["weight_map"].values())) > 1
    else:
        from safetensors import safe_open

        with safe_open(str(out / "model.safetensors"), framework="pt") as f:
            names = set(f.keys())
    for k in range(N):
        assert f"model.layers.{2 + k}.self_attn.q_proj.weight" in names
        assert {f"mtp_projs.{k}.weight", f"mtp_embed_norms.{k}.weight", f"mtp_hidden_norms.{k}.weight"} <= names
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} <= names

    loaded = load_pretrained(out)
    assert loaded.num_mctp_modules == N and len(loaded.backbone.layers) == 2
    assert loaded.backbone.audio_vocab == lm.backbone.audio_vocab
    _assert_same_logits(lm, loaded, lm.backbone.vocab_size)


def test_plain_backbone_and_tied_llama_round_trip(tmp_path):
    plain = _lm(n=0)
    out = export_pretrained(plain, tmp_path / "plain")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and "num_nextn_predict_layers" not in cfg
    loaded = load_pretrained(out)
    assert loaded.mctp is None
    _assert_same_logits(plain, loaded, plain.backbone.vocab_size)
    # a plain export is an ordinary HF checkpoint
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True).eval()
    ids = torch.randint(0, plain.backbone.vocab_size, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, plain(ids)[0])

    tied = _lm("llama", tied=True, n=2)
    out = export_pretrained(tied, tmp_path / "tied")
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama_mtp"
    loaded = load_pretrained(out)
    assert loaded.backbone.lm_head.weight.data_ptr() == loaded.backbone.embed_tokens.weight.data_ptr()
    _assert_same_logits(tied, loaded, tied.backbone.vocab_size)


def _write_reference_layout(lm: VitaAudioLM, out: Path) -> dict[str, torch.Tensor]:
    """What a published VITA-Audio checkpoint looks like, written without the exporter."""
    out.mkdir(parents=True)
    bb, L = lm.backbone, len(lm.backbone.layers)
    tensors = {name: t.clone() for name, t in bb.model.state_dict().items()}  # model.*, lm_head.weight
    for k in range(lm.num_mctp_modules):
        for name, t in lm.mctp.layers[k].state_dict().items():
            tensors[f"model.layers.{L + k}.{name}"] = t.clone()
        tensors[f"mtp_projs.{k}.weight"] = lm.mctp.projs[k].weight.detach().clone()
        tensors[f"mtp_embed_norms.{k}.weight"] = lm.mctp.embed_norms[k].weight.detach().clone()
        tensors[f"mtp_hidden_norms.{k}.weight"] = lm.mctp.hidden_norms[k].weight.detach().clone()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(out / file), metadata={"format": "pt"})
    (out / "model.safetensors.index.json").write_text(json.dumps({
        "metadata": {"total_size": sum(t.numel() * 4 for t in tensors.values())},
        "weight_map": {k: f for f, keys in shards.items() for k in keys},
    }))
    cfg = bb.config.to_dict()
    cfg.pop("layer_types", None)  # older transformers wrote no layer_types
    cfg.update(model_type="qwen2_mtp", architectures=["Qwen2MTPForCausalLM"], num_hidden_layers=L + N,
               num_nextn_predict_layers=N, vocab_size=bb.vocab_size,
               auto_map={"AutoConfig": "configuration_qwen2_mtp.Qwen2MTPConfig",
                         "AutoModelForCausalLM": "modeling_qwen2_mtp.Qwen2MTPForCausalLM"})
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "generation_config.json").write_text(json.dumps({"mtp_inference_mode": [1, 10, 4, 10]}))
    sentinel = out / "EXECUTED"
    for module in ("configuration_qwen2_mtp.py", "modeling_qwen2_mtp.py"):
        (out / module).write_text(f"open({str(sentinel)!r}, 'w').write('custom code ran')\n")
    bb.tokenizer.save_pretrained(str(out))
    return tensors


def test_reference_layout_checkpoint_loads(lm, tmp_path):
    ref = tmp_path / "reference"
    tensors = _write_reference_layout(lm, ref)
    loaded = load_pretrained(ref)
    assert not (ref / "EXECUTED").exists()
    # no audio_codebook_size anywhere: counted from the <|audio_i|> tokens
    assert loaded.backbone.audio_vocab == lm.backbone.audio_vocab
    assert loaded.num_mctp_modules == N
    _assert_same_logits(lm, loaded, lm.backbone.vocab_size)
    # and exporting it again reproduces the same names and tensors
    again = export_pretrained(loaded, tmp_path / "again", max_shard_size=10**6)
    from safetensors import safe_open

    index = json.loads((again / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors)
    for file in set(index["weight_map"].values()):
        with safe_open(str(again / file), framework="pt") as f:
            for k in f.keys():
                assert torch.equal(f.get_tensor(k), tensors[k]), k


def test_strict_keys_name_missing_and_unexpected(lm, tmp_path):
    ref = tmp_path / "broken"
    tensors = _write_reference_layout(lm, ref)
    tensors.pop("mtp_projs.1.weight")
    tensors["mtp_projs.7.weight"] = torch.zeros(64, 128)
    for f in ref.glob("model-*.safetensors"):
        f.unlink()
    (ref / "model.safetensors.index.json").unlink()
    save_file(tensors, str(ref / "model.safetensors"))
    with pytest.raises(KeyError, match=r"missing keys: mtp_projs\.1\.weight.*unexpected keys: mtp_projs\.7\.weight"):
        load_pretrained(ref)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere")


# -- loading without a random initialisation ------------------------------------------------------------------------
_RANDOM_OPS = ("normal", "uniform", "rand", "bernoulli", "random_", "exponential", "cauchy", "geometric",
               "log_normal")


class _RandomOnRealTensors(TorchDispatchMode):
    """Records every random aten op (nn.init.*, Tensor.normal_, torch.randn, ...) that writes a real (non-meta)
    tensor: an initialisation that costs time and memory. The same ops on meta tensors are free and not recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if any(r in name for r in _RANDOM_OPS) and isinstance(out, torch.Tensor) and out.device.type != "meta":
            self.hits.append(name)
        return out


@pytest.fixture(scope="module")
def exported(lm, tmp_path_factory):
    return export_pretrained(lm, tmp_path_factory.mktemp("exported") / "ckpt")


def test_load_runs_no_random_initialisation(lm, exported):
    with _RandomOnRealTensors() as spy:  # positive control: an ordinary construction is seen
        MCTPStack(lm.backbone.config, 1)
    assert spy.hits
    with _RandomOnRealTensors() as spy:
        loaded = load_pretrained(exported)
    assert spy.hits == []
    _assert_same_logits(lm, loaded, lm.backbone.vocab_size)


def test_parameters_start_on_meta_and_end_as_the_checkpoint(lm, exported, monkeypatch):
    """Peak memory ~ one copy of the weights: the skeleton has no parameter storage when the checkpoint is
    assigned, and afterwards the parameters are the checkpoint's tensors (no second copy); buffers are real."""
    seen: dict[str, set[str]] = {}
    assign = VitaAudioLM.load_state_dict

    def spy(self, state_dict, *args, **kwargs):
        seen["devices"] = {p.device.type for p in self.parameters()}
        seen["assign"] = kwargs.get("assign")
        return assign(self, state_dict, *args, **kwargs)

    monkeypatch.setattr(VitaAudioLM, "load_state_dict", spy)
    loaded = load_pretrained(exported)
    assert seen == {"devices": {"meta"}, "assign": True}
    params = list(loaded.parameters())
    assert {p.device.type for p in params} == {"cpu"}
    assert len({p.untyped_storage().data_ptr() for p in params}) == len(params)  # one storage per tensor
    assert sum(p.numel() for p in params) == sum(p.numel() for p in lm.parameters())
    for name, buf in loaded.named_buffers():  # non-persistent (rotary inv_freq): computed on CPU as usual
        assert buf.device.type == "cpu" and torch.equal(buf, dict(lm.named_buffers())[name]), name


def test_load_dtype(lm, exported, tmp_path):
    bf16 = load_pretrained(exported, dtype="bfloat16")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert {b.dtype for b in bf16.buffers()} == {torch.float32}  # rotary inv_freq stays float32, as in HF
    ids = torch.randint(0, lm.backbone.vocab_size, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(bf16(ids)[0].float(), lm(ids)[0], atol=0.05, rtol=0.05)
    assert {p.dtype for p in load_pretrained(exported, dtype=torch.float32).parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="floating-point"):
        load_pretrained(exported, dtype="int8")
    # None: the dtype stored in config.json (`torch_dtype` of older HF, `dtype` of newer), else float32
    for key, value, expected in (("torch_dtype", "bfloat16", torch.bfloat16), ("dtype", "bfloat16", torch.bfloat16),
                                 ("dtype", None, torch.float32)):
        cfg = json.loads((exported / "config.json").read_text())
        cfg.pop("torch_dtype", None)
        cfg.pop("dtype", None)
        if value is not None:
            cfg[key] = value
        copy = tmp_path / f"{key}_{value}"
        copy.mkdir()
        for f in exported.iterdir():
            (copy / f.name).symlink_to(f)
        (copy / "config.json").unlink()
        (copy / "config.json").write_text(json.dumps(cfg))
        assert {p.dtype for p in load_pretrained(copy).parameters()} == {expected}, (key, value)


def test_tied_head_is_one_parameter_after_load(tmp_path):
    tied = _lm("llama", tied=True, n=1)
    loaded = load_pretrained(export_pretrained(tied, tmp_path / "tied"), dtype="bfloat16")
    assert loaded.backbone.lm_head.weight is loaded.backbone.embed_tokens.weight
    assert loaded.backbone.lm_head.weight.dtype == torch.bfloat16
