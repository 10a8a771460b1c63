"""The data model (SQLAlchemy 2.0 typed mappings)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from cryptography.fernet import InvalidToken
from sqlalchemy import (BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, SmallInteger,
                        String, Text, UniqueConstraint, func, select)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from .extensions import db
from .state import state

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC (microseconds kept on every backend), read back aware."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


class EncryptedSessionKey(TypeDecorator):
    """A session_key: plain base64 text in Python, a Fernet token in the database.

    Encrypted with the app's `wxauth.infra.cipher.SessionKeyCipher` (``SESSION_KEY_ENCRYPTION_KEY``, newest key).
    A token no configured key opens reads as ``""``: decryption then fails with
    ``decrypt_failed`` and the user's next login stores a fresh key.
    """

    impl = String(255)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return state().cipher.encrypt(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        cipher = state().cipher
        if not cipher.looks_encrypted(value):
            return value  # a row from before encryption (the migration encrypts them)
        try:
            return cipher.decrypt(value)
        except InvalidToken:
            log.warning("a stored session_key opens with none of SESSION_KEY_ENCRYPTION_KEY")
            return ""


UTF8MB4 = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


class Account(db.Model):
    """One person across the company's mini-programs: the app users sharing a unionid.

    ``unionid`` is set once WeChat reveals it (mini-program bound to the Open Platform).
    """

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("unionid", name="uq_accounts_unionid"),
                      Index("ix_accounts_disabled_at", "disabled_at"),  # the console's filter
                      UTF8MB4)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unionid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Disabled (`flask accounts disable`): the person cannot log in to any app and every
    # token of theirs is refused; who (operator), when and why.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_by: Mapped[str | None] = mapped_column(String(64))
    disabled_reason: Mapped[str | None] = mapped_column(String(255))

    # the app users of this person; never loaded to delete an account (the login moves them
    # first, see services.login)
    users: Mapped[list[User]] = relationship(back_populates="account", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<Account {self.id} {self.unionid or '-'}>"


class User(db.Model):
    """One person in one mini-program: unique per (appid, openid); belongs to one Account.

    ``session_key`` is WeChat's base64 text; it never leaves the server and is stored
    encrypted (`EncryptedSessionKey`).
    ``gender``: 0 unknown, 1 male, 2 female (WeChat's values).
    """

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("appid", "openid", name="uq_users_appid_openid"),
        # the support console's exact searches (openid in any app, phone number) and its
        # nickname prefix search (PostgreSQL: a pattern index, LIKE 'prefix%' under any
        # collation); README, Support console
        Index("ix_users_openid", "openid"),
        Index("ix_users_pure_phone_number", "pure_phone_number"),
        Index("ix_users_nickname", "nickname",
              postgresql_ops={"nickname": "varchar_pattern_ops"}),
        Index("ix_users_disabled_at", "disabled_at"),  # its filters: disabled, created between
        Index("ix_users_created_at", "created_at"),
        UTF8MB4)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", name="fk_users_account_id"),
                                            index=True)
    appid: Mapped[str] = mapped_column(String(32))
    openid: Mapped[str] = mapped_column(String(64))
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    # Loaded (and decrypted) only when used: most requests never need it.
    session_key: Mapped[str] = mapped_column(EncryptedSessionKey, deferred=True)

    nickname: Mapped[str | None] = mapped_column(String(64))
    avatar_url: Mapped[str | None] = mapped_column(String(512))
    gender: Mapped[int] = mapped_column(SmallInteger, default=0)
    country: Mapped[str | None] = mapped_column(String(64))
    province: Mapped[str | None] = mapped_column(String(64))
    city: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(16))
    phone_number: Mapped[str | None] = mapped_column(String(32))
    pure_phone_number: Mapped[str | None] = mapped_column(String(32))
    country_code: Mapped[str | None] = mapped_column(String(8))

    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # Disabled (`flask users disable`): no login, every token refused; who, when and why.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_by: Mapped[str | None] = mapped_column(String(64))
    disabled_reason: Mapped[str | None] = mapped_column(String(255))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[Account] = relationship(back_populates="users")

    @property
    def disabled(self) -> bool:
        """An operator disabled the user or their account (``users disable``, ``accounts
        disable``): logins and tokens are refused (403 user_disabled)."""
        return self.disabled_at is not None or self.account_disabled_at is not None

    def __repr__(self) -> str:
        return f"<User {self.id} {self.appid}/{self.openid}>"


# How many app users the user's account has, loaded with the user (one query, no extra
# round trip): `<profile>.is_new_account` is true while it is 1.
_siblings = User.__table__.alias("siblings")
User.app_count = column_property(
    select(func.count()).select_from(_siblings)
    .where(_siblings.c.account_id == User.__table__.c.account_id)
    .correlate_except(_siblings).scalar_subquery(),
    deferred=False,
)

# When the user's account was disabled (None: it is not), loaded with the user in the same
# query: every token check sees an account disable at once.
_account = Account.__table__.alias("user_account")
User.account_disabled_at = column_property(
    select(_account.c.disabled_at).where(_account.c.id == User.__table__.c.account_id)
    .correlate_except(_account).scalar_subquery(),
    deferred=False,
)


class LoginSession(db.Model):
    """One login (one device): a ``POST /auth/login`` and its refresh-token family.

    ``id`` is the tokens' ``fam`` claim (32 hex digits). ``refresh_jti`` is the ``jti`` of
    the session's one usable refresh token (32 hex digits; rotated by each refresh; NULL for
    sessions from before it existed, whose refresh tokens are refused). ``last_used_at``
    moves on each refresh. ``ended_at``/``ended_reason`` are set when it ends (``logout``,
    ``ended`` by its user, ``kicked`` by an operator, ``limit`` by ``MAX_SESSIONS_PER_USER``,
    ``reused`` refresh token, ``disabled`` user); its tokens are then refused at their next
    request, on every instance: this row is the one truth (`services.sessions`).
    ``client_address``: the client's IP (after ``TRUSTED_PROXIES``); ``user_agent``: the
    client's User-Agent, at most 512 characters.
    """

    __tablename__ = "login_sessions"
    __table_args__ = (UTF8MB4,)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", name="fk_login_sessions_user_id", ondelete="CASCADE"),
        index=True)
    appid: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(16))
    refresh_jti: Mapped[str | None] = mapped_column(String(32))
    client_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))

    def __repr__(self) -> str:
        return f"<LoginSession {self.id} user {self.user_id}>"


class LoginEvent(db.Model):
    """One login attempt (the login log), kept ``LOGIN_LOG_RETENTION_DAYS``.

    ``outcome``: ``new`` or ``returning`` for a success, else the problem code answered
    (``invalid_code``, ``user_disabled``, ``rate_limited``…). ``user_id`` is None when no user
    is known (code2Session failed). ``errcode``: WeChat's, when WeChat answered one.
    ``count``: attempts this row stands for — 1, except for ``rate_limited`` rows: one row
    per (client address, minute), ``at`` the minute's start, counting the refusals.
    """

    __tablename__ = "login_events"
    __table_args__ = (Index("ix_login_events_user_id_at", "user_id", "at"), UTF8MB4)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    appid: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", name="fk_login_events_user_id", ondelete="SET NULL"))
    client_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(32))
    errcode: Mapped[int | None] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    def __repr__(self) -> str:
        return f"<LoginEvent {self.id} {self.outcome}>"


class DeletedSubject(db.Model):
    """The marker an account deletion leaves of each identity it erased: ``digest`` is
    hex(HMAC-SHA256(``ERASURE_KEY``, identity)) of an app user (appid, openid) or of a
    unionid (`wxauth.services.markers`); the identity itself is not stored. A login whose
    identity matches a marker is a returning person, not a new one.
    """

    __tablename__ = "deleted_subjects"
    __table_args__ = (UniqueConstraint("digest", name="uq_deleted_subjects_digest"), UTF8MB4)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<DeletedSubject {self.id}>"


class ServiceClient(db.Model):
    """A service of the team allowed to call the ``/oauth`` endpoints (`services.clients`).

    ``client_id``: its public id (``svc_`` and 24 hex digits), sent as the HTTP Basic user
    name; ``secret_hash``: the argon2id hash (``$argon2id$…``) of its secret, which is shown
    once by ``flask clients add`` and never stored. ``scopes``: the scopes it holds,
    space-separated (``introspect``, ``wechat_token``).
    """

    __tablename__ = "service_clients"
    __table_args__ = (UniqueConstraint("name", name="uq_service_clients_name"),
                      UniqueConstraint("client_id", name="uq_service_clients_client_id"),
                      UTF8MB4)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def scope_list(self) -> list[str]:
        """`scopes` as a list."""
        return self.scopes.split()

    def __repr__(self) -> str:
        return f"<ServiceClient {self.name} {self.client_id}>"


class SigningKey(db.Model):
    """A key that signs the login's JWTs (`services.keys`), shared by every instance.

    ``kid``: the RFC 7638 thumbprint of its public key (the tokens' ``kid`` header);
    ``algorithm``: ES256, RS256 or EdDSA; ``public_jwk``: the public JWK as JSON text
    (published at ``/.well-known/jwks.json``); ``private_key``: its PKCS#8 PEM encrypted with
    the ``SESSION_KEY_ENCRYPTION_KEY`` keyring (a Fernet token). A key is staged (published,
    not signing: ``activated_at`` NULL), current (activated, not retired) or retired
    (published until ``flask keys prune`` removes it, once every token it signed expired).
    """

    __tablename__ = "signing_keys"
    __table_args__ = (UTF8MB4,)

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)
    private_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<SigningKey {self.algorithm} {self.kid}>"


class Operator(db.Model):
    """A person of the support team who signs in to the console (`services.operators`).

    ``role``: ``viewer``, ``support`` or ``admin``. ``password_hash``: argon2id of the
    password (the initial one printed once by ``flask operators add``, changed at the first
    sign-in: ``must_change_password``). ``totp_secret``: the RFC 6238 secret (base32),
    encrypted at rest like a session_key; ``totp_last_step``: the 30-second step of the last
    code accepted (each code is accepted once); ``enrolled_at``: when the operator first
    proved a code (until then the console shows the secret as a QR code).
    ``failed_count`` failures in a row; 5 lock the operator until ``locked_until``.
    ``session_version`` is bumped by ``disable`` and ``reset``: the console sessions signed in
    before are refused at their next request.
    """

    __tablename__ = "operators"
    __table_args__ = (UniqueConstraint("name", name="uq_operators_name"), UTF8MB4)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    totp_secret: Mapped[str] = mapped_column(EncryptedSessionKey)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<Operator {self.name} {self.role}>"


class AuditEvent(db.Model):
    """One operator action (the audit trail, `services.audit`), kept ``AUDIT_RETENTION_DAYS``;
    the application only ever adds rows (``flask logs prune`` deletes the expired ones).

    ``operator``: the operator's name (``cli:<OS user>`` for a command; the name typed, for a
    failed sign-in); ``client_address``: after ``TRUSTED_PROXIES``; ``action``: what
    (``sign_in``, ``disable_user``, ``view_person``…); ``target``: on whom
    (``account:12``, ``user:34``, ``operator:li``, ``session:…``); ``reason``: the
    operator's; ``before``/``after``: JSON of the fields changed; ``detail``: JSON of the
    rest (search terms, the role a refused request lacked).
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_operator_at", "operator", "at"),
                      Index("ix_audit_events_target_at", "target", "at"), UTF8MB4)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    operator: Mapped[str] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(45))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(255))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<AuditEvent {self.id} {self.action}>"
