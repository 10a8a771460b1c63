"""Request and response schemas (marshmallow), shared by the blueprints and the OpenAPI doc."""

from __future__ import annotations

import base64
import binascii

import marshmallow as ma
from marshmallow import fields, validate
from flask_smorest import Blueprint as _Blueprint
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.exceptions import RequestEntityTooLarge

from ..services import keys
from ..wechat import jsontext

GENDERS = (0, 1, 2)  # WeChat: 0 unknown, 1 male, 2 female


class FullMatch(validate.Regexp):
    """marshmallow's ``Regexp``, matching the whole value (`re.fullmatch`).

    The pattern is also the OpenAPI document's ``pattern``, which JavaScript tools (ajv,
    Apifox, Postman) compile as an ECMAScript RegExp: write it in the syntax both engines
    read alike, anchored with ``^…$`` (no Python-only ``\\Z``). Python's ``$`` also matches
    before a final newline; `re.fullmatch` does not, so ``"text\\n"`` fails here as in
    JavaScript.
    """

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self.error.format(input=value, regex=self.regex.pattern))
        return value


# Printable text only: control characters (NUL above all, which PostgreSQL refuses) are 400s.
# Every string field of a request schema has it (or _NICKNAME, which includes it).
_PRINTABLE = FullMatch(r"^[^\x00-\x1f\x7f]*$", error="Must not contain control characters.")
# ... with one visible character at least. The space class is spelt out where Python's and
# JavaScript's \s differ (U+0085 is a space only to Python, U+FEFF only to JavaScript).
_NICKNAME = FullMatch(r"^(?=[^\x00-\x1f\x7f]*[^\s\x85\ufeff\x00-\x1f\x7f])[^\x00-\x1f\x7f]*$",
                      error="Must have visible characters and no control characters.")


class Parser(FlaskParser):
    """webargs parser answering 400 (not 422), refusing non-JSON bodies, deep nesting and
    unpaired surrogates (`jsontext.loads`)."""

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req):
        if not is_json_request(req):
            abort(400, messages={"json": ["Send a JSON object with Content-Type: application/json."]})
        from flask import current_app

        try:
            parsed = jsontext.loads(_whole_body(req))
        except RecursionError:
            abort(400, messages={"json": ["JSON nested too deeply."]})
        except UnicodeEncodeError:  # (not UTF-8 and not JSON: webargs answers those)
            abort(400, messages={"json": ["Strings must be valid Unicode: an unpaired surrogate "
                                          "escape (\\ud800-\\udfff) cannot be stored."]})
        if _depth(parsed) > current_app.config["JSON_MAX_DEPTH"]:
            abort(400, messages={"json": ["JSON nested too deeply."]})
        return parsed


def _whole_body(req) -> bytes:
    """The request body; RequestEntityTooLarge (413) when it is over ``max_content_length``.

    Werkzeug checks a Content-Length against the limit before reading, but a chunked body
    it reads up to the limit and stops, as if that were all: the JSON would be cut short (a
    400 "not JSON", or worse, a shorter document). One more byte from the server's stream
    tells a body of exactly the limit from a longer one."""
    data = req.get_data(cache=True)
    limit = req.max_content_length
    if (req.content_length is None and limit is not None and len(data) >= limit
            and req.environ["wsgi.input"].read(1)):
        raise RequestEntityTooLarge()
    return data


def _depth(value, level: int = 0) -> int:
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


class Blueprint(_Blueprint):
    ARGUMENTS_PARSER = Parser()

    def arguments(self, schema, *args, **kwargs):
        """flask-smorest's ``arguments``, with the schema instantiated once here: given a
        class, webargs builds a new schema instance for every request."""
        return super().arguments(schema() if isinstance(schema, type) else schema, *args,
                                 **kwargs)


class Base64Bytes(fields.String):
    """A base64 string on the wire, raw bytes in Python.

    Spaces are read as ``+`` (the usual damage when base64 travels through form or URL
    encoding). `byte_length` requires an exact decoded length.
    """

    default_error_messages = {
        "base64": "Not valid base64.",
        "byte_length": "Must decode to exactly {length} bytes.",
    }

    def __init__(self, *, byte_length: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.byte_length = byte_length

    def _deserialize(self, value, attr, data, **kwargs) -> bytes:
        text = super()._deserialize(value, attr, data, **kwargs).replace(" ", "+").strip()
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise self.make_error("base64") from None
        if self.byte_length is not None and len(raw) != self.byte_length:
            raise self.make_error("byte_length", length=self.byte_length)
        return raw


class HealthSchema(ma.Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "degraded"]),
                           metadata={"example": "ok"})
    store = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]),
                          metadata={"description": "The shared store (Redis, or the "
                                    "in-process one): unavailable makes the server degraded, "
                                    "not unready.", "example": "ok"})


