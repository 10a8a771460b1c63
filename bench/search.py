"""The support console's user search at scale (issue 24, Speed; `make bench` runs it).

Seeds --users app users (default 1,000,000, one account each, nicknames drawn from a few
thousand Chinese prefixes) into a scratch database on the PostgreSQL server of --postgres
(migrated to head, dropped afterwards; or SQLite with --sqlite, for a quick check), then
times each search of the console server side: `wxauth.services.console.search`, the very
function the search page calls (its audit row included), --repeat times each, with different
values; prints the median and the worst, the target (exact ≤ 50 ms, nickname prefix
≤ 200 ms) and the index PostgreSQL's plan uses.

    .venv/bin/python bench/search.py [--postgres postgresql+psycopg://postgres@127.0.0.1/test]
                                     [--users 1000000] [--repeat 20] [--sqlite]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

APPID = "wxbe0c000000000000"
TARGETS_MS = {"exact": 50.0, "prefix": 200.0}
# a few thousand nickname prefixes: (family name, given name) pairs, then a number
FAMILY = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红娥玲芬燕"


def seed(engine, users: int) -> None:
    """`users` accounts and app users, in bulk (PostgreSQL: generate_series)."""
    from sqlalchemy import text

    families, givens = len(FAMILY), len(GIVEN)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(
                "INSERT INTO accounts (id, unionid, created_at) SELECT g, 'u-' || g, "
                "now() - (g || ' seconds')::interval FROM generate_series(1, :n) g"), {"n": users})
            connection.execute(text(
                "INSERT INTO users (id, account_id, appid, openid, unionid, session_key, "
                "nickname, gender, pure_phone_number, phone_number, token_version, created_at, "
                "updated_at, last_login_at) SELECT g, g, :appid, 'o-' || md5(g::text), 'u-' || g, "
                "'', substr(:family, 1 + g % :f, 1) || substr(:given, 1 + (g / :f) % :gv, 1) || g, "
                "g % 3, (13800000000 + g)::text, (13800000000 + g)::text, 0, "
                "now() - (g || ' seconds')::interval, now(), now() FROM generate_series(1, :n) g"),
                {"n": users, "appid": APPID, "family": FAMILY, "given": GIVEN, "f": families,
                 "gv": givens})
            for table in ("accounts", "users"):
                connection.execute(text(f"SELECT setval('{table}_id_seq', :n)"), {"n": users})
            connection.execute(text("ANALYZE accounts; ANALYZE users"))
        else:  # SQLite: plain inserts
            rows = [{"id": g, "unionid": f"u-{g}"} for g in range(1, users + 1)]
            connection.execute(text("INSERT INTO accounts (id, unionid, created_at) VALUES "
                                    "(:id, :unionid, CURRENT_TIMESTAMP)"), rows)
            connection.execute(text(
                "INSERT INTO users (id, account_id, appid, openid, unionid, session_key, "
                "nickname, gender, pure_phone_number, phone_number, token_version, created_at, "
                "updated_at, last_login_at) VALUES (:id, :id, :appid, :openid, :unionid, '', "
                ":nickname, 0, :phone, :phone, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"),
                [{"id": g, "appid": APPID, "openid": f"o-{g:032x}", "unionid": f"u-{g}",
                  "nickname": FAMILY[g % families] + GIVEN[(g // families) % givens] + str(g),
                  "phone": str(13800000000 + g)} for g in range(1, users + 1)])


def openid_of(connection, user_id: int) -> str:
    from sqlalchemy import text

    return connection.execute(text("SELECT openid FROM users WHERE id = :id"),
                              {"id": user_id}).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser(description="the console's search at scale")
    parser.add_argument("--postgres", default=os.environ.get(
        "BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead (quick check)")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    import contextlib

    import flask_migrate
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from run import scratch_postgres
    from wxauth import create_app
    from wxauth.extensions import db
    from wxauth.services import console

    tmp = Path(tempfile.mkdtemp(prefix="wxauth-search-"))
    with contextlib.ExitStack() as stack:
        if args.sqlite:
            url, label = f"sqlite:///{tmp / 'search.db'}", "sqlite"
        else:
            try:
                url = stack.enter_context(scratch_postgres(args.postgres))
            except OperationalError as exc:
                print(f"the console's search: SKIPPED, no PostgreSQL answers at --postgres "
                      f"({type(exc.orig).__name__}); --sqlite for a quick check")
                return
            label = "postgresql"
        os.environ["WXAUTH_INSTANCE_PATH"] = str(tmp / "instance")
        app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url,
                          "WECHAT_APPID": APPID, "WECHAT_SECRET": "bench-secret"})
        with app.app_context():
            flask_migrate.upgrade()
            started = time.monotonic()
            seeder = create_engine(url)  # without the app's statement timeout
            seed(seeder, args.users)
            seeder.dispose()
            seeded = time.monotonic() - started
            rng = random.Random(24)
            actor = console.Actor("bench", "127.0.0.1")
            with db.engine.connect() as connection:
                picks = [rng.randint(1, args.users) for _ in range(args.repeat)]
                openids = [openid_of(connection, i) for i in picks]
            cases = [
                ("openid", "exact", [console.Search(by="openid", q=o) for o in openids]),
                ("unionid", "exact", [console.Search(by="unionid", q=f"u-{i}") for i in picks]),
                ("phone", "exact", [console.Search(by="phone", q=str(13800000000 + i))
                                    for i in picks]),
                ("user id", "exact", [console.Search(by="user_id", q=str(i)) for i in picks]),
                ("account id", "exact", [console.Search(by="account_id", q=str(i))
                                         for i in picks]),
                ("nickname prefix (2 characters)", "prefix",
                 [console.Search(by="nickname", q=FAMILY[i % len(FAMILY)]
                                 + GIVEN[(i // len(FAMILY)) % len(GIVEN)]) for i in picks]),
                ("nickname prefix (1 character)", "prefix",
                 [console.Search(by="nickname", q=FAMILY[i % len(FAMILY)]) for i in picks]),
                ("filter only: disabled (none are)", "prefix",
                 [console.Search(by="openid", disabled=True)] * len(picks)),
                ("filter only: created on one day", "prefix",
                 [console.Search(by="openid", created_from=datetime.now(UTC) - timedelta(
                     days=i % 11 + 1), created_to=datetime.now(UTC) - timedelta(days=i % 11))
                  for i in picks]),
                ("nickname prefix, not disabled", "prefix",
                 [console.Search(by="nickname", q=FAMILY[i % len(FAMILY)], disabled=False)
                  for i in picks]),
            ]
            print(f"\nthe console's search, {args.users:,} users on {label} (seeded in "
                  f"{seeded:.0f} s), server side (services.console.search, its audit row "
                  f"included), {args.repeat} searches each")
            print(f"{'search':<34}{'median ms':>10}{'worst ms':>10}{'found':>7}  target       "
                  "index (EXPLAIN)")
            for name, kind, queries in cases:
                times, found = [], 0
                for query in queries:
                    started = time.perf_counter()
                    rows, _ = console.search(actor, query)
                    times.append((time.perf_counter() - started) * 1000)
                    found += bool(rows)
                median, worst = statistics.median(times), max(times)
                target = TARGETS_MS[kind]
                verdict = "met" if median <= target else "MISSED"
                print(f"{name:<34}{median:>10.1f}{worst:>10.1f}{found:>7}  ≤ {target:.0f} ms "
                      f"{verdict:<6} {index_used(db, queries[0], label)}")
        db_path = tmp / "search.db"
        if db_path.exists():
            db_path.unlink()


def index_used(db, query, label: str) -> str:
    """The indexes the plan of `query`'s search names (PostgreSQL's EXPLAIN; SQLite's
    EXPLAIN QUERY PLAN), for the very statement `console.search` runs."""
    from wxauth.services import console

    compiled = console.search_statement(query).compile(db.engine)
    params = compiled.construct_params()
    if compiled.positional:
        params = tuple(params[name] for name in compiled.positiontup)
    explain = "EXPLAIN" if label == "postgresql" else "EXPLAIN QUERY PLAN"
    rows = db.session.connection().exec_driver_sql(f"{explain} {compiled}", params)
    plan = "\n".join(str(row[-1]) for row in rows)
    names = sorted(set(re.findall(r"\b(ix_\w+|uq_\w+|\w+_pkey)\b", plan)))
    return ", ".join(names) or "(no index: " + plan.splitlines()[0][:60] + ")"


if __name__ == "__main__":
    main()
