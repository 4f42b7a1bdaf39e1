"""The failover rules against forged and replayed heartbeats (issue 9),
on two `Failover` machines wired by hand: what each accepts, counts and
decides.  The interaction file testdata/failover_forged.txt shows the same
rules through whole engines."""

from __future__ import annotations

from engine.config import parse
from engine.engine import Engine
from engine.events import AdminRequested, HeartbeatReceived, Notify, SendHeartbeat, TableRead, Tick
from engine.failover import Failover, Noticed
from engine.wire import Heartbeat, decode, encode

BASE = """serial_no = 1
primary = 10.0.0.1
backup = 10.0.0.2
primary_private = 192.168.0.1
backup_private = 192.168.0.2
backup_active = 1
keepalive = 1
deadtime = 3
"""
KEY = b"0123456789abcdef0123456789abcdef"
SOURCES = {("primary", "public"): "10.0.0.1", ("primary", "private"): "192.168.0.1",
           ("backup", "public"): "10.0.0.2", ("backup", "private"): "192.168.0.2"}


def pair(key: bytes | None = None, seq_primary: int = 1_000_000, seq_backup: int = 2_000_000
         ) -> tuple[Failover, Failover]:
    config = parse(BASE, "lvs.cf")
    p = Failover(config, "primary", key=key, seq_start=seq_primary)
    b = Failover(config, "backup", key=key, seq_start=seq_backup)
    p.start(0)
    b.start(0)
    return p, b


def deliver(sends: list[SendHeartbeat], sender: str, to: Failover, now_ms: int, paths: tuple[str, ...] = ("public", "private")) -> list[str]:
    decisions = []
    for s in sends:
        if s.path in paths:
            decisions += [v.decision for v in to.receive(now_ms, s.path, SOURCES[(sender, s.path)], s.payload)]
    return decisions


def exchange(p: Failover, b: Failover, now_ms: int) -> None:
    """One round both ways: each sends a heartbeat, the other hears it."""
    deliver(p._send(now_ms, p.role), "primary", b, now_ms)
    deliver(b._send(now_ms, b.role), "backup", p, now_ms)


def test_a_signed_heartbeat_is_refused_on_the_other_path() -> None:
    p, b = pair(KEY)
    exchange(p, b, 0)
    public = [s for s in p._send(100, "standby") if s.path == "public"][0]
    before = b.counters["heartbeats_received"]
    b.receive(100, "private", "192.168.0.1", public.payload)  # captured on public, replayed on private
    assert b.counters["heartbeats_wrong_path"] == 1
    b.receive(100, "public", "10.0.0.1", public.payload)
    b.receive(100, "public", "10.0.0.1", public.payload)  # the same slot twice: a replay
    assert b.counters["heartbeats_replayed"] == 1
    assert b.counters["heartbeats_received"] == before + 1


def test_a_restarted_partner_with_a_smaller_sequence_is_accepted_once_it_acks_us() -> None:
    for key in (KEY, None):
        p, b = pair(key)
        for t in range(0, 3000, 1000):
            exchange(p, b, t)
        # The primary restarts with a smaller sequence (its clock went back).
        p2 = Failover(parse(BASE, "lvs.cf"), "primary", key=key, seq_start=10)
        p2.start(3000)
        first = p2._send(3000, "standby")  # ack 0: it has not heard us yet
        deliver(first, "primary", b, 3000)
        assert b.counters["heartbeats_out_of_sequence"] == 2, key  # both paths: neither fresh nor a dead partner
        deliver(b._send(3100, b.role), "backup", p2, 3100)
        deliver(p2._send(3200, "standby"), "primary", b, 3200)  # now it acks one of ours
        assert b.heard_seq == p2.seq and b.partner_hears_us(3200), key


def test_a_replayed_old_boot_is_not_believed_with_a_key() -> None:
    p, b = pair(KEY)
    old = p._send(0, "active")
    deliver(old, "primary", b, 0)  # heard, and captured by a forger
    for t in range(0, 100_000, 1000):
        exchange(p, b, t)
    b.partner_alive = False  # the primary died meanwhile
    deliver(old, "primary", b, 101_000)
    assert b.counters["heartbeats_out_of_sequence"] == 2 and b.partner_alive is False


def test_an_unconfirmed_leaving_takes_over_only_after_a_keepalive_without_active() -> None:
    p, b = pair()
    for t in range(0, 3000, 1000):
        exchange(p, b, t)
    p.role = "active"
    exchange(p, b, 3000)
    # A forger who guessed the next sequence but not an ack (ack 0 is stale):
    forged = encode(Heartbeat("shoal", "leaving", "primary", b.heard_seq + 50, 0, 1))
    assert b.receive(3100, "public", "10.0.0.1", forged) == []  # a jump: believed only with a fresh ack
    # A leaving that continues the stream is trusted: at once.
    assert set(deliver(p.leave(3200), "primary", b, 3200)) == {"go_active"}