class DiscoverySchema(ma.Schema):
    """The discovery document (OpenID Connect Discovery 1.0 / RFC 8414 field names)."""

    issuer = fields.String(required=True, metadata={
        "description": "the tokens' iss", "example": "https://api.example.com"})
    jwks_uri = fields.String(required=True, metadata={
        "example": "https://api.example.com/.well-known/jwks.json"})
    introspection_endpoint = fields.String(required=True, metadata={
        "example": "https://api.example.com/oauth/introspect"})
    introspection_endpoint_auth_methods_supported = fields.List(
        fields.String(), required=True, metadata={"example": ["client_secret_basic"]})
    claims_supported = fields.List(fields.String(), required=True)
    service_documentation = fields.String(metadata={
        "description": "the API's documentation (/docs); absent when API_DOCS=0"})


class JwkSchema(ma.Schema):
    """A public key (RFC 7517): EC P-256 (ES256), RSA (RS256) or OKP Ed25519 (EdDSA)."""

    class Meta:
        unknown = ma.INCLUDE

    kty = fields.String(required=True, validate=validate.OneOf(["EC", "RSA", "OKP"]))
    kid = fields.String(required=True, metadata={"description": "RFC 7638 thumbprint"})
    alg = fields.String(required=True, validate=validate.OneOf(keys.ALGORITHMS))
    use = fields.String(required=True, validate=validate.OneOf(["sig"]))
    crv = fields.String(metadata={"description": "EC and OKP: P-256 or Ed25519"})
    x = fields.String(metadata={"description": "EC and OKP, base64url"})
    y = fields.String(metadata={"description": "EC, base64url"})
    n = fields.String(metadata={"description": "RSA modulus, base64url"})
    e = fields.String(metadata={"description": "RSA exponent, base64url"})


class JwksSchema(ma.Schema):
    keys = fields.List(fields.Nested(JwkSchema), required=True)


class LoginSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    code = fields.String(required=True, validate=[validate.Length(min=1, max=128), _PRINTABLE],
                         metadata={"description": "the code from wx.login()"})
    appid = fields.String(validate=[validate.Length(min=1, max=32), _PRINTABLE], metadata={
        "description": "which mini-program (wx.getAccountInfoSync().miniProgram.appId); "
                       "required when the server serves several"})
    phone_code = fields.String(validate=[validate.Length(min=1, max=128), _PRINTABLE], metadata={
        "description": "optional: e.detail.code of <button open-type=\"getPhoneNumber\">, when "
                       "the app asks for the number at login; the phone is bound in the same "
                       "request (see `phone` in the answer)"})


class ProfileSchema(ma.Schema):
    """`<profile>`: what the client may see of a user (never the session_key)."""

    id = fields.Integer(required=True)
    account_id = fields.Integer(required=True, metadata={
        "description": "the person across the company's mini-programs (one per unionid)"})
    is_new_account = fields.Method("_is_new_account", metadata={
        "type": "boolean",
        "description": "true while this is the only one of the company's mini-programs the "
                       "person has used"})
    nickname = fields.String(allow_none=True)
    avatar_url = fields.String(allow_none=True)
    gender = fields.Integer(metadata={"description": "0 unknown, 1 male, 2 female"})
    country = fields.String(allow_none=True)
    province = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    language = fields.String(allow_none=True)
    phone_number = fields.String(allow_none=True, metadata={"description": "with country code "
                                                             "unless it is 86"})
    pure_phone_number = fields.String(allow_none=True)
    country_code = fields.String(allow_none=True, metadata={"example": "86"})
    created_at = fields.DateTime(format="iso", metadata={"description": "ISO 8601, UTC"})
    updated_at = fields.DateTime(format="iso", metadata={"description": "ISO 8601, UTC"})

    def _is_new_account(self, user) -> bool:
        return user.app_count == 1


class TokenPairSchema(ma.Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "seconds",
                                                          "example": 604800})
    refresh_token = fields.String(required=True, metadata={
        "description": "for POST /auth/refresh; single-use, 30 days"})


class LoginResultSchema(TokenPairSchema):
    is_new_user = fields.Boolean(required=True, metadata={
        "description": "first login of this user in this mini-program"})
    is_new_account = fields.Boolean(required=True, metadata={
        "description": "first time this person is seen in any of the company's mini-programs"})
    user = fields.Nested(ProfileSchema, required=True)
    phone = fields.Nested(lambda: PhoneBindingSchema(), metadata={
        "description": "only when `phone_code` was sent: whether the phone number was bound. "
                       "A failing phone code does not undo the login"})


