"""WeChat protocol: the server-API client, open-data crypto and the emulator (no Flask)."""

from .client import (
    Code2SessionResult,
    CodeUsed,
    InvalidCode,
    UserBlocked,
    WeChatAPIError,
    WeChatBadResponse,
    WeChatBusy,
    WeChatClient,
    WeChatError,
    WeChatRateLimited,
    WeChatTimeout,
    WeChatUnreachable,
)

__all__ = [
    "Code2SessionResult",
    "CodeUsed",
    "InvalidCode",
    "UserBlocked",
    "WeChatAPIError",
    "WeChatBadResponse",
    "WeChatBusy",
    "WeChatClient",
    "WeChatError",
    "WeChatRateLimited",
    "WeChatTimeout",
    "WeChatUnreachable",
]
