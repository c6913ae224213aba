"""The HTTP server: OpenAI-style chat completions with audio in and out, SSE streaming, and a web page.

    speech = SpeechLM(load_model(ckpt), tokenizer, detokenizer)
    app = create_app(speech, ServeSettings(slots=4))      # a FastAPI app; uvicorn.run(app, host=..., port=...)

    request -> protocol.parse_request -> prompt ids -> Engine (one scheduler thread, decoders interleaved
            step by step, waiting requests with the same decode options prefilled together as one batch)
            -> per-request events (TextDelta / AudioChunk / Done) -> SSE chunks or one JSON response

It needs the `serve` extra (FastAPI, uvicorn); without it, importing this package says which command installs it.
"""

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ModuleNotFoundError as _err:  # e.g. after `make demo`, which installs only the demo's extras
    raise ModuleNotFoundError(f"the server needs the 'serve' extra ({_err.name} is not installed): run "
                              "pip install -e \".[serve]\" (make install installs every extra)",
                              name=_err.name) from None

from vita_audio.serve.app import create_app  # noqa: E402
from vita_audio.serve.engine import Engine, Overloaded  # noqa: E402
from vita_audio.serve.settings import ServeSettings  # noqa: E402

__all__ = ["Engine", "Overloaded", "ServeSettings", "create_app"]
