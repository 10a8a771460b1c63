"""wxauth without the login-log row and the session row of a login (`make bench`'s
reference for what they cost): the same app, those two inserts taken out, nothing else."""

from wxauth.services import login_log, sessions
from wsgi import app  # noqa: F401  (gunicorn's target: bench.without_login_log:app)

login_log.add_success = lambda user, is_new_user, client, now: None
sessions.start_session = lambda *args: []  # (user, family, refresh_jti, client, now)
