"""String privacy rules of the statistics gate.

Two kinds of rules:

* tight acceptance rules: a kept string must be in the field's allow-list
  (``values`` in ``schemas/catalogue.json``), match the field's named version
  pattern, or parse as a timestamp in a form Rocket.Chat sends; a map key must be
  in the map's value set or is counted under ``other`` (:func:`fold_key`);
* detectors (e-mail, URL, IP, identifier, phone, host name, free text): the
  second net behind the version patterns (a value the pattern accepts but a
  detector fires on is refused, issue 10), and the reason code a refused string
  gets, so the workspace learns why without the value being echoed anywhere.

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


_INET_PART = re.compile(r"(?i)^(?:0x[0-9a-f]*|[0-9]+)$")
_DOTTED = re.compile(r"(?i)^v?((?:0x[0-9a-f]*|\d+)(?:[._](?:0x[0-9a-f]*|\d+)){0,3})$")


def _inet_part(part: str) -> int | None:
    """The number an ``inet_aton`` address part denotes (``0x7f`` hex, ``0177`` octal,
    ``127`` decimal; ``078``, no octal number, as the zero-padded decimal a person
    means), or ``None`` when ``part`` is not a number."""
    if not _INET_PART.match(part):
        return None
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        # octal for inet_aton, but a zero-padded decimal (078) to a reader
        return int(part, 8) if all(c in "01234567" for c in part) else int(part)
    return int(part)


def _is_inet_aton(token: str) -> bool:
    """True for IPv4 written in a notation :mod:`ipaddress` refuses but ``inet_aton``,
    browsers (WHATWG URL host parser) and ``ping`` accept (where the line is drawn, per form):

    * four parts (``.``, or ``_`` as ua-parser-js writes versions), each decimal with
      or without leading zeros, octal (``0300``) or hex (``0xc0``), each at most 255:
      ``010.001.002.003``, ``0300.0250.01.024``, ``0xc0.0xa8.1.20``, ``192_168_1_20``;
    * one to three parts with a hex part, a zero-padded / octal first part, or a later
      zero-padded part of three or more characters (``0x7f.1``, ``0177.1``, ``01.0``,
      ``1.001.2``; not ``22.04``, Ubuntu's version), the first part from 1 to 255 (``0.020``, a real browser
      version, would be 0.0.0.16) and the last within the range its position allows
      (24 bits after one part, 16 after two);
    * one number, decimal, octal or hex, from 2**24 to 2**32 - 1 (``2130706433``,
      ``0x7f000001``, ``017700000001``: integer notation, 1.0.0.0 and up; ``0000``,
      ``007`` or ``2409760`` are not addresses).

    Not called an address: one to three plain decimal parts without leading zeros
    (``8.1``, ``124.0.6367``, ``10.15.7``): every real browser, OS and server version
    has that shape; the version patterns of ``schemas/catalogue.json`` bound those
    (at most 9 digits, see their ``why``). An optional ``v`` prefix is ignored.
    """
    m = _DOTTED.match(token)
    if not m:
        return False
    raw = re.split(r"[._]", m.group(1))
    if len(set(re.findall(r"[._]", m.group(1)))) > 1:
        return False  # 1_2.3: mixed separators, no address notation
    parts = [_inet_part(p) for p in raw]
    if any(p is None for p in parts):
        return False
    nums = [p for p in parts if p is not None]
    if len(nums) == 4:
        return all(n <= 255 for n in nums)
    # a hex part (0x7f), a zero-padded / octal first part (01.0, 010.1.2) or a later one
    # of three or more characters (1.001.2); later two-character ones are real (Ubuntu 22.04)
    padded = (len(raw[0]) > 1 and raw[0][0] == "0") or any(
        p[:2].lower() == "0x" or (len(p) > 2 and p[0] == "0") for p in raw)
    if len(nums) == 1:  # integer notation (decimal, octal or hex) of at least 1.0.0.0
        return 2**24 <= nums[0] < 2**32
    if not padded:
        return False
    last_bits = {2: 24, 3: 16}[len(nums)]
    return 1 <= nums[0] <= 255 and all(n <= 255 for n in nums[1:-1]) and nums[-1] < 2**last_bits


def _is_ip(token: str) -> bool:
    token = token.strip().strip("[]")
    if not token:
        return False
    candidates = [token]
    if token.count(":") == 1:  # host:port
        candidates.append(token.split(":", 1)[0])
    if "]:" in token:  # [v6]:port
        candidates.append(token.split("]:", 1)[0].strip("[]"))
    if "%" in token:  # IPv6 zone index
        candidates.append(token.split("%", 1)[0])
    for c in candidates:
        try:
            ipaddress.ip_address(c)
            return True
        except ValueError:
            if _is_inet_aton(c):
                return True
    return False


_IP_WORD = re.compile(r"(?i)(?<![\w.])v?(?:0x[0-9a-f]*|\d+)(?:[._](?:0x[0-9a-f]*|\d+)){0,3}(?::\d{1,5})?(?![\w.])")


def looks_like_ip(s: str) -> bool:
    """True if ``s`` is or contains an IPv4/IPv6 address: what :mod:`ipaddress` parses
    (also with ``:port``, ``[v6]:port``, ``%zone``) and the ``inet_aton`` notations of
    :func:`_is_inet_aton` (leading zeros, octal, hex, integer)."""
    if _is_ip(s):
        return True
    for m in _IPV4_IN_TEXT.finditer(s):
        if _is_ip(m.group(0)):
            return True
    for m in _IP_WORD.finditer(s):
        if _is_ip(m.group(0).split(":", 1)[0]):
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


_DOT_GROUPS = re.compile(r"^\d+(?:\.\d+)+$")


def looks_like_phone(s: str) -> bool:
    """True if ``s`` contains a run of 7 to 17 digits written like a phone number
    (E.164 ``+49 151 2345 6789``, ``0049 151 23456789``, national ``(030) 1234-5678``,
    ``0612345678``).

    A run written with dots only (``555.123.4567``, ``06.12.34.56.78``, ``555.1234``)
    is a phone number when it has 10 or more digits, or 7 to 9 digits in groups of
    two or more: three or more groups with 8 or 9 digits (``12.34.56.78``,
    ``12.34.5678``), or two groups, the first of three or more digits (``555.1234``);
    other dotted runs of at most 9 digits are versions (``124.0.6367``, ``7.6.40234``,
    ``10.0.19045``, ``2020.16.2``, EdgeHTML ``18.17763``, ``23.36.215``).
    """
    for m in _PHONE.finditer(s):
        text = m.group(0)
        digits = sum(c.isdigit() for c in text)
        if not 7 <= digits <= 17:  # E.164: at most 15, plus a 00 international prefix
            continue
        if _DOT_GROUPS.match(text) and digits <= 9:
            groups = text.split(".")
            if min(map(len, groups)) < 2 or (len(groups) == 2 and len(groups[0]) < 3) or (
                    len(groups) > 2 and digits < 8):
                continue
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


def check_version(value: str, pattern: re.Pattern[str], on_unknown: str | None = None) -> str:
    """Return ``value`` if it matches the field's version pattern and no detector fires on it.

    The detectors are a second net behind the pattern (which already bounds parts and
    digits so that no IPv4 notation or phone number fits, see ``why`` in the
    catalogue). With ``on_unknown`` (``"other"``: user-agent and OS versions, which
    carry suffixes such as ``-beta``), a value that does not match but passes the
    strong detectors (e-mail, URL, IP, identifier, phone; as :func:`check_enumeration`)
    becomes ``on_unknown`` (issue 9). Raises :class:`RuleViolation`: the detector's reason
    (``looks_like_ip``...) or ``bad_version``. Patterns: ``Info.version``
    (``6.8.0``, ``0.61.0-develop``), ``process.version`` (``v22.22.3``), MongoDB
    ``buildInfo.version``, session versions (``124.0.6367``, ``10.15.7``, ``x86_64``).
    """
    if pattern.match(value):
        reason = detect(value)
        if reason is None:
            return value
        raise RuleViolation(reason)
    if on_unknown is not None:
        reason = detect(value, skip=_SOFT_DETECTORS)
        if reason:
            raise RuleViolation(reason)
        return on_unknown
    raise RuleViolation(detect(value) or "bad_version")


#: What a map key outside its allow-list is counted under.
FOLDED_KEY = "other"


def fold_key(key: str, allowed: Collection[str]) -> str:
    """``key`` if allow-listed, else :data:`FOLDED_KEY` (the key itself is never kept).

    ``userLanguages`` keys are the users' stored ``language`` strings
    (``Users.getUserLanguages()`` in statistics.ts); any user can set any string, so
    only Rocket.Chat's own language codes (``schemas/data/rocketchat-languages.json``,
    value set ``language_codes`` in the catalogue, ``none``) are kept as sent.
    Allow-listed keys are catalogue constants that pass every detector (tested).
    """
    return key if key in allowed else FOLDED_KEY


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


# --- names of unknown fields ------------------------------------------------------

_CODE_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]{0,63}$")
_DIGIT_RUN = re.compile(r"\d{4,}")
_LETTER_DIGIT = re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")


def looks_like_code_identifier(key: str) -> bool:
    """True when a JSON key looks like a field name a programmer chose (``abacEnabled``,
    ``totalE2EMessages``, ``_updatedAt``): a JavaScript identifier of at most 64
    characters, with no run of 4 or more digits, at most 4 switches between letters
    and digits (a random token has many: ``x7Gh2kLmQ9pRt5Vw``) and no long hex run.
    Anything else (names with spaces, e-mail addresses, host names, ids) is shown
    as ``{}`` where an unknown field is listed (issue 9: the answer's
    ``unknown_fields_dropped`` and the catalogue drift report). A person's login
    written as one word (``jsmith``) still passes: that is why only keys of
    catalogue objects are ever shown, never the keys inside an unknown value.
    """
    if not _CODE_IDENTIFIER.match(key) or _DIGIT_RUN.search(key) or _LONG_HEX.search(key) or _UUID.search(key):
        return False
    return len(_LETTER_DIGIT.findall(key)) <= 4