def test_an_untrusted_leaving_is_cancelled_by_the_partner_still_active() -> None:
    p, b = pair()
    exchange(p, b, 0)
    b.partner_alive = False  # the primary was dead to the backup: a new stream is believed, not trusted
    b.live.dead_at_ms = None
    leaving = encode(Heartbeat("shoal", "leaving", "primary", 5_000_000, 0, 1))
    assert b.receive(4000, "public", "10.0.0.1", leaving) == []
    assert b.counters["heartbeats_unconfirmed"] == 1
    active = encode(Heartbeat("shoal", "active", "primary", 5_000_001, 0, 1))
    b.receive(4500, "public", "10.0.0.1", active)
    verdicts, _ = b.tick(5001)
    assert [v.decision for v in verdicts] == []
    # Without the cancelling `active`, the keepalive's silence confirms it.
    p, b = pair()
    exchange(p, b, 0)
    b.partner_alive, b.live.dead_at_ms = False, None
    b.receive(4000, "public", "10.0.0.1", leaving)
    verdicts, _ = b.tick(5000)
    assert [v.decision for v in verdicts] == ["go_active"]


def test_a_forged_stale_ack_does_not_make_the_partner_deaf() -> None:
    p, b = pair()
    for t in range(0, 10_000, 1000):
        exchange(p, b, t)
    p.role = "active"
    b.role = "active"
    # A sniffing forger continues the backup's stream but sends ack 0.
    forged = encode(Heartbeat("shoal", "active", "backup", p.heard_seq + 1, 0, 1))
    assert [v.decision for v in p.receive(10_000, "public", "10.0.0.2", forged)] == ["rearp"]
    assert not p.partner_deaf(10_000)


def test_a_hand_over_the_partner_never_takes_keeps_the_role() -> None:
    p, b = pair()
    for t in range(0, 3000, 1000):
        exchange(p, b, t)
    p.role = "active"
    sent = p.hand_over(3000)
    assert decode(sent[0].payload, None).state == "leaving"
    assert p.handing_over and p.role == "active"  # make before break: the VIPs stay until the partner has them
    for t in (3500, 3999):  # the backup stays standby (it never takes over)
        deliver(b._send(t, "standby"), "backup", p, t)
        assert p.tick(t)[0] == []
    verdicts, notes = p.tick(3000 + 1000)  # a keepalive after the request
    assert verdicts == [] and Noticed("handover_failed") in notes
    assert not p.handing_over and p.role == "active"
    assert all(decode(h.payload, None).state == "active" for h in p.due_heartbeats(4000))


def test_a_hand_over_gives_the_vips_up_a_quarter_keepalive_after_the_partner_is_active() -> None:
    p, b = pair()
    for t in range(0, 3000, 1000):
        exchange(p, b, t)
    p.role = "active"
    p.hand_over(3000)
    assert p.tick(3100)[0] == []
    deliver(b._send(3100, "active"), "backup", p, 3100)
    assert p.role == "active" and p.tick(3100 + 249)[0] == []
    verdicts, _ = p.tick(3100 + 250)
    assert [v.decision for v in verdicts] == ["go_standby"]


def test_a_hand_over_ends_when_the_router_gives_up_for_a_link() -> None:
    p, b = pair()
    for t in range(0, 3000, 1000):
        exchange(p, b, t)
    p.role = "active"
    p.hand_over(3000)
    p.give_up(3100)  # monitor_links: a link it needs went down
    assert not p.handing_over and p.role == "standby"
    deliver(b._send(3200, "active"), "backup", p, 3200)
    assert p.release_at_ms is None and Noticed("handover_failed") not in p.tick(3000 + 1000)[1]


def test_operator_failover_is_refused_unless_the_partner_is_heard_both_ways() -> None:
    config = parse(BASE + "virtual web {\n address = 10.0.0.100 eth0:1\n server s1 {\n  address = 10.1.0.11\n }\n}\n",
                   "lvs.cf")
    e = Engine(config, "primary", seq_start=1_000_000)
    e.step(0, TableRead({}))
    for t in range(500, 3001, 500):
        e.step(t, Tick())  # nobody heard for deadtime: active
    assert e.failover.role == "active"
    refusal = e.admin_refusal(AdminRequested("failover"))
    assert refusal == "the partner is not heard"
    ready = e.step(3010, AdminRequested("failover"))
    assert any(isinstance(c, Notify) and c.kind == "admin_refused" for c in ready.commands)
    assert e.failover.role == "active"
    # The backup heard, standby, but it has never acked us: still refused.
    hb = encode(Heartbeat("shoal", "standby", "backup", 7, 0, 1))
    e.step(3020, HeartbeatReceived("public", "10.0.0.2", hb))
    assert "does not hear us" in (e.admin_refusal(AdminRequested("failover")) or "")
    sent = max(e.failover.live.sent_at)
    hb = encode(Heartbeat("shoal", "standby", "backup", 8, sent, 2))
    e.step(3030, HeartbeatReceived("public", "10.0.0.2", hb))
    assert "serial_no 2" in (e.admin_refusal(AdminRequested("failover")) or "")
    assert e.admin_refusal(AdminRequested("drain", "nosuch")) == "no real server named nosuch"
    assert e.step(3040, AdminRequested("drain", "nosuch")).commands  # refused as a notice, never raised
