"""The one way eval turns a sample id into a file name (generated wavs, cached question audio, report copies).

Injective: letters, digits, "-", "_", "." and "~" stay; every other character ("%" too) is percent-escaped, so
"a/b" -> "a%2Fb" and "a_b" -> "a_b" never meet, and "t:1" -> "t%3A1". A name past `MAX_LEN` characters is cut and
given a hash of the whole id, so two long ids that share a prefix still get two names.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

MAX_LEN = 180  # well under the 255 bytes most file systems allow, with room for a prefix and an extension


def safe_name(sample_id: str) -> str:
    """A sample id -> a file-name stem, distinct for distinct ids ("" -> "%" never clashes with an escape)."""
    sid = str(sample_id)
    name = quote(sid, safe="-_.") or "%"  # "%" alone is no escape sequence, so it names only the empty id
    if len(name) > MAX_LEN:
        digest = hashlib.sha256(sid.encode("utf-8")).hexdigest()[:16]
        name = f"{name[: MAX_LEN - 17]}+{digest}"  # "+" is escaped in every uncut name: the two kinds never meet
    return name
