"""The language of problem texts: English by default, Simplified Chinese for Chinese readers.

Flask-Babel translates the strings marked with `lazy_gettext` (``_l``) through the message
catalogue ``wxauth/translations/zh_Hans/LC_MESSAGES/messages.po`` (compiled to ``.mo``; see
README, Development: ``make messages``). The request's ``Accept-Language`` picks the language
(`select_locale`); only the problem+json answers (`wxauth.errors`) carry translated text.
Imports nothing of wxauth.
"""

from __future__ import annotations

from babel import negotiate_locale
from flask import Flask, has_request_context, request, session
from flask_babel import Babel, get_locale, lazy_gettext

DEFAULT_LANGUAGE = "en"
CHINESE = "zh_Hans"  # the catalogue's folder; Simplified Chinese (简体中文)
# primary language subtag → catalogue; every Chinese tag (zh, zh-CN, zh-Hans, WeChat's zh_CN,
# and zh-TW / zh-HK / zh-Hant too) gets Simplified Chinese: the only Chinese catalogue, and
# closer to a Traditional-Chinese reader than English
LANGUAGES = {"en": DEFAULT_LANGUAGE, "zh": CHINESE}
# Content-Language (BCP 47) of each catalogue
CONTENT_LANGUAGE = {DEFAULT_LANGUAGE: "en", CHINESE: "zh-Hans"}
CONSOLE_PATH = "/admin/"  # the support console (wxauth.web.admin) keeps a language switch

babel = Babel()
_l = lazy_gettext  # marks a string for extraction (babel.cfg) and translates it when shown


def select_locale() -> str:
    """The catalogue for this request: ``"zh_Hans"`` or ``"en"``.

    The request's ``Accept-Language`` tags, best quality first, are matched by their primary
    subtag (``zh-CN``, ``zh_CN``, ``zh-Hans-CN`` → ``zh``; ``en-US`` → ``en``); the first tag
    we have a catalogue for wins, English when none does (or outside a request). In the
    support console (``/admin/``) the language its switch chose (kept in its session) comes
    first.
    """
    if not has_request_context():
        return DEFAULT_LANGUAGE
    if request.path.startswith(CONSOLE_PATH):  # the console's language switch, kept there
        chosen = session.get("lang")
        if chosen in CONTENT_LANGUAGE:
            return chosen
    # WeChat's wx.getAppBaseInfo().language spells tags with "_" (zh_CN): Babel splits on "-"
    preferred = [tag.replace("_", "-").lower() for tag in request.accept_languages.values()]
    match = negotiate_locale(preferred, list(LANGUAGES), sep="-", aliases=None)
    return LANGUAGES.get(match or DEFAULT_LANGUAGE, DEFAULT_LANGUAGE)


def current_language() -> str:
    """The catalogue in use for this request (``"en"`` outside a request)."""
    locale = get_locale() if has_request_context() else None
    if locale is None or locale.language == "en":
        return DEFAULT_LANGUAGE
    return CHINESE


def init_app(app: Flask) -> None:
    """Bind Flask-Babel: catalogues in ``wxauth/translations``, `select_locale`."""
    babel.init_app(app, default_locale=DEFAULT_LANGUAGE, locale_selector=select_locale)