class PhoneBindingSchema(ma.Schema):
    """The outcome of a login's ``phone_code``."""

    bound = fields.Boolean(required=True)
    code = fields.String(metadata={
        "description": "when not bound: the problem code POST /profile/phone would have "
                       "answered (invalid_code, watermark_mismatch, wechat_busy, …)"})
    detail = fields.String(metadata={"description": "when not bound: why, and what to do"})
    errcode = fields.Integer(metadata={"description": "WeChat's errcode, when it gave one"})
    retry_after = fields.Integer(metadata={
        "description": "seconds to wait before sending a new phone code (WeChat busy or "
                       "rate-limited), as Retry-After would say"})


class EncryptedProfileSchema(ma.Schema):
    """``e.detail`` from getUserProfile/getUserInfo, sent as WeChat hands it over."""

    class Meta:
        unknown = ma.EXCLUDE  # errMsg, userInfo, cloudID… are ignored

    encryptedData = Base64Bytes(required=True, validate=validate.Length(min=16, max=16 * 1024))
    iv = Base64Bytes(required=True, byte_length=16)
    rawData = fields.String(validate=[validate.Length(max=4096), _PRINTABLE])
    signature = fields.String(validate=[validate.Length(equal=40), _PRINTABLE])

    @ma.validates_schema
    def _raw_data_with_signature(self, data, **kwargs):
        if ("rawData" in data) != ("signature" in data):
            raise ma.ValidationError("Send rawData and signature together, or neither.",
                                     "signature" if "rawData" in data else "rawData")


_text = dict(allow_none=True, validate=[validate.Length(max=64), _PRINTABLE])


class PhoneSchema(ma.Schema):
    """``e.detail`` of ``<button open-type="getPhoneNumber">``: ``code`` (base library ≥ 2.21.2)
    or, old style, ``encryptedData`` + ``iv``."""

    class Meta:
        unknown = ma.EXCLUDE

    code = fields.String(validate=[validate.Length(min=1, max=128), _PRINTABLE],
                         metadata={"description": "e.detail.code (not a wx.login code)"})
    encryptedData = Base64Bytes(validate=validate.Length(min=16, max=16 * 1024))
    iv = Base64Bytes(byte_length=16)

    @ma.validates_schema
    def _one_way(self, data, **kwargs):
        if "code" in data:
            return
        if "encryptedData" not in data or "iv" not in data:
            raise ma.ValidationError("Send code, or encryptedData and iv.", "code")


class SessionSchema(ma.Schema):
    session_key_valid = fields.Boolean(required=True)


class LoginSessionSchema(ma.Schema):
    """One session: a login (one device) and its refresh-token family."""

    id = fields.String(required=True, metadata={
        "description": "the session's id (the tokens' `fam` claim)",
        "example": "5f0c3b9e2a6d4c1f8e7a9b0c1d2e3f40"})
    appid = fields.String(required=True)
    created_at = fields.DateTime(format="iso", required=True,
                                 metadata={"description": "the login; ISO 8601, UTC"})
    last_used_at = fields.DateTime(format="iso", required=True, metadata={
        "description": "the login or the latest refresh; ISO 8601, UTC"})
    client_address = fields.String(allow_none=True, metadata={"example": "203.0.113.7"})
    user_agent = fields.String(allow_none=True, metadata={
        "description": "the client's User-Agent (WeChat's names the device and WeChat "
                       "version)"})
    current = fields.Boolean(required=True, metadata={
        "description": "the session of the token this request was sent with"})


class LoginSessionListSchema(ma.Schema):
    sessions = fields.List(fields.Nested(LoginSessionSchema), required=True, metadata={
        "description": "the live sessions (not ended, not expired), newest first"})


class AvatarUploadSchema(ma.Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary",
                                               "description": "the chooseAvatar temporary file"})


class ProfilePatchSchema(ma.Schema):
    """Plain profile fields, as the post-2022 components give them."""

    class Meta:
        unknown = ma.RAISE  # a misspelt field should say so, not be ignored

    nickname = fields.String(allow_none=True,
                             validate=[validate.Length(min=1, max=64), _NICKNAME],
                             metadata={"description": 'from <input type="nickname">'})
    avatar_url = fields.Url(allow_none=True, schemes={"http", "https"},
                            validate=[validate.Length(max=512), _PRINTABLE],
                            metadata={"description": "an uploaded avatar's http(s) URL"})
    gender = fields.Integer(strict=True, validate=validate.OneOf(GENDERS))
    country = fields.String(**_text)
    province = fields.String(**_text)
    city = fields.String(**_text)
    language = fields.String(allow_none=True, validate=[validate.Length(max=16), _PRINTABLE])


