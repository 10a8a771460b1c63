"""Flask CLI commands: ``flask --app wsgi users …``, ``… wechat …``, ``… clients …``,
``… keys …`` etc."""

from __future__ import annotations

import getpass
import json
import os

import click
import requests
import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from .errors import Problem
from .extensions import db
from .infra.cipher import SessionKeyCipher
from .models import Account, User
from .services import (audit, clients, keys, login_log, operators, programs, rights,
                       sessions, users)
from .state import EMULATOR_MOUNT, state
from .web.schemas import ProfileSchema
from .wechat import jsontext

users_cli = AppGroup("users", help="Inspect and delete users.")
accounts_cli = AppGroup("accounts", help="People across the company's mini-programs.")
apps_cli = AppGroup("apps", help="The mini-programs this server serves.")
wechat_cli = AppGroup("wechat", help="The built-in WeChat emulator.")
logs_cli = AppGroup("logs", help="The login log.")
clients_cli = AppGroup("clients", help="Service clients of the /oauth endpoints.")
keys_cli = AppGroup("keys", help="The keys that sign tokens (published at "
                                 "/.well-known/jwks.json).")
operators_cli = AppGroup("operators", help="Operators of the support console (/admin/).")
audit_cli = AppGroup("audit", help="The audit trail of operators' actions.")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def _users_by_openid(openid: str, appid: str | None) -> list[User]:
    query = select(User).where(User.openid == openid)
    if appid:
        query = query.where(User.appid == appid)
    found = list(db.session.execute(query).scalars())
    if not found:
        raise click.ClickException(f"no user with openid {openid}")
    if len(found) > 1:
        appids = ", ".join(u.appid for u in found)
        raise click.ClickException(f"openid {openid} exists in several apps ({appids}): use --appid")
    return found


@users_cli.command("list")
@click.option("--limit", default=50, show_default=True, help="Most recent logins first.")
def users_list(limit: int) -> None:
    """List users, most recent login first."""
    users = db.session.execute(
        select(User).order_by(User.last_login_at.desc()).limit(limit)).scalars()
    headers = ["id", "appid", "openid", "unionid", "nickname", "created (UTC)", "last login (UTC)"]
    rows = [[_fmt(u.id), u.appid, u.openid, _fmt(u.unionid), _fmt(u.nickname),
             _fmt(u.created_at), _fmt(u.last_login_at)] for u in users]
    click.echo(_table(headers, rows))
    total = db.session.query(User).count()
    click.echo(f"\n{len(rows)} of {total} users")


@users_cli.command("show")
@click.argument("openid")
@click.option("--appid", help="Needed when the openid exists in several apps.")
def users_show(openid: str, appid: str | None) -> None:
    """Show one user's profile (never the session_key)."""
    (user,) = _users_by_openid(openid, appid)
    profile = ProfileSchema().dump(user)
    details = {"appid": user.appid, "openid": user.openid, "unionid": user.unionid,
               **profile, "last_login_at": user.last_login_at.isoformat(),
               "disabled": _disabled(user), "account disabled": _disabled(user.account)}
    width = max(map(len, details))
    for key, value in details.items():
        click.echo(f"{key.ljust(width)}  {_fmt(value)}")


