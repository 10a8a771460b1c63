"""Encryption of session_keys at rest: Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`,
with key rotation through its MultiFernet (encrypt with the newest key, decrypt with any)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

FERNET_PREFIX = "gAAAAA"  # every Fernet token starts with version byte 0x80 + timestamp


class SessionKeyCipher:
    """Encrypts WeChat session_keys (base64 text) for the database.

    Args:
        keys: Fernet keys (urlsafe base64 of 32 bytes), newest first.
    """

    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("no key given")
        try:
            self._fernets = [Fernet(key.encode()) for key in keys]
        except (ValueError, TypeError):
            raise ValueError("each key must be a Fernet key (urlsafe base64 of 32 bytes)") from None
        self._multi = MultiFernet(self._fernets)

    @classmethod
    def from_keys(cls, value: str) -> "SessionKeyCipher":
        """From a comma-separated list of keys, newest first."""
        return cls([k.strip() for k in value.split(",") if k.strip()])

    def encrypt(self, session_key: str) -> str:
        """Fernet token (text) of `session_key` under the newest key."""
        return self._multi.encrypt(session_key.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The session_key; raises cryptography.fernet.InvalidToken when no key opens it."""
        return self._multi.decrypt(token.encode()).decode()

    def needs_rotation(self, token: str) -> bool:
        """True when `token` is not (yet) encrypted under the newest key."""
        try:
            self._fernets[0].decrypt(token.encode())
        except InvalidToken:
            return True
        return False

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the newest key (InvalidToken when no key opens it)."""
        return self._multi.rotate(token.encode()).decode()

    @staticmethod
    def looks_encrypted(value: str) -> bool:
        """Whether a stored value is a Fernet token rather than a plain session_key."""
        return value.startswith(FERNET_PREFIX)
