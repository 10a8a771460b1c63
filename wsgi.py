"""WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi …``."""

import gc
import sys

from config import ConfigError
from wxauth import create_app

try:
    app = create_app()
except ConfigError as exc:
    # One clear line instead of a traceback. Exit status 4 is gunicorn's "App failed to
    # load": the arbiter stops instead of respawning workers that cannot start.
    print(f"wxauth: configuration error: {exc}", file=sys.stderr)
    sys.exit(4)

# What exists now (modules, the app, SQLAlchemy's mappings: ~100,000 objects) lives as long as
# the process: out of the cyclic collector's way, whose full passes over it cost ~20 µs per
# request otherwise (measured for `make bench`'s scenarios).
gc.freeze()
