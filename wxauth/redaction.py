"""Secret redaction: one pattern of secret-bearing names, one logging filter.

Used by the log handlers (`wxauth.web.logs`), on urllib3's loggers (whose lines print each
request's URL, AppSecret included) and by the WeChat client for WeChat's ``errmsg``.
Stdlib only, so every layer may use it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# Names whose values are secret, as query parameters (``secret=…``), JSON members
# (``"session_key": "…"``) or headers (``Authorization: Bearer …``, ``… Basic …``).
SECRET_NAMES = (r"secret|appsecret|client_secret|js_code|code|access_token|refresh_token|"
                r"session_key|sessionkey|encrypteddata|encrypted_data|iv|signature|"
                r"authorization|password")

_FIELDS = re.compile(
    r"(?i)(\b(?:" + SECRET_NAMES + r")\b[\"']?\s*[:=]\s*[\"']?(?:(?:Bearer|Basic)\s+)?)"
    r"[^\"'&\s,}\]]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each literal secret, anything shaped like a JWT and the value of every
    secret-named field replaced (``***``, ``[jwt]``)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _JWT.sub("[jwt]", text)
    return _FIELDS.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """Redact secrets from a record's message and traceback text.

    Args:
        secrets: literal values to blank wherever they appear (the AppSecret, the JWT key…);
            values shorter than 6 characters are ignored.
    """

    def __init__(self, secrets: Iterable[str | None] = ()):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True
