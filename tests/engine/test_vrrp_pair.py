"""Two engines as a VRRP pair (heartbeat_protocol = vrrp; engine/vrrp_failover.py) in the
interaction world: start-up, a crash, a clean stop, a return with and without preemption,
an operator's failover, garbage on protocol 112."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engine.config import parse
from engine.events import AdminRequested, AdvertReceived
from engine.model import Config
from engine.vrrp_wire import Advert, decode, encode
from tests.engine.world import World

BASE = parse((Path(__file__).parent / "testdata" / "_base.cf").read_text())  # keepalive 1, deadtime 3


def vrrp(preempt: bool = False, **kw: object) -> Config:
    return replace(BASE, heartbeat_protocol="vrrp", virtual_router_id=51, preempt=preempt,  # type: ignore[arg-type]
                   **kw)


def roles(w: World) -> dict[str, str]:
    return {n: e.failover.role for n, e in w.engines.items()}


def took(w: World, node: str) -> list[str]:
    return [line for line in w.log if f" {node} role standby -> active" in line]


def test_start_up_the_primary_priority_150_is_master_after_its_master_down_interval() -> None:
    w = World(vrrp(), show_heartbeats=True)
    w.boot("primary")
    w.boot("backup")
    w.run_until(10_000)
    assert roles(w) == {"primary": "active", "backup": "standby"}
    assert took(w, "primary")[0].startswith("3.414 ")  # 3 x 1 s + (256 - 150) / 256 s
    adverts = [line.split()[-1] for line in w.log if " primary advert " in line]
    got = decode(bytes.fromhex(adverts[0]), source="10.0.0.1", destination="224.0.0.18", ttl=255, version=3)
    assert got == Advert(3, 51, 150, 100, ("10.0.0.100", "10.1.0.254"))
    assert not [line for line in w.log if " backup advert " in line]  # a VRRP backup is silent


def test_the_master_crashes_the_backup_takes_over_and_the_primary_returns_without_preemption() -> None:
    w = World(vrrp())
    w.boot("primary")
    w.boot("backup")
    w.run_until(10_000)
    w.crash("primary")
    w.run_until(20_000)
    assert roles(w) == {"backup": "active"}
    t = float(took(w, "backup")[0].split()[0])
    assert 9.415 + 3.609 <= t <= 9.415 + 3.609 + 0.002, t  # the last advert heard, then Master_Down_Interval
    w.boot("primary")
    w.run_until(40_000)
    assert roles(w) == {"primary": "standby", "backup": "active"}  # preempt = 0, as Piranha


def test_with_preemption_the_primary_takes_its_place_back() -> None:
    w = World(vrrp(preempt=True))
    w.boot("primary")
    w.boot("backup")
    w.run_until(10_000)
    w.crash("primary")
    w.run_until(20_000)
    w.boot("primary")
    w.run_until(40_000)
    assert roles(w) == {"primary": "active", "backup": "standby"}


def test_a_clean_stop_priority_zero_the_backup_takes_over_after_its_skew_time() -> None:
    from engine.events import ShutdownRequested

    w = World(vrrp())
    w.boot("primary")
    w.boot("backup")
    w.run_until(10_000)
    w.feed("primary", ShutdownRequested())
    w.kill("primary")
    w.run_until(12_000)
    assert roles(w) == {"backup": "active"}
    assert took(w, "backup")[0].startswith("10.610 ")  # 1 ms latency + (256 - 100) / 256 s


def test_an_operators_failover_is_make_before_break() -> None:
    w = World(vrrp())
    w.boot("primary")
    w.boot("backup")
    w.run_until(10_000)
    w.feed("primary", AdminRequested("failover"))
    assert roles(w)["primary"] == "active"  # still holding the VIPs
    w.run_until(11_000)
    assert roles(w) == {"primary": "standby", "backup": "active"}
    backup_on = float(took(w, "backup")[0].split()[0])
    primary_off = float(next(line for line in w.log if " primary role active -> standby" in line).split()[0])
    assert backup_on < primary_off <= backup_on + 0.252
    w.run_until(30_000)
    assert roles(w) == {"primary": "standby", "backup": "active"}  # not taken back


def test_garbage_on_protocol_112_is_counted_never_raised() -> None:
    w = World(vrrp())
    w.boot("primary")
    w.run_until(500)
    e = w.engines["primary"]
    foreign = encode(Advert(3, 52, 200, 100, ("10.0.0.100",)), "10.0.0.9", "224.0.0.18")  # another VRID
    for payload in (b"", b"\x31", bytes(40), foreign):
        w.feed("primary", AdvertReceived("10.0.0.9", "224.0.0.18", 255, payload))
    w.feed("primary", AdvertReceived("10.0.0.9", "224.0.0.18", 64,
                                     encode(Advert(3, 51, 200, 100, ("10.0.0.100",)), "10.0.0.9", "224.0.0.18")))
    counters = e.status.counters
    assert counters["adverts_foreign_vrid"] == 1 and counters["adverts_bad_ttl"] == 1
    assert counters["adverts_bad_short"] == 2 and counters["adverts_bad_version"] == 1
    assert counters["adverts_received"] == 0
    w.run_until(10_000)
    assert roles(w)["primary"] == "active"  # none of it was taken for a master
