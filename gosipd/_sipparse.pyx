# cython: language_level=3
"""The SIP parser's hot path: bytes -> start line, ordered headers and body, and the
immutable values every message is read through (URI, NameAddr, Via, CSeq, Params).

Every datagram the daemon receives passes through ``parse_message`` first, and the
engine then reads the same handful of typed headers from it (Via, From, To, Call-ID,
CSeq, Contact, Max-Forwards). Both are written here, in C-level loops over the raw
octets, because a pure-Python parser costs 20-80 µs per message and ours must stay
under 5 µs. The Python model in ``gosipd.sip`` wraps these pieces; nothing here does
I/O or keeps state between calls.

The grammar is RFC 3261 §25 (with RFC 3966 for tel: URIs and RFC 5118 for IPv6
references). ``parse_message`` checks framing, the start line and header names;
header *values* are parsed when they are first read, by the typed parsers below,
which reject what the ABNF rejects and say where and why. Everything raises
``SIPParseError`` (a ValueError) and nothing else, for any input.

Two deliberate leniencies, both common in deployed stacks: a line may end in a bare
LF (we always write CRLF), and a Status-Line may omit the SP before an empty reason
phrase.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeUTF8
from libc.string cimport memchr

import collections.abc
import ipaddress

__all__ = [
    "MAX_HEADERS",
    "MAX_MESSAGE_SIZE",
    "URI",
    "CSeq",
    "NameAddr",
    "Params",
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

#: The largest datagram we accept (64 KiB); UDP cannot carry more anyway.
MAX_MESSAGE_SIZE = 65_536
#: The most header fields one message may carry, counting each value of a
#: comma-separated list header (a Via with 3 hops counts 3).
MAX_HEADERS = 256

DEF C_MAX_MESSAGE = 65536
DEF C_MAX_HEADERS = 256
DEF MAX_CSEQ = 2147483647          # RFC 3261 §8.1.1.5: less than 2**31
DEF MAX_UINT32 = 4294967295


# --------------------------------------------------------------------------- errors

class SIPParseError(ValueError):
    """A SIP message, or one of its header values, does not follow the grammar.

    ``reason`` is a sentence for a person ("line 3: header 'CSeq': ..."), ``offset``
    the byte offset in the datagram (or in the header value, for a value parsed on
    its own; -1 when unknown), ``line`` the 1-based line number (0 when unknown),
    ``header`` the canonical header name involved, if any, and ``status`` the SIP
    response a request that fails this way is owed (400, 505, or 0 when nothing
    can be answered, e.g. a datagram that is not SIP at all).

    When the start line and the header section could be framed, ``headers`` holds
    them (a ``gosipd.sip.Headers``) and ``is_request`` says whether the start line
    looked like a request, so that a 400/505 can still be sent
    (``gosipd.sip.Response.for_malformed``).
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
        self._raw_headers = None

    def __reduce__(self):
        return (_rebuild_error, (self.reason, self.offset, self.line, self.header, self.status))


def _rebuild_error(reason, offset, line, header, status):
    return SIPParseError(reason, offset, line=line, header=header, status=status)


# --------------------------------------------------------------------------- characters

cdef unsigned int CC[256]

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


cdef void _mark(bytes chars, unsigned int flag):
    cdef unsigned char c
    for c in chars:
        CC[c] |= flag


cdef void _init_tables():
    cdef int i
    for i in range(256):
        CC[i] = 0
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


_init_tables()


cdef inline bint _is_ws(unsigned char c) noexcept:
    return c == 32 or c == 9


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
    return f"octet 0x{c:02x}"


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

# spelling as written (exact case first, then lower case) -> (canonical, key, is_list)
cdef dict _NAMES = {}
cdef set _LIST_KEYS = set()
#: compact form (lower case) -> canonical name
COMPACT_FORMS = {}


cdef void _init_names():
    cdef tuple info
    for canonical, compact, is_list in _HEADERS:
        info = (canonical, canonical.lower(), is_list)
        _NAMES[canonical] = info
        _NAMES[canonical.lower()] = info
        if is_list:
            _LIST_KEYS.add(canonical.lower())
        if compact is not None:
            _NAMES[compact] = info
            _NAMES[compact.upper()] = info
            COMPACT_FORMS[compact] = canonical


_init_names()


cdef tuple _name_info(str name):
    cdef tuple info = _NAMES.get(name)
    if info is not None:
        return info
    cdef str key = name.lower()
    info = _NAMES.get(key)
    if info is not None:
        return info
    return (name, key, False)


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
    cdef tuple info = _name_info(name)
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
        if c < 32 and c != 9 or c == 127:
            raise SIPParseError(f"quoted string holds control character {_char(c)}"
                                " (write it as a quoted-pair)", i)
        i += 1
    raise SIPParseError(f"unterminated quoted string {_show(p, start, n)}", start)


