"""String privacy rules of the statistics gate.

Two kinds of rules:

* tight acceptance rules: a kept string must be in the field's allow-list
  (``values`` in ``schemas/catalogue.json``), match the field's named version
  pattern, or parse as a timestamp in a form Rocket.Chat sends;
* detectors (e-mail, URL, IP, identifier, phone, host name, free text) that
  only decide *which* reason code a refused string gets, so the workspace
  learns why without the value being echoed anywhere.

Every function here is pure: it never logs, stores or echoes a value, and a
:class:`RuleViolation` carries only a reason code.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from functools import lru_cache

_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"']+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+")
_URL = re.compile(r"(?i)(?:\b[a-z][a-z0-9+.-]{1,15}://|\bwww\.)\S")
_IPV4_IN_TEXT = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_TOKEN_SPLIT = re.compile(r"[\s,;/\[\]()<>\"']+")
_UUID = re.compile(r"(?i)\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b")
_LONG_HEX = re.compile(r"(?i)(?<![0-9a-z])[0-9a-f]{16,}(?![0-9a-z])")
_JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.?[\w-]*")
_ID_TOKEN = re.compile(r"[A-Za-z0-9_+/=-]{16,}")
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s().-]{5,}\d(?![\w.])")
_HOSTNAME = re.compile(
    r"(?i)^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]\.?$"
)
_WHITESPACE = re.compile(r"\s")
FREE_TEXT_LENGTH = 48  # a kept string longer than this without matching its rule is called free text

_JS_DATE = re.compile(
    r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{2}) (\d{4}) "
    r"(\d{2}):(\d{2}):(\d{2}) GMT([+-])(\d{2})(\d{2})(?: \([^()]{1,64}\))?$"
)
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.(\d{1,9}))?)?(?:Z|[+-]\d{2}:?\d{2})?$")
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}
_EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)


class RuleViolation(ValueError):
    """A string broke a rule; ``reason`` is a machine code, the value is never kept."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- detectors ------------------------------------------------------------------

def looks_like_email(s: str) -> bool:
    """True if ``s`` contains something shaped like ``local@domain.tld``."""
    return _EMAIL.search(s) is not None


def looks_like_url(s: str) -> bool:
    """True if ``s`` contains a ``scheme://`` or ``www.`` reference."""
    return _URL.search(s) is not None


def _is_ip(token: str) -> bool:
    token = token.strip()
    if not token:
        return False
    candidates = [token]
    if token.count(":") == 1:  # host:port
        candidates.append(token.split(":", 1)[0])
    if "%" in token:  # IPv6 zone index
        candidates.append(token.split("%", 1)[0])
    for c in candidates:
        try:
            ipaddress.ip_address(c)
            return True
        except ValueError:
            continue
    return False


def looks_like_ip(s: str) -> bool:
    """True if ``s`` is or contains an IPv4/IPv6 address (checked with :mod:`ipaddress`)."""
    if _is_ip(s):
        return True
    for m in _IPV4_IN_TEXT.finditer(s):
        if _is_ip(m.group(0)):
            return True
    if ":" in s:
        return any(_is_ip(t) for t in _TOKEN_SPLIT.split(s) if t.count(":") >= 2)
    return False


def looks_like_identifier(s: str) -> bool:
    """True for UUIDs, Mongo ObjectIds / long hex, JWTs and long base64-ish tokens."""
    if _UUID.search(s) or _LONG_HEX.search(s) or _JWT.search(s):
        return True
    for m in _ID_TOKEN.finditer(s):
        tok = m.group(0)
        if any(c.isdigit() for c in tok) and any(c.isalpha() for c in tok):
            return True
    return False


def looks_like_phone(s: str) -> bool:
    """True if ``s`` contains a run of 7 to 15 digits written like a phone number."""
    for m in _PHONE.finditer(s):
        digits = sum(c.isdigit() for c in m.group(0))
        if 7 <= digits <= 15:
            return True
    return False


def looks_like_hostname(s: str) -> bool:
    """True if ``s`` (or a word of it) is a dotted DNS name ending in an alphabetic label."""
    return any(_HOSTNAME.match(t) for t in _TOKEN_SPLIT.split(s) if "." in t)


def looks_like_free_text(s: str) -> bool:
    """True for strings with white space or longer than :data:`FREE_TEXT_LENGTH`."""
    return _WHITESPACE.search(s) is not None or len(s) > FREE_TEXT_LENGTH


DETECTORS = (
    ("looks_like_email", looks_like_email),
    ("looks_like_url", looks_like_url),
    ("looks_like_ip", looks_like_ip),
    ("looks_like_identifier", looks_like_identifier),
    ("looks_like_phone", looks_like_phone),
    ("looks_like_hostname", looks_like_hostname),
    ("free_text", looks_like_free_text),
)


def detect(s: str, *, skip: Collection[str] = ()) -> str | None:
    """Reason code of the first detector that fires on ``s``, or ``None``.

    ``skip`` names detectors to leave out (timestamps skip ``free_text`` and
    ``looks_like_phone``: their valid forms contain spaces and digit runs).
    """
    for reason, fn in DETECTORS:
        if reason not in skip and fn(s):
            return reason
    return None


