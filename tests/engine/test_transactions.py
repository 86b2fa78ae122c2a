"""The four RFC 3261 §17 transactions on their own: every timer to the millisecond,
matching (§17.1.3, §17.2.3, RFC 2543 requests included), the ACK of a failure, absorbed
retransmissions, transport errors, and the tables themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from gosipd import sip
from gosipd.sip import NameAddr, Request, Response, Via
from gosipd.sip.timers import Timers
from gosipd.sip.transaction import (
    INVITE_CLIENT_TABLE,
    INVITE_SERVER_TABLE,
    NON_INVITE_CLIENT_TABLE,
    NON_INVITE_SERVER_TABLE,
    AckReceived,
    ClientInvite,
    ClientNonInvite,
    Input,
    ProtocolError,
    ResponseReceived,
    ServerInvite,
    ServerNonInvite,
    State,
    TransactionTimeout,
    TransportFailure,
    client_key,
    server_key,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
PEER = ("192.0.2.20", 5060)
ME = ("192.0.2.10", 5060)
T = Timers()  # T1 = 0.5 s, T2 = 4 s, T4 = 5 s


def request(method: str = "INVITE", *, branch: str = "z9hG4bKabc1", cseq: int = 1) -> Request:
    return Request.create(
        method,
        "sip:bob@192.0.2.20",
        from_=NameAddr.parse("<sip:alice@192.0.2.10>;tag=a1"),
        to=NameAddr.parse("<sip:bob@192.0.2.20>"),
        call_id="c1@192.0.2.10",
        cseq=cseq,
        via=Via("UDP", "192.0.2.10", 5060, branch=branch, rport=True),
        route=[NameAddr.parse("<sip:proxy.example.com;lr>")],
    )


def response(req: Request, status: int, *, tag: str | None = "b1") -> Response:
    return Response.for_request(req, status, to_tag=tag if status > 100 else None)


class Clock:
    """Drives one transaction's timers and records when it sent what."""

    def __init__(
        self,
        tx: ClientInvite | ClientNonInvite | ServerInvite | ServerNonInvite,
        outbox: list[tuple[bytes, tuple[str, int]]],
        start: float = 0.0,
    ) -> None:
        self.tx, self.outbox, self.now = tx, outbox, start
        self.sent: list[tuple[float, str]] = []
        self.events: list[object] = []
        self.collect()

    def collect(self) -> None:
        for data, _ in self.outbox:
            self.sent.append((round(self.now, 3), data.split(b"\r\n", 1)[0].decode()))
        self.outbox.clear()

    def run(self, until: float) -> None:
        """Fire timers in order until ``until`` (or until none is left)."""
        while (deadline := self.tx.next_timer()) is not None and deadline <= until:
            self.now = deadline
            self.events += self.tx.handle_timer(self.now)
            self.collect()
        self.now = max(self.now, until)

    def at(self, when: float, feed: object) -> None:
        self.run(when)
        self.now = when
        events = feed(self.now) if callable(feed) else []
        self.events += events
        self.collect()

    def times(self, start_line: str) -> list[float]:
        return [t for t, line in self.sent if line.startswith(start_line)]


def client(method: str = "INVITE", timers: Timers = T) -> tuple[Request, Clock]:
    req = request(method)
    outbox: list[tuple[bytes, tuple[str, int]]] = []
    cls = ClientInvite if method == "INVITE" else ClientNonInvite
    tx = cls(req, PEER, timers, outbox, 0.0)
    return req, Clock(tx, outbox)


def server(method: str = "INVITE", timers: Timers = T) -> tuple[Request, Clock]:
    req = request(method)
    outbox: list[tuple[bytes, tuple[str, int]]] = []
    cls = ServerInvite if method == "INVITE" else ServerNonInvite
    tx = cls(req, PEER, timers, outbox, 0.0)
    return req, Clock(tx, outbox)


# --------------------------------------------------------------------------- INVITE client


