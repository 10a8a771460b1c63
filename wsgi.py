"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi …``."""

import sys

from config import ConfigError, check_server_mode
from wxauth import create_app

try:
    check_server_mode()  # a WSGI server never serves development mode by accident
    app = create_app()
except ConfigError as exc:
    # One clear line instead of a traceback. Exit status 4 is gunicorn's "App failed to
    # load": the arbiter stops instead of respawning workers that cannot start.
    print(f"wxauth: configuration error: {exc}", file=sys.stderr)
    sys.exit(4)