class DeleteAccountSchema(ma.Schema):
    """``DELETE /profile``'s confirmation."""

    class Meta:
        unknown = ma.EXCLUDE

    code = fields.String(required=True, validate=[validate.Length(min=1, max=128), _PRINTABLE],
                         metadata={"description": "a fresh code from wx.login() on the user's "
                                                  "own device: the confirmation"})


class ExportAccountSchema(ma.Schema):
    id = fields.Integer(required=True)
    unionid = fields.String(allow_none=True)
    created_at = fields.DateTime(format="iso", metadata={"description": "ISO 8601, UTC"})
    disabled_at = fields.DateTime(format="iso", allow_none=True)
    disabled_reason = fields.String(allow_none=True)


class ExportUserSchema(ProfileSchema):
    """An app user as stored (never the session_key)."""

    appid = fields.String(required=True)
    openid = fields.String(required=True)
    unionid = fields.String(allow_none=True)
    last_login_at = fields.DateTime(format="iso", metadata={"description": "ISO 8601, UTC"})
    disabled_at = fields.DateTime(format="iso", allow_none=True)
    disabled_reason = fields.String(allow_none=True)


class ExportSessionSchema(LoginSessionSchema):
    """A session as stored, live or ended (its id is not a credential)."""

    class Meta:
        exclude = ("current",)

    user_id = fields.Integer(required=True)
    ended_at = fields.DateTime(format="iso", allow_none=True)
    ended_reason = fields.String(allow_none=True, metadata={
        "description": "logout, ended, kicked, limit, reused, disabled"})


class ExportLoginEventSchema(ma.Schema):
    """A row of the login log."""

    at = fields.DateTime(format="iso", required=True, metadata={"description": "ISO 8601, UTC"})
    appid = fields.String(allow_none=True)
    user_id = fields.Integer(allow_none=True)
    client_address = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    outcome = fields.String(required=True, metadata={
        "description": "new, returning, or the problem code the login answered"})
    errcode = fields.Integer(allow_none=True, metadata={"description": "WeChat's errcode"})


class ExportSchema(ma.Schema):
    """Everything stored about the person (all the apps of the account); nothing secret."""

    exported_at = fields.DateTime(format="iso", required=True)
    account = fields.Nested(ExportAccountSchema, required=True)
    users = fields.List(fields.Nested(ExportUserSchema), required=True)
    sessions = fields.List(fields.Nested(ExportSessionSchema), required=True, metadata={
        "description": "every session (login, device), live or ended, newest first"})
    login_events = fields.List(fields.Nested(ExportLoginEventSchema), required=True, metadata={
        "description": "the login log's rows of the person, newest first"})


class IntrospectionRequestSchema(ma.Schema):
    """RFC 7662's request, form-encoded."""

    class Meta:
        unknown = ma.EXCLUDE

    token = fields.String(required=True, validate=[validate.Length(min=1, max=4096), _PRINTABLE],
                          metadata={"description": "an access token or a refresh token"})
    token_type_hint = fields.String(validate=[validate.Length(max=64), _PRINTABLE], metadata={
        "description": "access_token or refresh_token: accepted and not needed (the token "
                       "says which it is)"})


class IntrospectionSchema(ma.Schema):
    """RFC 7662's answer: ``{"active": false}`` alone for a token that is not live."""

    active = fields.Boolean(required=True)
    sub = fields.String(metadata={"description": "the user's openid in `appid`"})
    appid = fields.String(metadata={"description": "the mini-program"})
    sid = fields.String(metadata={"description": "the login session (GET /auth/sessions)"})
    jti = fields.String(metadata={"description": "the token's id"})
    exp = fields.Integer(metadata={"description": "expiry, seconds since the epoch"})
    iat = fields.Integer(metadata={"description": "issued at, seconds since the epoch"})
    iss = fields.String(metadata={"description": "the issuer (JWT_ISSUER, else API_BASE_URL, "
                                                 "else the server's URL root)"})
    aud = fields.String(metadata={"description": "the audience (JWT_AUDIENCE), when the token "
                                                 "has one"})
    token_type = fields.String(validate=validate.OneOf(["access", "refresh"]))
    unionid = fields.String(allow_none=True)
    account_id = fields.Integer(metadata={
        "description": "the person across the company's mini-programs (one per unionid)"})


class WeChatTokenRequestSchema(ma.Schema):
    appid = fields.String(validate=[validate.Length(min=1, max=32), _PRINTABLE], metadata={
        "description": "which mini-program; may be left out when the server serves one"})


class WeChatTokenSchema(ma.Schema):
    access_token = fields.String(required=True, metadata={
        "description": "WeChat's access_token of the mini-program (the server's cached one)"})
    expires_in = fields.Integer(required=True, metadata={"description": "seconds it has left",
                                                          "example": 6900})