cdef str _unquote(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    """The contents of the quoted string p[a:b] (with quotes), quoted-pairs resolved."""
    cdef const void* bs = memchr(p + a + 1, 92, b - a - 2) if b - a > 2 else NULL
    if bs == NULL:
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


cdef object _digits_value(const unsigned char* p, Py_ssize_t a, Py_ssize_t b,
                          unsigned long long maximum):
    """The value of 1*DIGIT p[a:b], or None if it exceeds ``maximum``."""
    cdef unsigned long long v = 0
    cdef Py_ssize_t i
    if b - a > 19:
        return None
    for i in range(a, b):
        v = v * 10 + (p[i] - 48)
    if v > maximum:
        return None
    return v


def parse_uint(str text, unsigned long long maximum, str what):
    """A non-negative decimal (``1*DIGIT``, surrounding LWS allowed) no larger than ``maximum``."""
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(text, &n)
    cdef Py_ssize_t a = _skip_ws(p, 0, n)
    cdef Py_ssize_t b = _scan(p, a, n, T_DIGIT)
    cdef Py_ssize_t end = _skip_ws(p, b, n)
    if b == a or end != n:
        raise SIPParseError(f"{what} {text!r} is not a non-negative decimal number", a)
    value = _digits_value(p, a, b, maximum)
    if value is None:
        raise SIPParseError(f"{what} {text.strip()!r} exceeds {maximum}", a)
    return value


def parse_call_id(str text):
    """A Call-ID (``word ["@" word]``), returned unchanged if valid."""
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(text, &n)
    cdef Py_ssize_t i = _scan(p, 0, n, T_WORD)
    if i == 0:
        raise SIPParseError(f"Call-ID {text!r} is empty or does not start with a word character", 0)
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
    cdef unsigned char first = 0
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
        first = p[label_start]
        if i == b:
            return (CC[first] & T_ALPHA) != 0
        i += 1


cdef str _check_host(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    """None if p[a:b] is a hostname or IPv4address, else the reason it is not."""
    if a >= b:
        return "empty host"
    cdef Py_ssize_t i = _scan(p, a, b, T_HOST)
    if i != b:
        return f"host {_show(p, a, b)} holds {_char(p[i])}"
    if _valid_ipv4(p, a, b) or _valid_hostname(p, a, b):
        return None
    cdef Py_ssize_t j
    for j in range(a, b):
        if not (48 <= p[j] <= 57 or p[j] == 46):
            return f"{_show(p, a, b)} is not a valid host name"
    return f"{_show(p, a, b)} is not a valid IPv4 address"


cdef Py_ssize_t _parse_host(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                            list out) except -1:
    """Parse host at p[i:]: append the bare host (IPv6 without brackets) to out; return end."""
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
        out.append(_ascii(p, i + 1, rb))
        return rb + 1
    end = _scan(p, i, n, T_HOST)
    cdef Py_ssize_t k = i
    cdef int colons = 0
    while k < n and (CC[p[k]] & T_HEX or p[k] == 58 or p[k] == 46):
        colons += p[k] == 58
        k += 1
    if colons >= 2:
        # an IPv6 address without its brackets (RFC 5118 §4.2)
        raise SIPParseError(f"IPv6 address {_show(p, i, k)} must be enclosed in '[' ']'", i)
    reason = _check_host(p, i, end)
    if reason is not None:
        raise SIPParseError(reason, i)
    out.append(_ascii(p, i, end))
    return end


def _host_or_raise(str host):
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
    while i < n:
        if CC[p[i]] & flag:
            i += 1
        elif p[i] == 37:
            if i + 2 >= n or _hexval(p[i + 1]) < 0 or _hexval(p[i + 2]) < 0:
                raise SIPParseError(f"'%' at {_show(p, i, n)} is not followed by two hex digits",
                                    i)
            i += 3
        else:
            break
    return i


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
            if isinstance(items, collections.abc.Mapping):
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

    cdef tuple _lower_keys(self):
        if self._keys is None:
            self._keys = tuple([item[0].lower() for item in self._items])
        return self._keys

    cdef int _find(self, str name) except -2:
        cdef tuple item
        cdef int i = 0
        for item in self._items:
            if item[0] == name:
                return i
            i += 1
        cdef str key = name.lower()
        i = 0
        for k in self._lower_keys():
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
        """A copy with ``name`` set to ``value`` (None: a flag such as ``;lr``), in place if present."""
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
        cdef Params result = Params.__new__(Params)
        result._items = tuple(out)
        return result

    def without(self, *names):
        """A copy without the named parameters."""
        cdef set keys = {name.lower() for name in names}
        cdef Params result = Params.__new__(Params)
        result._items = tuple([item for item in self._items if item[0].lower() not in keys])
        return result

    def __eq__(self, other):
        if isinstance(other, Params):
            return self._canonical() == (<Params>other)._canonical()
        if isinstance(other, collections.abc.Mapping):
            return self._canonical() == Params(other)._canonical()
        return NotImplemented

    cdef frozenset _canonical(self):
        return frozenset([(item[0].lower(), item[1]) for item in self._items])

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
        if isinstance(params, collections.abc.Mapping):
            updates.update(params)
        else:
            updates.update(dict(params))
    updates.update(kw)
    for name, value in updates.items():
        if value is None:
            result = result.without(name)
        elif value is True:
            result = result.with_param(name, None)
        elif value is False:
            result = result.without(name)
        elif isinstance(value, int):
            result = result.with_param(name, str(value))
        elif isinstance(value, str):
            result = result.with_param(name, value)
        else:
            raise TypeError(f"parameter {name!r}: {type(value).__name__} is not str, int or bool")
    return result


cdef Py_ssize_t _parse_generic_params(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                                      list out, bint via) except -1:
    """Parse ``*( SEMI generic-param )`` from p[i:]; return where it stopped.

    generic-param = token [ EQUAL gen-value ], gen-value = token / host / quoted-string.
    In a Via (``via``), a value may also be a bare IPv6 address (via-received).
    """
    cdef Py_ssize_t q, name_end, r, ve
    cdef const void* hit
    cdef object value
    while True:
        q = _skip_ws(p, i, n)
        if q >= n or p[q] != 59:
            return q
        q = _skip_ws(p, q + 1, n)
        name_end = _scan(p, q, n, T_TOKEN)
        if name_end == q:
            if q >= n or p[q] == 59:
                raise SIPParseError("empty parameter (';' with no name after it)", q)
            raise SIPParseError(f"parameter name expected at {_show(p, q, n)}, found {_char(p[q])}",
                                q)
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
            value = _sub(p, r, ve)
            i = ve
        else:
            value = None
            i = name_end
        out.append((_ascii(p, q, name_end), value))


def parse_params(str text):
    """Header parameters ``*( SEMI generic-param )`` (text may be empty) as Params."""
    cdef Py_ssize_t n
    cdef const unsigned char* p = _utf8(text, &n)
    cdef list items = []
    cdef Py_ssize_t end = _parse_generic_params(p, 0, n, items, False)
    if end != n:
        raise SIPParseError(f"unexpected {_char(p[end])} at {_show(p, end, n)}; "
                            "parameters must be ';name=value'", end)
    return _params(items)


# --------------------------------------------------------------------------- URI

cdef object _MISSING = object()


cdef class URI:
    """A URI as SIP uses it: sip:/sips: (RFC 3261 §19.1), tel: (RFC 3966), or any other
    absolute URI kept opaque.

    For sip/sips: ``user``, ``password`` (%-decoded, or None), ``host`` (IPv6 without
    its brackets), ``port`` (int or None), ``params`` and ``headers`` (Params of
    %-decoded values). For tel: the number is ``user`` and its parameters ``params``.
    Any other scheme keeps everything after the colon in ``opaque``.

    Equality follows RFC 3261 §19.1.4 (and RFC 3966 §4 for tel:). ``str()`` gives the
    text as it was received for a parsed URI and the canonical form (escapes only where
    needed) for one that was built or changed.
    """

    cdef readonly str scheme
    cdef readonly object user
    cdef readonly object password
    cdef readonly str host
    cdef readonly object port
    cdef readonly Params params
    cdef readonly Params headers
    cdef readonly object opaque
    cdef object _text
    cdef object _hash

    def __init__(self, *, str scheme="sip", user=None, password=None, str host="", port=None,
                 params=(), headers=(), opaque=None):
        cdef str s = scheme.lower()
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(s, &n)
        if n == 0 or not (CC[p[0]] & T_ALPHA) or _scan(p, 0, n, T_SCHEME) != n:
            raise ValueError(f"{scheme!r} is not a URI scheme")
        self.scheme = s
        self.params = _coerce_params(params)
        self.headers = _coerce_params(headers)
        self._text = None
        self._hash = None
        if s == "sip" or s == "sips":
            if opaque is not None:
                raise ValueError(f"a {s}: URI has no opaque part")
            if not host:
                raise ValueError(f"a {s}: URI needs a host")
            self.host = _host_or_raise(host)
            if port is not None and not (isinstance(port, int) and 0 <= port <= 65535):
                raise ValueError(f"port {port!r} is not an integer in 0..65535")
            if user is not None and not isinstance(user, str):
                raise TypeError("user must be str or None")
            if user == "":
                raise ValueError("user must be None or non-empty")
            if password is not None and user is None:
                raise ValueError("a password needs a user")
            self.user = user
            self.password = password
            self.port = port
            self.opaque = None
        elif s == "tel":
            if not user:
                raise ValueError("a tel: URI needs the number as user")
            if host or port is not None or password is not None or opaque is not None:
                raise ValueError("a tel: URI has only a number and parameters")
            self.user = user
            self.password = None
            self.host = ""
            self.port = None
            self.opaque = None
            if len(self.headers):
                raise ValueError("a tel: URI has no headers")
        else:
            if not isinstance(opaque, str) or not opaque:
                raise ValueError(f"a {s}: URI needs its opaque part (everything after ':')")
            if user is not None or host or port is not None or password is not None:
                raise ValueError(f"only sip, sips and tel URIs have components; "
                                 f"{s}: takes opaque=")
            if len(self.params) or len(self.headers):
                raise ValueError(f"only sip, sips and tel URIs have parameters")
            self.user = None
            self.password = None
            self.host = ""
            self.port = None
            self.opaque = opaque

    @staticmethod
    def parse(str text):
        """Parse a URI written bare (``sip:alice@example.com;transport=tcp``)."""
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        return _parse_uri(p, 0, n, text)

    # -- convenience readers

    @property
    def transport(self):
        """The ``transport`` parameter in lower case, or None."""
        value = self.params.get("transport")
        return value.lower() if value is not None else None

    @property
    def lr(self):
        """Whether the URI carries the loose-routing ``lr`` parameter."""
        return "lr" in self.params

    @property
    def maddr(self):
        return self.params.get("maddr")

    @property
    def is_sip(self):
        """True for sip: and sips: URIs."""
        return self.scheme == "sip" or self.scheme == "sips"

    @property
    def host_port(self):
        """``host[:port]`` as written in a URI (IPv6 in brackets)."""
        if self.port is None:
            return _host_text(self.host)
        return f"{_host_text(self.host)}:{self.port}"

    # -- copies with changes

    def replace(self, *, scheme=_MISSING, user=_MISSING, password=_MISSING, host=_MISSING,
                port=_MISSING, params=_MISSING, headers=_MISSING, opaque=_MISSING):
        """A copy with the given components replaced."""
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

    # -- text

    def __str__(self):
        if self._text is None:
            self._text = self._canonical_text()
        return self._text

    cdef str _canonical_text(self):
        cdef list out = [self.scheme, ":"]
        if self.opaque is not None:
            out.append(self.opaque)
            return "".join(out)
        if self.scheme == "tel":
            out.append(_escape(self.user, T_TELNUM))
        else:
            if self.user is not None:
                out.append(_escape(self.user, T_USER))
                if self.password is not None:
                    out.append(":")
                    out.append(_escape(self.password, T_PASS))
                out.append("@")
            out.append(_host_text(self.host))
            if self.port is not None:
                out.append(f":{self.port}")
        for name, value in self.params._items:
            out.append(";")
            out.append(_escape(name, T_PARAM))
            if value is not None:
                out.append("=")
                out.append(_escape(value, T_PARAM))
        cdef str sep = "?"
        for name, value in self.headers._items:
            out.append(sep)
            out.append(_escape(name, T_HNV))
            out.append("=")
            out.append(_escape(value or "", T_HNV))
            sep = "&"
        return "".join(out)

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


cdef frozenset _SPECIAL_URI_PARAMS = frozenset(["user", "ttl", "method", "maddr", "transport"])


cdef str _tel_number_key(str number):
    return number.replace("-", "").replace(".", "").replace("(", "").replace(")", "").lower()


cdef tuple _uri_hash_key(URI u):
    if u.opaque is not None:
        return (u.scheme, u.opaque)
    if u.scheme == "tel":
        return (u.scheme, _tel_number_key(u.user))
    special = frozenset([(k.lower(), (v or "").lower()) for k, v in u.params._items
                         if k.lower() in _SPECIAL_URI_PARAMS])
    hdrs = frozenset([(k.lower(), v) for k, v in u.headers._items])
    return (u.scheme, u.user, u.password, _host_key(u.host), u.port, special, hdrs)


cdef bint _uri_equal(URI a, URI b):
    if a.scheme != b.scheme:
        return False
    if a.opaque is not None or b.opaque is not None:
        return a.opaque == b.opaque
    cdef dict pa, pb
    if a.scheme == "tel":
        if _tel_number_key(a.user) != _tel_number_key(b.user):
            return False
        pa = {k.lower(): (v or "").lower() for k, v in a.params._items}
        pb = {k.lower(): (v or "").lower() for k, v in b.params._items}
        return pa == pb
    if a.user != b.user or a.password != b.password or a.port != b.port:
        return False
    if a.host.lower() != b.host.lower() and _host_key(a.host) != _host_key(b.host):
        return False
    pa = {k.lower(): (v or "").lower() for k, v in a.params._items}
    pb = {k.lower(): (v or "").lower() for k, v in b.params._items}
    for key, value in pa.items():
        if key in pb:
            if pb[key] != value:
                return False
        elif key in _SPECIAL_URI_PARAMS:
            return False
    for key in pb:
        if key in _SPECIAL_URI_PARAMS and key not in pa:
            return False
    ha = {k.lower(): v for k, v in a.headers._items}
    hb = {k.lower(): v for k, v in b.headers._items}
    return ha == hb


cdef URI _parse_uri(const unsigned char* p, Py_ssize_t a, Py_ssize_t n, object text):
    """Parse the URI p[a:n] (nothing else around it)."""
    cdef Py_ssize_t i = a, j
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
    cdef str scheme = _ascii(p, a, i).lower()
    cdef URI u = URI.__new__(URI)
    u.scheme = scheme
    u._hash = None
    u.params = _EMPTY
    u.headers = _EMPTY
    u.host = ""
    u.user = None
    u.password = None
    u.port = None
    u.opaque = None
    if scheme == "sip" or scheme == "sips":
        _parse_sip_uri(u, p, i + 1, n)
    elif scheme == "tel":
        _parse_tel_uri(u, p, i + 1, n)
    else:
        j = _scan_escaped(p, i + 1, n, T_URIC)
        if j == i + 1:
            raise SIPParseError(f"{scheme}: URI has nothing after the scheme", j)
        if j != n:
            raise SIPParseError(f"{_char(p[j])} is not allowed in a URI "
                                f"({_show(p, a, n)})", j)
        u.opaque = _ascii(p, i + 1, n)
    if text is not None and a == 0:
        u._text = text
    else:
        u._text = _ascii(p, a, n)
    return u


cdef int _parse_sip_uri(URI u, const unsigned char* p, Py_ssize_t i, Py_ssize_t n) except -1:
    cdef const void* at = memchr(p + i, 64, n - i)
    cdef Py_ssize_t at_i, j, k, name_end
    cdef list host = []
    cdef list params
    cdef object port
    if at != NULL:
        at_i = <const unsigned char*>at - p
        j = _scan_escaped(p, i, at_i, T_USER)
        if j == i:
            if j < at_i and p[j] == 58:
                raise SIPParseError("URI has a password but no user", j)
            raise SIPParseError("URI has '@' but no user before it" if j == at_i else
                                f"{_char(p[j])} is not allowed in the user part of a URI", j)
        u.user = _unescape(p, i, j)
        if j < at_i and p[j] == 58:
            k = _scan_escaped(p, j + 1, at_i, T_PASS)
            if k != at_i:
                raise SIPParseError(f"{_char(p[k])} is not allowed in the password of a URI", k)
            u.password = _unescape(p, j + 1, at_i)
        elif j != at_i:
            raise SIPParseError(f"{_char(p[j])} is not allowed in the user part of a URI "
                                "(escape it as %XX)", j)
        i = at_i + 1
    if i >= n:
        raise SIPParseError(f"{u.scheme}: URI has no host", i)
    i = _parse_host(p, i, n, host)
    u.host = host[0]
    if i < n and p[i] == 58:
        j = _scan(p, i + 1, n, T_DIGIT)
        if j == i + 1:
            raise SIPParseError("':' after the host is not followed by a port number", i + 1)
        port = _digits_value(p, i + 1, j, 65535)
        if port is None:
            raise SIPParseError(f"port {_show(p, i + 1, j)} is out of range 0..65535", i + 1)
        u.port = port
        i = j
    if i < n and p[i] == 59:
        params = []
        while i < n and p[i] == 59:
            j = _scan_escaped(p, i + 1, n, T_PARAM)
            if j == i + 1:
                raise SIPParseError("empty URI parameter (';' with no name)", i + 1)
            name_end = j
            if j < n and p[j] == 61:
                k = _scan_escaped(p, j + 1, n, T_PARAM)
                if k == j + 1:
                    raise SIPParseError(f"URI parameter {_show(p, i + 1, j)} has '=' but no value",
                                        j + 1)
                params.append((_unescape(p, i + 1, name_end), _unescape(p, j + 1, k)))
                i = k
            else:
                params.append((_unescape(p, i + 1, name_end), None))
                i = j
        u.params = _params(params)
    if i < n and p[i] == 63:
        params = []
        while True:
            j = _scan_escaped(p, i + 1, n, T_HNV)
            if j == i + 1 or j >= n or p[j] != 61:
                raise SIPParseError("URI header must be 'name=value'", i + 1)
            k = _scan_escaped(p, j + 1, n, T_HNV)
            params.append((_unescape(p, i + 1, j), _unescape(p, j + 1, k)))
            i = k
            if i >= n or p[i] != 38:
                break
        u.headers = _params(params)
    if i != n:
        raise SIPParseError(f"{_char(p[i])} is not allowed here in a {u.scheme}: URI "
                            f"({_show(p, i, n)})", i)
    return 0


cdef int _parse_tel_uri(URI u, const unsigned char* p, Py_ssize_t i, Py_ssize_t n) except -1:
    cdef Py_ssize_t j = _scan(p, i, n, T_TELNUM), k
    cdef list params = []
    if j == i:
        raise SIPParseError("tel: URI has no number", i)
    if memchr(p + i + 1, 43, j - i - 1) != NULL:
        raise SIPParseError("'+' may only start a tel: number", i)
    u.user = _ascii(p, i, j)
    i = j
    while i < n and p[i] == 59:
        j = _scan_escaped(p, i + 1, n, T_PARAM)
        if j == i + 1:
            raise SIPParseError("empty tel: URI parameter", i + 1)
        if j < n and p[j] == 61:
            k = _scan_escaped(p, j + 1, n, T_PARAM)
            if k == j + 1:
                raise SIPParseError("tel: URI parameter has '=' but no value", j + 1)
            params.append((_unescape(p, i + 1, j), _unescape(p, j + 1, k)))
            i = k
        else:
            params.append((_unescape(p, i + 1, j), None))
            i = j
    if i != n:
        raise SIPParseError(f"{_char(p[i])} is not allowed in a tel: URI", i)
    u.params = _params(params)
    return 0


# --------------------------------------------------------------------------- NameAddr

cdef class NameAddr:
    """A name-addr or addr-spec with header parameters: the value of From, To, Contact,
    Route, Record-Route, Reply-To, Refer-To, P-Asserted-Identity and the like.

    ``display_name`` is unquoted (None when absent), ``uri`` a URI, ``params`` the
    header parameters (``tag``, ``expires``, ``q``, ...) with values as written.
    ``str()`` always writes the name-addr form: ``"Name" <uri>;tag=x``.
    """

    cdef readonly object display_name
    cdef readonly URI uri
    cdef readonly Params params
    cdef object _text

    def __init__(self, uri, display_name=None, params=()):
        if isinstance(uri, str):
            uri = URI.parse(uri)
        if not isinstance(uri, URI):
            raise TypeError(f"uri must be a URI or str, not {type(uri).__name__}")
        if display_name is not None:
            if not isinstance(display_name, str):
                raise TypeError("display_name must be str or None")
            quote(display_name)   # refuses CR/LF
        self.uri = uri
        self.display_name = display_name
        self.params = _coerce_params(params)
        self._text = None

    @staticmethod
    def parse(str text):
        """Parse ``"Name" <uri>;params``, ``Name <uri>`` or a bare ``uri;params``."""
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        return _parse_name_addr(p, n)

    @property
    def tag(self):
        """The ``tag`` parameter, or None."""
        return self.params.get("tag")

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
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(tag, &n)
        if n == 0 or _scan(p, 0, n, T_TOKEN) != n:
            raise ValueError(f"tag {tag!r} is not a token")
        return self.replace(params=self.params.with_param("tag", tag))

    def with_params(self, params=None, /, **kw):
        """A copy with header parameters set (``True``: flag; ``None``: removed)."""
        return self.replace(params=_apply_params(self.params, params, kw))

    def without_params(self, *names):
        return self.replace(params=self.params.without(*names))

    def __str__(self):
        if self._text is None:
            if self.display_name is not None:
                self._text = f"{quote(self.display_name)} <{self.uri}>{self.params}"
            else:
                self._text = f"<{self.uri}>{self.params}"
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


cdef NameAddr _parse_name_addr(const unsigned char* p, Py_ssize_t n):
    cdef Py_ssize_t i = _skip_ws(p, 0, n), j, start, uri_end
    cdef const void* hit
    cdef object display = None
    cdef list words
    cdef URI uri
    cdef list params = []
    if i >= n:
        raise SIPParseError("empty value where a name-addr or URI was expected", i)
    if p[i] == 34:
        j = _scan_quoted(p, i, n)
        display = _unquote(p, i, j)
        i = _skip_ws(p, j, n)
        if i >= n or p[i] != 60:
            raise SIPParseError("quoted display name must be followed by '<' URI '>'", i)
    elif p[i] != 60:
        j = _scan(p, i, n, T_TOKEN)
        if j < n and p[j] == 58 and j > i:
            # addr-spec: a bare URI; its parameters belong to the header
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
            uri = _parse_uri(p, i, uri_end, None)
            i = _parse_generic_params(p, uri_end, n, params, False)
            if i != n:
                raise SIPParseError(f"unexpected {_show(p, i, n)} after the URI", i)
            return _make_name_addr(None, uri, params)
        words = []
        while True:
            j = _scan(p, i, n, T_TOKEN)
            if j == i:
                if i < n and p[i] == 60:
                    break
                if i >= n:
                    raise SIPParseError("display name is not followed by '<' URI '>'", i)
                raise SIPParseError(f"display name holds {_char(p[i])}; a display name with "
                                    "such characters must be quoted", i)
            words.append(_sub(p, i, j))
            i = _skip_ws(p, j, n)
        display = " ".join(words)
    # here p[i] == '<'
    start = i + 1
    hit = memchr(p + start, 62, n - start)
    if hit == NULL:
        raise SIPParseError("'<' is not closed by '>'", i)
    uri_end = <const unsigned char*>hit - p
    if start < uri_end and (_is_ws(p[start]) or _is_ws(p[uri_end - 1])):
        raise SIPParseError("whitespace inside '<' '>' around the URI", start)
    uri = _parse_uri(p, start, uri_end, None)
    i = _parse_generic_params(p, uri_end + 1, n, params, False)
    if i != n:
        raise SIPParseError(f"unexpected {_show(p, i, n)} after '>'", i)
    return _make_name_addr(display, uri, params)


cdef NameAddr _make_name_addr(object display, URI uri, list params):
    cdef NameAddr na = NameAddr.__new__(NameAddr)
    na.display_name = display
    na.uri = uri
    na.params = _params(params) if params else _EMPTY
    na._text = None
    return na


# --------------------------------------------------------------------------- Via

cdef class Via:
    """One Via hop: ``SIP/2.0/UDP host:port;branch=...;received=...;rport``.

    ``transport`` is upper case, ``host`` bare (IPv6 without brackets), ``port`` int or
    None; ``params`` holds every parameter with its value as written.
    """

    cdef readonly str protocol
    cdef readonly str version
    cdef readonly str transport
    cdef readonly str host
    cdef readonly object port
    cdef readonly Params params
    cdef object _text

    def __init__(self, str transport, str host, port=None, params=(), *, branch=None,
                 rport=False, str protocol="SIP", str version="2.0"):
        for what, value in (("transport", transport), ("protocol", protocol),
                            ("version", version)):
            if not is_token(value):
                raise ValueError(f"Via {what} {value!r} is not a token")
        if port is not None and not (isinstance(port, int) and 0 <= port <= 65535):
            raise ValueError(f"port {port!r} is not an integer in 0..65535")
        self.protocol = protocol
        self.version = version
        self.transport = transport.upper()
        self.host = _host_or_raise(host)
        self.port = port
        cdef Params ps = _coerce_params(params)
        if branch is not None:
            if not is_token(branch):
                raise ValueError(f"branch {branch!r} is not a token")
            ps = ps.with_param("branch", branch)
        if rport:
            ps = ps.with_param("rport", None)
        self.params = ps
        self._text = None

    @staticmethod
    def parse(str text):
        """Parse one via-parm (a single hop, no commas)."""
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        return _parse_via(p, n)

    @property
    def branch(self):
        return self.params.get("branch")

    @property
    def received(self):
        """The ``received`` address (brackets of an IPv6 reference removed), or None."""
        value = self.params.get("received")
        if value is not None and value.startswith("["):
            return value[1:len(value) - 1]
        return value

    @property
    def rport(self):
        """The ``rport`` value as an int, or None (absent, or requested with no value)."""
        value = self.params.get("rport")
        if value is None:
            return None
        return int(value)

    @property
    def has_rport(self):
        """Whether ``rport`` is present (RFC 3581: the sender asks for symmetric response)."""
        return "rport" in self.params

    @property
    def maddr(self):
        return self.params.get("maddr")

    @property
    def ttl(self):
        value = self.params.get("ttl")
        return None if value is None else int(value)

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
            host = _host_text(self.host)
            if self.port is not None:
                host = f"{host}:{self.port}"
            self._text = (f"{self.protocol}/{self.version}/{self.transport} {host}"
                          f"{self.params}")
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
                and self.port == o.port and self.params == o.params)

    def __hash__(self):
        return hash((self.transport, _host_key(self.host), self.port, self.params))


def _via_from_text(str text):
    return Via.parse(text)


cdef Via _parse_via(const unsigned char* p, Py_ssize_t n):
    cdef Py_ssize_t i = _skip_ws(p, 0, n), j = 0, k
    cdef list parts = []
    cdef int part
    cdef list host = []
    cdef list params = []
    cdef object port = None
    for part in range(3):
        j = _scan(p, i, n, T_TOKEN)
        if j == i:
            raise SIPParseError("Via must start with a sent-protocol like SIP/2.0/UDP, found "
                                f"{_show(p, i, n)}", i)
        parts.append(_ascii(p, i, j))
        i = _skip_ws(p, j, n)
        if part < 2:
            if i >= n or p[i] != 47:
                raise SIPParseError("Via sent-protocol must be name/version/transport "
                                    f"(like SIP/2.0/UDP), found {_show(p, 0, n)}", i)
            i = _skip_ws(p, i + 1, n)
    if i >= n:
        raise SIPParseError("Via has no sent-by host", i)
    if i == j:
        raise SIPParseError("Via needs whitespace between the transport and the host", i)
    i = _parse_host(p, i, n, host)
    k = _skip_ws(p, i, n)
    if k < n and p[k] == 58:
        k = _skip_ws(p, k + 1, n)
        j = _scan(p, k, n, T_DIGIT)
        if j == k:
            raise SIPParseError("':' after the Via host is not followed by a port", k)
        port = _digits_value(p, k, j, 65535)
        if port is None:
            raise SIPParseError(f"Via port {_show(p, k, j)} is out of range 0..65535", k)
        i = j
    i = _parse_generic_params(p, i, n, params, True)
    if i != n:
        if p[i] == 44:
            raise SIPParseError("Via value holds a comma: one Via.parse() call takes one hop", i)
        raise SIPParseError(f"unexpected {_show(p, i, n)} in Via", i)
    cdef Via v = Via.__new__(Via)
    v.protocol = parts[0]
    v.version = parts[1]
    v.transport = parts[2].upper()
    v.host = host[0]
    v.port = port
    v.params = _params(params) if params else _EMPTY
    v._text = None
    _check_via_params(v.params)
    return v


cdef int _check_via_params(Params params) except -1:
    cdef Py_ssize_t n
    cdef const unsigned char* p
    for name, value in params._items:
        key = name.lower()
        if key == "ttl":
            if value is None or not value.isascii() or not value.isdigit() or int(value) > 255:
                raise SIPParseError(f"Via ttl {value!r} is not a number in 0..255", 0)
        elif key == "received":
            if value is None:
                raise SIPParseError("Via received has no value", 0)
            p = _utf8(value, &n)
            if n >= 2 and p[0] == 91:
                ok = _valid_ipv6(p, 1, n - 1) and p[n - 1] == 93
            else:
                ok = _valid_ipv4(p, 0, n) or _valid_ipv6(p, 0, n)
            if not ok:
                raise SIPParseError(f"Via received {value!r} is not an IP address", 0)
        elif key == "rport":
            if value is not None and (not value.isascii() or not value.isdigit()
                                      or int(value) > 65535):
                raise SIPParseError(f"Via rport {value!r} is not a port number", 0)
        elif key == "branch":
            if value is None:
                raise SIPParseError("Via branch has no value", 0)
        elif key == "maddr":
            if value is None:
                raise SIPParseError("Via maddr has no value", 0)
            try:
                _host_or_raise(value)
            except ValueError as exc:
                raise SIPParseError(f"Via maddr: {exc}", 0) from None
    return 0


# --------------------------------------------------------------------------- CSeq

cdef class CSeq:
    """The CSeq header: sequence ``number`` (0 .. 2**31-1) and ``method``."""

    cdef readonly object number
    cdef readonly str method

    def __init__(self, number, str method):
        if not isinstance(number, int) or not 0 <= number <= MAX_CSEQ:
            raise ValueError(f"CSeq number {number!r} is not an integer in 0..2**31-1")
        if not is_token(method):
            raise ValueError(f"CSeq method {method!r} is not a token")
        self.number = number
        self.method = method

    @staticmethod
    def parse(str text):
        cdef Py_ssize_t n
        cdef const unsigned char* p = _utf8(text, &n)
        return _parse_cseq(p, n)

    def __str__(self):
        return f"{self.number} {self.method}"

    def __repr__(self):
        return f"CSeq({self.number!r}, {self.method!r})"

    def __reduce__(self):
        return (CSeq, (self.number, self.method))

    def __eq__(self, other):
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.number == (<CSeq>other).number and self.method == (<CSeq>other).method

    def __hash__(self):
        return hash((self.number, self.method))


cdef CSeq _parse_cseq(const unsigned char* p, Py_ssize_t n):
    cdef Py_ssize_t i = _skip_ws(p, 0, n)
    cdef Py_ssize_t j = _scan(p, i, n, T_DIGIT), k, m
    if j == i:
        raise SIPParseError(f"CSeq {_show(p, 0, n)} does not start with a sequence number", i)
    number = _digits_value(p, i, j, MAX_CSEQ)
    if number is None:
        raise SIPParseError(f"CSeq number {_show(p, i, j)} is not below 2**31 "
                            "(RFC 3261 §8.1.1.5)", i)
    k = _skip_ws(p, j, n)
    if k == j:
        raise SIPParseError(f"CSeq {_show(p, 0, n)} needs whitespace between number and method", j)
    m = _scan(p, k, n, T_TOKEN)
    if m == k:
        raise SIPParseError(f"CSeq {_show(p, 0, n)} has no method", k)
    if _skip_ws(p, m, n) != n:
        raise SIPParseError(f"unexpected {_show(p, m, n)} after the CSeq method", m)
    cdef CSeq c = CSeq.__new__(CSeq)
    c.number = number
    c.method = _ascii(p, k, m)
    return c


# --------------------------------------------------------------------------- framing

cdef class _Block:
    """The header section of a message or MIME part, as found by ``_scan_headers``."""
    cdef list entries
    cdef dict index
    cdef Py_ssize_t body_start
    cdef object content_length     # the first Content-Length value, or None
    cdef int cl_line
    cdef Py_ssize_t cl_offset
    cdef int last_line
    cdef object unterminated       # the error to raise once the start line is known


cdef inline Py_ssize_t _find_lf(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    cdef const void* hit = memchr(p + i, 10, n - i)
    if hit == NULL:
        return -1
    return <const unsigned char*>hit - p


cdef int _check_line(const unsigned char* p, Py_ssize_t a, Py_ssize_t b, int line) except -1:
    """Refuse a bare CR inside a line; return 1 if it holds non-ASCII octets."""
    cdef unsigned char acc = 0
    cdef Py_ssize_t i
    for i in range(a, b):
        acc |= p[i]
        if p[i] == 13:
            raise SIPParseError(f"line {line}: bare CR inside the line (lines end in CRLF)", i,
                                line=line)
    return 1 if acc & 0x80 else 0


cdef str _decode_value(const unsigned char* p, Py_ssize_t a, Py_ssize_t b, bint high,
                       int line, str name, Py_ssize_t offset):
    if not high:
        return _ascii(p, a, b)
    try:
        return PyUnicode_DecodeUTF8(<const char*>p + a, b - a, NULL)
    except UnicodeDecodeError as exc:
        raise SIPParseError(f"line {line}: header {name!r}: value is not valid UTF-8 "
                            f"({exc.reason} at octet {exc.start})", offset,
                            line=line, header=name) from None


cdef _Block _scan_headers(const unsigned char* p, Py_ssize_t n, Py_ssize_t pos, int line):
    cdef _Block block = _Block.__new__(_Block)
    cdef list entries = []
    cdef dict index = {}
    cdef list found
    cdef Py_ssize_t eol, end, ns, ne, vs, ve, nxt, cs, ce, line_start
    cdef int high, count = 0, value_line
    cdef str name, value, key
    cdef tuple info, entry
    cdef list pieces, values
    cdef bytes joined
    cdef const unsigned char* vp
    block.content_length = None
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
        end = eol - 1 if eol > pos and p[eol - 1] == 13 else eol
        if end == pos:
            block.body_start = eol + 1
            break
        line_start = pos
        value_line = line
        if _is_ws(p[pos]):
            raise SIPParseError(f"line {line}: starts with whitespace, but there is no header "
                                "before it to continue", pos, line=line)
        ne = _scan(p, pos, end, T_TOKEN)
        ns = pos
        if ne == ns:
            raise SIPParseError(f"line {line}: expected a header name, found "
                                f"{_show(p, pos, end)}", pos, line=line)
        vs = _skip_ws(p, ne, end)
        if vs >= end or p[vs] != 58:
            if vs < end and vs == ne:
                raise SIPParseError(f"line {line}: header name {_show(p, ns, ne + 1)} holds "
                                    f"{_char(p[vs])}, which a header name cannot", vs, line=line)
            raise SIPParseError(f"line {line}: header {_show(p, ns, ne)} is not followed by ':'",
                                vs, line=line)
        name = _ascii(p, ns, ne)
        info = _name_info(name)
        vs = _skip_ws(p, vs + 1, end)
        high = _check_line(p, vs, end, line)
        ve = end
        while ve > vs and _is_ws(p[ve - 1]):
            ve -= 1
        pos = eol + 1
        line += 1
        if pos < n and _is_ws(p[pos]):
            # folded value (RFC 3261 §7.3.1): each CRLF + whitespace becomes one SP
            pieces = [PyBytes_FromStringAndSize(<const char*>p + vs, ve - vs)] if ve > vs else []
            while pos < n and _is_ws(p[pos]):
                eol = _find_lf(p, pos, n)
                if eol < 0:
                    raise SIPParseError(f"line {line}: the header section is not terminated "
                                        "by an empty line", pos, line=line)
                ce = eol - 1 if eol > pos and p[eol - 1] == 13 else eol
                cs = _skip_ws(p, pos, ce)
                high |= _check_line(p, cs, ce, line)
                while ce > cs and _is_ws(p[ce - 1]):
                    ce -= 1
                if ce > cs:
                    pieces.append(PyBytes_FromStringAndSize(<const char*>p + cs, ce - cs))
                pos = eol + 1
                line += 1
            joined = b" ".join(pieces)
            vp = <const unsigned char*>PyBytes_AS_STRING(joined)
            vs = 0
            ve = len(joined)
        else:
            vp = p
        value = _decode_value(vp, vs, ve, high, value_line, info[0], line_start)
        key = info[1]
        if info[2] and memchr(vp + vs, 44, ve - vs) != NULL:
            values = _split(vp + vs, ve - vs)
            if values is None:
                values = [value]
        else:
            values = None
        found = index.get(key)
        if found is None:
            found = []
            index[key] = found
        if values is None:
            entry = (key, info[0], value, value_line, line_start)
            entries.append(entry)
            found.append(entry)
            count += 1
        else:
            for value in values:
                entry = (key, info[0], value, value_line, line_start)
                entries.append(entry)
                found.append(entry)
            count += len(values)
        if count > C_MAX_HEADERS:
            raise SIPParseError(f"line {value_line}: more than {C_MAX_HEADERS} header fields "
                                "(MAX_HEADERS)", line_start, line=value_line)
        if key == "content-length" and block.content_length is None:
            block.content_length = value
            block.cl_line = value_line
            block.cl_offset = line_start
    block.entries = entries
    block.index = index
    block.last_line = line
    return block


cdef int _check_version(const unsigned char* p, Py_ssize_t a, Py_ssize_t b) noexcept:
    """0: SIP/2.0; 1: another well-formed SIP-Version; -1: not a SIP-Version at all."""
    cdef Py_ssize_t i, j
    if b - a < 7 or (p[a] | 32) != 115 or (p[a + 1] | 32) != 105 or (p[a + 2] | 32) != 112 \
            or p[a + 3] != 47:
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


cdef tuple _parse_request_line(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    cdef Py_ssize_t m = _scan(p, a, b, T_TOKEN), u, v, i, w
    cdef int spaces = 0
    for i in range(a, b):
        if p[i] == 32:
            spaces += 1
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
    if spaces > 2:
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
    cdef str method = _ascii(p, a, m)
    cdef URI uri
    try:
        uri = _parse_uri(p, u, v, None)
    except SIPParseError as exc:
        raise SIPParseError(f"line 1: Request-URI {_show(p, u, v)}: {exc.reason}", exc.offset,
                            line=1) from None
    if uri.headers and (uri.scheme == "sip" or uri.scheme == "sips"):
        raise SIPParseError(f"line 1: Request-URI {_show(p, u, v)} has a header part ('?'), "
                            "which RFC 3261 §19.1.1 forbids in a Request-URI", u, line=1)
    return (method, uri)


cdef tuple _parse_status_line(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
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
    status = (p[sp + 1] - 48) * 100 + (p[sp + 2] - 48) * 10 + (p[sp + 3] - 48)
    if status < 100 or status > 699:
        raise SIPParseError(f"line 1: status code {status} is outside 100..699", sp + 1,
                            line=1, status=0)
    r = c + 1 if c < b else b
    high = _check_line(p, r, b, 1)
    cdef str reason = _decode_value(p, r, b, high, 1, "Reason-Phrase", r)
    return (status, reason)


cdef object _body(bytes data, const unsigned char* p, Py_ssize_t n, _Block block):
    """The body framed by Content-Length (the rest of the datagram when it is absent)."""
    cdef Py_ssize_t start = block.body_start
    cdef Py_ssize_t available = n - start
    cdef Py_ssize_t cn
    cdef const unsigned char* cp
    cdef Py_ssize_t a, b
    cdef object length
    if block.content_length is None:
        return data[start:] if available else b""
    cdef str raw = block.content_length
    cp = _utf8(raw, &cn)
    b = _scan(cp, 0, cn, T_DIGIT)
    if b == 0 or b != cn:
        raise SIPParseError(f"line {block.cl_line}: header 'Content-Length': {raw!r} is not a "
                            "non-negative decimal number", block.cl_offset, line=block.cl_line,
                            header="Content-Length")
    length = _digits_value(cp, 0, b, C_MAX_MESSAGE)
    if length is None or length > available:
        raise SIPParseError(f"line {block.cl_line}: header 'Content-Length': {raw} octets "
                            f"announced but only {available} follow the header section",
                            block.cl_offset, line=block.cl_line, header="Content-Length")
    if length == 0:
        return b""
    return data[start:start + <Py_ssize_t>length]


def parse_message(data):
    """Frame one datagram: ``(method, uri, status, reason, entries, index, body)``.

    For a request ``status`` is None; for a response ``method`` and ``uri`` are None.
    ``entries`` lists the header fields in order as tuples ``(key, name, value, line,
    offset)`` (list headers split into one entry per element), ``index`` maps each key
    to its entries. Raises SIPParseError.
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
    cdef bint is_response = (sl_end - sl_start >= 4 and (p[sl_start] | 32) == 115
                             and (p[sl_start + 1] | 32) == 105 and (p[sl_start + 2] | 32) == 112
                             and p[sl_start + 3] == 47)
    cdef _Block block
    try:
        block = _scan_headers(p, n, eol + 1, 2)
    except SIPParseError as exc:
        exc.is_request = not is_response
        if is_response:
            exc.status = 0
        raise
    cdef tuple start
    try:
        if is_response:
            start = _parse_status_line(p, sl_start, sl_end)
        else:
            start = _parse_request_line(p, sl_start, sl_end)
        if block.unterminated is not None:
            raise block.unterminated
        body = _body(buf, p, n, block)
    except SIPParseError as exc:
        exc._raw_headers = (block.entries, block.index)
        exc.is_request = not is_response
        if is_response:
            exc.status = 0
        raise
    if is_response:
        return (None, None, start[0], start[1], block.entries, block.index, body)
    return (start[0], start[1], None, None, block.entries, block.index, body)


def parse_mime_part(data):
    """Frame one MIME body part (RFC 2046): ``(entries, index, body)``.

    Header fields as in ``parse_message``; a part with no header fields starts with
    its empty line.
    """
    cdef bytes buf = bytes(data)
    cdef Py_ssize_t n = len(buf)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef _Block block = _scan_headers(p, n, 0, 1)
    if block.unterminated is not None:
        raise block.unterminated
    return (block.entries, block.index, buf[block.body_start:])