@users_cli.command("delete")
@click.argument("openid")
@click.option("--appid", help="Needed when the openid exists in several apps.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def users_delete(openid: str, appid: str | None, yes: bool) -> None:
    """Delete a user; their tokens stop working (401 user_not_found)."""
    (user,) = _users_by_openid(openid, appid)
    if not yes:
        click.confirm(f"Delete user {user.id} ({user.appid}/{user.openid})?", abort=True)
    db.session.delete(user)
    db.session.commit()
    click.echo(f"deleted user {user.id} ({user.appid}/{user.openid})")


@users_cli.command("revoke-tokens")
@click.argument("openid")
@click.option("--appid", help="Needed when the openid exists in several apps.")
def users_revoke_tokens(openid: str, appid: str | None) -> None:
    """Invalidate every access and refresh token of one user (401 token_revoked).

    The user logs in again with a new wx.login code; nothing else changes.
    """
    (user,) = _users_by_openid(openid, appid)
    users.revoke_tokens([user.id])
    db.session.commit()
    click.echo(f"revoked every token of user {user.id} ({user.appid}/{user.openid})")


@users_cli.command("reencrypt")
@click.option("--batch", default=500, show_default=True, help="Rows per transaction.")
def users_reencrypt(batch: int) -> None:
    """Re-encrypt every stored session_key (and every console operator's TOTP secret, and the
    signing keys' private parts) under the newest SESSION_KEY_ENCRYPTION_KEY.

    Run after putting a new key first in the list; then the old keys can be removed.
    Rows no configured key opens are counted and left alone.
    """
    moved, unreadable = _reencrypt("users", "session_key", batch)
    signing, unreadable_keys = _reencrypt("signing_keys", "private_key", batch, key="kid")
    unreadable += unreadable_keys
    click.echo(f"re-encrypted {moved} session_keys and {signing} signing keys under the newest "
               "key"
               + (f"; {unreadable} opened with no configured key (left alone)" if unreadable else ""))
    moved, unreadable = _reencrypt("operators", "totp_secret", batch)
    if moved or unreadable:
        click.echo(f"re-encrypted {moved} operators' TOTP secrets under the newest key"
                   + (f"; {unreadable} opened with no configured key (left alone: `operators "
                      "reset` them)" if unreadable else ""))


def _reencrypt(table: str, column: str, batch: int, key: str = "id") -> tuple[int, int]:
    """(rows moved to the newest key, rows no configured key opens) of `table`.`column`,
    `batch` rows at a time in the order of the table's primary key `key`."""
    cipher: SessionKeyCipher = state().cipher
    raw = sa.table(table, sa.column(key), sa.column(column, sa.String))
    moved = unreadable = 0
    last_id = None
    while True:
        page = sa.select(raw.c[key], raw.c[column]).order_by(raw.c[key]).limit(batch)
        if last_id is not None:
            page = page.where(raw.c[key] > last_id)
        rows = db.session.execute(page).all()
        if not rows:
            break
        for row_id, stored in rows:
            last_id = row_id
            try:
                if cipher.looks_encrypted(stored):
                    if not cipher.needs_rotation(stored):
                        continue
                    new = cipher.rotate(stored)
                else:
                    new = cipher.encrypt(stored)
            except InvalidToken:
                unreadable += 1
                continue
            db.session.execute(raw.update().where(raw.c[key] == row_id).values(**{column: new}))
            moved += 1
        db.session.commit()
    return moved, unreadable


# --- disable, sessions, login log (support desk) ----------------------------------------------

def _disabled(row: User | Account) -> str | None:
    """'when by who: why' of a disabled user or account; None when enabled."""
    if row.disabled_at is None:
        return None
    return f"{_fmt(row.disabled_at)} UTC by {row.disabled_by}: {row.disabled_reason}"


def _operator() -> str:
    """Who runs the command: the OS user (recorded as who disabled)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_BY = click.option("--by", help="Who disables (recorded) [default: the OS user].")
_REASON = click.option("--reason", required=True, help="Why (recorded, at most 255 characters).")


@users_cli.command("disable")
@click.argument("openid")
@click.option("--appid", help="Needed when the openid exists in several apps.")
@_REASON
@_BY
def users_disable(openid: str, appid: str | None, reason: str, by: str | None) -> None:
    """Disable a user at once: logins and every token refused (403 user_disabled)."""
    (user,) = _users_by_openid(openid, appid)
    ended = users.disable_user(user, by=by or _operator(), reason=reason)
    audit.record(_cli_actor(), "disable_user", target=f"user:{user.id}", reason=reason,
                 after={"disabled": True, "sessions_ended": len(ended)})
    click.echo(f"disabled user {user.id} ({user.appid}/{user.openid}); "
               f"{len(ended)} sessions ended")


@users_cli.command("enable")
@click.argument("openid")
@click.option("--appid", help="Needed when the openid exists in several apps.")
def users_enable(openid: str, appid: str | None) -> None:
    """Enable a disabled user: logins work again (tokens from before stay refused)."""
    (user,) = _users_by_openid(openid, appid)
    users.enable_user(user)
    audit.record(_cli_actor(), "enable_user", target=f"user:{user.id}",
                 after={"disabled": False})
    click.echo(f"enabled user {user.id} ({user.appid}/{user.openid})")


@users_cli.command("sessions")
@click.argument("openid")
@click.option("--appid", help="Needed when the openid exists in several apps.")
def users_sessions(openid: str, appid: str | None) -> None:
    """List a user's live sessions (one per login, i.e. per device), newest first."""
    (user,) = _users_by_openid(openid, appid)
    rows = [[s.id, _fmt(s.created_at), _fmt(s.last_used_at), _fmt(s.client_address),
             _fmt(s.user_agent)] for s in sessions.live_sessions([user.id])]
    click.echo(_table(["session", "created (UTC)", "last used (UTC)", "address", "User-Agent"],
                      rows))


@users_cli.command("kick")
@click.argument("openid")
@click.option("--appid", help="Needed when the openid exists in several apps.")
@click.option("--session", "session_id", help="End only this session [default: all].")
def users_kick(openid: str, appid: str | None, session_id: str | None) -> None:
    """End a user's sessions (or one): their tokens are refused at the next request."""
    (user,) = _users_by_openid(openid, appid)
    if session_id:
        try:
            sessions.end_session(user, session_id, "kicked")
        except Problem as exc:  # session_not_found
            raise click.ClickException(exc.detail) from None
        audit.record(_cli_actor(), "end_session", target=f"user:{user.id}",
                     detail={"session": session_id})
        click.echo(f"ended session {session_id}")
        return
    ended = sessions.end_user_sessions([user.id], "kicked")
    audit.record(_cli_actor(), "end_sessions", target=f"user:{user.id}",
                 after={"sessions_ended": len(ended)})
    click.echo(f"ended {len(ended)} sessions of user {user.id} ({user.appid}/{user.openid})")


@users_cli.command("logins")
@click.argument("openid")
@click.option("--appid", help="Needed when the openid exists in several apps.")
@click.option("--limit", default=20, show_default=True, help="Newest first.")
def users_logins(openid: str, appid: str | None, limit: int) -> None:
    """A user's latest login-log rows."""
    (user,) = _users_by_openid(openid, appid)
    rows = [[_fmt(e.at), e.outcome, _fmt(e.errcode), _fmt(e.client_address),
             _fmt(e.user_agent)] for e in login_log.latest([user.id], limit)]
    click.echo(_table(["time (UTC)", "outcome", "errcode", "address", "User-Agent"], rows))


def _account(account_id: int) -> Account:
    account = db.session.get(Account, account_id)
    if account is None:
        raise click.ClickException(f"no account {account_id}")
    return account


@accounts_cli.command("disable")
@click.argument("account_id", type=int)
@_REASON
@_BY
def accounts_disable(account_id: int, reason: str, by: str | None) -> None:
    """Disable the person of account ID in every app (present and future) at once."""
    account = _account(account_id)
    ended = users.disable_account(account, by=by or _operator(), reason=reason)
    audit.record(_cli_actor(), "disable_account", target=f"account:{account.id}",
                 reason=reason, after={"disabled": True, "sessions_ended": len(ended)})
    click.echo(f"disabled account {account.id}; {len(ended)} sessions ended")


@accounts_cli.command("enable")
@click.argument("account_id", type=int)
def accounts_enable(account_id: int) -> None:
    """Enable a disabled account (tokens from before stay refused)."""
    account = _account(account_id)
    users.enable_account(account)
    audit.record(_cli_actor(), "enable_account", target=f"account:{account.id}",
                 after={"disabled": False})
    click.echo(f"enabled account {account.id}")


@accounts_cli.command("delete")
@click.argument("account_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def accounts_delete(account_id: int, yes: bool) -> None:
    """Delete the person of account ID in every app, as DELETE /profile does: their data
    erased, their tokens refused; a marker (no openid or unionid) and the login log's rows
    are kept (README, Account deletion and export)."""
    account = _account(account_id)
    if not yes:
        click.confirm(f"Delete account {account.id} and every app user of it?", abort=True)
    erased = rights.erase_account(account.id)
    audit.record(_cli_actor(), "delete_account", target=f"account:{account_id}",
                 before={"app_users": len(erased)}, after={"deleted": True})
    click.echo(f"deleted account {account_id} and its {len(erased)} app users")


@logs_cli.command("prune")
@click.option("--days", type=int, help="Keep this many days [default: LOGIN_LOG_RETENTION_DAYS].")
@click.option("--audit-days", type=int,
              help="Keep this many days of the audit trail [default: AUDIT_RETENTION_DAYS].")
def logs_prune(days: int | None, audit_days: int | None) -> None:
    """Delete login-log rows, and ended or expired sessions, older than the retention; and
    audit-trail rows older than AUDIT_RETENTION_DAYS.

    Run it daily from cron or a systemd timer (README, Users and sessions).
    """
    days = current_app.config["LOGIN_LOG_RETENTION_DAYS"] if days is None else days
    audit_days = current_app.config["AUDIT_RETENTION_DAYS"] if audit_days is None else audit_days
    events, ended = login_log.prune(days, sessions.refresh_lifetime())
    click.echo(f"deleted {events} login-log rows and {ended} sessions older than {days} days")
    pruned = audit.prune(audit_days)
    click.echo(f"deleted {pruned} audit-trail rows older than {audit_days} days")


# --- wechat ---------------------------------------------------------------------------------


def _emulator_url(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    if current_app.config["WECHAT_EMULATOR"]:
        port = os.environ.get("PORT") or os.environ.get("FLASK_RUN_PORT") or "5000"
        return f"http://127.0.0.1:{port}{EMULATOR_MOUNT}"
    return current_app.config["WECHAT_API_BASE"].rstrip("/")


def _post_emulator(url: str, path: str, body: dict) -> dict:
    try:
        response = requests.post(url + path, json=body, timeout=10)
    except requests.RequestException:
        raise click.ClickException(
            f"no WeChat emulator answers at {url}: start `make run` (it serves one at "
            "/_wechat) or `flask --app wsgi wechat emulator`, or pass --url") from None
    if response.status_code != 200:
        raise click.ClickException(f"emulator answered {response.status_code}: {response.text}")
    return response.json()


def _token_state(program) -> str:
    try:
        status = program.tokens.status()
    except program.tokens.store.unavailable as exc:
        return (f"unknown: the shared store does not answer ({exc}); meanwhile each "
                "process fetches its own (getStableAccessToken)")
    if status is None:
        return "no access_token cached (the next server API call fetches one)"
    return (f"{status['kind']} access_token, fetched {status['age']} s ago, "
            f"expires in {status['expires_in']} s")


@wechat_cli.command("token")
def wechat_token() -> None:
    """Show each app's cached WeChat access_token: age and expiry (never the token)."""
    for program in programs.configured().values():
        click.echo(f"{program.appid}: {_token_state(program)}")


@apps_cli.command("list")
def apps_list() -> None:
    """The configured mini-programs and their access_token state (never secrets)."""
    rows = [[p.appid, p.name, "on" if p.content_check else "off",
             "stable" if p.tokens.stable else "classic", _token_state(p)]
            for p in programs.configured().values()]
    click.echo(_table(["appid", "name", "content check", "token API", "access_token"], rows))


@accounts_cli.command("show")
@click.argument("account_id", type=int)
def accounts_show(account_id: int) -> None:
    """List the app users (one per mini-program) of account ID."""
    account = db.session.get(Account, account_id)
    if account is None:
        raise click.ClickException(f"no account {account_id}")
    click.echo(f"account {account.id}  unionid {_fmt(account.unionid)}  "
               f"created {_fmt(account.created_at)} UTC")
    if account.disabled_at:
        click.echo(f"disabled {_disabled(account)}")
    users = db.session.execute(select(User).where(User.account_id == account.id)
                               .order_by(User.created_at)).scalars()
    names = {p.appid: p.name for p in programs.configured().values()}
    rows = [[_fmt(u.id), u.appid, names.get(u.appid, "(not configured)"), u.openid,
             _fmt(u.nickname), _fmt(u.created_at), _fmt(u.last_login_at)] for u in users]
    click.echo(_table(["user id", "appid", "app", "openid", "nickname", "created (UTC)",
                       "last login (UTC)"], rows))


@wechat_cli.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True, type=int)
@click.option("--appid", help="AppID to accept [default: the configured apps, or the emulator's]")
@click.option("--secret", help="AppSecret for --appid [default: 'emulator-secret']")
def wechat_emulator(host: str, port: int, appid: str | None, secret: str | None) -> None:
    """Run the WeChat API emulator standalone."""
    from werkzeug.serving import run_simple

    from .wechat.emulator import DEFAULT_APPID, Emulator

    cfg = current_app.config
    if appid or cfg["WECHAT_EMULATOR"]:
        accepted = {appid or DEFAULT_APPID: secret or "emulator-secret"}
    else:  # the configured apps, with their secrets
        accepted = {a: s["secret"] for a, s in cfg["WECHAT_APP_SETTINGS"].items()}
    emulator = Emulator(accepted)
    appid = next(iter(accepted))
    click.echo("Point the server at this emulator with:\n"
               f"  WECHAT_APPID={appid}\n  WECHAT_SECRET=<the secret you chose>\n"
               f"  WECHAT_API_BASE=http://{host}:{port}\n")
    run_simple(host, port, emulator, threaded=True)


@wechat_cli.command("code")
@click.argument("openid", required=False)
@click.option("--unionid", help="Give the made-up user this unionid.")
@click.option("--appid", help="Mint for this app [default: the emulator's first].")
@click.option("--url", help="Emulator base URL [default: this server's].")
def wechat_code(openid: str | None, unionid: str | None, appid: str | None,
                url: str | None) -> None:
    """Mint a wx.login code for OPENID (random when omitted) on a running emulator."""
    body = {k: v for k, v in {"openid": openid, "unionid": unionid, "appid": appid}.items() if v}
    click.echo(_post_emulator(_emulator_url(url), "/dev/code", body)["code"])


@wechat_cli.command("encrypt")
@click.argument("openid")
@click.argument("data")
@click.option("--appid", help="The app the user belongs to [default: the emulator's first].")
@click.option("--url", help="Emulator base URL [default: this server's].")
def wechat_encrypt(openid: str, data: str, appid: str | None, url: str | None) -> None:
    """Encrypt DATA (a JSON object, e.g. userInfo) for OPENID as WeChat would.

    Prints e.detail ({"encryptedData", "iv", "rawData", "signature", …}) ready to POST to
    /profile. The user must have logged in (the emulator uses their current session_key).
    """
    try:
        payload = jsontext.loads(data)
    except UnicodeEncodeError:
        raise click.BadParameter("holds an unpaired surrogate escape (\\ud800-\\udfff)",
                                 param_hint="DATA") from None
    except (ValueError, RecursionError):
        raise click.BadParameter("not JSON", param_hint="DATA") from None
    body = {"openid": openid, "data": payload, **({"appid": appid} if appid else {})}
    click.echo(json.dumps(_post_emulator(_emulator_url(url), "/dev/encrypt", body),
                          ensure_ascii=False))


@clients_cli.command("add")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(clients.SCOPES),
              help="introspect: POST /oauth/introspect; wechat_token: GET "
                   "/oauth/wechat/access_token. Repeat for both.")
def clients_add(name: str, scopes: tuple[str, ...]) -> None:
    """Create a service client; print its client_id and its secret, once.

    Only the secret's argon2id hash is stored: keep the secret in the service's secret
    store now (lost: remove the client and add it again)."""
    try:
        client, secret = clients.add(name, scopes)
    except clients.ClientError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"name       {client.name}\nscopes     {client.scopes}\n"
               f"client_id  {client.client_id}\nsecret     {secret}\n\n"
               "The secret is shown this once and stored only hashed: copy it now.")


