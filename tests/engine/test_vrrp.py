"""VRRP's election (engine/vrrp.py): RFC 5798 section 6.4 between two routers, in pure time."""

from __future__ import annotations

import pytest

from engine.vrrp import Election, Settings, master_down_ms, skew_ms

A, B = "10.0.0.1", "10.0.0.2"


def settings(address: str, priority: int, *, version: int = 3, interval_ms: int = 1000, preempt: bool = True,
             delay_ms: int = 0) -> Settings:
    return Settings(version, 51, priority, interval_ms, address, preempt, delay_ms)


class Pair:
    """Two elections on one link: adverts arrive 1 ms after they are sent, unless the sender is cut."""

    def __init__(self, a: Settings, b: Settings, start_b_ms: int = 0) -> None:
        self.e = {"a": Election(a), "b": Election(b)}
        self.now = 0
        self.cut: set[str] = set()
        self.down: set[str] = set()
        self.log: list[tuple[int, str, str]] = []  # (time, router, decision)
        self.inbox: list[tuple[int, str, int, int, str]] = []  # (at, to, priority, interval, sender)
        self.e["a"].start(0)
        self.started = {"a": 0, "b": start_b_ms}
        if start_b_ms == 0:
            self.e["b"].start(0)

    def send(self, who: str, priority: int | None = None) -> None:
        if who in self.cut:
            return
        other = "b" if who == "a" else "a"
        s = self.e[who].settings
        self.inbox.append((self.now + 1, other, s.priority if priority is None else priority, s.interval_ms,
                           s.address))

    def _verdicts(self, who: str, verdicts: list, advert: bool) -> None:  # type: ignore[type-arg]
        for v in verdicts:
            self.log.append((self.now, who, v.decision))
        if advert:
            self.send(who)

    def run(self, until_ms: int) -> None:
        while self.now < until_ms:
            self.now += 1
            for who, at in self.started.items():
                if at == self.now:
                    self.e[who].start(self.now)
            for item in [i for i in self.inbox if i[0] <= self.now]:
                self.inbox.remove(item)
                _, to, priority, interval, sender = item
                if to in self.down or self.now < self.started[to]:
                    continue
                self._verdicts(to, *self.e[to].heard(self.now, priority, interval, sender))
            for who, e in self.e.items():
                if who in self.down or self.now < self.started[who]:
                    continue
                self._verdicts(who, *e.tick(self.now))

    def states(self) -> tuple[str, str]:
        return self.e["a"].state, self.e["b"].state


def test_the_rfcs_times() -> None:
    assert skew_ms(100, 1000, 3) == 609 and master_down_ms(100, 1000, 3) == 3609  # keepalived's 3.6 s
    assert skew_ms(150, 1000, 3) == 414 and skew_ms(100, 20, 3) == 12
    assert skew_ms(100, 3000, 2) == 609  # VRRPv2: in seconds, whatever the interval
    assert master_down_ms(254, 20, 3) == 60  # 20 ms adverts: 3 intervals and a sliver


def test_start_up_the_higher_priority_is_master_and_the_other_backup() -> None:
    p = Pair(settings(A, 150), settings(B, 100))
    p.run(10_000)
    assert p.states() == ("master", "backup")
    assert p.log == [(3414, "a", "go_active")]  # Master_Down_Interval at priority 150: 3 s + 0.414 s


def test_the_master_crashes_the_backup_takes_over_after_master_down_interval() -> None:
    p = Pair(settings(A, 150), settings(B, 100))
    p.run(10_000)
    p.down.add("a")
    p.cut.add("a")
    p.run(20_000)
    took = [t for t, who, d in p.log if who == "b" and d == "go_active"]
    # a's adverts went out every second from 3.414 s: the last heard at 9.415 s, then 3.609 s.
    assert took == [9_415 + 3_609]


def test_a_clean_stop_priority_zero_the_backup_takes_over_after_skew_time() -> None:
    p = Pair(settings(A, 150), settings(B, 100))
    p.run(10_000)
    assert p.e["a"].stop()
    p.send("a", priority=0)
    p.down.add("a")
    p.run(12_000)
    assert [(t, who) for t, who, d in p.log if d == "go_active"][-1] == (10_001 + 609, "b")


