"""Migrations: upgrade from empty, downgrade to base, and no drift between models and migrations."""

import flask_migrate
import pytest
from sqlalchemy import inspect

pytestmark = pytest.mark.databases


def test_upgrade_downgrade_and_no_drift(app):
    with app.app_context():
        from wxauth.extensions import db
        assert "users" in inspect(db.engine).get_table_names()  # the `app` fixture upgraded
        flask_migrate.check()  # exits non-zero when models and migrations differ
        flask_migrate.downgrade(revision="base")
        assert "users" not in inspect(db.engine).get_table_names()
        flask_migrate.upgrade()
        columns = {c["name"] for c in inspect(db.engine).get_columns("users")}
        assert {"appid", "openid", "unionid", "session_key", "last_login_at"} <= columns
        uniques = inspect(db.engine).get_unique_constraints("users")
        assert any(set(u["column_names"]) == {"appid", "openid"} for u in uniques)