@clients_cli.command("list")
def clients_list() -> None:
    """List the service clients (never a secret or its hash)."""
    rows = [[c.name, c.client_id, c.scopes, _fmt(c.created_at)] for c in clients.all_clients()]
    click.echo(_table(["name", "client_id", "scopes", "created (UTC)"], rows))


@clients_cli.command("remove")
@click.argument("name")
def clients_remove(name: str) -> None:
    """Delete a service client: its next call is refused (401 invalid_client)."""
    try:
        client = clients.remove(name)
    except clients.ClientError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed client {client.name} ({client.client_id})")


# --- keys ---------------------------------------------------------------------------------

def _longest_token() -> int:
    return max(sessions.access_lifetime(), sessions.refresh_lifetime())


def _algorithm(algorithm: str | None) -> str:
    algorithm = algorithm or current_app.config["JWT_ALGORITHM"]
    if algorithm == "HS256":
        raise click.ClickException("JWT_ALGORITHM is HS256: tokens are signed with "
                                   "JWT_SECRET_KEY, no key of the database signs (set "
                                   "JWT_ALGORITHM=ES256, RS256 or EdDSA, or pass --algorithm)")
    return algorithm


_ALGORITHM = click.option("--algorithm", type=click.Choice(keys.ALGORITHMS),
                          help="[default: JWT_ALGORITHM]")