def test_return_with_preemption_the_higher_priority_takes_the_role_back() -> None:
    p = Pair(settings(A, 150), settings(B, 100))
    p.run(10_000)
    p.down.add("a")
    p.cut.add("a")
    p.run(20_000)
    assert p.states()[1] == "master"
    p.down.discard("a")
    p.cut.discard("a")
    p.e["a"].start(20_000)  # a restarts
    p.run(30_000)
    assert p.states() == ("master", "backup")
    # b yields with a last advert (as keepalived): a, hearing a lower priority, announces its VIPs again
    assert [d for t, who, d in p.log if t > 20_000] == ["go_active", "go_standby", "rearp"]


def test_return_without_preemption_the_returning_router_stays_backup() -> None:
    p = Pair(settings(A, 150, preempt=False), settings(B, 100, preempt=False))
    p.run(10_000)
    p.down.add("a")
    p.cut.add("a")
    p.run(20_000)
    p.down.discard("a")
    p.cut.discard("a")
    p.e["a"].start(20_000)
    p.run(40_000)
    assert p.states() == ("backup", "master")


def test_equal_priorities_the_higher_address_is_master() -> None:
    p = Pair(settings(A, 100), settings(B, 100))
    p.run(10_000)
    assert p.states() == ("backup", "master")


def test_a_healed_split_the_lower_master_yields_and_the_winner_reannounces() -> None:
    p = Pair(settings(A, 150), settings(B, 100))
    p.run(10_000)
    p.cut.update({"a", "b"})
    p.run(20_000)
    assert p.states() == ("master", "master")
    p.cut.clear()
    p.run(22_000)
    assert p.states() == ("master", "backup")
    assert ("a", "rearp") in {(who, d) for t, who, d in p.log if t > 20_000}


def test_preempt_delay_holds_a_lower_priority_master_for_that_long() -> None:
    p = Pair(settings(A, 150, delay_ms=5000), settings(B, 100), start_b_ms=0)
    p.e["a"].start(0)
    p.down.add("a")
    p.run(10_000)  # b alone: master
    p.down.discard("a")
    p.e["a"].start(10_000)
    p.run(30_000)
    took = [t for t, who, d in p.log if who == "a" and d == "go_active"]
    # a hears b (priority 100) from 10 s; preempting waits 5 s after the first, then Master_Down_Interval.
    assert len(took) == 1 and 15_000 + 3_000 < took[0] <= 15_000 + 3_500, took


def test_vrrp_v2_discards_an_advert_with_another_interval() -> None:
    e = Election(settings(A, 100, version=2))
    e.start(0)
    assert e.heard(100, 150, 2000, B) == ([], False)
    assert e.counters["adverts_interval_mismatch"] == 1
    assert e.tick(3609)[0][0].decision == "go_active"  # as if nothing was heard


def test_vrrp_v3_learns_the_masters_interval() -> None:
    e = Election(settings(A, 100, interval_ms=1000))
    e.start(0)
    e.heard(100, 150, 20, B)  # the master advertises every 20 ms
    assert e.next_deadline() == 100 + master_down_ms(100, 20, 3)


def test_the_stall_guard_gives_a_late_step_one_more_interval() -> None:
    e = Election(settings(B, 100))
    e.start(0)
    assert e.tick(5000, late_ms=1400) == ([], False)  # woken 1.4 s late: we slept, not the master
    assert e.counters["stall_guards"] == 1 and e.next_deadline() == 6000
    assert e.tick(6000)[0][0].decision == "go_active"


def test_a_router_with_a_link_down_does_not_become_master() -> None:
    e = Election(settings(B, 100))
    e.start(0)
    e.unfit = True
    assert e.tick(3609) == ([], False) and e.state == "backup"
    e.unfit = False
    assert e.tick(3609 * 2)[0][0].decision == "go_active"


def test_an_operators_failover_priority_zero_and_no_preemption_back() -> None:
    p = Pair(settings(A, 150), settings(B, 100))
    p.run(10_000)
    assert p.e["a"].give_up(10_000, hand_over=True)
    p.send("a", priority=0)
    p.run(20_000)
    assert p.states() == ("backup", "master")  # b's lower priority is taken: handed over


@pytest.mark.parametrize("who", ["a", "b"])
def test_a_stopped_router_decides_nothing(who: str) -> None:
    p = Pair(settings(A, 150), settings(B, 100))
    p.run(5000)
    p.e[who].stop()
    assert p.e[who].next_deadline() is None and p.e[who].tick(99_999) == ([], False)
    assert p.e[who].heard(99_999, 0, 1000, A) == ([], False)
