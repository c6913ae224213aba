"""The HTTP server: OpenAI-style chat completions with audio in and out, SSE streaming, and a web page.

    speech = SpeechLM(load_model(ckpt), tokenizer, detokenizer)
    app = create_app(speech, ServeSettings(slots=4))      # a FastAPI app; uvicorn.run(app, host=..., port=...)

    request -> protocol.parse_request -> prompt ids -> Engine (one scheduler thread, decoders interleaved
            step by step, waiting requests with the same decode options prefilled together as one batch)
            -> per-request events (TextDelta / AudioChunk / Done) -> SSE chunks or one JSON response
"""

from vita_audio.serve.app import create_app
from vita_audio.serve.engine import Engine, Overloaded
from vita_audio.serve.settings import ServeSettings

__all__ = ["Engine", "Overloaded", "ServeSettings", "create_app"]