@keys_cli.command("list")
def keys_list() -> None:
    """List the signing keys (public facts only): kid, algorithm, status, dates."""
    longest = _longest_token()
    rows = [[k.kid, k.algorithm, keys.status(k), _fmt(k.created_at), _fmt(k.activated_at),
             _fmt(k.retired_at), _fmt(keys.prunable_after(k, longest))] for k in keys.listing()]
    click.echo(_table(["kid", "algorithm", "status", "created (UTC)", "signing since (UTC)",
                       "retired (UTC)", "prunable after (UTC)"], rows))
    click.echo(f"\nJWT_ALGORITHM={current_app.config['JWT_ALGORITHM']}")


@keys_cli.command("generate")
@_ALGORITHM
def keys_generate(algorithm: str | None) -> None:
    """Add a staged key: published at once, signing after `keys rotate`. Generate it a
    while before rotating, so services that cache the key set know it first."""
    key = keys.generate(_algorithm(algorithm))
    click.echo(f"generated {key.algorithm} key {key.kid} (staged: published, not signing; "
               "`keys rotate` makes it sign)")


@keys_cli.command("rotate")
@_ALGORITHM
def keys_rotate(algorithm: str | None) -> None:
    """Sign with a new key: the newest staged one, else a new one. The previous key is
    retired: still published and verifying until its last token expires."""
    key = keys.rotate(_algorithm(algorithm))
    refresh = current_app.config["SIGNING_KEYS_REFRESH"]
    click.echo(f"{key.algorithm} key {key.kid} now signs new tokens (every instance within "
               f"{refresh:g} s; SIGNING_KEYS_REFRESH)")