def test_timer_a_doubles_from_t1_and_timer_b_times_out_at_64_t1() -> None:
    _, clock = client("INVITE")
    clock.run(40.0)
    assert clock.times("INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # A has no T2 cap
    assert clock.events == [TransactionTimeout("B")]
    assert clock.tx.terminated and clock.tx.next_timer() is None


def test_timers_a_and_b_follow_a_configured_t1() -> None:
    _, clock = client("INVITE", Timers(t1=0.1, t2=4.0))
    clock.run(10.0)
    assert clock.times("INVITE") == [0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3]
    assert clock.events == [TransactionTimeout("B")]
    assert clock.now == 10.0 and clock.tx.terminated


def test_timer_b_fires_at_exactly_64_t1() -> None:
    _, clock = client("INVITE")
    clock.run(31.999)
    assert not clock.tx.terminated
    clock.run(32.0)
    assert clock.events == [TransactionTimeout("B")]


def test_a_provisional_stops_retransmission_and_timer_b() -> None:
    req, clock = client("INVITE")
    clock.at(0.7, lambda now: clock.tx.receive(response(req, 180), now))
    assert clock.tx.state is State.PROCEEDING
    assert clock.tx.next_timer() is None  # no Timer B once Proceeding (Figure 5)
    assert clock.times("INVITE") == [0.0, 0.5]
    [event] = clock.events
    assert isinstance(event, ResponseReceived) and event.response.status == 180


RELIABLE = Timers(reliable=True)  # TCP, TLS: Table 4's reliable column


def test_over_a_reliable_transport_the_invite_is_sent_once_and_timer_b_still_runs() -> None:
    _, clock = client("INVITE", RELIABLE)
    clock.run(40.0)
    assert clock.times("INVITE") == [0.0]  # §17.1.1.2: no Timer A
    assert clock.events == [TransactionTimeout("B")]
    assert clock.tx.terminated


def test_over_a_reliable_transport_a_failure_is_acked_and_the_transaction_ends_at_once() -> None:
    req, clock = client("INVITE", RELIABLE)
    clock.at(0.2, lambda now: clock.tx.receive(response(req, 486), now))
    assert clock.times("ACK") == [0.2]
    clock.run(0.2)
    assert clock.tx.terminated  # Timer D = 0


def test_over_a_reliable_transport_a_non_invite_is_sent_once_and_timer_k_is_zero() -> None:
    req, clock = client("BYE", RELIABLE)
    clock.at(2.0, lambda now: clock.tx.receive(response(req, 100), now))
    clock.run(3.0)
    assert clock.times("BYE") == [0.0]  # no Timer E, not even at T2 once Proceeding
    clock.at(3.0, lambda now: clock.tx.receive(response(req, 200), now))
    clock.run(3.0)
    assert clock.tx.terminated


def test_over_a_reliable_transport_a_server_sends_its_failure_once() -> None:
    req, clock = server("INVITE", RELIABLE)
    clock.at(0.1, lambda now: clock.tx.respond(response(req, 486), now))
    clock.run(40.0)
    assert clock.times("SIP/2.0 486") == [0.1]  # no Timer G
    assert clock.events == [TransactionTimeout("H")]  # Timer H still waits for the ACK


def test_a_failure_is_acked_inside_the_transaction_and_timer_d_lasts_32_seconds() -> None:
    req, clock = client("INVITE")
    final = response(req, 486)
    clock.at(0.2, lambda now: clock.tx.receive(final, now))
    assert clock.tx.state is State.COMPLETED
    assert clock.times("ACK") == [0.2]
    # a retransmitted 486 is ACKed again and not passed up again
    clock.at(1.0, lambda now: clock.tx.receive(final, now))
    assert clock.times("ACK") == [0.2, 1.0]
    assert [e.response.status for e in clock.events if isinstance(e, ResponseReceived)] == [486]
    clock.run(32.199)
    assert clock.tx.state is State.COMPLETED
    clock.run(32.2)
    assert clock.tx.terminated
    assert clock.times("INVITE") == [0.0]  # no retransmission after the final response


def test_the_ack_of_a_failure_copies_what_section_17_1_1_3_says() -> None:
    req = request("INVITE")
    ack = sip.parse(_sent_bytes(req, 404))
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.uri == req.uri
    assert ack.via == req.via[:1]  # same branch: the ACK is part of the transaction
    assert ack.cseq == sip.CSeq(req.cseq.number, "ACK")
    assert ack.call_id == req.call_id and ack.from_ == req.from_
    assert ack.to.tag == "xyz"
    assert ack.route == req.route


def _sent_bytes(req: Request, status: int) -> bytes:
    outbox: list[tuple[bytes, tuple[str, int]]] = []
    tx = ClientInvite(req, PEER, T, outbox, 0.0)
    outbox.clear()
    tx.receive(response(req, status, tag="xyz"), 0.1)
    [(data, destination)] = outbox
    assert destination == PEER
    return data


def test_timer_m_keeps_passing_2xx_retransmissions_up_for_64_t1() -> None:
    req, clock = client("INVITE")
    ok = response(req, 200)
    clock.at(1.0, lambda now: clock.tx.receive(ok, now))
    assert clock.tx.state is State.ACCEPTED
    clock.at(2.0, lambda now: clock.tx.receive(ok, now))
    other_fork = response(req, 200, tag="b2")
    clock.at(3.0, lambda now: clock.tx.receive(other_fork, now))
    assert [e.response.to.tag for e in clock.events if isinstance(e, ResponseReceived)] == [
        "b1",
        "b1",
        "b2",
    ]
    assert clock.times("ACK") == []  # the ACK of a 2xx is the TU's (§13.2.2.4)
    clock.run(32.999)
    assert not clock.tx.terminated
    clock.run(33.0)
    assert clock.tx.terminated


def test_transport_error_while_calling_is_reported_and_ends_the_transaction() -> None:
    _, clock = client("INVITE")
    clock.at(0.2, lambda now: clock.tx.transport_error(now, "ICMP port unreachable"))
    assert clock.events == [TransportFailure("ICMP port unreachable")]
    assert clock.tx.terminated and clock.tx.next_timer() is None


def test_an_abandoned_invite_stops_retransmitting() -> None:
    _, clock = client("INVITE")
    clock.run(0.6)
    clock.tx.terminate()
    clock.run(40.0)
    assert clock.times("INVITE") == [0.0, 0.5]
    assert clock.events == []


# ----------------------------------------------------------------------- non-INVITE client


def test_timer_e_doubles_up_to_t2_and_timer_f_times_out_at_64_t1() -> None:
    _, clock = client("OPTIONS")
    clock.run(40.0)
    assert clock.times("OPTIONS") == [
        0.0,
        0.5,
        1.5,
        3.5,
        7.5,
        11.5,
        15.5,
        19.5,
        23.5,
        27.5,
        31.5,
    ]
    assert clock.events == [TransactionTimeout("F")]
    assert clock.tx.terminated


def test_timer_e_is_t2_once_proceeding() -> None:
    req, clock = client("BYE")
    clock.at(0.7, lambda now: clock.tx.receive(response(req, 100), now))
    assert clock.tx.state is State.PROCEEDING
    clock.run(20.0)
    # E was due at 1.5 (interval 1 s); from then on it is T2 = 4 s
    assert clock.times("BYE") == [0.0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5]


def test_timer_k_absorbs_response_retransmissions_for_t4() -> None:
    req, clock = client("BYE")
    ok = response(req, 200)
    clock.at(0.2, lambda now: clock.tx.receive(ok, now))
    clock.at(1.0, lambda now: clock.tx.receive(ok, now))
    assert [e.response.status for e in clock.events if isinstance(e, ResponseReceived)] == [200]
    assert clock.tx.state is State.COMPLETED
    clock.run(5.199)
    assert not clock.tx.terminated
    clock.run(5.2)
    assert clock.tx.terminated
    assert clock.times("BYE") == [0.0]


def test_a_non_invite_failure_is_not_acked() -> None:
    req, clock = client("OPTIONS")
    clock.at(0.1, lambda now: clock.tx.receive(response(req, 404), now))
    assert clock.times("ACK") == []
    assert clock.tx.state is State.COMPLETED


# --------------------------------------------------------------------------- INVITE server


def test_timer_g_doubles_up_to_t2_until_timer_h_reports_no_ack() -> None:
    req, clock = server("INVITE")
    clock.at(0.0, lambda now: clock.tx.respond(response(req, 486), now))
    clock.run(40.0)
    assert clock.times("SIP/2.0 486") == [
        0.0,
        0.5,
        1.5,
        3.5,
        7.5,
        11.5,
        15.5,
        19.5,
        23.5,
        27.5,
        31.5,
    ]
    assert clock.events == [TransactionTimeout("H")]
    assert clock.tx.terminated


def test_the_ack_stops_timer_g_and_timer_i_absorbs_acks_for_t4() -> None:
    req, clock = server("INVITE")
    clock.at(0.0, lambda now: clock.tx.respond(response(req, 486), now))
    ack = sip.parse(_sent_ack(req))
    assert isinstance(ack, Request)
    clock.at(0.8, lambda now: clock.tx.receive_request(ack, now))
    assert clock.tx.state is State.CONFIRMED
    clock.at(1.0, lambda now: clock.tx.receive_request(ack, now))  # absorbed
    clock.run(5.799)
    assert clock.tx.state is State.CONFIRMED
    clock.run(5.8)
    assert clock.tx.terminated
    assert clock.times("SIP/2.0 486") == [0.0, 0.5]
    assert clock.events == []


def _sent_ack(invite: Request) -> bytes:
    outbox: list[tuple[bytes, tuple[str, int]]] = []
    tx = ClientInvite(invite, PEER, T, outbox, 0.0)
    outbox.clear()
    tx.receive(response(invite, 486), 0.0)
    return outbox[0][0]


def test_invite_retransmissions_get_the_last_response_again() -> None:
    req, clock = server("INVITE")
    clock.at(0.0, lambda now: clock.tx.respond(response(req, 100), now))
    clock.at(0.5, lambda now: clock.tx.receive_request(req, now))
    clock.at(0.6, lambda now: clock.tx.respond(response(req, 180), now))
    clock.at(1.5, lambda now: clock.tx.receive_request(req, now))
    assert clock.sent == [
        (0.0, "SIP/2.0 100 Trying"),
        (0.5, "SIP/2.0 100 Trying"),
        (0.6, "SIP/2.0 180 Ringing"),
        (1.5, "SIP/2.0 180 Ringing"),
    ]
    assert clock.events == []


def test_timer_l_absorbs_invite_retransmissions_after_a_2xx() -> None:
    req, clock = server("INVITE")
    clock.at(0.0, lambda now: clock.tx.respond(response(req, 200), now))
    assert clock.tx.state is State.ACCEPTED
    clock.at(0.5, lambda now: clock.tx.receive_request(req, now))
    assert clock.times("SIP/2.0 200") == [0.0]  # the TU, not the transaction, resends 2xx
    clock.at(1.0, lambda now: clock.tx.respond(response(req, 200), now))
    assert clock.times("SIP/2.0 200") == [0.0, 1.0]
    clock.run(31.999)
    assert clock.tx.state is State.ACCEPTED
    clock.run(32.0)
    assert clock.tx.terminated


def test_a_second_final_response_is_a_protocol_error_naming_the_state() -> None:
    req, clock = server("INVITE")
    clock.tx.respond(response(req, 486), 0.0)
    with pytest.raises(ProtocolError, match="INVITE server transaction in state Completed"):
        clock.tx.respond(response(req, 200), 0.1)


def test_transport_error_on_a_failure_response_ends_the_server_transaction() -> None:
    req, clock = server("INVITE")
    clock.at(0.0, lambda now: clock.tx.respond(response(req, 503), now))
    clock.at(0.1, lambda now: clock.tx.transport_error(now, "no route to host"))
    assert clock.events == [TransportFailure("no route to host")]
    assert clock.tx.terminated


# ----------------------------------------------------------------------- non-INVITE server


def test_timer_j_answers_retransmissions_for_64_t1() -> None:
    req, clock = server("BYE")
    clock.at(0.1, lambda now: clock.tx.receive_request(req, now))  # Trying: absorbed
    assert clock.sent == []
    clock.at(0.2, lambda now: clock.tx.respond(response(req, 200), now))
    clock.at(2.0, lambda now: clock.tx.receive_request(req, now))
    assert clock.times("SIP/2.0 200") == [0.2, 2.0]
    clock.run(32.199)
    assert clock.tx.state is State.COMPLETED
    clock.run(32.2)
    assert clock.tx.terminated


def test_a_non_invite_server_resends_its_provisional_while_proceeding() -> None:
    req, clock = server("OPTIONS")
    clock.at(0.0, lambda now: clock.tx.respond(response(req, 100), now))
    clock.at(0.5, lambda now: clock.tx.receive_request(req, now))
    assert clock.times("SIP/2.0 100") == [0.0, 0.5]
    assert clock.tx.state is State.PROCEEDING


def test_transport_error_on_a_non_invite_response_is_reported() -> None:
    req, clock = server("OPTIONS")
    clock.at(0.0, lambda now: clock.tx.respond(response(req, 200), now))
    clock.at(0.1, lambda now: clock.tx.transport_error(now, "refused"))
    assert clock.events == [TransportFailure("refused")]
    assert clock.tx.terminated


# --------------------------------------------------------------------------------- matching


def test_responses_match_client_transactions_by_branch_and_cseq_method() -> None:
    invite = request("INVITE", branch="z9hG4bKone")
    assert client_key("z9hG4bKone", "INVITE") == ClientInvite(invite, PEER, T, [], 0.0).key
    # a CANCEL shares the INVITE's branch but is its own transaction
    assert client_key("z9hG4bKone", "CANCEL") != client_key("z9hG4bKone", "INVITE")
    assert client_key("z9hG4bKone", "INVITE") != client_key("z9hG4bKtwo", "INVITE")


def test_rfc3261_requests_match_on_branch_sent_by_and_method() -> None:
    invite = request("INVITE", branch="z9hG4bKone")
    assert server_key(invite) == server_key(invite.copy())
    ack = request("ACK", branch="z9hG4bKone")
    assert server_key(ack) == server_key(invite)  # the ACK of a failure joins the INVITE
    cancel = request("CANCEL", branch="z9hG4bKone")
    assert server_key(cancel) != server_key(invite)
    other_host = invite.copy()
    other_host.via = [Via("UDP", "192.0.2.99", 5060, branch="z9hG4bKone")]
    assert server_key(other_host) != server_key(invite)  # same branch, another sent-by
    other_branch = request("INVITE", branch="z9hG4bKtwo")
    assert server_key(other_branch) != server_key(invite)


def test_a_bare_magic_cookie_branch_is_matched_the_rfc2543_way() -> None:
    options = sip.parse((DATA / "badbranch.dat").read_bytes())
    assert isinstance(options, Request)
    key = server_key(options)
    assert key[0] == "2543"  # RFC 4475 §3.2.1: "z9hG4bK" alone identifies nothing
    tx = ServerNonInvite(options, PEER, T, [], 0.0)
    retransmission = sip.parse((DATA / "badbranch.dat").read_bytes())
    assert isinstance(retransmission, Request)
    assert server_key(retransmission) == key and tx.matches(retransmission)
    later = retransmission.copy()
    later.cseq = sip.CSeq(9, "OPTIONS")
    assert server_key(later) != key


def _inv2543() -> Request:
    invite = sip.parse((DATA / "inv2543.dat").read_bytes())
    assert isinstance(invite, Request)
    return invite


def test_rfc2543_invite_retransmission_and_its_ack_match_the_transaction() -> None:
    invite = _inv2543()
    outbox: list[tuple[bytes, tuple[str, int]]] = []
    tx = ServerInvite(invite, PEER, T, outbox, 0.0)
    tx.respond(Response.for_request(invite, 486, to_tag="t486"), 0.0)
    again = _inv2543()
    assert server_key(again) == tx.key and tx.matches(again)
    tx.receive_request(again, 0.3)
    assert len(outbox) == 2  # the 486 went out again
    # an RFC 2543 ACK: no branch, the Request-URI and CSeq number of the INVITE
    ack = Request.create(
        "ACK",
        invite.uri,
        from_=invite.from_,
        to=invite.to.with_tag("t486"),
        call_id=invite.call_id,
        cseq=invite.cseq.number,
        via=invite.via[:1],
    )
    assert server_key(ack) == tx.key and tx.matches(ack)
    tx.receive_request(ack, 0.4)
    assert tx.state is State.CONFIRMED
    stranger = ack.copy()
    stranger.to = invite.to.with_tag("someone-else")
    assert server_key(stranger) == tx.key and not tx.matches(stranger)


def test_an_rfc2543_ack_for_a_2xx_is_passed_to_the_tu() -> None:
    invite = _inv2543()
    tx = ServerInvite(invite, PEER, T, [], 0.0)
    tx.respond(Response.for_request(invite, 200, to_tag="t200"), 0.0)
    ack = Request.create(
        "ACK",
        invite.uri,
        from_=invite.from_,
        to=invite.to.with_tag("t200"),
        call_id=invite.call_id,
        cseq=invite.cseq.number,
        via=invite.via[:1],
    )
    assert tx.matches(ack)
    assert tx.receive_request(ack, 0.1) == [AckReceived(ack)]


def test_our_received_and_rport_stamps_do_not_change_an_rfc2543_key() -> None:
    invite = _inv2543()
    stamped = invite.copy()
    stamped.via = [invite.via[0].with_params(received="198.51.100.7")]
    assert server_key(stamped) == server_key(invite)


# ----------------------------------------------------------------------------- the tables


@pytest.mark.parametrize(
    ("table", "inputs", "live"),
    [
        (
            INVITE_CLIENT_TABLE,
            ClientInvite.NETWORK_INPUTS,
            (State.CALLING, State.PROCEEDING, State.ACCEPTED, State.COMPLETED),
        ),
        (
            NON_INVITE_CLIENT_TABLE,
            ClientNonInvite.NETWORK_INPUTS,
            (State.TRYING, State.PROCEEDING, State.COMPLETED),
        ),
        (
            INVITE_SERVER_TABLE,
            ServerInvite.NETWORK_INPUTS,
            (State.PROCEEDING, State.ACCEPTED, State.COMPLETED, State.CONFIRMED),
        ),
        (
            NON_INVITE_SERVER_TABLE,
            (Input.REQUEST, Input.TRANSPORT_ERROR),
            (State.TRYING, State.PROCEEDING, State.COMPLETED),
        ),
    ],
)
def test_every_network_input_has_a_row_in_every_state(table, inputs, live) -> None:
    for state in (*live, State.TERMINATED):
        for input_ in inputs:
            assert (state, input_) in table, (state, input_)
    # and nothing leaves Terminated
    assert all(
        nxt is State.TERMINATED
        for (state, _), (nxt, _) in table.items()
        if state is State.TERMINATED
    )


def test_a_terminated_transaction_ignores_late_responses() -> None:
    req, clock = client("OPTIONS")
    clock.run(40.0)
    assert clock.tx.terminated
    assert clock.tx.receive(response(req, 200), 41.0) == []
