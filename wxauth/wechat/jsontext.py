"""JSON text as mini-programs and WeChat send it, read strictly.

JSON may spell any UTF-16 code unit as ``\\uXXXX``, so ``"\\ud800"`` (half of a surrogate
pair, alone) is valid JSON, and Python's `json` turns it into a ``str`` that no UTF-8 text can
hold: PostgreSQL, MariaDB and SQLite's driver refuse it, and so does every UTF-8 log or file.
A proper pair (``"\\ud83d\\ude00"``, 😀) is one character and is fine.
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 control characters and DEL, which no text field stores (NUL above all: PostgreSQL refuses
# it; web.schemas refuses the same characters in requests)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# a \u escape of a surrogate code unit (D800–DFFF); the only way JSON text can carry one
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(text: str | bytes) -> Any:
    """`json.loads`, refusing unpaired surrogates anywhere (keys or values).

    Args:
        text: JSON text, ``str`` or UTF-8 ``bytes``.

    Returns:
        The decoded value, as `json.loads` gives it.

    Raises:
        ValueError: not UTF-8 (``UnicodeDecodeError``), not JSON or an integer of more digits
            than Python converts (``json.JSONDecodeError``), or a string holding an unpaired
            surrogate escape (``UnicodeEncodeError``).
        RecursionError: nested deeper than the interpreter's recursion limit.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # an integer longer than Python reads (4,300 digits by default)
        raise json.JSONDecodeError(f"Unreadable number: {exc}", text, 0) from None
    if _SURROGATE_ESCAPE.search(text):  # rare: only then look at the strings themselves
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return value


def is_clean_text(value: Any) -> bool:
    """Whether `value` is a ``str`` without control characters (U+0000–U+001F, U+007F)."""
    return isinstance(value, str) and _CONTROL.search(value) is None
