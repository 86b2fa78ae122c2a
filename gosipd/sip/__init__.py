"""Sans-I/O SIP: message model, transactions, dialogs, digest auth (RFC 3261, 3262)."""
