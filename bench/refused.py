"""What a flood of refused logins costs the database (`make bench`): 10,000 logins from 100
client addresses beyond ``LOGIN_RATE_LIMIT`` (1 per minute), through the WSGI app in this
process, then `login_log.prune` (which writes the refusals the rate limit still holds);
the database statements counted with SQLAlchemy's ``before_cursor_execute``.

    .venv/bin/python bench/refused.py [LOGINS]   (in bench/run.py's server environment)

Prints one JSON line: {"logins", "refused", "statements", "writes"} (writes: INSERT, UPDATE,
DELETE).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOGINS, ADDRESSES = 10_000, 100


def main() -> None:
    logins = int(sys.argv[1]) if len(sys.argv) > 1 else LOGINS
    os.environ["LOGIN_RATE_LIMIT"] = "1 per minute"
    import sqlalchemy as sa

    from wsgi import app
    from wxauth.extensions import db
    from wxauth.services import login_log, sessions

    client = app.test_client()
    for i in range(ADDRESSES):  # each address's one allowed login (WeChat answers 40029)
        client.post("/auth/login", json={"code": "x"},
                    environ_base={"REMOTE_ADDR": f"198.51.100.{i}"})
    statements: list[str] = []
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute",
                        lambda conn, cursor, statement, *args: statements.append(statement))
    refused = 0  # (a window that ends during the run lets one login per address through)
    for i in range(logins):
        response = client.post("/auth/login", json={"code": "x"},
                               environ_base={"REMOTE_ADDR": f"198.51.100.{i % ADDRESSES}"})
        refused += response.status_code == 429
    with app.app_context():
        days = app.config["LOGIN_LOG_RETENTION_DAYS"]
        login_log.prune(days, sessions.refresh_lifetime())
    writes = [s for s in statements if re.match(r"\s*(INSERT|UPDATE|DELETE)", s, re.I)]
    print(json.dumps({"logins": logins, "refused": refused, "statements": len(statements),
                      "writes": len(writes)}))


if __name__ == "__main__":
    main()
