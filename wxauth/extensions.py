"""Extension instances, created bare and bound to the app in `wxauth.create_app`."""

from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from .errors import ProblemApi


class Base(DeclarativeBase):
    pass


# Objects stay loaded after a commit: a request that commits and then answers with the same
# user does not read it again.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
# Flask-Migrate (and alembic, ~11 MB) is set up in wxauth.register_migrations, only where
# migrations can run: the flask CLI, development and tests — not in gunicorn's workers.
jwt = JWTManager()
api = ProblemApi()
# Client address: request.remote_addr, which honours X-Forwarded-For from TRUSTED_PROXIES only.
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
