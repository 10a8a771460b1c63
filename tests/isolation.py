"""Keep a developer's environment and `.env` out of the tests.

Imported first by conftest.py, before `config` reads `.env` (python-dotenv never overrides a
variable that is already set, even to the empty string, which config.py reads as unset).
Tests give every setting they need explicitly.
"""

import os

SETTINGS = (
    "API_BASE_URL", "API_DOCS", "AVATAR_MAX_BYTES", "AVATAR_MAX_SIDE", "DATABASE_URL", "DB_CONNECT_TIMEOUT",
    "DB_MAX_OVERFLOW", "DB_POOL_RECYCLE", "DB_STATEMENT_TIMEOUT",
    "DB_POOL_SIZE", "DB_POOL_TIMEOUT", "FLASK_DEBUG", "JWT_ACCESS_TOKEN_EXPIRES",
    "JWT_REFRESH_TOKEN_EXPIRES", "JWT_SECRET_KEY", "LOGIN_RATE_LIMIT", "LOG_FORMAT", "LOG_LEVEL",
    "MAX_CONTENT_LENGTH", "METRICS_TOKEN", "MEDIA_BASE_URL", "MEDIA_ROOT", "PORT", "REDIS_MAX_CONNECTIONS", "REDIS_PREFIX", "REDIS_TIMEOUT", "REDIS_URL",
    "SESSION_KEY_ENCRYPTION_KEY", "TRUSTED_PROXIES", "WECHAT_API_BASE", "WECHAT_APPID",
    "WECHAT_APPS", "WECHAT_BREAKER_COOLDOWN", "WECHAT_BREAKER_FAILURES", "WECHAT_BUSY_RETRIES",
    "WECHAT_CONTENT_CHECK", "WECHAT_DEADLINE", "WECHAT_MAX_CALLS", "WECHAT_PROXY",
    "WECHAT_SECRET", "WECHAT_TIMEOUT", "WECHAT_TOKEN_API", "WECHAT_WATERMARK_MAX_AGE",
    "WXAUTH_ALLOW_DEVELOPMENT",
)
# Read by gunicorn itself, which cannot take an empty value: removed instead.
PROCESS_SETTINGS = (
    "GUNICORN_BIND", "GUNICORN_WORKERS", "WEB_CONCURRENCY", "GUNICORN_THREADS",
    "GUNICORN_WORKER_CLASS", "GUNICORN_WORKER_CONNECTIONS",
    "GUNICORN_TIMEOUT", "GUNICORN_GRACEFUL_TIMEOUT", "GUNICORN_KEEPALIVE", "GUNICORN_ACCESSLOG",
    "PROMETHEUS_MULTIPROC_DIR",
)

for _name in SETTINGS:
    os.environ[_name] = ""
for _name in PROCESS_SETTINGS:
    os.environ.pop(_name, None)
