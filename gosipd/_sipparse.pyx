# cython: language_level=3
"""The SIP parser's hot path: bytes -> start line, header fields and body, and the
immutable values every message is read through (URI, NameAddr, Via, CSeq, Params).

Every datagram the daemon receives passes through ``parse_message`` first, and the
engine then reads the same handful of typed headers from it (Via, From, To, Call-ID,
CSeq, Contact, Max-Forwards). Both are written here, as C loops over the raw octets,
because a pure-Python parser costs 20-80 µs per message and ours must stay under 5.

Speed comes from not building what nobody reads. ``parse_message`` frames the datagram,
checks the start line and the header names, and records where each header field's
value lies in the datagram (a string is made when someone reads it); it also notes
where the headers the engine always reads are, so that reading them needs no search.
A typed value (a Via, a NameAddr, a URI) is a *view* of its text: parsing it validates
the whole ABNF production in one pass without allocating, and remembers where the
parts are; ``via.branch`` or ``name_addr.tag`` are then cut out when asked for, and
the full ``params`` mapping is built only if someone wants it. ``Headers`` and the
core of a message (``MessageCore``) live here too, so that ``msg.via`` is a C call;
``gosipd.sip`` subclasses them with the builders and the less frequent headers.

The grammar is RFC 3261 §25 (with RFC 3966 for tel: URIs and RFC 5118 for IPv6
references). Everything raises ``SIPParseError`` (a ValueError) and nothing else, for
any input. Two leniencies, both common in deployed stacks: a line may end in a bare LF
(we always write CRLF), and a Status-Line may omit the SP before an empty reason.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeUTF8, PyUnicode_GET_LENGTH
from cpython.object cimport PyTypeObject
from cpython.ref cimport PyObject
from libc.stdlib cimport free, realloc
from libc.stdint cimport uint64_t
from libc.stdio cimport snprintf
from libc.string cimport memchr, memcmp, memcpy

cimport cython

import collections.abc
import ipaddress
import sys

__all__ = [
    "COMPACT_FORMS",
    "MAX_HEADERS",
    "MAX_MESSAGE_SIZE",
    "URI",
    "CSeq",
    "Headers",
    "MessageCore",
    "NameAddr",
    "Params",
    "RequestCore",
    "ResponseCore",
    "SIPParseError",
    "Via",
    "header_name",
    "is_list_header",
    "is_token",
    "parse_call_id",
    "parse_message",
    "parse_mime_part",
    "parse_params",
    "parse_uint",
    "quote",
    "split_list",
    "unquote",
]

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL
    void _incref "Py_INCREF" (PyObject* o)
    void _xdecref "Py_XDECREF" (PyObject* o)

#: The largest datagram we accept (64 KiB); UDP cannot carry more anyway.
MAX_MESSAGE_SIZE = 65_536
#: The most header fields (lines, after unfolding) one message may carry, besides
#: Content-Length.
MAX_HEADERS = 256

DEF C_MAX_MESSAGE = 65536
DEF C_MAX_HEADERS = 256
DEF MAX_CSEQ = 2147483647          # RFC 3261 §8.1.1.5: less than 2**31
DEF MAX_UINT32 = 4294967295


# --------------------------------------------------------------------------- errors

class SIPParseError(ValueError):
    """A SIP message, or one of its header values, does not follow the grammar.

    ``reason`` is a sentence for a person ("line 3: header 'CSeq': ..."), ``offset``
    the byte offset in the datagram (or in the value, for a value parsed on its own;
    -1 when unknown), ``line`` the 1-based line number (0 when unknown), ``header`` the
    canonical header name involved, if any, and ``status`` the response a request
    that fails this way is owed (400, 505; 0 when the input is a response or not a
    SIP request at all).

    When the header section could be framed, ``headers`` holds it and ``is_request``
    says whether the start line looked like a request, so that a 400/505 can still be
    sent (``gosipd.sip.Response.for_malformed``).
    """

    def __init__(self, reason, offset=-1, *, line=0, header=None, status=400):
        ValueError.__init__(self, reason)
        self.reason = reason
        self.offset = offset
        self.line = line
        self.header = header
        self.status = status
        self.headers = None
        self.is_request = None

    def __reduce__(self):
        return (_rebuild_error, (self.reason, self.offset, self.line, self.header, self.status))


def _rebuild_error(reason, offset, line, header, status):
    return SIPParseError(reason, offset, line=line, header=header, status=status)


# --------------------------------------------------------------------------- characters

cdef unsigned int CC[256]
cdef unsigned char LOWER[256]

cdef enum:
    T_TOKEN = 1         # token (RFC 3261 §25.1)
    T_DIGIT = 2
    T_HEX = 4
    T_ALPHA = 8
    T_UNRES = 16        # unreserved = alphanum / mark
    T_USER = 32         # unreserved / user-unreserved
    T_PASS = 64         # unreserved / "&" / "=" / "+" / "$" / ","
    T_PARAM = 128       # unreserved / param-unreserved
    T_HNV = 256         # unreserved / hnv-unreserved
    T_WORD = 512        # Call-ID word
    T_URIC = 1024       # reserved / unreserved
    T_SCHEME = 2048     # ALPHA / DIGIT / "+" / "-" / "."
    T_WS = 4096         # SP / HTAB
    T_HOST = 8192       # alphanum / "-" / "." (hostname and IPv4 octets)
    T_TELNUM = 16384    # tel: number: HEXDIG / "*" / "#" / "+" / visual separators
    T_PCT = 32768       # "%", which starts an escape


cdef void _mark(bytes chars, unsigned int flag):
    cdef unsigned char c
    for c in chars:
        CC[c] |= flag


cdef void _init_tables():
    cdef int i
    for i in range(256):
        CC[i] = 0
        LOWER[i] = i + 32 if 65 <= i <= 90 else i
    cdef bytes alpha = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    cdef bytes digit = b"0123456789"
    cdef bytes alnum = alpha + digit
    cdef bytes mark = b"-_.!~*'()"
    _mark(alpha, T_ALPHA)
    _mark(digit, T_DIGIT)
    _mark(digit + b"abcdefABCDEF", T_HEX)
    _mark(alnum + b"-.!%*_+`'~", T_TOKEN)
    _mark(alnum + mark, T_UNRES)
    _mark(alnum + mark + b"&=+$,;?/", T_USER)
    _mark(alnum + mark + b"&=+$,", T_PASS)
    _mark(alnum + mark + b"[]/:&+$", T_PARAM)
    _mark(alnum + mark + b"[]/?:+$", T_HNV)
    _mark(alnum + b"-.!%*_+`'~()<>:\\\"/[]?{}", T_WORD)
    _mark(alnum + mark + b";/?:@&=+$,", T_URIC)
    _mark(alnum + b"+-.", T_SCHEME)
    _mark(b" \t", T_WS)
    _mark(alnum + b"-.", T_HOST)
    _mark(digit + b"abcdefABCDEF*#+-.()", T_TELNUM)
    _mark(b"%", T_PCT)


_init_tables()


cdef inline bint _is_ws(unsigned char c) noexcept:
    return c == 32 or c == 9


cdef inline unsigned char _lower(unsigned char c) noexcept:
    return c + 32 if 65 <= c <= 90 else c


cdef inline Py_ssize_t _skip_ws(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    while i < n and (p[i] == 32 or p[i] == 9):
        i += 1
    return i


cdef inline Py_ssize_t _scan(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                             unsigned int flag) noexcept:
    while i < n and CC[p[i]] & flag:
        i += 1
    return i


cdef inline str _sub(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    return PyUnicode_DecodeUTF8(<const char*>p + a, b - a, NULL)


cdef inline str _ascii(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    return PyUnicode_DecodeLatin1(<const char*>p + a, b - a, NULL)


cdef inline const unsigned char* _utf8(str text, Py_ssize_t* n) except NULL:
    return <const unsigned char*>PyUnicode_AsUTF8AndSize(text, n)


cdef str _show(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    """A quotable excerpt of p[a:b] for an error message (never raises)."""
    if b - a > 60:
        return repr(PyUnicode_DecodeUTF8(<const char*>p + a, 57, "replace") + "...")
    return repr(PyUnicode_DecodeUTF8(<const char*>p + a, b - a, "replace"))


cdef str _char(unsigned char c):
    if 32 < c < 127:
        return repr(chr(c))
    if c == 32:
        return "a space"
    if c == 9:
        return "a tab"
    return f"octet 0x{c:02x}"


cdef bint _ci_equal(const unsigned char* p, Py_ssize_t a, Py_ssize_t b,
                    const char* lower_name) noexcept:
    """Whether p[a:b] equals the lower-case C string ``lower_name``, ignoring case."""
    cdef Py_ssize_t i = 0
    while a + i < b:
        if lower_name[i] == 0 or _lower(p[a + i]) != <unsigned char>lower_name[i]:
            return False
        i += 1
    return lower_name[i] == 0


# --------------------------------------------------------------------------- header names

# canonical spelling, compact form, whether the value is a comma-separated list
_HEADERS = (
    ("Accept", None, True),
    ("Accept-Contact", "a", True),
    ("Accept-Encoding", None, True),
    ("Accept-Language", None, True),
    ("Accept-Resource-Priority", None, True),
    ("Alert-Info", None, True),
    ("Allow", None, True),
    ("Allow-Events", "u", True),
    ("Authentication-Info", None, False),
    ("Authorization", None, False),
    ("Call-ID", "i", False),
    ("Call-Info", None, True),
    ("Contact", "m", True),
    ("Content-Disposition", None, False),
    ("Content-Encoding", "e", True),
    ("Content-Language", None, True),
    ("Content-Length", "l", False),
    ("Content-Type", "c", False),
    ("CSeq", None, False),
    ("Date", None, False),
    ("Diversion", None, True),
    ("Error-Info", None, True),
    ("Event", "o", False),
    ("Expires", None, False),
    ("From", "f", False),
    ("History-Info", None, True),
    ("Identity", "y", False),
    ("Identity-Info", "n", False),
    ("In-Reply-To", None, True),
    ("Max-Forwards", None, False),
    ("Min-Expires", None, False),
    ("Min-SE", None, False),
    ("MIME-Version", None, False),
    ("Organization", None, False),
    ("P-Asserted-Identity", None, True),
    ("P-Charging-Vector", None, False),
    ("P-Preferred-Identity", None, True),
    ("Path", None, True),
    ("Priority", None, False),
    ("Privacy", None, False),
    ("Proxy-Authenticate", None, False),
    ("Proxy-Authorization", None, False),
    ("Proxy-Require", None, True),
    ("RAck", None, False),
    ("Reason", None, True),
    ("Record-Route", None, True),
    ("Refer-To", "r", False),
    ("Referred-By", "b", False),
    ("Reject-Contact", "j", True),
    ("Remote-Party-ID", None, True),
    ("Replaces", None, False),
    ("Reply-To", None, False),
    ("Request-Disposition", "d", True),
    ("Require", None, True),
    ("Resource-Priority", None, True),
    ("Retry-After", None, False),
    ("Route", None, True),
    ("RSeq", None, False),
    ("Security-Client", None, True),
    ("Security-Server", None, True),
    ("Security-Verify", None, True),
    ("Server", None, False),
    ("Service-Route", None, True),
    ("Session-Expires", "x", False),
    ("SIP-ETag", None, False),
    ("SIP-If-Match", None, False),
    ("Subject", "s", False),
    ("Subscription-State", None, False),
    ("Supported", "k", True),
    ("Target-Dialog", None, False),
    ("Timestamp", None, False),
    ("To", "t", False),
    ("Unsupported", None, True),
    ("User-Agent", None, False),
    ("Via", "v", True),
    ("Warning", None, True),
    ("WWW-Authenticate", None, False),
)

# Known names live in an open-addressing table keyed by a case-insensitive hash of the
# octets, so that the scanner resolves "via", "v" or "VIA" without making a string.
DEF NAME_SLOTS = 512
DEF NAME_MAX = 32
cdef unsigned int _slot_hash[NAME_SLOTS]
cdef int _slot_len[NAME_SLOTS]
cdef unsigned char _slot_name[NAME_SLOTS][NAME_MAX]
cdef unsigned char _slot_exact[NAME_SLOTS][NAME_MAX]   # as registered: "Via", "Call-ID", "v"
cdef list _slot_info = [None] * NAME_SLOTS   # keeps the objects below alive
cdef PyObject* _slot_canon[NAME_SLOTS]
cdef PyObject* _slot_key[NAME_SLOTS]
cdef int _slot_hot[NAME_SLOTS]
# lower-case spelling (full or compact) -> (canonical, key, is_list, hot slot or 0)
cdef dict _NAMES = {}
cdef set _LIST_KEYS = set()
#: compact form (lower case) -> canonical name
COMPACT_FORMS = {}


cdef inline unsigned int _name_hash(const unsigned char* p, Py_ssize_t a,
                                    Py_ssize_t b) noexcept:
    """A case-insensitive hash of a header name from its length and three octets (the
    table compares the whole name anyway; this only has to spread ~150 names)."""
    cdef unsigned int n = <unsigned int>(b - a)
    cdef unsigned int h = (n * 2654435761u) ^ (LOWER[p[a]] << 8) ^ (LOWER[p[b - 1]] << 16) \
        ^ (LOWER[p[a + (n >> 1)]] << 24)
    return h ^ (h >> 13)


cdef void _add_name(str spelling, tuple info):
    cdef bytes raw = spelling.lower().encode("ascii")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = len(raw)
    cdef unsigned int h = _name_hash(p, 0, n)
    cdef unsigned int slot = h & (NAME_SLOTS - 1)
    cdef Py_ssize_t i
    while _slot_len[slot]:
        slot = (slot + 1) & (NAME_SLOTS - 1)
    _slot_hash[slot] = h
    _slot_len[slot] = <int>n
    cdef bytes exact = spelling.encode("ascii")
    for i in range(NAME_MAX):
        _slot_name[slot][i] = p[i] if i < n else 0
        _slot_exact[slot][i] = exact[i] if i < n else 0
    _slot_info[slot] = info
    _slot_canon[slot] = <PyObject*>info[0]
    _slot_key[slot] = <PyObject*>info[1]
    _slot_hot[slot] = info[3]
    _NAMES[spelling.lower()] = info


# The headers the engine reads from every message get a slot: Headers remembers where
# their fields are while scanning, so reading them needs no search.
DEF N_SLOTS = 10
DEF SL_VIA = 1
DEF SL_FROM = 2
DEF SL_TO = 3
DEF SL_CALL_ID = 4
DEF SL_CSEQ = 5
DEF SL_CONTACT = 6
DEF SL_MAX_FORWARDS = 7
DEF SL_ROUTE = 8
DEF SL_RECORD_ROUTE = 9
cdef dict _HOT_SLOTS = {"via": SL_VIA, "from": SL_FROM, "to": SL_TO, "call-id": SL_CALL_ID,
                        "cseq": SL_CSEQ, "contact": SL_CONTACT,
                        "max-forwards": SL_MAX_FORWARDS, "route": SL_ROUTE,
                        "record-route": SL_RECORD_ROUTE}


cdef void _init_names():
    cdef tuple info
    cdef int i
    for i in range(NAME_SLOTS):
        _slot_len[i] = 0
    for canonical, compact, is_list in _HEADERS:
        key = sys.intern(canonical.lower())
        info = (canonical, key, is_list, _HOT_SLOTS.get(key, 0))
        _add_name(canonical, info)
        if is_list:
            _LIST_KEYS.add(canonical.lower())
        if compact is not None:
            _add_name(compact, info)
            COMPACT_FORMS[compact] = canonical


_init_names()


cdef int _lookup_slot(const unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept:
    """The name table slot of the header name p[a:b], or -1 for an unknown header."""
    return _lookup_hashed(p, a, b, _name_hash(p, a, b))


cdef inline int _lookup_hashed(const unsigned char* p, Py_ssize_t a, Py_ssize_t b,
                               unsigned int h) noexcept:
    cdef unsigned int slot = h & (NAME_SLOTS - 1)
    cdef Py_ssize_t n = b - a
    while _slot_len[slot]:
        if _slot_hash[slot] == h and _slot_len[slot] == n and (
                memcmp(p + a, _slot_exact[slot], n) == 0
                or _ci_equal(p, a, b, <const char*>_slot_name[slot])):
            return slot
        slot = (slot + 1) & (NAME_SLOTS - 1)
    return -1


cdef tuple _lookup_name(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    """(canonical, key, is_list, hot slot) for the header name p[a:b] (a token)."""
    cdef int found = _lookup_slot(p, a, b)
    if found >= 0:
        return <tuple>_slot_info[found]
    cdef str name = _ascii(p, a, b)
    return (name, name.lower(), False, 0)


def header_name(str name):
    """``(canonical name, lookup key)`` for a header name in any case or compact form.

    Known headers get their RFC spelling ("call-id" and "i" -> "Call-ID"); unknown ones
    keep the spelling given. The key is the lower-case canonical name. Raises
    ValueError if ``name`` is not a token.
    """
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(name, &n)
    if n == 0 or _scan(p, 0, n, T_TOKEN) != n:
        raise ValueError(f"{name!r} is not a valid header name (RFC 3261 token)")
    cdef tuple info = _lookup_name(p, 0, n)
    return (info[0], info[1])


def is_list_header(str key):
    """Whether the header with this lookup key holds a comma-separated list."""
    return key in _LIST_KEYS


# --------------------------------------------------------------------------- small helpers

def is_token(str text):
    """Whether ``text`` is an RFC 3261 token (non-empty)."""
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(text, &n)
    return n > 0 and _scan(p, 0, n, T_TOKEN) == n


cdef Py_ssize_t _scan_quoted(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) except -1:
    """p[i] is DQUOTE; return the index after the closing DQUOTE, checking qdtext."""
    cdef Py_ssize_t start = i
    cdef unsigned char c
    i += 1
    while i < n:
        c = p[i]
        if c == 34:
            return i + 1
        if c == 92:
            if i + 1 >= n:
                break
            c = p[i + 1]
            if c == 10 or c == 13 or c >= 128:
                raise SIPParseError(f"quoted string escapes {_char(c)}, which cannot be escaped",
                                    i + 1)
            i += 2
            continue
        if (c < 32 and c != 9) or c == 127:
            raise SIPParseError(f"quoted string holds control character {_char(c)}"
                                " (write it as a quoted-pair)", i)
        i += 1
    raise SIPParseError(f"unterminated quoted string {_show(p, start, n)}", start)


cdef str _unquote(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    """The contents of the quoted string p[a:b] (with quotes), quoted-pairs resolved."""
    if b - a <= 2 or memchr(p + a + 1, 92, b - a - 2) == NULL:
        return _sub(p, a + 1, b - 1)
    cdef bytearray out = bytearray()
    cdef Py_ssize_t i = a + 1
    while i < b - 1:
        if p[i] == 92:
            i += 1
        out.append(p[i])
        i += 1
    return out.decode("utf-8", "surrogateescape")


def unquote(str text):
    """The value of a quoted-string (``"a \\"b\\""`` -> ``a "b"``); a token is returned as is."""
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(text, &n)
    if n == 0 or p[0] != 34:
        return text
    if _scan_quoted(p, 0, n) != n:
        raise SIPParseError(f"{text!r} has text after its closing quote", 0)
    return _unquote(p, 0, n)


def quote(str text):
    """``text`` as an RFC 3261 quoted-string, escaping ``"``, ``\\`` and control characters."""
    cdef list out = ['"']
    cdef Py_UCS4 ch
    for ch in text:
        if ch == '"' or ch == '\\':
            out.append('\\')
            out.append(ch)
        elif ch == '\r' or ch == '\n':
            raise ValueError(f"a quoted string cannot hold CR or LF: {text!r}")
        elif (ch < ' ' and ch != '\t') or ch == '\x7f':
            out.append('\\')
            out.append(ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


cdef long long _digits(const unsigned char* p, Py_ssize_t a, Py_ssize_t b,
                       long long maximum) noexcept:
    """The value of 1*DIGIT p[a:b], or -1 if it exceeds ``maximum``."""
    cdef long long v = 0
    cdef Py_ssize_t i
    if b - a > 18:
        for i in range(a, b - 18):
            if p[i] != 48:
                return -1
        a = b - 18
    for i in range(a, b):
        v = v * 10 + (p[i] - 48)
    if v > maximum:
        return -1
    return v


def parse_uint(str text, long long maximum, str what):
    """A non-negative decimal (``1*DIGIT``, surrounding LWS allowed) no larger than ``maximum``."""
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(text, &n)
    cdef Py_ssize_t a = _skip_ws(p, 0, n)
    cdef Py_ssize_t b = _scan(p, a, n, T_DIGIT)
    if b == a or _skip_ws(p, b, n) != n:
        raise SIPParseError(f"{what} {text!r} is not a non-negative decimal number", a)
    cdef long long value = _digits(p, a, b, maximum)
    if value < 0:
        raise SIPParseError(f"{what} {text.strip()!r} exceeds {maximum}", a)
    return value


def parse_call_id(str text):
    """A Call-ID (``word ["@" word]``), returned unchanged if valid."""
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(text, &n)
    cdef Py_ssize_t i = _scan(p, 0, n, T_WORD)
    if i == 0:
        raise SIPParseError(f"Call-ID {text!r} is empty or does not start with a word character",
                            0)
    if i < n and p[i] == 64:
        i = _scan(p, i + 1, n, T_WORD)
    if i != n:
        raise SIPParseError(f"Call-ID {text!r} holds {_char(p[i])}, which a Call-ID cannot", i)
    return text


cdef list _split(const unsigned char* p, Py_ssize_t n):
    """Split a list header value at commas outside quotes and <>; None if unbalanced."""
    cdef list out = []
    cdef Py_ssize_t i = 0, start = 0, a, b
    cdef bint in_quote = False
    cdef int angle = 0
    cdef unsigned char c
    while i < n:
        c = p[i]
        if in_quote:
            if c == 92:
                i += 1
            elif c == 34:
                in_quote = False
        elif c == 34:
            in_quote = True
        elif c == 60:
            angle += 1
        elif c == 62:
            if angle:
                angle -= 1
        elif c == 44 and angle == 0:
            a = _skip_ws(p, start, i)
            b = i
            while b > a and _is_ws(p[b - 1]):
                b -= 1
            out.append(_sub(p, a, b))
            start = i + 1
        i += 1
    if in_quote or angle:
        return None
    a = _skip_ws(p, start, n)
    b = n
    while b > a and _is_ws(p[b - 1]):
        b -= 1
    out.append(_sub(p, a, b))
    return out


def split_list(str text):
    """The elements of a comma-separated header value (commas inside quotes and <> kept).

    Elements are stripped of LWS; empty elements are kept as "". Raises
    SIPParseError if a quote or ``<`` is left open.
    """
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(text, &n)
    if memchr(p, 44, n) == NULL:
        return [text.strip(" \t")]
    cdef list out = _split(p, n)
    if out is None:
        raise SIPParseError(f"unbalanced quote or '<' in {text!r}", 0)
    return out


# --------------------------------------------------------------------------- hosts

cdef bint _valid_ipv4(const unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept:
    cdef int parts = 0, digits, value
    cdef Py_ssize_t i = a
    while True:
        digits = 0
        value = 0
        while i < b and 48 <= p[i] <= 57 and digits < 4:
            value = value * 10 + (p[i] - 48)
            digits += 1
            i += 1
        if digits == 0 or digits > 3 or value > 255:
            return False
        parts += 1
        if i == b:
            return parts == 4
        if p[i] != 46 or parts == 4:
            return False
        i += 1


cdef bint _valid_ipv6(const unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept:
    """RFC 4291 text form, tolerating RFC 3261's ':::' before an IPv4 tail (RFC 5118 §4.10)."""
    cdef int groups = 0
    cdef bint compressed = False
    cdef Py_ssize_t i = a, g
    if b - a < 2:
        return False
    if p[i] == 58:
        if p[i + 1] != 58:
            return False
        compressed = True
        i += 2
        if i == b:
            return True
    while True:
        g = i
        while i < b and i - g < 5 and CC[p[i]] & T_HEX:
            i += 1
        if i < b and p[i] == 46:
            if not _valid_ipv4(p, g, b):
                return False
            groups += 2
            break
        if i == g or i - g > 4:
            return False
        groups += 1
        if i == b:
            break
        if p[i] != 58:
            return False
        i += 1
        if i < b and p[i] == 58:
            if compressed:
                return False
            compressed = True
            i += 1
            if i < b and p[i] == 58 and _valid_ipv4(p, i + 1, b):
                i += 1          # RFC 5118 §4.10: "2001:db8:::192.0.2.1"
            if i == b:
                break
        elif i == b:
            return False
    if compressed:
        return groups <= 7
    return groups == 8


cdef bint _valid_hostname(const unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept:
    """RFC 3261 hostname: dot-separated labels of alphanum and inner '-', the last
    starting with a letter, an optional final dot."""
    cdef Py_ssize_t i = a, label_start
    if a >= b:
        return False
    if p[b - 1] == 46:
        b -= 1
        if a >= b:
            return False
    while True:
        label_start = i
        while i < b and p[i] != 46:
            if not (CC[p[i]] & (T_ALPHA | T_DIGIT)) and p[i] != 45:
                return False
            i += 1
        if i == label_start or p[label_start] == 45 or p[i - 1] == 45:
            return False
        if i == b:
            return (CC[p[label_start]] & T_ALPHA) != 0
        i += 1


cdef Py_ssize_t _host_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """Scan a hostname or IPv4address at p[i:] in one pass; return where it ends, or -1
    if the run of host characters there is neither (RFC 3261 §25.1: labels of alphanum
    with inner '-', the last starting with a letter; or four decimal octets)."""
    cdef Py_ssize_t start = i, label = i, top = i
    cdef unsigned char c
    cdef bint digits = True        # the current label is all digits
    cdef bint numeric = True       # so were all the finished ones
    cdef bint octets = True        # and each was a decimal octet
    cdef int dots = 0, value = 0
    while i < n:
        c = p[i]
        if CC[c] & T_DIGIT:
            if value < 1000:
                value = value * 10 + (c - 48)
        elif CC[c] & T_ALPHA:
            digits = False
        elif c == 45:
            if i == label:
                return -1
            digits = False
        elif c == 46:
            if i == label or p[i - 1] == 45:
                return -1
            if not digits:
                numeric = False
            if not digits or i - label > 3 or value > 255:
                octets = False
            top = label
            label = i + 1
            digits = True
            value = 0
            dots += 1
        else:
            break
        i += 1
    if i == start:
        return -1
    if i == label:                  # a final dot: the top label is the one before it
        return i if CC[p[top]] & T_ALPHA else -1
    if p[i - 1] == 45:
        return -1
    if numeric and digits and octets and dots == 3 and i - label <= 3 and value <= 255:
        return i
    return i if CC[p[label]] & T_ALPHA else -1


cdef str _check_host(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    """None if p[a:b] is a hostname or IPv4address, else the reason it is not."""
    if a >= b:
        return "empty host"
    cdef Py_ssize_t i = _scan(p, a, b, T_HOST)
    if i != b:
        return f"host {_show(p, a, b)} holds {_char(p[i])}"
    if _valid_ipv4(p, a, b) or _valid_hostname(p, a, b):
        return None
    for i in range(a, b):
        if not (48 <= p[i] <= 57 or p[i] == 46):
            return f"{_show(p, a, b)} is not a valid host name"
    return f"{_show(p, a, b)} is not a valid IPv4 address"


cdef Py_ssize_t _scan_host(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                           Py_ssize_t* span) except -1:
    """Validate the host at p[i:]; store the bare host span (IPv6 without brackets) in
    span[0:2] and return the index after the host."""
    cdef Py_ssize_t end, rb
    cdef const void* hit
    cdef str reason
    if i < n and p[i] == 91:
        hit = memchr(p + i, 93, n - i)
        if hit == NULL:
            raise SIPParseError(f"IPv6 reference {_show(p, i, n)} has no closing ']'", i)
        rb = <const unsigned char*>hit - p
        if not _valid_ipv6(p, i + 1, rb):
            raise SIPParseError(f"{_show(p, i + 1, rb)} is not a valid IPv6 address", i + 1)
        span[0] = i + 1
        span[1] = rb
        return rb + 1
    end = _host_end(p, i, n)
    if end < 0:
        _refuse_bare_ipv6(p, i, n)
        end = _scan(p, i, n, T_HOST)
        reason = _check_host(p, i, end)
        raise SIPParseError(reason or f"{_show(p, i, end)} is not a host", i)
    if end < n and p[end] == 58 and _looks_like_ipv6_tail(p, end, n):
        _refuse_bare_ipv6(p, i, n)
    span[0] = i
    span[1] = end
    return end


cdef inline bint _looks_like_ipv6_tail(const unsigned char* p, Py_ssize_t k,
                                       Py_ssize_t n) noexcept:
    """p[k] is the ':' after a host: is what follows more IPv6 than port?"""
    k += 1
    while k < n and CC[p[k]] & T_DIGIT:
        k += 1
    return k < n and (p[k] == 58 or p[k] == 46 or (CC[p[k]] & T_HEX) != 0)


cdef int _refuse_bare_ipv6(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) except -1:
    """Raise if p[i:] starts with an IPv6 address written without '[' ']' (RFC 5118 §4.2);
    a host followed by ':' and a port is fine."""
    cdef Py_ssize_t k = i
    while k < n and CC[p[k]] & T_HOST:
        k += 1
    if k >= n or p[k] != 58:
        return 0
    k += 1
    while k < n and CC[p[k]] & T_DIGIT:
        k += 1
    if k < n and (p[k] == 58 or CC[p[k]] & T_HEX or p[k] == 46):
        while k < n and (CC[p[k]] & T_HEX or p[k] == 58 or p[k] == 46):
            k += 1
        raise SIPParseError(f"IPv6 address {_show(p, i, k)} must be enclosed in '[' ']' "
                            "(RFC 5118 §4.2)", i)
    return 0


def _host_or_raise(str host):
    """``host`` (hostname, IPv4, or IPv6 with or without brackets) without brackets."""
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(host, &n)
    if n and p[0] == 91 and p[n - 1] == 93:
        p += 1
        n -= 2
    if memchr(p, 58, n) != NULL:
        if not _valid_ipv6(p, 0, n):
            raise ValueError(f"{host!r} is not a valid IPv6 address")
        return _ascii(p, 0, n)
    cdef str reason = _check_host(p, 0, n)
    if reason is not None:
        raise ValueError(reason)
    return host


cdef str _host_text(str host):
    if ":" in host:
        return "[" + host + "]"
    return host


cdef str _host_key(str host):
    """A comparison key for a host: lower case, IPv6 in RFC 5952 form."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.replace(":::", "::")).compressed
        except ValueError:
            return host.lower()
    return host.lower()


# --------------------------------------------------------------------------- %-escapes

cdef int _hexval(unsigned char c) noexcept:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


cdef Py_ssize_t _scan_escaped(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                              unsigned int flag) except -1:
    """Scan chars in ``flag`` or %HH escapes; raise on a broken escape."""
    cdef Py_ssize_t j = _scan(p, i, n, flag | T_PCT), k
    cdef const void* hit = memchr(p + i, 37, j - i)
    while hit != NULL:
        k = <const unsigned char*>hit - p
        if k + 2 >= j or _hexval(p[k + 1]) < 0 or _hexval(p[k + 2]) < 0:
            raise SIPParseError(f"'%' at {_show(p, k, n)} is not followed by two hex digits", k)
        hit = memchr(p + k + 3, 37, j - k - 3) if k + 3 < j else NULL
    return j


cdef str _unescape(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    """Decode %HH escapes in p[a:b] (already validated)."""
    if memchr(p + a, 37, b - a) == NULL:
        return _ascii(p, a, b)
    cdef bytearray out = bytearray()
    cdef Py_ssize_t i = a
    while i < b:
        if p[i] == 37:
            out.append(_hexval(p[i + 1]) * 16 + _hexval(p[i + 2]))
            i += 3
        else:
            out.append(p[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


cdef str _escape(str text, unsigned int flag):
    """%-encode the octets of ``text`` that are not in ``flag``."""
    cdef bytes raw = text.encode("utf-8", "surrogateescape")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = len(raw), i
    for i in range(n):
        if not (CC[p[i]] & flag):
            break
    else:
        return text
    cdef list out = []
    for i in range(n):
        if CC[p[i]] & flag:
            out.append(chr(p[i]))
        else:
            out.append(f"%{p[i]:02X}")
    return "".join(out)


# --------------------------------------------------------------------------- Params

@cython.final
@cython.no_gc
@cython.freelist(32)
cdef class Params:
    """An immutable, ordered, case-insensitive mapping of parameter names to values.

    A parameter written without a value (``;lr``) maps to None; use ``in`` to tell it
    from an absent one. Header parameters keep their value as written (a quoted value
    keeps its quotes; see ``unquote``); URI parameters hold %-decoded values.
    """

    cdef readonly tuple _items
    cdef tuple _keys

    def __init__(self, items=()):
        cdef list pairs = []
        if isinstance(items, Params):
            pairs = list((<Params>items)._items)
        else:
            if isinstance(items, (dict, collections.abc.Mapping)):
                items = items.items()
            for name, value in items:
                if not isinstance(name, str) or not name:
                    raise ValueError(f"parameter name must be a non-empty str, not {name!r}")
                if value is not None and not isinstance(value, str):
                    raise TypeError(f"parameter {name!r}: value must be str or None, "
                                    f"not {type(value).__name__}")
                pairs.append((name, value))
        self._items = tuple(pairs)
        self._keys = None

    cdef int _find(self, str name) except -2:
        cdef tuple item
        cdef int i = 0
        for item in self._items:
            if item[0] == name:
                return i
            i += 1
        if self._keys is None:
            self._keys = tuple([item[0].lower() for item in self._items])
        cdef str key = name.lower()
        i = 0
        for k in self._keys:
            if k == key:
                return i
            i += 1
        return -1

    def __len__(self):
        return len(self._items)

    def __bool__(self):
        return len(self._items) > 0

    def __iter__(self):
        return iter([item[0] for item in self._items])

    def __contains__(self, name):
        return isinstance(name, str) and self._find(name) >= 0

    def __getitem__(self, str name):
        cdef int i = self._find(name)
        if i < 0:
            raise KeyError(name)
        return self._items[i][1]

    def get(self, str name, default=None):
        """The value of ``name``; ``default`` if absent (a valueless parameter gives None)."""
        cdef int i = self._find(name)
        if i < 0:
            return default
        return self._items[i][1]

    def keys(self):
        return [item[0] for item in self._items]

    def values(self):
        return [item[1] for item in self._items]

    def items(self):
        """The ``(name, value)`` pairs in order, names as written."""
        return list(self._items)

    def with_param(self, str name, value=None):
        """A copy with ``name`` set to ``value`` (None: a flag such as ``;lr``), in place if
        present."""
        if value is not None and not isinstance(value, str):
            raise TypeError(f"parameter {name!r}: value must be str or None")
        if not name:
            raise ValueError("parameter name must not be empty")
        cdef str key = name.lower()
        cdef list out = []
        cdef bint done = False
        for item in self._items:
            if item[0].lower() == key:
                if not done:
                    out.append((name, value))
                    done = True
            else:
                out.append(item)
        if not done:
            out.append((name, value))
        return _params(out)

    def without(self, *names):
        """A copy without the named parameters."""
        cdef set keys = {name.lower() for name in names}
        return _params([item for item in self._items if item[0].lower() not in keys])

    cdef frozenset _canonical(self):
        return frozenset([(item[0].lower(), item[1]) for item in self._items])

    def __eq__(self, other):
        if isinstance(other, Params):
            return self._canonical() == (<Params>other)._canonical()
        if isinstance(other, collections.abc.Mapping):
            return self._canonical() == Params(other)._canonical()
        return NotImplemented

    def __hash__(self):
        return hash(self._canonical())

    def __repr__(self):
        return f"Params({list(self._items)!r})"

    def __str__(self):
        """As header parameters: ``;name=value;flag``."""
        return _params_text(self._items)

    def __reduce__(self):
        return (Params, (list(self._items),))


collections.abc.Mapping.register(Params)


cdef Params _params(list items):
    cdef Params result = Params.__new__(Params)
    result._items = tuple(items)
    result._keys = None
    return result


cdef Params _EMPTY = _params([])


cdef str _params_text(tuple items):
    cdef list out = []
    for name, value in items:
        out.append(";")
        out.append(name)
        if value is not None:
            out.append("=")
            out.append(value)
    return "".join(out)


cdef Params _coerce_params(object params):
    if params is None:
        return _EMPTY
    if isinstance(params, Params):
        return <Params>params
    return Params(params)


cdef Params _apply_params(Params base, object params, dict kw):
    """base with ``params`` (mapping) and keyword updates: True -> flag, None -> removed."""
    cdef Params result = base
    cdef dict updates = {}
    if params is not None:
        updates.update(params if isinstance(params, collections.abc.Mapping) else dict(params))
    updates.update(kw)
    for name, value in updates.items():
        if value is None or value is False:
            result = result.without(name)
        elif value is True:
            result = result.with_param(name, None)
        elif isinstance(value, int):
            result = result.with_param(name, str(value))
        elif isinstance(value, str):
            result = result.with_param(name, value)
        else:
            raise TypeError(f"parameter {name!r}: {type(value).__name__} is not str, int or bool")
    return result


# Header parameters: *( SEMI generic-param ), generic-param = token [ EQUAL gen-value ],
# gen-value = token / host / quoted-string. Scanned without allocating; spans in s[0:4].

cdef Py_ssize_t _next_param(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, bint via,
                            Py_ssize_t* s) except -2:
    """If p[i:] holds (after SWS) ';' generic-param, store the name span in s[0:2] and the
    value span in s[2:4] (s[2] = -1 for no value) and return the index after it; else
    return -1. In a Via (``via``), a value may also be a bare IPv6 address (received)."""
    cdef Py_ssize_t q, name_end, r, ve
    cdef const void* hit
    q = _skip_ws(p, i, n)
    if q >= n or p[q] != 59:
        return -1
    q = _skip_ws(p, q + 1, n)
    name_end = _scan(p, q, n, T_TOKEN)
    if name_end == q:
        if q >= n or p[q] == 59:
            raise SIPParseError("empty parameter (';' with no name after it)", q)
        raise SIPParseError(f"parameter name expected at {_show(p, q, n)}, found {_char(p[q])}",
                            q)
    s[0] = q
    s[1] = name_end
    r = _skip_ws(p, name_end, n)
    if r < n and p[r] == 61:
        r = _skip_ws(p, r + 1, n)
        if r < n and p[r] == 34:
            ve = _scan_quoted(p, r, n)
        elif r < n and p[r] == 91:
            hit = memchr(p + r, 93, n - r)
            if hit == NULL or not _valid_ipv6(p, r + 1, <const unsigned char*>hit - p):
                raise SIPParseError(f"parameter {_show(p, q, name_end)} has a malformed "
                                    f"IPv6 reference {_show(p, r, n)}", r)
            ve = <const unsigned char*>hit - p + 1
        else:
            ve = _scan(p, r, n, T_TOKEN)
            if via:
                while ve < n and (CC[p[ve]] & T_HEX or p[ve] == 58 or p[ve] == 46):
                    ve += 1
        if ve == r:
            raise SIPParseError(f"parameter {_show(p, q, name_end)} has '=' but no value", r)
        s[2] = r
        s[3] = ve
        return ve
    s[2] = -1
    s[3] = -1
    return name_end


cdef Py_ssize_t _params_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                            bint via) except -1:
    """Validate the header parameters at p[i:]; return where they stop (after SWS)."""
    cdef Py_ssize_t s[4]
    cdef Py_ssize_t j
    while True:
        j = _next_param(p, i, n, via, s)
        if j < 0:
            return _skip_ws(p, i, n)
        i = j


cdef object _ABSENT = object()


cdef object _param_value(const unsigned char* p, Py_ssize_t a, Py_ssize_t b, bint via,
                         const char* lower_name):
    """The raw value of the (validated) parameter ``lower_name`` in p[a:b]: a str, None for
    a flag, or _ABSENT."""
    cdef Py_ssize_t s[4]
    cdef Py_ssize_t j
    while True:
        j = _next_param(p, a, b, via, s)
        if j < 0:
            return _ABSENT
        if _ci_equal(p, s[0], s[1], lower_name):
            return None if s[2] < 0 else _sub(p, s[2], s[3])
        a = j


cdef Params _params_of(const unsigned char* p, Py_ssize_t a, Py_ssize_t b, bint via):
    """The (validated) header parameters in p[a:b] as Params, values as written."""
    if a >= b:
        return _EMPTY
    cdef Py_ssize_t s[4]
    cdef Py_ssize_t j
    cdef list items = []
    while True:
        j = _next_param(p, a, b, via, s)
        if j < 0:
            return _params(items)
        items.append((_ascii(p, s[0], s[1]), None if s[2] < 0 else _sub(p, s[2], s[3])))
        a = j


def parse_params(str text):
    """Header parameters ``*( SEMI generic-param )`` (text may be empty) as Params."""
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(text, &n)
    cdef Py_ssize_t end = _params_end(p, 0, n, False)
    if end != n:
        raise SIPParseError(f"unexpected {_char(p[end])} at {_show(p, end, n)}; "
                            "parameters must be ';name=value'", end)
    return _params_of(p, 0, n, False)


# --------------------------------------------------------------------------- URI

cdef object _MISSING = object()

DEF K_OTHER = 0
DEF K_SIP = 1
DEF K_SIPS = 2
DEF K_TEL = 3


cdef struct UriSpans:
    int kind
    Py_ssize_t a, b             # the whole URI
    Py_ssize_t se               # the ':' after the scheme
    Py_ssize_t ua, ub           # user (a tel: number); ua = -1 when absent
    Py_ssize_t pa, pb           # password; pa = -1 when absent
    Py_ssize_t ha, hb           # host without IPv6 brackets; ha = -1 when absent
    int port                    # -1 when absent
    Py_ssize_t qa, qb           # the parameters, from the first ';'
    Py_ssize_t xa, xb           # the headers, after '?'


cdef int _uri_spans(const unsigned char* p, Py_ssize_t a, Py_ssize_t n,
                    UriSpans* s) except -1:
    """Validate the URI p[a:n] (nothing around it) and record where its parts are."""
    cdef Py_ssize_t i, j
    s.a = a
    s.b = n
    s.ua = s.pa = s.ha = s.ub = s.pb = s.hb = -1
    s.port = -1
    s.qa = s.qb = s.xa = s.xb = n
    if a >= n:
        raise SIPParseError("empty URI", a)
    if p[a] == 60:
        raise SIPParseError(f"URI {_show(p, a, n)} is enclosed in '<' '>' where a bare URI "
                            "is required", a)
    if not (CC[p[a]] & T_ALPHA):
        raise SIPParseError(f"{_show(p, a, n)} does not start with a URI scheme", a)
    i = _scan(p, a, n, T_SCHEME)
    if i >= n or p[i] != 58:
        raise SIPParseError(f"{_show(p, a, n)} is not a URI (no ':' after the scheme)", i)
    s.se = i
    if i - a == 3 and _ci_equal(p, a, i, b"sip"):
        s.kind = K_SIP
    elif i - a == 4 and _ci_equal(p, a, i, b"sips"):
        s.kind = K_SIPS
    elif i - a == 3 and _ci_equal(p, a, i, b"tel"):
        s.kind = K_TEL
    else:
        s.kind = K_OTHER
    if s.kind == K_SIP or s.kind == K_SIPS:
        _sip_uri_spans(p, i + 1, n, s)
    elif s.kind == K_TEL:
        _tel_uri_spans(p, i + 1, n, s)
    else:
        j = _scan_escaped(p, i + 1, n, T_URIC)
        if j == i + 1:
            raise SIPParseError(f"{_show(p, a, i)}: URI has nothing after the scheme", j)
        if j != n:
            raise SIPParseError(f"{_char(p[j])} is not allowed in a URI ({_show(p, a, n)})", j)
    return 0


cdef int _sip_uri_spans(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                        UriSpans* s) except -1:
    cdef const void* at = memchr(p + i, 64, n - i)
    cdef Py_ssize_t at_i, j, k
    cdef Py_ssize_t span[2]
    cdef long long port
    if at != NULL:
        at_i = <const unsigned char*>at - p
        j = _scan_escaped(p, i, at_i, T_USER)
        if j == i:
            if j < at_i and p[j] == 58:
                raise SIPParseError("URI has a password but no user", j)
            raise SIPParseError("URI has '@' but no user before it" if j == at_i else
                                f"{_char(p[j])} is not allowed in the user part of a URI", j)
        s.ua = i
        s.ub = j
        if j < at_i and p[j] == 58:
            k = _scan_escaped(p, j + 1, at_i, T_PASS)
            if k != at_i:
                raise SIPParseError(f"{_char(p[k])} is not allowed in the password of a URI", k)
            s.pa = j + 1
            s.pb = at_i
        elif j != at_i:
            raise SIPParseError(f"{_char(p[j])} is not allowed in the user part of a URI "
                                "(escape it as %XX)", j)
        i = at_i + 1
    if i >= n:
        raise SIPParseError("URI has no host", i)
    i = _scan_host(p, i, n, span)
    s.ha = span[0]
    s.hb = span[1]
    if i < n and p[i] == 58:
        j = _scan(p, i + 1, n, T_DIGIT)
        if j == i + 1:
            raise SIPParseError("':' after the host is not followed by a port number", i + 1)
        port = _digits(p, i + 1, j, 65535)
        if port < 0:
            raise SIPParseError(f"port {_show(p, i + 1, j)} is out of range 0..65535", i + 1)
        s.port = <int>port
        i = j
    s.qa = i
    while i < n and p[i] == 59:
        j = _scan_escaped(p, i + 1, n, T_PARAM)
        if j == i + 1:
            raise SIPParseError("empty URI parameter (';' with no name)", i + 1)
        if j < n and p[j] == 61:
            k = _scan_escaped(p, j + 1, n, T_PARAM)
            if k == j + 1:
                raise SIPParseError(f"URI parameter {_show(p, i + 1, j)} has '=' but no value",
                                    j + 1)
            i = k
        else:
            i = j
    s.qb = i
    s.xa = s.xb = i
    if i < n and p[i] == 63:
        s.xa = i + 1
        while True:
            j = _scan_escaped(p, i + 1, n, T_HNV)
            if j == i + 1 or j >= n or p[j] != 61:
                raise SIPParseError("URI header must be 'name=value'", i + 1)
            i = _scan_escaped(p, j + 1, n, T_HNV)
            if i >= n or p[i] != 38:
                break
        s.xb = i
    if i != n:
        raise SIPParseError(f"{_char(p[i])} is not allowed here in a URI ({_show(p, i, n)})", i)
    return 0


cdef int _tel_uri_spans(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                        UriSpans* s) except -1:
    cdef Py_ssize_t j = _scan(p, i, n, T_TELNUM), k
    if j == i:
        raise SIPParseError("tel: URI has no number", i)
    if memchr(p + i + 1, 43, j - i - 1) != NULL:
        raise SIPParseError("'+' may only start a tel: number", i)
    s.ua = i
    s.ub = j
    i = j
    s.qa = i
    while i < n and p[i] == 59:
        j = _scan_escaped(p, i + 1, n, T_PARAM)
        if j == i + 1:
            raise SIPParseError("empty tel: URI parameter", i + 1)
        if j < n and p[j] == 61:
            k = _scan_escaped(p, j + 1, n, T_PARAM)
            if k == j + 1:
                raise SIPParseError("tel: URI parameter has '=' but no value", j + 1)
            i = k
        else:
            i = j
    s.qb = i
    s.xa = s.xb = i
    if i != n:
        raise SIPParseError(f"{_char(p[i])} is not allowed in a tel: URI", i)
    return 0


@cython.final
@cython.no_gc
@cython.freelist(32)
cdef class URI:
    """A URI as SIP uses it: sip:/sips: (RFC 3261 §19.1), tel: (RFC 3966), or any other
    absolute URI kept opaque.

    For sip/sips: ``user``, ``password`` (%-decoded, or None), ``host`` (IPv6 without
    its brackets), ``port`` (int or None), ``params`` and ``headers`` (Params of
    %-decoded values). For tel: the number is ``user`` and its parameters ``params``.
    Any other scheme keeps everything after the colon in ``opaque``.

    Equality follows RFC 3261 §19.1.4 (RFC 3966 §4 for tel:). ``str()`` gives the text
    as it was received for a parsed URI and the canonical form (escapes only where
    needed) for one that was built or changed.
    """

    cdef object _owner                 # keeps the octets at _p alive (bytes or str)
    cdef const unsigned char* _p
    cdef UriSpans _s
    cdef readonly str scheme
    cdef object _text
    cdef object _params_cache
    cdef object _headers_cache
    cdef object _hash

    def __init__(self, *, str scheme="sip", user=None, password=None, str host="", port=None,
                 params=(), headers=(), opaque=None):
        cdef str text = _compose_uri(scheme, user, password, host, port,
                                     _coerce_params(params), _coerce_params(headers), opaque)
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        try:
            _uri_spans(p, 0, n, &self._s)
        except SIPParseError as exc:
            raise ValueError(f"invalid URI {text!r}: {exc.reason}") from None
        self._owner = text
        self._p = p
        self._text = text
        self.scheme = _scheme_str(p, &self._s)

    @staticmethod
    def parse(str text):
        """Parse a URI written bare (``sip:alice@example.com;transport=tcp``)."""
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        cdef UriSpans s
        _uri_spans(p, 0, n, &s)
        cdef URI u = _make_uri(text, p, &s)
        u._text = text
        return u

    # -- components

    @property
    def user(self):
        """The user part %-decoded (the number of a tel: URI), or None."""
        if self._s.ua < 0:
            return None
        return _unescape(self._p, self._s.ua, self._s.ub)

    @property
    def password(self):
        if self._s.pa < 0:
            return None
        return _unescape(self._p, self._s.pa, self._s.pb)

    @property
    def host(self):
        """The host; an IPv6 address without its brackets; "" for tel: and opaque URIs."""
        if self._s.ha < 0:
            return ""
        return _ascii(self._p, self._s.ha, self._s.hb)

    @property
    def port(self):
        return None if self._s.port < 0 else self._s.port

    @property
    def params(self):
        """The URI parameters (values %-decoded)."""
        if self._params_cache is None:
            self._params_cache = _uri_params(self._p, self._s.qa, self._s.qb, 59)
        return self._params_cache

    @property
    def headers(self):
        """The URI headers after ``?`` (values %-decoded)."""
        if self._headers_cache is None:
            self._headers_cache = _uri_params(self._p, self._s.xa, self._s.xb, 38)
        return self._headers_cache

    @property
    def opaque(self):
        """Everything after the colon, for a scheme other than sip, sips and tel."""
        if self._s.kind != K_OTHER:
            return None
        return _ascii(self._p, self._s.se + 1, self._s.b)

    def param(self, str name):
        """A URI parameter's decoded value (None when absent or a flag)."""
        return self.params.get(name)

    @property
    def transport(self):
        """The ``transport`` parameter in lower case, or None."""
        if self._s.qa >= self._s.qb:
            return None
        value = self.params.get("transport")
        return value.lower() if value is not None else None

    @property
    def lr(self):
        """Whether the URI carries the loose-routing ``lr`` parameter."""
        return self._s.qa < self._s.qb and "lr" in self.params

    @property
    def maddr(self):
        if self._s.qa >= self._s.qb:
            return None
        return self.params.get("maddr")

    @property
    def is_sip(self):
        """True for sip: and sips: URIs."""
        return self._s.kind == K_SIP or self._s.kind == K_SIPS

    @property
    def host_port(self):
        """``host[:port]`` as written in a URI (IPv6 in brackets)."""
        if self._s.port < 0:
            return _host_text(self.host)
        return f"{_host_text(self.host)}:{self._s.port}"

    # -- copies with changes

    def replace(self, *, scheme=_MISSING, user=_MISSING, password=_MISSING, host=_MISSING,
                port=_MISSING, params=_MISSING, headers=_MISSING, opaque=_MISSING):
        """A copy with the given components replaced (the others as they are)."""
        return URI(
            scheme=self.scheme if scheme is _MISSING else scheme,
            user=self.user if user is _MISSING else user,
            password=self.password if password is _MISSING else password,
            host=self.host if host is _MISSING else host,
            port=self.port if port is _MISSING else port,
            params=self.params if params is _MISSING else params,
            headers=self.headers if headers is _MISSING else headers,
            opaque=self.opaque if opaque is _MISSING else opaque,
        )

    def with_params(self, params=None, /, **kw):
        """A copy with parameters set (``True``: flag such as ``lr``; ``None``: removed)."""
        return self.replace(params=_apply_params(self.params, params, kw))

    def without_params(self, *names):
        return self.replace(params=self.params.without(*names))

    def __str__(self):
        if self._text is None:
            self._text = _ascii(self._p, self._s.a, self._s.b)
        return self._text

    def __repr__(self):
        return f"URI({str(self)!r})"

    def __reduce__(self):
        return (_uri_from_text, (str(self),))

    # -- RFC 3261 §19.1.4 comparison

    def __eq__(self, other):
        if not isinstance(other, URI):
            return NotImplemented
        return _uri_equal(self, <URI>other)

    def __hash__(self):
        if self._hash is None:
            self._hash = hash(_uri_hash_key(self))
        return self._hash


def _uri_from_text(str text):
    return URI.parse(text)


cdef str _scheme_str(const unsigned char* p, UriSpans* s):
    if s.kind == K_SIP:
        return "sip"
    if s.kind == K_SIPS:
        return "sips"
    if s.kind == K_TEL:
        return "tel"
    return _ascii(p, s.a, s.se).lower()


cdef URI _make_uri(object owner, const unsigned char* p, UriSpans* s):
    cdef URI u = URI.__new__(URI)
    u._owner = owner
    u._p = p
    u._s = s[0]
    u.scheme = _scheme_str(p, s)
    return u


cdef Params _uri_params(const unsigned char* p, Py_ssize_t a, Py_ssize_t b,
                        unsigned char sep):
    """Decode the validated URI parameter (sep ';') or header (sep '&') section."""
    if a >= b:
        return _EMPTY
    cdef list items = []
    cdef Py_ssize_t i = a, j, eq
    if p[i] == 59:
        i += 1
    while i <= b:
        j = i
        eq = -1
        while j < b and p[j] != sep:
            if p[j] == 61 and eq < 0:
                eq = j
            j += 1
        if eq < 0:
            items.append((_unescape(p, i, j), None))
        else:
            items.append((_unescape(p, i, eq), _unescape(p, eq + 1, j)))
        i = j + 1
    return _params(items)


cdef str _compose_uri(str scheme, object user, object password, str host, object port,
                      Params params, Params headers, object opaque):
    """The canonical text of a URI from decoded components (validated by parsing it)."""
    cdef str s = scheme.lower()
    cdef list out = [s, ":"]
    if s != "sip" and s != "sips" and s != "tel":
        if user is not None or host or port is not None or password is not None:
            raise ValueError(f"only sip, sips and tel URIs have components; {s}: takes opaque=")
        if params or headers:
            raise ValueError("only sip, sips and tel URIs have parameters")
        if not isinstance(opaque, str) or not opaque:
            raise ValueError(f"a {s}: URI needs its opaque part (everything after ':')")
        out.append(opaque)
        return "".join(out)
    if opaque is not None:
        raise ValueError(f"a {s}: URI has no opaque part")
    if s == "tel":
        if not isinstance(user, str) or not user:
            raise ValueError("a tel: URI needs the number as user")
        if host or port is not None or password is not None or headers:
            raise ValueError("a tel: URI has only a number and parameters")
        out.append(_escape(user, T_TELNUM))
    else:
        if not host:
            raise ValueError(f"a {s}: URI needs a host")
        if user is not None:
            if not isinstance(user, str) or not user:
                raise ValueError("user must be None or a non-empty str")
            out.append(_escape(user, T_USER))
            if password is not None:
                out.append(":")
                out.append(_escape(password, T_PASS))
            out.append("@")
        elif password is not None:
            raise ValueError("a password needs a user")
        out.append(_host_text(_host_or_raise(host)))
        if port is not None:
            if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
                raise ValueError(f"port {port!r} is not an integer in 0..65535")
            out.append(f":{port}")
    for name, value in params._items:
        out.append(";")
        out.append(_escape(name, T_PARAM))
        if value is not None:
            out.append("=")
            out.append(_escape(value, T_PARAM))
    cdef str sep = "?"
    for name, value in headers._items:
        out.append(sep)
        out.append(_escape(name, T_HNV))
        out.append("=")
        out.append(_escape(value or "", T_HNV))
        sep = "&"
    return "".join(out)


cdef frozenset _SPECIAL_URI_PARAMS = frozenset(["user", "ttl", "method", "maddr", "transport"])


cdef str _tel_number_key(str number):
    return number.replace("-", "").replace(".", "").replace("(", "").replace(")", "").lower()


cdef tuple _uri_hash_key(URI u):
    if u._s.kind == K_OTHER:
        return (u.scheme, u.opaque)
    if u._s.kind == K_TEL:
        return (u.scheme, _tel_number_key(u.user))
    special = frozenset([(k.lower(), (v or "").lower()) for k, v in u.params.items()
                         if k.lower() in _SPECIAL_URI_PARAMS])
    hdrs = frozenset([(k.lower(), v) for k, v in u.headers.items()])
    return (u.scheme, u.user, u.password, _host_key(u.host), u.port, special, hdrs)


cdef bint _uri_equal(URI a, URI b):
    if a.scheme != b.scheme:
        return False
    if str(a) == str(b):
        return True
    if a._s.kind == K_OTHER:
        return a.opaque == b.opaque
    cdef dict pa = {k.lower(): (v or "").lower() for k, v in a.params.items()}
    cdef dict pb = {k.lower(): (v or "").lower() for k, v in b.params.items()}
    if a._s.kind == K_TEL:
        return _tel_number_key(a.user) == _tel_number_key(b.user) and pa == pb
    if a.user != b.user or a.password != b.password or a._s.port != b._s.port:
        return False
    ha, hb = a.host, b.host
    if ha.lower() != hb.lower() and _host_key(ha) != _host_key(hb):
        return False
    for key, value in pa.items():
        if key in pb:
            if pb[key] != value:
                return False
        elif key in _SPECIAL_URI_PARAMS:
            return False
    for key in pb:
        if key in _SPECIAL_URI_PARAMS and key not in pa:
            return False
    return ({k.lower(): v for k, v in a.headers.items()}
            == {k.lower(): v for k, v in b.headers.items()})


# --------------------------------------------------------------------------- NameAddr

@cython.final
@cython.no_gc
@cython.freelist(32)
cdef class NameAddr:
    """A name-addr or addr-spec with header parameters: the value of From, To, Contact,
    Route, Record-Route, Reply-To, Refer-To, P-Asserted-Identity and the like.

    ``display_name`` is unquoted (None when absent), ``uri`` a URI, ``params`` the header
    parameters (``tag``, ``expires``, ``q``...) with values as written. ``str()`` always
    writes the name-addr form: ``"Name" <uri>;tag=x``.
    """

    cdef object _owner
    cdef const unsigned char* _p
    cdef Py_ssize_t _da, _db       # display name; _da = -1 when absent
    cdef bint _dquoted
    cdef UriSpans _us
    cdef bint _uri_checked         # _us is validated (a message's reader defers it)
    cdef URI _uri                  # made from _us on first use
    cdef Py_ssize_t _pa, _pb       # the header parameters
    cdef Py_ssize_t _ga, _gb       # the tag's value; _ga = -1 when there is none
    cdef object _params_cache
    cdef object _text
    cdef object _header            # where a deferred URI came from, for its error
    cdef int _line

    def __init__(self, uri, display_name=None, params=()):
        if isinstance(uri, str):
            uri = URI.parse(uri)
        if not isinstance(uri, URI):
            raise TypeError(f"uri must be a URI or str, not {type(uri).__name__}")
        if display_name is not None and not isinstance(display_name, str):
            raise TypeError("display_name must be str or None")
        cdef str text = _compose_name_addr(display_name, <URI>uri, _coerce_params(params))
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        try:
            _name_addr_spans(self, p, 0, n, True)
        except SIPParseError as exc:
            raise ValueError(f"invalid name-addr {text!r}: {exc.reason}") from None
        self._owner = text
        self._p = p
        self._text = text
        self._uri = <URI>uri

    @staticmethod
    def parse(str text):
        """Parse ``"Name" <uri>;params``, ``Name <uri>`` or a bare ``uri;params``."""
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        return _name_addr_of(text, p, 0, n)

    @property
    def uri(self):
        if self._uri is None:
            if not self._uri_checked:
                self._check_uri()
            self._uri = _make_uri(self._owner, self._p, &self._us)
        return self._uri

    cdef int _check_uri(self) except -1:
        try:
            _uri_spans(self._p, self._us.a, self._us.b, &self._us)
        except SIPParseError as exc:
            where = f"line {self._line}: " if self._line else ""
            header = f"header {self._header!r}: " if self._header is not None else ""
            offset = self._us.a if isinstance(self._owner, bytes) else -1
            raise SIPParseError(f"{where}{header}{exc.reason}", offset, line=self._line,
                                header=self._header) from None
        self._uri_checked = True
        return 0

    @property
    def display_name(self):
        """The display name, unquoted (None when there is none)."""
        if self._da < 0:
            return None
        if self._dquoted:
            return _unquote(self._p, self._da, self._db)
        return " ".join(_sub(self._p, self._da, self._db).split())

    @property
    def params(self):
        """The header parameters (``tag``, ``expires``...), values as written."""
        if self._params_cache is None:
            self._params_cache = _params_of(self._p, self._pa, self._pb, False)
        return self._params_cache

    def param(self, str name):
        """A header parameter's value as written (None when absent or a flag)."""
        if self._pa >= self._pb:
            return None
        cdef bytes key = name.lower().encode("utf-8")
        value = _param_value(self._p, self._pa, self._pb, False, key)
        return None if value is _ABSENT else value

    @property
    def tag(self):
        """The ``tag`` parameter, or None."""
        if self._ga < 0:
            return None
        return _sub(self._p, self._ga, self._gb)

    @property
    def q(self):
        """The Contact ``q`` parameter as a float (None when absent)."""
        value = self.params.get("q")
        if value is None:
            return None
        return _qvalue(value)

    @property
    def expires(self):
        """The Contact ``expires`` parameter in seconds (None when absent)."""
        value = self.params.get("expires")
        if value is None:
            return None
        return parse_uint(value, MAX_UINT32, "expires parameter")

    def replace(self, *, uri=_MISSING, display_name=_MISSING, params=_MISSING):
        return NameAddr(self.uri if uri is _MISSING else uri,
                        self.display_name if display_name is _MISSING else display_name,
                        self.params if params is _MISSING else params)

    def with_tag(self, str tag):
        """A copy whose ``tag`` parameter is ``tag``."""
        if not is_token(tag):
            raise ValueError(f"tag {tag!r} is not a token")
        return self.replace(params=self.params.with_param("tag", tag))

    def with_params(self, params=None, /, **kw):
        """A copy with header parameters set (``True``: flag; ``None``: removed)."""
        return self.replace(params=_apply_params(self.params, params, kw))

    def without_params(self, *names):
        return self.replace(params=self.params.without(*names))

    def __str__(self):
        if self._text is None:
            uri = self._uri if self._uri is not None or not self._uri_checked else self.uri
            if uri is None:  # not checked yet: write the URI as received, never raise here
                uri = PyUnicode_DecodeUTF8(<const char*>self._p + self._us.a,
                                           self._us.b - self._us.a, "replace")
            self._text = _compose_name_addr(self.display_name, uri, self.params)
        return self._text

    def __repr__(self):
        return f"NameAddr({str(self)!r})"

    def __reduce__(self):
        return (_name_addr_from_text, (str(self),))

    def __eq__(self, other):
        if not isinstance(other, NameAddr):
            return NotImplemented
        cdef NameAddr o = <NameAddr>other
        return (self.uri == o.uri and self.params == o.params
                and self.display_name == o.display_name)

    def __hash__(self):
        return hash((self.uri, self.params))


def _name_addr_from_text(str text):
    return NameAddr.parse(text)


cdef str _compose_name_addr(object display, object uri, Params params):
    if display is not None:
        return f"{quote(display)} <{uri}>{_params_text(params._items)}"
    return f"<{uri}>{_params_text(params._items)}"


cdef object _qvalue(str value):
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(value, &n)
    cdef Py_ssize_t j
    # qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
    if n >= 1 and (p[0] == 48 or p[0] == 49):
        if n == 1:
            return float(p[0] - 48)
        if p[1] == 46 and n <= 5:
            j = _scan(p, 2, n, T_DIGIT)
            if j == n and p[0] == 49:
                j = 2
                while j < n and p[j] == 48:
                    j += 1
            if j == n:
                return float(value)
    raise SIPParseError(f"q value {value!r} is not a qvalue (0 to 1, at most 3 decimals)", 0)


cdef NameAddr _name_addr_of(object owner, const unsigned char* p, Py_ssize_t a,
                            Py_ssize_t n):
    cdef NameAddr na = NameAddr.__new__(NameAddr)
    _name_addr_spans(na, p, a, n, True)
    na._owner = owner
    na._p = p
    return na


cdef NameAddr _name_addr_deferred(object owner, const unsigned char* p, Py_ssize_t a,
                                  Py_ssize_t n, object header, int line):
    """A NameAddr whose URI is checked when first used (the engine reads the tag of From
    and To on every message, their URIs rarely); ``check()`` forces it."""
    cdef NameAddr na = NameAddr.__new__(NameAddr)
    _name_addr_spans(na, p, a, n, False)
    na._owner = owner
    na._p = p
    na._header = header
    na._line = line
    return na


cdef int _name_addr_spans(NameAddr na, const unsigned char* p, Py_ssize_t a,
                          Py_ssize_t n, bint check_uri) except -1:
    cdef Py_ssize_t i = _skip_ws(p, a, n), j, start, uri_end, last
    cdef const void* hit
    na._da = -1
    na._db = -1
    na._dquoted = False
    if i >= n:
        raise SIPParseError("empty value where a name-addr or URI was expected", i)
    if p[i] == 34:
        j = _scan_quoted(p, i, n)
        na._da = i
        na._db = j
        na._dquoted = True
        i = _skip_ws(p, j, n)
        if i >= n or p[i] != 60:
            raise SIPParseError("quoted display name must be followed by '<' URI '>'", i)
    elif p[i] != 60:
        j = _scan(p, i, n, T_TOKEN)
        if j < n and p[j] == 58 and j > i:
            # addr-spec: a bare URI; what follows its first ';' belongs to the header
            uri_end = i
            while uri_end < n and p[uri_end] != 59 and not _is_ws(p[uri_end]):
                uri_end += 1
            hit = memchr(p + i, 63, uri_end - i)
            if hit != NULL:
                raise SIPParseError("a URI with headers ('?') must be enclosed in '<' '>' "
                                    "(RFC 3261 §20)", <const unsigned char*>hit - p)
            hit = memchr(p + i, 44, uri_end - i)
            if hit != NULL:
                raise SIPParseError("a URI with a comma must be enclosed in '<' '>' "
                                    "(RFC 3261 §20)", <const unsigned char*>hit - p)
            _note_uri(na, p, i, uri_end, check_uri)
            na._pa = uri_end
            na._pb = _name_addr_params_end(na, p, uri_end, n)
            if na._pb != n:
                raise SIPParseError(f"unexpected {_show(p, na._pb, n)} after the URI", na._pb)
            return 0
        start = i
        last = i
        while True:
            j = _scan(p, i, n, T_TOKEN)
            if j == i:
                if i < n and p[i] == 60:
                    break
                if i >= n:
                    raise SIPParseError("display name is not followed by '<' URI '>'", i)
                raise SIPParseError(f"display name holds {_char(p[i])}; a display name with "
                                    "such characters must be quoted", i)
            last = j
            i = _skip_ws(p, j, n)
        na._da = start
        na._db = last
    # here p[i] == '<'
    start = i + 1
    hit = memchr(p + start, 62, n - start)
    if hit == NULL:
        raise SIPParseError("'<' is not closed by '>'", i)
    uri_end = <const unsigned char*>hit - p
    if start < uri_end and (_is_ws(p[start]) or _is_ws(p[uri_end - 1])):
        raise SIPParseError("whitespace inside '<' '>' around the URI", start)
    _note_uri(na, p, start, uri_end, check_uri)
    na._pa = uri_end + 1
    na._pb = _name_addr_params_end(na, p, uri_end + 1, n)
    if na._pb != n:
        raise SIPParseError(f"unexpected {_show(p, na._pb, n)} after '>'", na._pb)
    return 0


cdef Py_ssize_t _name_addr_params_end(NameAddr na, const unsigned char* p, Py_ssize_t a,
                                      Py_ssize_t b) except -1:
    """Validate the header parameters at p[a:]; note where the tag is; return the end."""
    cdef Py_ssize_t s[4]
    cdef Py_ssize_t j
    na._ga = -1
    while True:
        j = _next_param(p, a, b, False, s)
        if j < 0:
            return _skip_ws(p, a, b)
        if na._ga < 0 and s[2] >= 0 and s[1] - s[0] == 3 and _ci_equal(p, s[0], s[1], b"tag"):
            na._ga = s[2]
            na._gb = s[3]
        a = j


cdef inline int _note_uri(NameAddr na, const unsigned char* p, Py_ssize_t a, Py_ssize_t b,
                          bint check) except -1:
    if check:
        _uri_spans(p, a, b, &na._us)
    else:
        na._us.a = a
        na._us.b = b
    na._uri_checked = check
    return 0


# --------------------------------------------------------------------------- Via

@cython.final
@cython.no_gc
@cython.freelist(32)
cdef class Via:
    """One Via hop: ``SIP/2.0/UDP host:port;branch=...;received=...;rport``.

    ``transport`` is upper case, ``host`` bare (IPv6 without brackets), ``port`` int or
    None; ``params`` holds every parameter with its value as written.
    """

    cdef object _owner
    cdef const unsigned char* _p
    cdef Py_ssize_t _na, _nb, _va, _vb, _ta, _tb   # protocol name, version, transport
    cdef Py_ssize_t _ha, _hb                       # host, without IPv6 brackets
    cdef int _port
    cdef Py_ssize_t _pa, _pb                       # the parameters
    cdef Py_ssize_t _ba, _bb                       # the branch; _ba = -1 when absent
    cdef object _params_cache
    cdef object _text

    def __init__(self, str transport, str host, port=None, params=(), *, branch=None,
                 rport=False, str protocol="SIP", str version="2.0"):
        for what, value in (("transport", transport), ("protocol", protocol),
                            ("version", version)):
            if not is_token(value):
                raise ValueError(f"Via {what} {value!r} is not a token")
        if port is not None and (not isinstance(port, int) or isinstance(port, bool)
                                 or not 0 <= port <= 65535):
            raise ValueError(f"port {port!r} is not an integer in 0..65535")
        cdef Params ps = _coerce_params(params)
        if branch is not None:
            if not is_token(branch):
                raise ValueError(f"branch {branch!r} is not a token")
            ps = ps.with_param("branch", branch)
        if rport:
            ps = ps.with_param("rport", None)
        cdef str hp = _host_text(_host_or_raise(host))
        if port is not None:
            hp = f"{hp}:{port}"
        cdef str text = f"{protocol}/{version}/{transport.upper()} {hp}{_params_text(ps._items)}"
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        try:
            _via_spans(self, p, 0, n)
        except SIPParseError as exc:
            raise ValueError(f"invalid Via {text!r}: {exc.reason}") from None
        self._owner = text
        self._p = p
        self._text = text

    @staticmethod
    def parse(str text):
        """Parse one via-parm (a single hop, no commas)."""
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        return _via_of(text, p, 0, n)

    @property
    def protocol(self):
        return _ascii(self._p, self._na, self._nb)

    @property
    def version(self):
        return _ascii(self._p, self._va, self._vb)

    @property
    def transport(self):
        """The transport in upper case (UDP, TCP, TLS, SCTP, WS...)."""
        if self._tb - self._ta == 3:
            if _ci_equal(self._p, self._ta, self._tb, b"udp"):
                return "UDP"
            if _ci_equal(self._p, self._ta, self._tb, b"tcp"):
                return "TCP"
            if _ci_equal(self._p, self._ta, self._tb, b"tls"):
                return "TLS"
        return _ascii(self._p, self._ta, self._tb).upper()

    @property
    def host(self):
        return _ascii(self._p, self._ha, self._hb)

    @property
    def port(self):
        return None if self._port < 0 else self._port

    @property
    def params(self):
        if self._params_cache is None:
            self._params_cache = _params_of(self._p, self._pa, self._pb, True)
        return self._params_cache

    cdef object _param(self, const char* name):
        if self._pa >= self._pb:
            return _ABSENT
        return _param_value(self._p, self._pa, self._pb, True, name)

    def param(self, str name):
        """A parameter's value as written (None when absent or a flag)."""
        cdef bytes key = name.lower().encode("utf-8")
        value = self._param(key)
        return None if value is _ABSENT else value

    @property
    def branch(self):
        if self._ba < 0:
            return None
        return _ascii(self._p, self._ba, self._bb)

    @property
    def received(self):
        """The ``received`` address (brackets of an IPv6 reference removed), or None."""
        value = self._param(b"received")
        if value is _ABSENT:
            return None
        if value.startswith("["):
            return value[1:len(value) - 1]
        return value

    @property
    def rport(self):
        """The ``rport`` value as an int, or None (absent, or requested with no value)."""
        value = self._param(b"rport")
        if value is _ABSENT or value is None:
            return None
        return int(value)

    @property
    def has_rport(self):
        """Whether ``rport`` is present (RFC 3581: the sender asks for symmetric response)."""
        return self._param(b"rport") is not _ABSENT

    @property
    def maddr(self):
        value = self._param(b"maddr")
        return None if value is _ABSENT else value

    @property
    def ttl(self):
        value = self._param(b"ttl")
        return None if value is _ABSENT or value is None else int(value)

    @property
    def sent_by(self):
        """``(host, port)``; port is None when the hop did not give one."""
        return (self.host, self.port)

    @property
    def sent_protocol(self):
        return f"{self.protocol}/{self.version}/{self.transport}"

    def replace(self, *, transport=_MISSING, host=_MISSING, port=_MISSING, params=_MISSING):
        return Via(self.transport if transport is _MISSING else transport,
                   self.host if host is _MISSING else host,
                   self.port if port is _MISSING else port,
                   self.params if params is _MISSING else params,
                   protocol=self.protocol, version=self.version)

    def with_params(self, params=None, /, **kw):
        """A copy with parameters set: ``via.with_params(received="192.0.2.1", rport=5060)``.

        ``True`` writes a flag (``rport``), ``None`` removes the parameter.
        """
        return self.replace(params=_apply_params(self.params, params, kw))

    def without_params(self, *names):
        return self.replace(params=self.params.without(*names))

    def __str__(self):
        if self._text is None:
            hp = _host_text(self.host)
            if self._port >= 0:
                hp = f"{hp}:{self._port}"
            self._text = f"{self.sent_protocol} {hp}{self.params}"
        return self._text

    def __repr__(self):
        return f"Via({str(self)!r})"

    def __reduce__(self):
        return (_via_from_text, (str(self),))

    def __eq__(self, other):
        if not isinstance(other, Via):
            return NotImplemented
        cdef Via o = <Via>other
        return (self.transport == o.transport and self.protocol.upper() == o.protocol.upper()
                and self.version == o.version and _host_key(self.host) == _host_key(o.host)
                and self._port == o._port and self.params == o.params)

    def __hash__(self):
        return hash((self.transport, _host_key(self.host), self._port, self.params))


def _via_from_text(str text):
    return Via.parse(text)


cdef Via _via_of(object owner, const unsigned char* p, Py_ssize_t a, Py_ssize_t n):
    cdef Via v = Via.__new__(Via)
    _via_spans(v, p, a, n)
    v._owner = owner
    v._p = p
    return v


cdef int _via_spans(Via v, const unsigned char* p, Py_ssize_t a, Py_ssize_t n) except -1:
    cdef Py_ssize_t i = _skip_ws(p, a, n), j = 0, k
    cdef Py_ssize_t spans[6]
    cdef Py_ssize_t span[2]
    cdef int part
    cdef long long port = -1
    for part in range(3):
        j = _scan(p, i, n, T_TOKEN)
        if j == i:
            raise SIPParseError("Via must start with a sent-protocol like SIP/2.0/UDP, found "
                                f"{_show(p, i, n)}", i)
        spans[2 * part] = i
        spans[2 * part + 1] = j
        i = _skip_ws(p, j, n)
        if part < 2:
            if i >= n or p[i] != 47:
                raise SIPParseError("Via sent-protocol must be name/version/transport "
                                    f"(like SIP/2.0/UDP), found {_show(p, a, n)}", i)
            i = _skip_ws(p, i + 1, n)
    if i >= n:
        raise SIPParseError("Via has no sent-by host", i)
    if i == j:
        raise SIPParseError("Via needs whitespace between the transport and the host", i)
    i = _scan_host(p, i, n, span)
    k = _skip_ws(p, i, n)
    if k < n and p[k] == 58:
        k = _skip_ws(p, k + 1, n)
        j = _scan(p, k, n, T_DIGIT)
        if j == k:
            raise SIPParseError("':' after the Via host is not followed by a port", k)
        port = _digits(p, k, j, 65535)
        if port < 0:
            raise SIPParseError(f"Via port {_show(p, k, j)} is out of range 0..65535", k)
        i = j
    v._pa = i
    v._pb = _via_params_end(v, p, i, n)
    if v._pb != n:
        if p[v._pb] == 44:
            raise SIPParseError("Via value holds a comma: one Via.parse() call takes one hop",
                                v._pb)
        raise SIPParseError(f"unexpected {_show(p, v._pb, n)} in Via", v._pb)
    v._na = spans[0]
    v._nb = spans[1]
    v._va = spans[2]
    v._vb = spans[3]
    v._ta = spans[4]
    v._tb = spans[5]
    v._ha = span[0]
    v._hb = span[1]
    v._port = <int>port
    return 0


cdef Py_ssize_t _via_params_end(Via v, const unsigned char* p, Py_ssize_t a,
                                Py_ssize_t b) except -1:
    """Validate Via parameters (RFC 3261 §20.42, RFC 3581: ttl, maddr, received, branch,
    rport); return where they stop."""
    cdef Py_ssize_t s[4]
    cdef Py_ssize_t j, va, vb
    cdef Py_ssize_t span[2]
    v._ba = -1
    while True:
        j = _next_param(p, a, b, True, s)
        if j < 0:
            return _skip_ws(p, a, b)
        va = s[2]
        vb = s[3]
        if _ci_equal(p, s[0], s[1], b"branch"):
            if va < 0:
                raise SIPParseError("Via branch has no value", s[0])
            if p[va] == 34 or p[va] == 91 or _scan(p, va, vb, T_TOKEN) != vb:
                raise SIPParseError(f"Via branch {_show(p, va, vb)} is not a token", va)
            if v._ba < 0:
                v._ba = va
                v._bb = vb
        elif _ci_equal(p, s[0], s[1], b"received"):
            if va < 0 or not (_valid_ipv4(p, va, vb) or _valid_ipv6(p, va, vb) or (
                    p[va] == 91 and p[vb - 1] == 93 and _valid_ipv6(p, va + 1, vb - 1))):
                raise SIPParseError("Via received is not an IP address", s[0])
        elif _ci_equal(p, s[0], s[1], b"rport"):
            if va >= 0 and (_scan(p, va, vb, T_DIGIT) != vb or _digits(p, va, vb, 65535) < 0):
                raise SIPParseError(f"Via rport {_show(p, va, vb)} is not a port number", va)
        elif _ci_equal(p, s[0], s[1], b"ttl"):
            if va < 0 or _scan(p, va, vb, T_DIGIT) != vb or _digits(p, va, vb, 255) < 0:
                raise SIPParseError("Via ttl is not a number in 0..255", s[0])
        elif _ci_equal(p, s[0], s[1], b"maddr"):
            if va < 0 or _scan_host(p, va, vb, span) != vb:
                raise SIPParseError("Via maddr is not a host", s[0])
        else:
            if va >= 0 and p[va] != 34 and p[va] != 91 and _scan(p, va, vb, T_TOKEN) != vb:
                raise SIPParseError(f"Via parameter value {_show(p, va, vb)} is not a token",
                                    va)
        a = j


# --------------------------------------------------------------------------- CSeq

@cython.final
@cython.no_gc
@cython.freelist(32)
cdef class CSeq:
    """The CSeq header: sequence ``number`` (0 .. 2**31-1) and ``method``."""

    cdef long long _number
    cdef readonly str method

    def __init__(self, number, str method):
        if not isinstance(number, int) or isinstance(number, bool) \
                or not 0 <= number <= MAX_CSEQ:
            raise ValueError(f"CSeq number {number!r} is not an integer in 0..2**31-1")
        if not is_token(method):
            raise ValueError(f"CSeq method {method!r} is not a token")
        self._number = number
        self.method = method

    @staticmethod
    def parse(str text):
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        return _cseq_of(p, 0, n)

    @property
    def number(self):
        return self._number

    def __str__(self):
        return f"{self._number} {self.method}"

    def __repr__(self):
        return f"CSeq({self._number!r}, {self.method!r})"

    def __reduce__(self):
        return (CSeq, (self._number, self.method))

    def __eq__(self, other):
        if not isinstance(other, CSeq):
            return NotImplemented
        return self._number == (<CSeq>other)._number and self.method == (<CSeq>other).method

    def __hash__(self):
        return hash((self._number, self.method))


cdef CSeq _cseq_of(const unsigned char* p, Py_ssize_t a, Py_ssize_t n):
    cdef Py_ssize_t i = _skip_ws(p, a, n)
    cdef Py_ssize_t j = _scan(p, i, n, T_DIGIT), k, m
    if j == i:
        raise SIPParseError(f"CSeq {_show(p, a, n)} does not start with a sequence number", i)
    cdef long long number = _digits(p, i, j, MAX_CSEQ)
    if number < 0:
        raise SIPParseError(f"CSeq number {_show(p, i, j)} is not below 2**31 "
                            "(RFC 3261 §8.1.1.5)", i)
    k = _skip_ws(p, j, n)
    if k == j:
        raise SIPParseError(f"CSeq {_show(p, a, n)} needs whitespace between number and method",
                            j)
    m = _scan(p, k, n, T_TOKEN)
    if m == k:
        raise SIPParseError(f"CSeq {_show(p, a, n)} has no method", k)
    if _skip_ws(p, m, n) != n:
        raise SIPParseError(f"unexpected {_show(p, m, n)} after the CSeq method", m)
    cdef CSeq c = CSeq.__new__(CSeq)
    c._number = number
    c.method = _ascii(p, k, m)
    return c


cdef object _call_id_of(const unsigned char* p, Py_ssize_t a, Py_ssize_t n):
    cdef Py_ssize_t i = _scan(p, a, n, T_WORD)
    if i == a:
        raise SIPParseError(f"Call-ID {_show(p, a, n)} is empty or does not start with a word "
                            "character", a)
    if i < n and p[i] == 64:
        i = _scan(p, i + 1, n, T_WORD)
    if i != n:
        raise SIPParseError(f"Call-ID {_show(p, a, n)} holds {_char(p[i])}, which a Call-ID "
                            "cannot", i)
    return _ascii(p, a, n)


cdef object _max_forwards_of(const unsigned char* p, Py_ssize_t a, Py_ssize_t n):
    cdef Py_ssize_t j = _scan(p, a, n, T_DIGIT)
    if j == a or j != n:
        raise SIPParseError(f"Max-Forwards {_show(p, a, n)} is not a number", a)
    cdef long long value = _digits(p, a, n, 255)
    if value < 0:
        raise SIPParseError(f"Max-Forwards {_show(p, a, n)} exceeds 255", a)
    return value


# --------------------------------------------------------------------------- Headers

cdef struct Field:
    PyObject* key                  # the lookup key (lower-case canonical name)
    PyObject* name                 # the canonical name
    PyObject* value                # the value as a str, or NULL while it is _source[va:vb]
    Py_ssize_t va
    Py_ssize_t vb
    int line                       # 1-based line in _source; 0 for a field added by code


cdef object _UNSET = object()

# how a slot's values are parsed
DEF P_VIA = 1
DEF P_NAME_ADDR = 2
DEF P_CONTACT = 3
DEF P_CSEQ = 4
DEF P_CALL_ID = 5
DEF P_MAX_FORWARDS = 6

cdef str K_CONTENT_LENGTH = _NAMES["content-length"][1]


cdef int _slot_of(str key):
    """The hot slot of a header key (0 for the others)."""
    return _HOT_SLOTS.get(key, 0)


cdef object _parse_span(int kind, object owner, const unsigned char* p, Py_ssize_t a,
                        Py_ssize_t b, object header, int line):
    if kind == P_VIA:
        return _via_of(owner, p, a, b)
    if kind == P_NAME_ADDR:
        return _name_addr_deferred(owner, p, a, b, header, line)
    if kind == P_CONTACT:
        if b - a == 1 and p[a] == 42:
            return None
        return _name_addr_deferred(owner, p, a, b, header, line)
    if kind == P_CSEQ:
        return _cseq_of(p, a, b)
    if kind == P_CALL_ID:
        return _call_id_of(p, a, b)
    return _max_forwards_of(p, a, b)


cdef Py_ssize_t _element_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t b) except -2:
    """The index of the comma ending the list element that starts at i (b at the end);
    -1 if a quote or '<' is left open."""
    cdef bint in_quote = False
    cdef int angle = 0
    cdef unsigned char c
    if memchr(p + i, 44, b - i) == NULL:
        return b    # no comma: one element (a quote left open is the element's problem)
    while i < b:
        c = p[i]
        if in_quote:
            if c == 92:
                i += 1
            elif c == 34:
                in_quote = False
        elif c == 34:
            in_quote = True
        elif c == 60:
            angle += 1
        elif c == 62:
            if angle:
                angle -= 1
        elif c == 44 and angle == 0:
            return i
        i += 1
    if in_quote or angle:
        return -1
    return b


cdef inline bint _same_key(PyObject* a, str b):
    """Whether the header key at ``a`` equals ``b`` (keys of known headers are interned,
    so this is nearly always settled by identity or length)."""
    if a == <PyObject*>b:
        return True
    if PyUnicode_GET_LENGTH(<str>a) != PyUnicode_GET_LENGTH(b):
        return False
    return (<str>a) == b


cdef str _check_value(str name, object value):
    if not isinstance(value, str):
        raise TypeError(f"header {name!r}: value must be str, not {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name!r}: value must not contain CR or LF: {value!r}")
    return (<str>value).strip(" \t")


cdef tuple _header_key(str name):
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(name, &n)
    if n == 0 or _scan(p, 0, n, T_TOKEN) != n:
        raise ValueError(f"{name!r} is not a valid header name (RFC 3261 token)")
    return _lookup_name(p, 0, n)


@cython.final
cdef class Headers:
    """The header fields of one message, in order, with canonical names.

    Names are case-insensitive and compact forms expand (``headers.get("i")`` reads
    Call-ID). A field holds one line's value as received (folding joined); for a list
    header (Via, Contact, Route, Supported...) ``get_all`` and ``count`` work on the
    comma-separated elements, so ``get_all("Via")`` gives one string per hop. Iteration
    yields ``(name, value)`` per field. Typed values are read through the message
    (``msg.via``...), which caches them here until that header changes.

    A parsed field keeps its value as a span of the datagram until someone reads it.
    """

    cdef Field* _f
    cdef Py_ssize_t _n
    cdef Py_ssize_t _cap
    cdef bytes _source             # the datagram the fields were parsed from, or None
    cdef dict _typed               # key -> parsed value(s), for the Python-level readers
    cdef int _first[N_SLOTS]       # per hot slot: the index of its first field
    cdef int _count[N_SLOTS]       # per hot slot: how many fields it has
    cdef unsigned int _cached      # bit (1 << slot): that slot's parsed value is below
    cdef object _c_via, _c_from, _c_to, _c_call_id, _c_cseq, _c_contact, _c_max_forwards
    cdef object _c_route, _c_record_route

    def __cinit__(self):
        self._f = NULL
        self._n = 0
        self._cap = 0
        self._cached = 0
        cdef int i
        for i in range(N_SLOTS):
            self._count[i] = 0

    def __dealloc__(self):
        self._clear()
        free(self._f)

    def __init__(self, items=()):
        if isinstance(items, collections.abc.Mapping):
            items = items.items()
        for name, value in items:
            self.add(name, value)

    # -- the field array

    cdef void _clear(self):
        cdef Py_ssize_t i
        for i in range(self._n):
            _xdecref(self._f[i].key)
            _xdecref(self._f[i].name)
            _xdecref(self._f[i].value)
        self._n = 0
        for i in range(N_SLOTS):
            self._count[i] = 0

    cdef int _append(self, str key, str name, object value, Py_ssize_t va, Py_ssize_t vb,
                     int line, int slot) except -1:
        cdef Field* grown
        cdef Py_ssize_t cap
        if self._n == self._cap:
            cap = 16 if self._cap == 0 else self._cap * 2
            grown = <Field*>realloc(self._f, cap * sizeof(Field))
            if grown == NULL:
                raise MemoryError()
            self._f = grown
            self._cap = cap
        cdef Field* f = &self._f[self._n]
        _incref(<PyObject*>key)
        _incref(<PyObject*>name)
        f.key = <PyObject*>key
        f.name = <PyObject*>name
        if value is None:
            f.value = NULL
        else:
            _incref(<PyObject*>value)
            f.value = <PyObject*>value
        f.va = va
        f.vb = vb
        f.line = line
        if slot:
            if self._count[slot] == 0:
                self._first[slot] = <int>self._n
            self._count[slot] += 1
        self._n += 1
        return 0

    cdef str _value(self, Py_ssize_t i):
        cdef Field* f = &self._f[i]
        cdef str value
        if f.value == NULL:   # still a span: ASCII (the scanner decoded any other)
            value = _ascii(<const unsigned char*>PyBytes_AS_STRING(self._source), f.va, f.vb)
            _incref(<PyObject*>value)
            f.value = <PyObject*>value
        return <str>f.value

    cdef int _decode(self, Py_ssize_t i) except -1:
        """Make field i's value a str from UTF-8 octets (SIPParseError if they are not)."""
        cdef Field* f = &self._f[i]
        cdef str value
        try:
            value = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(self._source) + f.va, f.vb - f.va,
                                         NULL)
        except UnicodeDecodeError as exc:
            raise SIPParseError(f"line {f.line}: header {<str>f.name!r}: value is not valid "
                                f"UTF-8 ({exc.reason} at octet {exc.start})",
                                self._offset(f.line), line=f.line, header=<str>f.name) from None
        _incref(<PyObject*>value)
        f.value = <PyObject*>value
        return 0

    cdef object _span(self, Py_ssize_t i, const unsigned char** p, Py_ssize_t* a,
                      Py_ssize_t* b):
        """Where field i's value is: the owner object, its octets and the span."""
        cdef Field* f = &self._f[i]
        cdef Py_ssize_t n
        if f.value == NULL:
            p[0] = <const unsigned char*>PyBytes_AS_STRING(self._source)
            a[0] = f.va
            b[0] = f.vb
            return self._source
        p[0] = _utf8(<str>f.value, &n)
        a[0] = 0
        b[0] = n
        return <object>f.value

    cdef inline bint _is(self, Py_ssize_t i, str key):
        return _same_key(self._f[i].key, key)

    cdef list _snapshot(self):
        """The fields as ``(key, name, value, line)`` tuples (every value materialised)."""
        cdef list out = []
        cdef Py_ssize_t i
        for i in range(self._n):
            out.append((<str>self._f[i].key, <str>self._f[i].name, self._value(i),
                        self._f[i].line))
        return out

    cdef void _load(self, list fields):
        cdef tuple t
        self._clear()
        for t in fields:
            self._append(t[0], t[1], t[2], -1, -1, t[3], _slot_of(t[0]))

    cdef void _changed(self, str key):
        cdef int slot = _slot_of(key)
        if slot:
            self._cached &= ~(1u << slot)
        if self._typed is not None:
            self._typed.pop(key, None)

    # -- reading

    cdef list _values(self, str key):
        cdef list out = []
        cdef Py_ssize_t i, a, b, e, ea, eb
        cdef const unsigned char* p
        cdef bint is_list = key in _LIST_KEYS
        for i in range(self._n):
            if not self._is(i, key):
                continue
            if not is_list:
                out.append(self._value(i))
                continue
            self._span(i, &p, &a, &b)
            while True:
                e = _element_end(p, a, b)
                if e < 0:
                    raise self._context(i, SIPParseError(
                        f"unbalanced quote or '<' in {self._value(i)!r}", 0))
                ea = _skip_ws(p, a, e)
                eb = e
                while eb > ea and _is_ws(p[eb - 1]):
                    eb -= 1
                out.append(_sub(p, ea, eb))
                if e >= b:
                    break
                a = e + 1
        return out

    def get(self, str name, default=None):
        """The first value of ``name`` (the first element, for a list header), or ``default``."""
        cdef list values = self._values(_header_key(name)[1])
        return values[0] if values else default

    def get_all(self, str name):
        """Every value of ``name`` in order (one per element, for a list header)."""
        return self._values(_header_key(name)[1])

    def fields(self, str name):
        """The values of the ``name`` fields as written, one per line (lists not split)."""
        cdef str key = _header_key(name)[1]
        cdef list out = []
        cdef Py_ssize_t i
        for i in range(self._n):
            if self._is(i, key):
                out.append(self._value(i))
        return out

    def count(self, str name):
        """How many values ``name`` has (elements, for a list header)."""
        return len(self._values(_header_key(name)[1]))

    def __contains__(self, name):
        if not isinstance(name, str):
            return False
        cdef str key = _header_key(name)[1]
        cdef Py_ssize_t i
        for i in range(self._n):
            if self._is(i, key):
                return True
        return False

    def __iter__(self):
        cdef list out = []
        cdef Py_ssize_t i
        for i in range(self._n):
            out.append((<str>self._f[i].name, self._value(i)))
        return iter(out)

    def __len__(self):
        return self._n

    def __eq__(self, other):
        if not isinstance(other, Headers):
            return NotImplemented
        return list(self) == list(other)

    def __repr__(self):
        return f"Headers({list(self)!r})"

    def names(self):
        """The distinct canonical names present, in order of first appearance."""
        cdef dict seen = {}
        cdef Py_ssize_t i
        for i in range(self._n):
            seen.setdefault(<str>self._f[i].name, None)
        return list(seen)

    def location(self, str name):
        """``(line, offset)`` of the first ``name`` field as received, or None."""
        cdef str key = _header_key(name)[1]
        cdef Py_ssize_t i
        for i in range(self._n):
            if self._is(i, key):
                if self._f[i].line == 0:
                    return None
                return (self._f[i].line, self._offset(self._f[i].line))
        return None

    cdef Py_ssize_t _offset(self, int line):
        """The byte offset where ``line`` starts in the source datagram (-1 if unknown)."""
        if self._source is None or line <= 0:
            return -1
        cdef Py_ssize_t pos = 0, n = len(self._source)
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(self._source)
        cdef int current = 1
        cdef const void* hit
        while current < line:
            hit = memchr(p + pos, 10, n - pos)
            if hit == NULL:
                return -1
            pos = <const unsigned char*>hit - p + 1
            current += 1
        return pos

    # -- editing

    def set(self, str name, value):
        """Replace every ``name`` field with one holding ``value``, where the first one was
        (appended when absent)."""
        self.set_all(name, [value])

    def set_all(self, str name, values):
        """Replace every ``name`` field with one field per value, at the first one's place."""
        cdef tuple info = _header_key(name)
        cdef str key = info[1]
        cdef list new = [(key, info[0], _check_value(info[0], v), 0) for v in values]
        cdef list out = []
        cdef bint placed = False
        for field in self._snapshot():
            if field[0] == key:
                if not placed:
                    out.extend(new)
                    placed = True
            else:
                out.append(field)
        if not placed:
            out.extend(new)
        self._load(out)
        self._changed(key)

    def add(self, str name, value, *, bint first=False):
        """Append a ``name`` field (with ``first``, put it before the existing ones, as a
        proxy pushes a Via or Record-Route)."""
        cdef tuple info = _header_key(name)
        cdef str key = info[1]
        cdef str text = _check_value(info[0], value)
        cdef list fields
        cdef Py_ssize_t i
        if first:
            fields = self._snapshot()
            for i in range(len(fields)):
                if fields[i][0] == key:
                    fields.insert(i, (key, info[0], text, 0))
                    break
            else:
                fields.append((key, info[0], text, 0))
            self._load(fields)
        else:
            self._append(key, info[0], text, -1, -1, 0, info[3])
        self._changed(key)

    def remove(self, str name):
        """Remove every ``name`` field; return how many fields there were."""
        cdef str key = _header_key(name)[1]
        cdef list fields = self._snapshot()
        cdef list kept = [field for field in fields if field[0] != key]
        self._load(kept)
        self._changed(key)
        return len(fields) - len(kept)

    def copy(self):
        """An independent copy (cached typed values are immutable, so they are shared)."""
        cdef Headers h = Headers.__new__(Headers)
        h._load(self._snapshot())
        h._source = self._source
        h._typed = None if self._typed is None else dict(self._typed)
        h._cached = self._cached
        h._c_via = self._c_via
        h._c_from = self._c_from
        h._c_to = self._c_to
        h._c_call_id = self._c_call_id
        h._c_cseq = self._c_cseq
        h._c_contact = self._c_contact
        h._c_max_forwards = self._c_max_forwards
        h._c_route = self._c_route
        h._c_record_route = self._c_record_route
        return h

    # -- typed access

    cdef object _context(self, Py_ssize_t i, object exc):
        cdef int line = self._f[i].line
        where = f"line {line}: " if line else ""
        name = <str>self._f[i].name
        return SIPParseError(f"{where}header {name!r}: {exc.reason}", self._offset(line),
                             line=line, header=name)

    cdef tuple _parse_all(self, int slot, int kind):
        """Every element of the fields of a hot slot, parsed as ``kind``."""
        cdef int count = self._count[slot]
        if count == 0:
            return ()
        cdef list out = []
        cdef Py_ssize_t i = self._first[slot], a, b, e, ea, eb
        cdef str key = <str>self._f[i].key
        cdef const unsigned char* p
        cdef object owner
        while count:
            if not _same_key(self._f[i].key, key):
                i += 1
                continue
            count -= 1
            owner = self._span(i, &p, &a, &b)
            try:
                while True:
                    e = _element_end(p, a, b)
                    if e < 0:
                        raise SIPParseError(f"unbalanced quote or '<' in {self._value(i)!r}", 0)
                    ea = _skip_ws(p, a, e)
                    eb = e
                    while eb > ea and _is_ws(p[eb - 1]):
                        eb -= 1
                    out.append(_parse_span(kind, owner, p, ea, eb, <str>self._f[i].name,
                                           self._f[i].line))
                    if e >= b:
                        break
                    a = e + 1
            except SIPParseError as exc:
                raise self._context(i, exc) from None
            i += 1
        return tuple(out)

    cdef object _parse_one(self, int slot, int kind):
        """The single field of a hot slot parsed as ``kind`` (None when absent)."""
        cdef int count = self._count[slot]
        if count == 0:
            return None
        cdef Py_ssize_t i = self._first[slot], a, b
        cdef const unsigned char* p
        if count > 1:
            self._duplicate(<str>self._f[i].key, count)
        owner = self._span(i, &p, &a, &b)
        try:
            return _parse_span(kind, owner, p, a, b, <str>self._f[i].name, self._f[i].line)
        except SIPParseError as exc:
            raise self._context(i, exc) from None

    cdef void _duplicate(self, str key, int count) except *:
        cdef list lines = []
        cdef Py_ssize_t i, second = -1, first = -1
        for i in range(self._n):
            if self._is(i, key):
                if first < 0:
                    first = i
                elif second < 0:
                    second = i
                if self._f[i].line:
                    lines.append(str(self._f[i].line))
        cdef int line = self._f[second].line
        name = <str>self._f[second].name
        where = f"line {line}: " if line else ""
        raise SIPParseError(
            f"{where}header {name!r} appears {count} times"
            + (f" (lines {', '.join(lines)})" if lines else "")
            + "; it takes a single value", self._offset(line), line=line, header=name)

    cdef tuple _via(self):
        if not self._cached & (1u << SL_VIA):
            self._c_via = self._parse_all(SL_VIA, P_VIA)
            self._cached |= 1u << SL_VIA
        return <tuple>self._c_via

    cdef object _from(self):
        if not self._cached & (1u << SL_FROM):
            self._c_from = self._parse_one(SL_FROM, P_NAME_ADDR)
            self._cached |= 1u << SL_FROM
        return self._c_from

    cdef object _to(self):
        if not self._cached & (1u << SL_TO):
            self._c_to = self._parse_one(SL_TO, P_NAME_ADDR)
            self._cached |= 1u << SL_TO
        return self._c_to

    cdef object _call_id(self):
        if not self._cached & (1u << SL_CALL_ID):
            self._c_call_id = self._parse_one(SL_CALL_ID, P_CALL_ID)
            self._cached |= 1u << SL_CALL_ID
        return self._c_call_id

    cdef object _cseq(self):
        if not self._cached & (1u << SL_CSEQ):
            self._c_cseq = self._parse_one(SL_CSEQ, P_CSEQ)
            self._cached |= 1u << SL_CSEQ
        return self._c_cseq

    cdef tuple _contact(self):
        if not self._cached & (1u << SL_CONTACT):
            self._c_contact = self._parse_all(SL_CONTACT, P_CONTACT)
            self._cached |= 1u << SL_CONTACT
        return <tuple>self._c_contact

    cdef object _max_forwards(self):
        if not self._cached & (1u << SL_MAX_FORWARDS):
            self._c_max_forwards = self._parse_one(SL_MAX_FORWARDS, P_MAX_FORWARDS)
            self._cached |= 1u << SL_MAX_FORWARDS
        return self._c_max_forwards

    cdef tuple _route(self):
        if not self._cached & (1u << SL_ROUTE):
            self._c_route = self._parse_all(SL_ROUTE, P_NAME_ADDR)
            self._cached |= 1u << SL_ROUTE
        return <tuple>self._c_route

    cdef tuple _record_route(self):
        if not self._cached & (1u << SL_RECORD_ROUTE):
            self._c_record_route = self._parse_all(SL_RECORD_ROUTE, P_NAME_ADDR)
            self._cached |= 1u << SL_RECORD_ROUTE
        return <tuple>self._c_record_route

    cdef void _store(self, str key, object value):
        cdef int slot = _slot_of(key)
        if slot == SL_VIA:
            self._c_via = value
        elif slot == SL_FROM:
            self._c_from = value
        elif slot == SL_TO:
            self._c_to = value
        elif slot == SL_CALL_ID:
            self._c_call_id = value
        elif slot == SL_CSEQ:
            self._c_cseq = value
        elif slot == SL_CONTACT:
            self._c_contact = value
        elif slot == SL_MAX_FORWARDS:
            self._c_max_forwards = value
        elif slot == SL_ROUTE:
            self._c_route = value
        elif slot == SL_RECORD_ROUTE:
            self._c_record_route = value
        else:
            if self._typed is None:
                self._typed = {}
            self._typed[key] = value
            return
        self._cached |= 1u << slot

    def typed_one(self, str key, parse):
        """The single ``key`` field (a lookup key: lower-case canonical name) parsed with
        ``parse(str)``; None if absent; SIPParseError if it repeats or does not parse.
        Cached until the header changes."""
        if self._typed is None:
            self._typed = {}
        cached = self._typed.get(key, _UNSET)
        if cached is not _UNSET:
            return cached
        cdef Py_ssize_t i, found = -1
        cdef int count = 0
        for i in range(self._n):
            if self._is(i, key):
                if found < 0:
                    found = i
                count += 1
        if found < 0:
            self._typed[key] = None
            return None
        if count > 1:
            self._duplicate(key, count)
        try:
            value = parse(self._value(found))
        except SIPParseError as exc:
            raise self._context(found, exc) from None
        self._typed[key] = value
        return value

    def typed_all(self, str key, parse):
        """Every element of the ``key`` fields parsed with ``parse(str)``, as a tuple.
        Cached until the header changes."""
        if self._typed is None:
            self._typed = {}
        cached = self._typed.get(key)
        if cached is not None:
            return cached
        cdef list out = []
        cdef Py_ssize_t i, a, b, e, ea, eb
        cdef const unsigned char* p
        cdef bint is_list = key in _LIST_KEYS
        for i in range(self._n):
            if not self._is(i, key):
                continue
            try:
                if not is_list:
                    out.append(parse(self._value(i)))
                    continue
                self._span(i, &p, &a, &b)
                while True:
                    e = _element_end(p, a, b)
                    if e < 0:
                        raise SIPParseError(f"unbalanced quote or '<' in {self._value(i)!r}", 0)
                    ea = _skip_ws(p, a, e)
                    eb = e
                    while eb > ea and _is_ws(p[eb - 1]):
                        eb -= 1
                    out.append(parse(_sub(p, ea, eb)))
                    if e >= b:
                        break
                    a = e + 1
            except SIPParseError as exc:
                raise self._context(i, exc) from None
        result = tuple(out)
        self._typed[key] = result
        return result

    def set_typed(self, str name, values):
        """Replace ``name`` with one field per typed value (its ``str()``), cached."""
        cdef tuple items = tuple(values)
        self.set_all(name, [str(v) for v in items])
        self._store(_header_key(name)[1], items)

    def set_typed_one(self, str name, value):
        """Replace ``name`` with one field holding ``str(value)``, cached."""
        self.set_all(name, [str(value)])
        self._store(_header_key(name)[1], value)

    # -- writing

    def serialize(self, str start_line not None, bytes body not None):
        """The message as bytes: start line, fields, a Content-Length computed from
        ``body`` (where the first one was, else last), the empty line, the body.

        Two passes: one adds up the length, one copies; a field still held as a span
        of the datagram is copied straight from it."""
        cdef Py_ssize_t i, n, total, pos = 0, ln, vn
        cdef Field* f
        cdef const char* src = NULL
        cdef const char* sp
        cdef const char* name
        cdef const char* value
        cdef char length[24]
        cdef int length_n = snprintf(length, 24, "Content-Length: %zd\r\n", len(body))
        cdef bint length_seen = False
        if self._source is not None:
            src = PyBytes_AS_STRING(self._source)
        sp = PyUnicode_AsUTF8AndSize(start_line, &n)
        total = n + 2 + length_n + 2 + len(body)
        for i in range(self._n):
            f = &self._f[i]
            if f.key == <PyObject*>K_CONTENT_LENGTH:
                continue
            PyUnicode_AsUTF8AndSize(<str>f.name, &ln)
            if f.value == NULL:
                vn = f.vb - f.va
            else:
                PyUnicode_AsUTF8AndSize(<str>f.value, &vn)
            total += ln + (3 if vn == 0 else vn + 4)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
        cdef char* o = PyBytes_AS_STRING(out)
        memcpy(o, sp, n)
        memcpy(o + n, b"\r\n", 2)
        pos = n + 2
        for i in range(self._n):
            f = &self._f[i]
            if f.key == <PyObject*>K_CONTENT_LENGTH:
                if not length_seen:
                    memcpy(o + pos, length, length_n)
                    pos += length_n
                    length_seen = True
                continue
            name = PyUnicode_AsUTF8AndSize(<str>f.name, &ln)
            if f.value == NULL:
                value = src + f.va
                vn = f.vb - f.va
            else:
                value = PyUnicode_AsUTF8AndSize(<str>f.value, &vn)
            memcpy(o + pos, name, ln)
            pos += ln
            if vn:
                memcpy(o + pos, b": ", 2)
                memcpy(o + pos + 2, value, vn)
                pos += vn + 2
            else:
                o[pos] = 58     # ':'
                pos += 1
            memcpy(o + pos, b"\r\n", 2)
            pos += 2
        if not length_seen:
            memcpy(o + pos, length, length_n)
            pos += length_n
        memcpy(o + pos, b"\r\n", 2)
        pos += 2
        memcpy(o + pos, PyBytes_AS_STRING(body), len(body))
        return out


# --------------------------------------------------------------------------- messages

cdef object _missing(str name):
    return SIPParseError(f"missing header {name!r}", -1, header=name)


cdef object _via_arg(object value):
    if isinstance(value, Via):
        return value
    raise TypeError(f"expected a Via, not {type(value).__name__}")


cdef object _name_addr_arg(object value):
    if isinstance(value, NameAddr):
        return value
    if isinstance(value, URI):
        return NameAddr(value)
    raise TypeError(f"expected a NameAddr, not {type(value).__name__}")


cdef class MessageCore:
    """What requests and responses share: ``headers``, ``body``, and the typed headers
    the engine reads from every message (the rest is in ``gosipd.sip.Message``).

    Typed reads return fresh lists (changing the list does not change the message);
    change a message through the setters and ``push_via``/``pop_via``.
    """

    cdef Headers _headers
    cdef bytes _body

    cdef inline Headers _hd(self):
        if self._headers is None:
            raise TypeError(f"this {type(self).__name__} has no headers (made without __init__)")
        return self._headers

    @property
    def headers(self):
        """The header fields (a Headers)."""
        return self._hd()

    @headers.setter
    def headers(self, Headers value not None):
        self._headers = value

    @property
    def body(self):
        """The message body (bytes; Content-Length is written from it)."""
        return self._body if self._body is not None else b""

    @body.setter
    def body(self, value):
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"body must be bytes, not {type(value).__name__}")
        self._body = bytes(value)

    def __bytes__(self):
        return self._hd().serialize(self.start_line(), self.body)

    def start_line(self):
        raise NotImplementedError

    # -- Via

    @property
    def via(self):
        """The Via hops, top (most recent) first."""
        return list(self._hd()._via())

    @via.setter
    def via(self, hops):
        self._hd().set_typed("Via", [_via_arg(hop) for hop in hops])

    @property
    def top_via(self):
        """The first Via hop, or None."""
        cdef tuple hops = self._hd()._via()
        return hops[0] if hops else None

    def push_via(self, Via hop not None):
        """Add a Via hop on top (a UAC or proxy sending the request on)."""
        self._hd().set_typed("Via", (hop,) + self._hd()._via())

    def pop_via(self):
        """Remove and return the top Via hop."""
        cdef tuple hops = self._hd()._via()
        if not hops:
            raise _missing("Via")
        self._hd().set_typed("Via", hops[1:])
        return hops[0]

    # -- the dialog identifiers

    @property
    def from_(self):
        """The From address (SIPParseError if missing or malformed)."""
        value = self._hd()._from()
        if value is None:
            raise _missing("From")
        return value

    @from_.setter
    def from_(self, value):
        self._hd().set_typed_one("From", _name_addr_arg(value))

    @property
    def to(self):
        """The To address (SIPParseError if missing or malformed)."""
        value = self._hd()._to()
        if value is None:
            raise _missing("To")
        return value

    @to.setter
    def to(self, value):
        self._hd().set_typed_one("To", _name_addr_arg(value))

    @property
    def call_id(self):
        value = self._hd()._call_id()
        if value is None:
            raise _missing("Call-ID")
        return value

    @call_id.setter
    def call_id(self, str value):
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(value, &n)
        try:
            _call_id_of(p, 0, n)
        except SIPParseError as exc:
            raise ValueError(exc.reason) from None
        self._hd().set_typed_one("Call-ID", value)

    @property
    def cseq(self):
        value = self._hd()._cseq()
        if value is None:
            raise _missing("CSeq")
        return value

    @cseq.setter
    def cseq(self, CSeq value):
        if value is None:
            raise TypeError("cseq must be a CSeq")
        self._hd().set_typed_one("CSeq", value)

    # -- addresses and routes

    @property
    def contact(self):
        """The Contact addresses; empty when absent or when the value is ``*``."""
        return [c for c in self._hd()._contact() if c is not None]

    @contact.setter
    def contact(self, addresses):
        self._hd().set_typed("Contact", [_name_addr_arg(a) for a in addresses])

    @property
    def contact_is_wildcard(self):
        """Whether Contact is ``*`` (REGISTER removing every binding, RFC 3261 §10.2.2)."""
        return None in self._hd()._contact()

    @property
    def route(self):
        return list(self._hd()._route())

    @route.setter
    def route(self, addresses):
        self._hd().set_typed("Route", [_name_addr_arg(a) for a in addresses])

    @property
    def record_route(self):
        return list(self._hd()._record_route())

    @record_route.setter
    def record_route(self, addresses):
        self._hd().set_typed("Record-Route", [_name_addr_arg(a) for a in addresses])

    @property
    def max_forwards(self):
        return self._hd()._max_forwards()

    @max_forwards.setter
    def max_forwards(self, value):
        if value is None:
            self._hd().remove("Max-Forwards")
            return
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
            raise ValueError(f"Max-Forwards must be an integer in 0..255, not {value!r}")
        self._hd().set_typed_one("Max-Forwards", value)


cdef class RequestCore(MessageCore):
    """The part of a request the parser fills: ``method`` and ``uri`` (the Request-URI)."""

    cdef str _method
    cdef URI _uri

    @property
    def method(self):
        return self._method

    @method.setter
    def method(self, str value not None):
        if not is_token(value):
            raise ValueError(f"method {value!r} is not a token")
        self._method = value

    @property
    def uri(self):
        """The Request-URI."""
        return self._uri

    @uri.setter
    def uri(self, URI value not None):
        self._uri = value

    def start_line(self):
        if self._method is None or self._uri is None:
            raise TypeError("this request has no method or Request-URI (made without __init__)")
        return f"{self._method} {self._uri} SIP/2.0"


cdef class ResponseCore(MessageCore):
    """The part of a response the parser fills: ``status`` and ``reason``."""

    cdef int _status
    cdef str _reason

    @property
    def status(self):
        return self._status

    @status.setter
    def status(self, int value):
        if not 100 <= value <= 699:
            raise ValueError(f"status {value} is not a SIP status code (100..699)")
        self._status = value

    @property
    def reason(self):
        """The Reason-Phrase."""
        return self._reason if self._reason is not None else ""

    @reason.setter
    def reason(self, str value not None):
        if "\r" in value or "\n" in value:
            raise ValueError(f"reason phrase must not contain CR or LF: {value!r}")
        self._reason = value

    def start_line(self):
        if self._status == 0:
            raise TypeError("this response has no status (made without __init__)")
        return f"SIP/2.0 {self._status} {self.reason}"


cdef object _REQUEST = RequestCore
cdef object _RESPONSE = ResponseCore
cdef tuple _NO_ARGS = ()


cdef inline object _new(object cls):
    """A bare instance of ``cls`` (its __init__ not run), without the attribute lookup
    and call that ``cls.__new__(cls)`` costs."""
    return (<PyTypeObject*>cls).tp_new(cls, <PyObject*>_NO_ARGS, NULL)


def _register_message_types(request, response):
    """Make ``parse_message`` build these subclasses (gosipd.sip.Request, Response)."""
    global _REQUEST, _RESPONSE
    if not (isinstance(request, type) and issubclass(request, RequestCore)):
        raise TypeError("request type must subclass RequestCore")
    if not (isinstance(response, type) and issubclass(response, ResponseCore)):
        raise TypeError("response type must subclass ResponseCore")
    _REQUEST = request
    _RESPONSE = response


# --------------------------------------------------------------------------- framing

cdef inline Py_ssize_t _find_lf(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    cdef const void* hit = memchr(p + i, 10, n - i)
    if hit == NULL:
        return -1
    return <const unsigned char*>hit - p


cdef inline int _check_line(const unsigned char* p, Py_ssize_t a, Py_ssize_t b,
                            int line) except -1:
    """Refuse a bare CR inside a line; return 1 if it holds non-ASCII octets.

    Eight octets at a time: ``acc`` collects the high bits, ``cr`` flags any octet equal
    to CR (the classic has-zero-byte test on the word XOR 0x0d0d...)."""
    cdef uint64_t acc = 0, cr = 0, word, x
    cdef Py_ssize_t i = a
    while i + 8 <= b:
        memcpy(&word, p + i, 8)
        acc |= word
        x = word ^ 0x0d0d0d0d0d0d0d0du
        cr |= (x - 0x0101010101010101u) & ~x & 0x8080808080808080u
        i += 8
    while i < b:
        acc |= p[i]
        if p[i] == 13:
            cr = 1
        i += 1
    if cr:
        _bare_cr(p, a, b, line)
    return 1 if acc & 0x8080808080808080u else 0


cdef int _bare_cr(const unsigned char* p, Py_ssize_t a, Py_ssize_t b, int line) except -1:
    cdef const void* hit = memchr(p + a, 13, b - a)
    if hit != NULL:
        raise SIPParseError(f"line {line}: bare CR inside the line (lines end in CRLF)",
                            <const unsigned char*>hit - p, line=line)
    return 0


cdef str _decode_value(const unsigned char* p, Py_ssize_t a, Py_ssize_t b, int line,
                       str name, Py_ssize_t offset):
    try:
        return PyUnicode_DecodeUTF8(<const char*>p + a, b - a, NULL)
    except UnicodeDecodeError as exc:
        raise SIPParseError(f"line {line}: header {name!r}: value is not valid UTF-8 "
                            f"({exc.reason} at octet {exc.start})", offset,
                            line=line, header=name) from None


cdef class _Block:
    """A header section as found by ``_scan_headers``."""
    cdef Headers headers
    cdef Py_ssize_t body_start
    cdef Py_ssize_t cl_index       # the field index of the first Content-Length, or -1
    cdef object unterminated       # the error to raise once the start line is known


cdef bint _any_high(const unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept:
    """Whether p[a:b] holds a non-ASCII octet (eight at a time)."""
    cdef uint64_t acc = 0, word
    cdef Py_ssize_t i = a
    while i + 8 <= b:
        memcpy(&word, p + i, 8)
        acc |= word
        i += 8
    while i < b:
        acc |= p[i]
        i += 1
    return (acc & 0x8080808080808080u) != 0


cdef inline int _no_bare_cr(const unsigned char* p, Py_ssize_t a, Py_ssize_t eol,
                            int line) except -1:
    """The only CR allowed in the line p[a:eol] (eol: its LF) is the one before the LF."""
    cdef const void* cr = memchr(p + a, 13, eol - a)
    if cr != NULL and <const unsigned char*>cr != p + eol - 1:
        raise SIPParseError(f"line {line}: bare CR inside the line (lines end in CRLF)",
                            <const unsigned char*>cr - p, line=line)
    return 0


cdef _Block _scan_headers(bytes data, const unsigned char* p, Py_ssize_t n, Py_ssize_t pos,
                          int line):
    cdef _Block block = _Block.__new__(_Block)
    cdef Headers headers = Headers.__new__(Headers)
    cdef Py_ssize_t eol, end, ne, vs, ve, cs, ce, line_start
    cdef int value_line
    cdef int slot, hot
    cdef Py_ssize_t lengths = 0    # Content-Length fields (the serialiser adds one)
    cdef Py_ssize_t start = pos, i
    cdef str key, name
    cdef list pieces
    cdef bytes joined
    cdef object value
    headers._source = data
    block.headers = headers
    block.cl_index = -1
    block.unterminated = None
    while True:
        if pos >= n:
            # every line so far was complete: report it once the start line is checked,
            # with the header fields attached so that a request can still be answered
            block.unterminated = SIPParseError(
                f"line {line}: the header section is not terminated by an empty line", n,
                line=line)
            block.body_start = n
            break
        eol = _find_lf(p, pos, n)
        if eol < 0:
            raise SIPParseError(f"line {line}: the header section is not terminated by an "
                                "empty line (the last line has no CRLF)", pos, line=line)
        _no_bare_cr(p, pos, eol, line)
        end = eol - 1 if eol > pos and p[eol - 1] == 13 else eol
        if end == pos:
            block.body_start = eol + 1
            break
        line_start = pos
        value_line = line
        if _is_ws(p[pos]):
            raise SIPParseError(f"line {line}: starts with whitespace, but there is no header "
                                "before it to continue", pos, line=line)
        ne = pos
        while ne < end and CC[p[ne]] & T_TOKEN:
            ne += 1
        if ne == pos:
            raise SIPParseError(f"line {line}: expected a header name, found "
                                f"{_show(p, pos, end)}", pos, line=line)
        vs = _skip_ws(p, ne, end)
        if vs >= end or p[vs] != 58:
            if vs < end and vs == ne:
                raise SIPParseError(f"line {line}: header name {_show(p, pos, ne + 1)} holds "
                                    f"{_char(p[vs])}, which a header name cannot", vs, line=line)
            raise SIPParseError(f"line {line}: header {_show(p, pos, ne)} is not followed by ':'",
                                vs, line=line)
        slot = _lookup_hashed(p, pos, ne, _name_hash(p, pos, ne))
        if slot >= 0:
            key = <str>_slot_key[slot]
            name = <str>_slot_canon[slot]
            hot = _slot_hot[slot]
        else:
            name = _ascii(p, pos, ne)
            key = name.lower()
            hot = 0
        vs = _skip_ws(p, vs + 1, end)
        ve = end
        while ve > vs and _is_ws(p[ve - 1]):
            ve -= 1
        pos = eol + 1
        line += 1
        value = None
        if pos < n and _is_ws(p[pos]):
            # a folded value (RFC 3261 §7.3.1): each CRLF + whitespace becomes one SP
            pieces = [data[vs:ve]] if ve > vs else []
            while pos < n and _is_ws(p[pos]):
                eol = _find_lf(p, pos, n)
                if eol < 0:
                    raise SIPParseError(f"line {line}: the header section is not terminated "
                                        "by an empty line", pos, line=line)
                _no_bare_cr(p, pos, eol, line)
                ce = eol - 1 if eol > pos and p[eol - 1] == 13 else eol
                cs = _skip_ws(p, pos, ce)
                while ce > cs and _is_ws(p[ce - 1]):
                    ce -= 1
                if ce > cs:
                    pieces.append(data[cs:ce])
                pos = eol + 1
                line += 1
            joined = b" ".join(pieces)
            value = _decode_value(<const unsigned char*>PyBytes_AS_STRING(joined), 0,
                                  len(joined), value_line, name, line_start)
        if key is K_CONTENT_LENGTH:
            lengths += 1
            if block.cl_index < 0:
                block.cl_index = headers._n
        elif headers._n - lengths >= C_MAX_HEADERS:
            raise SIPParseError(f"line {value_line}: more than {C_MAX_HEADERS} header fields "
                                "(MAX_HEADERS)", line_start, line=value_line)
        headers._append(key, name, value, vs, ve, value_line, hot)
    if _any_high(p, start, block.body_start):
        # non-ASCII octets: every value that holds some must be UTF-8 (RFC 3261 TEXT-UTF8)
        for i in range(headers._n):
            if headers._f[i].value == NULL and _has_high(p, headers._f[i].va, headers._f[i].vb):
                headers._decode(i)
    return block


cdef bint _has_high(const unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept:
    cdef Py_ssize_t i
    for i in range(a, b):
        if p[i] & 0x80:
            return True
    return False


cdef int _check_version(const unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept:
    """0: SIP/2.0; 1: another well-formed SIP-Version; -1: not a SIP-Version at all."""
    cdef Py_ssize_t i, j
    if b - a < 7 or not _ci_equal(p, a, a + 3, b"sip") or p[a + 3] != 47:
        return -1
    i = _scan(p, a + 4, b, T_DIGIT)
    if i == a + 4 or i >= b or p[i] != 46:
        return -1
    j = _scan(p, i + 1, b, T_DIGIT)
    if j == i + 1 or j != b:
        return -1
    if b - a == 7 and p[a + 4] == 50 and p[a + 6] == 48:
        return 0
    return 1


cdef int _parse_request_line(RequestCore req, bytes data, const unsigned char* p,
                             Py_ssize_t a, Py_ssize_t b) except -1:
    cdef Py_ssize_t m = _scan(p, a, b, T_TOKEN), u, v, w
    cdef UriSpans s
    if m == a:
        raise SIPParseError(f"line 1: expected a method or 'SIP/2.0' at the start, found "
                            f"{_show(p, a, b)}", a, line=1, status=0)
    if m >= b or p[m] != 32:
        if m < b and _is_ws(p[m]):
            raise SIPParseError("line 1: the method must be followed by a single SP, not a tab",
                                m, line=1)
        raise SIPParseError(f"line 1: method {_show(p, a, m + 1 if m < b else b)} is not a "
                            "token followed by SP", m, line=1, status=0 if m >= b else 400)
    u = m + 1
    if u < b and p[u] == 32:
        raise SIPParseError("line 1: more than one SP between the method and the Request-URI "
                            "(RFC 3261 §7.1 allows exactly one)", u, line=1)
    v = u
    while v < b and p[v] != 32:
        v += 1
    if v >= b:
        raise SIPParseError("line 1: request line has no SIP-Version after the Request-URI",
                            b, line=1)
    if memchr(p + v + 1, 32, b - v - 1) != NULL:
        if v + 1 < b and p[v + 1] == 32:
            raise SIPParseError("line 1: more than one SP between the Request-URI and the "
                                "SIP-Version (RFC 3261 §7.1 allows exactly one)", v + 1, line=1)
        if p[b - 1] == 32:
            raise SIPParseError("line 1: whitespace after the SIP-Version at the end of the "
                                "request line", b - 1, line=1)
        w = b - 1
        while p[w] != 32:
            w -= 1
        raise SIPParseError(f"line 1: Request-URI {_show(p, u, w)} holds whitespace, which a "
                            "Request-URI cannot (escape it as %20)", v, line=1)
    cdef int version = _check_version(p, v + 1, b)
    if version < 0:
        raise SIPParseError(f"line 1: {_show(p, v + 1, b)} is not a SIP-Version like SIP/2.0",
                            v + 1, line=1)
    if version > 0:
        raise SIPParseError(f"line 1: SIP version {_show(p, v + 1, b)} is not supported "
                            "(only SIP/2.0)", v + 1, line=1, status=505)
    try:
        _uri_spans(p, u, v, &s)
    except SIPParseError as exc:
        raise SIPParseError(f"line 1: Request-URI {_show(p, u, v)}: {exc.reason}", exc.offset,
                            line=1) from None
    if s.xa < s.xb and (s.kind == K_SIP or s.kind == K_SIPS):
        raise SIPParseError(f"line 1: Request-URI {_show(p, u, v)} has a header part ('?'), "
                            "which RFC 3261 §19.1.1 forbids in a Request-URI", u, line=1)
    req._method = _ascii(p, a, m)
    req._uri = _make_uri(data, p, &s)
    return 0


cdef int _parse_status_line(ResponseCore resp, const unsigned char* p, Py_ssize_t a,
                            Py_ssize_t b) except -1:
    cdef Py_ssize_t sp = a, c, r
    while sp < b and p[sp] != 32:
        sp += 1
    cdef int version = _check_version(p, a, sp)
    if version < 0:
        raise SIPParseError(f"line 1: {_show(p, a, sp)} is not a SIP-Version like SIP/2.0",
                            a, line=1, status=0)
    if version > 0:
        raise SIPParseError(f"line 1: SIP version {_show(p, a, sp)} is not supported "
                            "(only SIP/2.0)", a, line=1, status=0)
    if sp >= b:
        raise SIPParseError("line 1: status line has no status code", b, line=1, status=0)
    c = _scan(p, sp + 1, b, T_DIGIT)
    if c - (sp + 1) != 3 or (c < b and p[c] != 32):
        r = sp + 1
        while r < b and p[r] != 32:
            r += 1
        raise SIPParseError(f"line 1: status code {_show(p, sp + 1, r)} is not three digits",
                            sp + 1, line=1, status=0)
    cdef int status = (p[sp + 1] - 48) * 100 + (p[sp + 2] - 48) * 10 + (p[sp + 3] - 48)
    if status < 100 or status > 699:
        raise SIPParseError(f"line 1: status code {status} is outside 100..699", sp + 1,
                            line=1, status=0)
    r = c + 1 if c < b else b
    if _check_line(p, r, b, 1):
        resp._reason = _decode_value(p, r, b, 1, "Reason-Phrase", r)
    else:
        resp._reason = _ascii(p, r, b)
    resp._status = status
    return 0


cdef object _body(bytes data, Py_ssize_t n, _Block block):
    """The body framed by Content-Length (the rest of the datagram when it is absent)."""
    cdef Py_ssize_t start = block.body_start
    cdef Py_ssize_t available = n - start
    cdef Py_ssize_t a, b, i
    cdef const unsigned char* cp
    cdef long long length
    cdef Headers headers = block.headers
    if block.cl_index < 0:
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + start, available) \
            if available else b""
    i = block.cl_index
    headers._span(i, &cp, &a, &b)
    cdef int line = headers._f[i].line
    if a == b or _scan(cp, a, b, T_DIGIT) != b:
        raise SIPParseError(f"line {line}: header 'Content-Length': {_show(cp, a, b)} is not a "
                            "non-negative decimal number", headers._offset(line), line=line,
                            header="Content-Length")
    length = _digits(cp, a, b, C_MAX_MESSAGE)
    if length < 0 or length > available:
        raise SIPParseError(f"line {line}: header 'Content-Length': {_ascii(cp, a, b)} octets "
                            f"announced but only {available} follow the header section",
                            headers._offset(line), line=line, header="Content-Length")
    if length == 0:
        return b""
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + start, <Py_ssize_t>length)


def parse_message(data):
    """Parse one datagram into a Request or Response (``gosipd.sip.parse``).

    Checks framing (Content-Length, with trailing octets ignored; no Content-Length
    means the rest of the datagram, as over UDP), the start line and the header names;
    header values are parsed when first read. Raises SIPParseError, whose ``headers``
    (when set) let ``Response.for_malformed`` answer a broken request.
    """
    cdef bytes buf
    if isinstance(data, bytes):
        buf = <bytes>data
    elif isinstance(data, (bytearray, memoryview)):
        buf = bytes(data)
    else:
        raise TypeError(f"a SIP message is bytes, not {type(data).__name__}")
    cdef Py_ssize_t n = len(buf)
    if n > C_MAX_MESSAGE:
        raise SIPParseError(f"message of {n} octets exceeds the {C_MAX_MESSAGE} octet limit "
                            "(MAX_MESSAGE_SIZE)", C_MAX_MESSAGE, status=0)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t pos = 0, eol, sl_end
    while pos < n and (p[pos] == 13 or p[pos] == 10):
        pos += 1
    if pos == n:
        raise SIPParseError("no start line: the datagram holds only CR/LF (a keep-alive)"
                            if n else "empty datagram", 0, status=0)
    cdef Py_ssize_t sl_start = pos
    eol = _find_lf(p, pos, n)
    if eol < 0:
        raise SIPParseError("line 1: the start line is not terminated by CRLF", n, line=1,
                            status=0)
    sl_end = eol - 1 if eol > pos and p[eol - 1] == 13 else eol
    _check_line(p, sl_start, sl_end, 1)
    cdef bint is_response = (sl_end - sl_start >= 4
                             and _ci_equal(p, sl_start, sl_start + 3, b"sip")
                             and p[sl_start + 3] == 47)
    cdef _Block block
    try:
        block = _scan_headers(buf, p, n, eol + 1, 2)
    except SIPParseError as exc:
        exc.is_request = not is_response
        if is_response:
            exc.status = 0
        raise
    cdef MessageCore message
    try:
        if is_response:
            message = _new(_RESPONSE)
            _parse_status_line(<ResponseCore>message, p, sl_start, sl_end)
        else:
            message = _new(_REQUEST)
            _parse_request_line(<RequestCore>message, buf, p, sl_start, sl_end)
        if block.unterminated is not None:
            raise block.unterminated
        message._body = _body(buf, n, block)
    except SIPParseError as exc:
        exc.headers = block.headers
        exc.is_request = not is_response
        if is_response:
            exc.status = 0
        raise
    message._headers = block.headers
    return message


def parse_mime_part(data):
    """Frame one MIME body part (RFC 2046): ``(headers, body)``.

    A part with no header fields starts with its empty line.
    """
    cdef bytes buf = bytes(data)
    cdef Py_ssize_t n = len(buf)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef _Block block = _scan_headers(buf, p, n, 0, 1)
    if block.unterminated is not None:
        raise block.unterminated
    return (block.headers, buf[block.body_start:])
