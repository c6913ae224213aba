"""Server settings: one dataclass, mirrored one-to-one by the `server:` node of conf/serve.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServeSettings:
    """What the HTTP layer and the engine need to know.

    Args:
        model_name: the id `/v1/models` lists and requests must name.
        api_key: when set, every /v1 request needs `Authorization: Bearer <api_key>` (else 401).
        slots: generations decoded at once; more requests wait in the queue.
        max_queue: requests waiting for a slot at most; beyond that a request gets 503 (server_overloaded).
        max_batch: waiting requests with the same decode options are prefilled together, up to this many rows.
        batch_window_s: while more requests are on their way (their audio being encoded), a waiting one is held
            back up to this long so that requests sent together are prefilled as one batch.
        codec_threads: threads synthesising the answers' audio beside decoding (0 = in the decoding thread).
        max_body_bytes: a larger request body gets 413.
        max_audio_seconds: a longer input_audio part gets 400.
        max_tokens: the default (and the upper bound) of a request's max_tokens.
        mode: the default decode mode (vanilla | balance | boost | turbo | verified); None = the checkpoint's.
        sampling: defaults of do_sample / temperature / top_k / top_p / repetition_penalty / seed.
        stop_ids: None = `<|im_end|>` and eos; [] = never stop before max_tokens.
    """

    model_name: str = "vita-audio"
    api_key: str | None = None
    slots: int = 4
    max_queue: int = 16
    max_batch: int = 4
    batch_window_s: float = 0.05
    codec_threads: int = 2
    max_body_bytes: int = 20 * 1024 * 1024
    max_audio_seconds: float = 60.0
    max_tokens: int = 512
    mode: str | None = None
    sampling: dict = field(default_factory=dict)
    stop_ids: list[int] | None = None

    def __post_init__(self) -> None:
        if self.slots < 1 or self.max_batch < 1 or min(self.max_queue, self.batch_window_s, self.codec_threads) < 0:
            raise ValueError(f"slots and max_batch must be >= 1, max_queue, batch_window_s and codec_threads >= 0; "
                             f"got slots={self.slots}, max_batch={self.max_batch}, max_queue={self.max_queue}, "
                             f"batch_window_s={self.batch_window_s}, codec_threads={self.codec_threads}")
        if self.api_key is not None and not str(self.api_key).strip():
            self.api_key = None
