"""Sans-I/O SIP: message model, transactions, dialogs, digest auth (RFC 3261, 3262).

The message layer (this package's public surface so far)::

    from gosipd import sip

    msg = sip.parse(datagram)                 # Request | Response, or SIPParseError
    rejection = sip.check(msg, supported={"100rel"}, allow={"INVITE", "ACK", ...})
    if rejection:                             # 400/405/415/416/420/406/501...
        send(bytes(rejection.response_to(msg, to_tag=new_tag())))
    msg.via[0].branch, msg.from_.tag, msg.cseq.number, msg.call_id, msg.contact
    reply = sip.Response.for_request(msg, 180, to_tag=tag)
    bytes(reply)

Typed values (URI, NameAddr, Via, CSeq, Params) are immutable and hashable; change a
message through its setters (``msg.to = msg.to.with_tag(t)``, ``msg.push_via(v)``).
"""

from gosipd._sipparse import (
    COMPACT_FORMS,
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    URI,
    CSeq,
    Headers,
    NameAddr,
    Params,
    SIPParseError,
    Via,
    quote,
    split_list,
    unquote,
)
from gosipd.sip.message import (
    DEFAULT_MAX_FORWARDS,
    DIALOG_CREATING_METHODS,
    REASON_PHRASES,
    Message,
    Request,
    Response,
    parse,
)
from gosipd.sip.multipart import BodyPart, join_multipart, split_multipart
from gosipd.sip.validate import (
    DEFAULT_ACCEPT,
    KNOWN_METHODS,
    MANDATORY_HEADERS,
    Rejection,
    check,
    validate,
)
from gosipd.sip.values import (
    Challenge,
    ContentType,
    Credentials,
    RAck,
    RetryAfter,
    format_date,
    parse_date,
)

__all__ = [
    "COMPACT_FORMS",
    "DEFAULT_ACCEPT",
    "DEFAULT_MAX_FORWARDS",
    "DIALOG_CREATING_METHODS",
    "KNOWN_METHODS",
    "MANDATORY_HEADERS",
    "MAX_HEADERS",
    "MAX_MESSAGE_SIZE",
    "REASON_PHRASES",
    "URI",
    "BodyPart",
    "CSeq",
    "Challenge",
    "ContentType",
    "Credentials",
    "Headers",
    "Message",
    "NameAddr",
    "Params",
    "RAck",
    "Rejection",
    "Request",
    "Response",
    "RetryAfter",
    "SIPParseError",
    "Via",
    "check",
    "format_date",
    "join_multipart",
    "parse",
    "parse_date",
    "quote",
    "split_list",
    "split_multipart",
    "unquote",
    "validate",
]
