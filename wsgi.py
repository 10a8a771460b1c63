"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi …``."""

import sys

from config import ConfigError, check_server_mode
from wxauth import create_app

try:
    check_server_mode()  # a WSGI server never serves development mode by accident
    app = create_app()
except ConfigError as exc:
    # One line per problem instead of a traceback. Exit status 4 is gunicorn's "App failed
    # to load" (gunicorn.conf.py's on_starting stops the master on it before any worker).
    for problem in exc.problems:
        print(f"wxauth: configuration error: {problem}", file=sys.stderr)
    sys.exit(4)
