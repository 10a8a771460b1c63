"""Extension instances, created bare and bound to the app in `wxauth.create_app`."""

from flask_jwt_extended import JWTManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase

from .errors import ProblemApi


class Base(DeclarativeBase):
    pass


# Objects stay loaded after a commit: a request that commits and then answers with the same
# user does not read it again.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
jwt = JWTManager()  # settings and token creation; requests are checked in wxauth.web.security
api = ProblemApi()
# CSRF tokens of the support console's forms (bound only while ADMIN_CONSOLE is on; checks
# only the console's requests: WTF_CSRF_CHECK_DEFAULT is off, wxauth.web.admin calls it)
csrf = CSRFProtect()