@keys_cli.command("prune")
@click.option("--leaked", "leaked", metavar="KID",
              help="Delete this retired key now, though tokens it signed are live (they stop "
                   "verifying: their users log in again). For a key that leaked.")
def keys_prune(leaked: str | None) -> None:
    """Delete retired keys once every token they signed has expired (never before)."""
    if leaked:
        try:
            keys.remove_retired(leaked)
        except keys.KeyStateError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"deleted key {leaked}: no token it signed verifies any more")
        return
    gone = keys.prune(_longest_token())
    click.echo(f"pruned {len(gone)} keys" + (": " + ", ".join(gone) if gone else ""))


# --- operators of the support console, and the audit trail ----------------------------------

def _enrollment(enrollment: operators.Enrollment) -> None:
    op = enrollment.operator
    click.echo(f"name      {op.name}\nrole      {op.role}\npassword  {enrollment.password}\n"
               f"totp      {enrollment.uri}\n\n"
               "Shown this once: hand the password and the otpauth:// URI to the operator "
               "(the console also shows the URI as a QR code at the first sign-in, and asks "
               "for a new password).")


def _cli_actor() -> str:
    return f"cli:{_operator()}"


@operators_cli.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(operators.ROLES),
              help="viewer: search and read (phone numbers masked); support: also disable, "
                   "enable, end sessions; admin: also delete, export, operators, audit.")
