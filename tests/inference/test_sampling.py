"""Seeds per row (a row samples the same alone and in any batch), the global RNG left alone, one meaning of greedy."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from transformers import RepetitionPenaltyLogitsProcessor

from tests.inference.conftest import N_MODULES, mixed_with_a_stopped_row, spy_mctp
from vita_audio.cli.common import CONFIG_DIR
from vita_audio.inference import Decoder, Sampling, generate
from vita_audio.inference.generate import run_decoder
from vita_audio.inference.sampling import Sampler

# every token possible, yet peaked enough that `spans` stops and opens audio spans at different steps per row
HOT = Sampling(temperature=0.05, top_k=0, top_p=1.0)


def test_a_seeded_row_samples_the_same_alone_and_in_a_batch(spans, span_prompts):
    """Default stops (rows end at different steps), mixed audio spans, sampling on: each row of a batch equals the
    same prompt decoded alone with the same seed, whatever the other rows and their seeds are."""
    kw = dict(schedule=[1, N_MODULES], max_new_tokens=24, sampling=HOT, drafting="all")
    seeds = [7, 7, 3, 11]  # equal and different seeds
    dec = Decoder(spans, span_prompts, seeds=seeds, **kw)
    calls = spy_mctp(dec)
    batch = run_decoder(dec)
    assert mixed_with_a_stopped_row(calls) > 0  # the premise: rows stopped while others were in and out of spans
    assert batch.seeds == seeds
    alone = [generate(spans, [p], seeds=[s], **kw).rows()[0] for p, s in zip(span_prompts, seeds)]
    assert batch.rows() == alone
    # Sampling.seed seeds every row: a row alone with that seed equals it inside the batch
    shared = generate(spans, span_prompts, **kw | dict(sampling=Sampling(temperature=0.05, top_k=0, top_p=1.0,
                                                                            seed=5)))
    assert shared.seeds == [5] * 4
    assert shared.rows()[2] == generate(spans, [span_prompts[2]], seeds=[5], **kw).rows()[0]
    # one prompt twice: equal seeds give equal rows, different seeds different rows
    p = span_prompts[1]
    same = generate(spans, [p, p, p], seeds=[4, 4, 9], **kw).rows()
    assert same[0] == same[1] != same[2]
    # a seed per row overrides Sampling.seed; None entries fall back to it
    mixed = generate(spans, [p, p], seeds=[None, 9], **kw | dict(sampling=Sampling(temperature=0.05, top_k=0,
                                                                                      top_p=1.0, seed=4)))
    assert mixed.rows() == same[1:]


def test_unseeded_rows_get_fresh_seeds_that_reproduce_them(spans, span_prompts):
    kw = dict(schedule=[1, N_MODULES], max_new_tokens=16, stop_ids=[], sampling=HOT)
    a, b = generate(spans, span_prompts[:2], **kw), generate(spans, span_prompts[:2], **kw)
    assert a.seeds != b.seeds and a.rows() != b.rows()
    assert generate(spans, span_prompts[:2], seeds=a.seeds, **kw).rows() == a.rows()


@pytest.mark.parametrize("seed", [None, 3], ids=["unseeded", "seeded"])
@pytest.mark.parametrize("verify", [False, True], ids=["batch", "verified"])
def test_generate_leaves_the_global_rng_alone(spans, span_prompts, seed, verify):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    generate(spans, span_prompts[:2], schedule=[1, N_MODULES], max_new_tokens=12, stop_ids=[], verify=verify,
             sampling=Sampling(temperature=1.0, seed=seed))
    assert torch.equal(torch.get_rng_state(), before)


def test_verified_sampling_uses_each_rows_seed(spans, span_prompts):
    """Verified mode decodes rows one by one; each row keeps its own seed (speculative sampling still runs)."""
    kw = dict(schedule=[1, N_MODULES], max_new_tokens=20, stop_ids=[], verify=True, sampling=HOT)
    batch = generate(spans, span_prompts[:3], seeds=[1, 2, 1], **kw)
    alone = [generate(spans, [p], seeds=[s], **kw).rows()[0] for p, s in zip(span_prompts[:3], [1, 2, 1])]
    assert batch.rows() == alone and batch.seeds == [1, 2, 1]
    assert len(batch.accepted) > 0


def test_bad_seeds_are_clear_errors(lm):
    with pytest.raises(ValueError, match="2 seeds for 1 prompt rows"):
        generate(lm, [[1, 2]], schedule="vanilla", max_new_tokens=2, seeds=[1, 2], sampling=HOT)
    with pytest.raises(ValueError, match=r"seeds\[0\] must be None or an integer"):
        generate(lm, [[1, 2]], schedule="vanilla", max_new_tokens=2, seeds=[-1], sampling=HOT)
    with pytest.raises(ValueError, match="Sampling.seed must be None or an integer"):
        Sampling(seed=1.5)


def test_greedy_means_the_unpenalised_argmax_unless_a_penalty_is_asked_for(spans, span_prompts):
    assert Sampling.greedy() == Sampling(do_sample=False)
    assert Sampling(do_sample=False).penalty == 1.0 and Sampling().penalty == 1.05
    assert Sampling(do_sample=False, repetition_penalty=1.2).penalty == 1.2
    assert Sampling(repetition_penalty=1.0).penalty == 1.0
    assert len(Sampler(Sampling(do_sample=False)).processors) == 0  # plain argmax: nothing touches the logits
    kw = dict(schedule=[1, N_MODULES], max_new_tokens=30, stop_ids=[])
    plain = generate(spans, span_prompts, **kw).rows()  # sampling=None
    assert generate(spans, span_prompts, sampling=Sampling(do_sample=False), **kw).rows() == plain
    penalised = generate(spans, span_prompts, sampling=Sampling(do_sample=False, repetition_penalty=1.05), **kw)
    assert penalised.rows() != plain  # the premise: the penalty changes this model's greedy answers


def test_infer_config_greedy_is_unpenalised():
    """`python infer.py sampling.do_sample=false`: the entry point's greedy is plain argmax, as Sampling.greedy()."""

    def sampler(*overrides: str) -> Sampler:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="infer", overrides=["ckpt_path=x", "input=y", *overrides])
        asked = {k: v for k, v in OmegaConf.to_container(cfg.sampling, resolve=True).items() if v is not None}
        return Sampler(Sampling(**asked))

    greedy = sampler("sampling.do_sample=false")
    assert not greedy.cfg.do_sample and len(greedy.processors) == 0
    penalties = [p.penalty for p in sampler().processors if isinstance(p, RepetitionPenaltyLogitsProcessor)]
    assert penalties == [1.05]  # sampling keeps the reference's penalty


def test_infer_greedy_drops_the_checkpoint_penalty_unless_asked():
    """A checkpoint that stores `repetition_penalty` (a sampling default) does not penalise `do_sample=false`;
    a penalty given on the command line still applies."""
    from types import SimpleNamespace

    from transformers import GenerationConfig
    from vita_audio.cli.infer import decode_options

    lm = SimpleNamespace(num_mctp_modules=0,
                         generation_config=GenerationConfig(do_sample=True, temperature=0.6,
                                                            repetition_penalty=1.3))
    speech = SimpleNamespace(lm=lm)

    def sampling(*overrides: str) -> Sampling:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="infer", overrides=["ckpt_path=x", "input=y", *overrides])
        return decode_options(cfg, speech)["sampling"]

    assert sampling("sampling.do_sample=false").penalty == 1.0
    assert sampling("sampling.do_sample=false", "sampling.repetition_penalty=1.2").penalty == 1.2
    assert sampling().penalty == 1.3 and sampling().temperature == 0.6  # sampling keeps the checkpoint's keys
    assert sampling("sampling.temperature=0.9").temperature == 0.9  # the command line wins
