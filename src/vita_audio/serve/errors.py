"""OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status.

A failure the client cannot act on (a bug, a failing model call) is logged with the request id and answered with
an opaque message naming that id (`internal_error`): exception classes, paths and shapes stay in the server log.
"""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse

log = logging.getLogger("vita_audio.serve")


class APIError(Exception):
    """An error a client gets back as JSON (and, mid-stream, as an SSE `error` event)."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, "invalid_request_error", param, code)


def internal_error(err: BaseException, request_id: str) -> APIError:
    """Log `err` with its traceback under `request_id`; the client gets only the id."""
    log.error("request %s failed: %s: %s", request_id, type(err).__name__, err, exc_info=err)
    return APIError(500, f"the server failed to answer this request (request id {request_id}; the server log has "
                    "the details)", "server_error", None, "internal_error", {"X-Request-Id": request_id})