def operators_add(name: str, role: str) -> None:
    """Create an operator; print the initial password and the TOTP otpauth:// URI, once."""
    try:
        enrollment = operators.add(name, role, by=_cli_actor())
    except operators.OperatorError as exc:
        raise click.ClickException(str(exc)) from None
    _enrollment(enrollment)


@operators_cli.command("list")
def operators_list() -> None:
    """List the operators (never a password, its hash or a TOTP secret)."""
    from .models import utcnow

    now = utcnow()
    rows = [[o.name, o.role,
             "disabled" if o.disabled_at else (
                 "locked" if o.locked_until and o.locked_until > now else (
                     "not enrolled" if o.enrolled_at is None else "active")),
             _fmt(o.created_at), _fmt(o.last_sign_in_at)] for o in operators.all_operators()]
    click.echo(_table(["name", "role", "state", "created (UTC)", "last sign-in (UTC)"], rows))


@operators_cli.command("disable")
@click.argument("name")
def operators_disable(name: str) -> None:
    """Disable an operator: sign-in refused, their console sessions end at once."""
    try:
        operators.disable(name, by=_cli_actor())
    except operators.OperatorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"disabled operator {name}")


@operators_cli.command("reset")
@click.argument("name")
def operators_reset(name: str) -> None:
    """New initial password and TOTP secret (printed once); enables and unlocks the
    operator, ends their console sessions; they enroll again at the next sign-in."""
    try:
        enrollment = operators.reset(name, by=_cli_actor())
    except operators.OperatorError as exc:
        raise click.ClickException(str(exc)) from None
    _enrollment(enrollment)


@audit_cli.command("show")
@click.option("--operator", help="Only this operator's actions.")
@click.option("--action", type=click.Choice(audit.ACTIONS), help="Only this action.")
@click.option("--target", help="Only on this (e.g. account:12, user:34, operator:li).")
@click.option("--limit", default=50, show_default=True, help="Newest first.")
def audit_show(operator: str | None, action: str | None, target: str | None,
               limit: int) -> None:
    """The audit trail: who did what, when, from where, on whom, why, before and after."""
    rows = [[_fmt(e.at), e.operator, _fmt(e.client_address), e.action, _fmt(e.target),
             _fmt(e.reason), _fmt(e.before), _fmt(e.after), _fmt(e.detail)]
            for e in audit.search(audit.Filters(operator=operator, action=action,
                                                target=target), limit=limit)]
    click.echo(_table(["time (UTC)", "operator", "address", "action", "target", "reason",
                       "before", "after", "detail"], rows))
