"""Serve a checkpoint over HTTP: `python serve.py ckpt_path=... [server.slots=4] [port=8000] [host=0.0.0.0]`.

checkpoint -> SpeechLM.from_pretrained (model + audio codec from conf/audio) -> FastAPI app (vita_audio.serve) ->
uvicorn. The checkpoint's sampling defaults fill the `server.sampling` keys left null.
"""

from __future__ import annotations

import sys

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from vita_audio.audio.io import AudioError
from vita_audio.checkpoint.codec import CodecParts
from vita_audio.checkpoint.generation import sampling_defaults
from vita_audio.cli.common import CONFIG_DIR, log, set_runtime_env
from vita_audio.inference import SpeechLM

try:  # the server's packages are an extra: say which, in one line, instead of a traceback
    from vita_audio.serve import ServeSettings, create_app
except ModuleNotFoundError as err:
    sys.exit(f"serve.py: {err}")


def build_app(cfg: DictConfig):
    """The app of a composed serve config (tests call this and run it in-process)."""
    set_runtime_env()
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    # a Plus checkpoint reads input audio with its own encoder: no audio tokenizer
    speech = SpeechLM.from_pretrained(cfg.ckpt_path, audio=CodecParts.from_config(cfg.audio, hydra.utils.instantiate),
                                      dtype=cfg.get("dtype"))
    server = OmegaConf.to_container(cfg.server, resolve=True)
    asked = {k: v for k, v in (server.get("sampling") or {}).items() if v is not None}
    server["sampling"] = {**sampling_defaults(speech.lm.generation_config), **asked}
    settings = ServeSettings(**server)
    return create_app(speech, settings)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="serve")
def main(cfg: DictConfig) -> None:
    import uvicorn

    try:
        app = build_app(cfg)
    except (ValueError, FileNotFoundError, AudioError) as err:
        sys.exit(f"serve.py: {err}")
    auth = "an API key" if app.state.settings.api_key else "no API key"
    log.info("serving %s on http://%s:%d/ (%s, %d slot(s))", cfg.ckpt_path, cfg.host, cfg.port, auth,
             app.state.settings.slots)
    uvicorn.run(app, host=str(cfg.host), port=int(cfg.port), log_level=str(cfg.log_level))


if __name__ == "__main__":
    main()