_TIMESTAMP_SKIP = ("free_text", "looks_like_phone")
_SOFT_DETECTORS = ("free_text", "looks_like_hostname")


# --- acceptance rules -----------------------------------------------------------

def typed_values(values: Collection[object]) -> frozenset[tuple[type, object]]:
    """Allow-list as (type, value) pairs, so ``1`` never matches ``true`` (Python: 1 == True)."""
    return frozenset((type(v), v) for v in values)


def check_enumeration(value: object, allowed: frozenset[tuple[type, object]], on_unknown: str | None = None) -> object:
    """Return ``value`` if allow-listed; ``on_unknown`` (e.g. ``"other"``) for a clean unknown string.

    With ``on_unknown`` set, free text and host-name-like values also become
    ``on_unknown`` (nothing of them is kept); e-mail, URL, IP, identifier and
    phone shapes are still refused. Raises :class:`RuleViolation` with a detector reason (``looks_like_email``...)
    or ``not_in_enumeration``. Allow-lists come from ``schemas/catalogue.json``
    (e.g. ``os.platform`` = Node's ``process.platform`` values; session names =
    ua-parser names used by ``SAUMonitor.ts``).
    """
    if (type(value), value) in allowed:
        return value
    if isinstance(value, str):
        # user-agent derived names (on_unknown set) legitimately contain spaces and dots
        # ("Opera GX", "Yandex.Browser"): only strong personal-data signals refuse them there
        reason = detect(value, skip=_SOFT_DETECTORS if on_unknown is not None else ())
        if reason:
            raise RuleViolation(reason)
        if on_unknown is not None:
            return on_unknown
    raise RuleViolation("not_in_enumeration")


def check_version(value: str, pattern: re.Pattern[str]) -> str:
    """Return ``value`` if it matches the field's version pattern and is not an IP address.

    Raises :class:`RuleViolation` (detector reason or ``bad_version``). Patterns:
    ``Info.version`` (``6.8.0``, ``0.61.0-develop``), ``process.version``
    (``v22.22.3``), MongoDB ``buildInfo.version``; see ``patterns`` in the catalogue.
    """
    if pattern.match(value) and not (value.count(".") == 3 and _is_ip(value)):
        return value
    raise RuleViolation(detect(value) or "bad_version")


def check_language_code(key: str, pattern: re.Pattern[str]) -> str:
    """``userLanguages`` keys (``Users.getUserLanguages()`` in statistics.ts): ``en``, ``pt-BR``, ``none``."""
    if pattern.match(key):
        return key
    raise RuleViolation(detect(key) or "not_a_language_code")


@lru_cache(maxsize=64)
def _zone(sign: str, hours: str, minutes: str) -> timezone:
    """The fixed-offset zone of a ``GMT+hhmm`` suffix (``timezone.utc`` for ``+0000``)."""
    offset = timedelta(hours=int(hours), minutes=int(minutes)) * (1 if sign == "+" else -1)
    return timezone.utc if not offset else timezone(offset)


def parse_timestamp(value: str, *, empty_ok: bool = False) -> datetime | None:
    """Parse a Rocket.Chat timestamp into an aware UTC :class:`datetime`.

    Accepts ISO 8601 (``Date.toISOString()``: ``2024-07-02T11:12:00.221Z``) and
    JavaScript ``Date.toString()`` text (``Sat Jun 29 2024 12:57:57 GMT+0000
    (Coordinated Universal Time)``, used for ``lastLogin`` and
    ``lastSeenSubscription`` since statistics.ts calls ``.toString()``); ``""``
    gives ``None`` when ``empty_ok``. Naive ISO times are read as UTC.
    Raises :class:`RuleViolation` (``bad_timestamp`` or a detector reason).
    """
    if value == "" and empty_ok:
        return None
    dt: datetime | None = None
    m = _JS_DATE.match(value)
    if m:
        mon, day, year, hh, mm, ss, sign, oh, om = m.groups()
        try:
            dt = datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss),
                          tzinfo=_zone(sign, oh, om))
        except ValueError:
            dt = None
    else:
        m = _ISO.match(value)
        if m:
            text = value
            frac = m.group(1)
            if frac and len(frac) > 6:  # fromisoformat takes at most microseconds
                text = text.replace("." + frac, "." + frac[:6], 1)
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                dt = None
            if dt is not None and dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
    if dt is None:
        raise RuleViolation(detect(value, skip=_TIMESTAMP_SKIP) or "bad_timestamp")
    try:
        # 0001-01-01T00:00:00+01:00 or 9999-12-31T23:59:59-01:00 fall outside
        # datetime's range once moved to UTC: OverflowError, refused like any
        # other time outside the window below.
        dt = dt.astimezone(timezone.utc)
    except OverflowError:
        raise RuleViolation("bad_timestamp") from None
    if not _EARLIEST <= dt < _LATEST:
        raise RuleViolation("bad_timestamp")
    return dt
