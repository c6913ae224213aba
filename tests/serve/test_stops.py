"""Text stop sequences across deltas: held back while they may still be a stop, cut where the first one begins."""

from __future__ import annotations

import pytest

from vita_audio.serve.stops import StopText


@pytest.mark.parametrize("deltas, stops, sent, stopped", [
    (["Hello wo", "rld\n", "\nQ: next"], ["\n\nQ:"], "Hello world", True),
    (["ab", "cX", "Yd"], ["XY"], "abc", True),
    (["a\n", "b"], ["\n\n"], "a\nb", False),  # a held "\n" that did not become a stop is sent at the end
    (["one END two"], ["END", "one"], "", True),  # the earliest stop wins
    (["no stop here"], [], "no stop here", False),
])
def test_stop_text(deltas, stops, sent, stopped):
    st = StopText(stops)
    out = "".join(st.push(d) for d in deltas) + st.flush()
    assert (out, st.stopped) == (sent, stopped)
    if stopped:
        assert st.push("more") == "" and st.flush() == ""  # nothing after the stop
