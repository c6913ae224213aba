"""Fill the audio-token cache: run the configured audio tokenizer once over every audio file of the data.

    # every audio file of the data config's train and val sources, with the configured audio tokenizer
    python -m vita_audio.cli.tokenize --data corpus --audio builtin
    # stage-4 data, two processes, skip unreadable files (counted and listed)
    python -m vita_audio.cli.tokenize --data corpus_sft --jobs 2 --on-error skip
    # extra jsonl files (e.g. test splits for evaluation) and Hydra overrides
    python -m vita_audio.cli.tokenize --jsonl artifacts/corpus/asr/test.jsonl paths.root_dir=/data/run1
    # the codec was retrained: wipe the namespace and encode everything again
    python -m vita_audio.cli.tokenize --data corpus --rebuild

The configuration is composed from `conf/train.yaml` with `data=<--data>` and `audio=<--audio>`; the tokenizer is
`hydra.utils.instantiate(cfg.audio.tokenizer)` and the cache is `cfg.data.cache_dir / cfg.data.cache_name`.
Safe to run twice (cached files are skipped), resumable, and several processes may fill one cache. Each process
also writes the content hashes of its files to the cache's manifest, so training does not read the audio again.
From Python: `vita_audio.data.tokenize.audio_paths` + `vita_audio.data.cache.build_cache` with any `AudioTokenizer`.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import shutil
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vita_audio.cli.config_dir import CONFIG_DIR
from vita_audio.data.cache import build_cache
from vita_audio.data.tokenize import COMMAND, audio_paths, source_files

log = logging.getLogger(__name__)


def compose(data: str, audio: str, overrides: list[str], conf_dir: str = CONFIG_DIR) -> DictConfig:
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=[f"data={data}", f"audio={audio}", *overrides])


def _worker(args: tuple) -> dict:
    tokenizer_cfg, cache_dir, cache_name, paths, shard, num_shards, on_error = args
    import torch

    torch.set_num_threads(1)
    tokenizer = instantiate(tokenizer_cfg)  # a resolved plain dict: picklable for spawned workers
    return build_cache(paths, tokenizer, cache_dir, cache_name, shard=shard, num_shards=num_shards, on_error=on_error)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="corpus", help="data config (conf/data/<name>.yaml) whose sources to encode")
    p.add_argument("--audio", default="builtin", help="audio config (conf/audio/<name>.yaml) with the tokenizer")
    p.add_argument("--jsonl", action="append", default=[], help="another jsonl file to encode (repeatable)")
    p.add_argument("--no-sources", action="store_true", help="only the --jsonl files, not the data config's")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes (each loads the tokenizer)")
    p.add_argument("--on-error", choices=["error", "skip"], default="error")
    p.add_argument("--rebuild", action="store_true", help="wipe the cache namespace first and encode everything")
    p.add_argument("--conf-dir", default=CONFIG_DIR, help="the configuration folder (default: the package's)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. paths.root_dir=/data")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    cfg = compose(a.data, a.audio, a.overrides, a.conf_dir)
    files = [] if a.no_sources else source_files(cfg.data.get("train_sources"), cfg.data.get("val_sources"))
    files += a.jsonl
    paths, skips = audio_paths(files, a.on_error)
    log.info("%d audio files in %d jsonl files -> cache %s/%s", len(paths), len(files), cfg.data.cache_dir,
             cfg.data.cache_name)
    if a.rebuild:
        root = Path(cfg.data.cache_dir) / cfg.data.cache_name
        log.info("--rebuild: removing %s", root)
        shutil.rmtree(root, ignore_errors=True)
    tokenizer_cfg = OmegaConf.to_container(cfg.audio.tokenizer, resolve=True)
    jobs = [(tokenizer_cfg, str(cfg.data.cache_dir), str(cfg.data.cache_name), paths, i, a.jobs, a.on_error)
            for i in range(a.jobs)]
    if a.jobs > 1:
        with mp.get_context("spawn").Pool(a.jobs) as pool:
            results = pool.map(_worker, jobs)
    else:
        results = [_worker(jobs[0])]
    stats = {k: sum(r[k] for r in results) for k in results[0]}
    stats["records_skipped"] = skips.total()
    print(json.dumps(stats))
    return stats


def console() -> None:
    """The `vita-tokenize` command: `main` without its return value (a console script's return is its exit code)."""
    main()


if __name__ == "__main__":
    main()
