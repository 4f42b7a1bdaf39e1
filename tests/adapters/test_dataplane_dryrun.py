"""The dry-run dataplane, make(), and the ipvs dataplane's translation
(operations into pyroute2 calls, kernel replies into a Table) with a fake
IPVS socket: the ipvs dataplane itself runs on a real kernel only in
issue 5's qemu guest."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pyroute2 import IPVSDest, IPVSService  # type: ignore[import-untyped]
from pyroute2.netlink.generic.ipvs import ipvsmsg  # type: ignore[import-untyped]

from adapters.dataplane import DataplaneError, make
from adapters.dataplane.dryrun import DryRun
from adapters.dataplane.ipvs import Ipvs, calls, daemon_attrs, timeouts_attrs
from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService
from engine.events import SetTimeouts, StartSyncDaemon, StopSyncDaemon, TableOp
from engine.table import Dest, DestKey, Service, ServiceKey

WEB = ServiceKey("tcp", "10.0.0.1", 80)
RS1 = DestKey("10.1.0.11", 80)
RS2 = DestKey("10.1.0.12", 80)
OPS: list[TableOp] = [
    AddService(Service(WEB, "wlc")), AddDest(WEB, Dest(RS1, 1)), AddDest(WEB, Dest(RS2, 2)),
    EditService(Service(WEB, "sh", ("sh-port",), 300, "255.255.255.0")),
    EditDest(WEB, Dest(RS2, 0)), DelDest(WEB, RS1),
]


def test_dry_run_prints_restore_lines_and_keeps_the_table() -> None:
    out = io.StringIO()
    dp = DryRun(out)
    dp.apply(OPS)
    assert out.getvalue().splitlines() == [
        "-A -t 10.0.0.1:80 -s wlc",
        "-a -t 10.0.0.1:80 -r 10.1.0.11:80 -m -w 1",
        "-a -t 10.0.0.1:80 -r 10.1.0.12:80 -m -w 2",
        "-E -t 10.0.0.1:80 -s sh -p 300 -M 255.255.255.0 -b sh-port",
        "-e -t 10.0.0.1:80 -r 10.1.0.12:80 -m -w 0",
        "-d -t 10.0.0.1:80 -r 10.1.0.11:80",
    ]
    assert set(dp.read()[WEB].dests) == {RS2}
    dp.set_timeouts(SetTimeouts(900, 120, 300))
    dp.sync_daemon(StartSyncDaemon("master", "eth1", 7))
    dp.sync_daemon(StopSyncDaemon("master"))
    assert out.getvalue().splitlines()[-3:] == [
        "--set 900 120 300", "--start-daemon master --mcast-interface eth1 --syncid 7", "--stop-daemon master"]


def test_dry_run_refuses_as_the_kernel_and_keeps_what_came_before() -> None:
    out = io.StringIO()
    dp = make("dry-run")
    assert isinstance(dp, DryRun)
    dp.out = out
    bad = AddDest(WEB, Dest(RS1, 5))
    with pytest.raises(DataplaneError) as e:
        dp.apply([AddService(Service(WEB)), AddDest(WEB, Dest(RS1, 1)), bad, DelService(WEB)])
    assert e.value.op == bad and e.value.code == "EEXIST"
    assert len(out.getvalue().splitlines()) == 2 and dp.read()[WEB].dests[RS1].weight == 1
    for op, code in ((DelService(ServiceKey("udp", "10.0.0.1", 53)), "ESRCH"), (DelDest(WEB, RS2), "ENOENT")):
        with pytest.raises(DataplaneError) as e:
            dp.apply([op])
        assert e.value.code == code


def test_make_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="dry-run"):
        make("bpf")


# ------------------------------------------------------------------ ipvs with a fake socket


def _reply(nla: str, obj: Any) -> ipvsmsg:
    """A message as the kernel sends it, through pyroute2's own codec."""
    msg = ipvsmsg()
    msg["cmd"] = 4
    msg["version"] = 1
    msg["attrs"] = [(nla, obj.dump_nla())]
    msg.encode()
    back = ipvsmsg(msg.data)
    back.decode()
    return back


class FakeIPVS:
    """Keeps a table the way the kernel would, answering dumps with real messages."""

    prid = 42

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = []
        self.services: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.dests: dict[tuple[Any, ...], dict[tuple[str, int], dict[str, Any]]] = {}
        self.requests: list[Any] = []

    @staticmethod
    def _key(s: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(s.get(k) for k in ("af", "protocol", "addr", "port", "fwmark"))

    def service(self, command: str, service: Any = None) -> list[Any]:
        if command == "dump":
            return [_reply("IPVS_CMD_ATTR_SERVICE", IPVSService(**s)) for s in self.services.values()]
        fields = dict(service)
        self.calls.append(("service", command, fields, None))
        key = self._key(fields)
        if command == "add":
            self.services[key] = fields
            self.dests[key] = {}
        elif command == "set":
            self.services[key] = fields
        elif command == "del":
            del self.services[key], self.dests[key]
        else:
            raise AssertionError(command)
        return []

    def dest(self, command: str, service: Any, dest: Any = None) -> list[Any]:
        key = self._key(dict(service))
        if command == "dump":
            return [_reply("IPVS_CMD_ATTR_DEST", IPVSDest(**d)) for d in self.dests[key].values()]
        fields = dict(dest)
        self.calls.append(("dest", command, dict(service), fields))
        if command in ("add", "set"):
            self.dests[key][(fields["addr"], fields["port"])] = fields
        elif command == "del":
            del self.dests[key][(fields["addr"], fields["port"])]
        return []

    def nlm_request(self, msg: Any, msg_type: int, msg_flags: int) -> list[Any]:
        assert msg_type == self.prid
        msg.encode()
        self.requests.append(msg)
        return []


def test_ipvs_translation_of_each_op() -> None:
    assert [c[:2] for c in map(calls, OPS)] == [
        ("service", "add"), ("dest", "add"), ("dest", "add"), ("service", "set"), ("dest", "set"), ("dest", "del")]
    _, _, svc, _ = calls(OPS[3])
    assert svc["sched_name"] == "sh" and svc["flags"]["flags"] == 0x11 and svc["timeout"] == 300
    assert svc["netmask"] == "255.255.255.0"
    for forward, method in (("masq", 0), ("tunnel", 2), ("route", 3)):
        _, _, _, dest = calls(AddDest(WEB, Dest(RS1, 4, forward)))  # type: ignore[arg-type]
        assert dest is not None and dest["fwd_method"] == method and dest["weight"] == 4
    _, _, svc, _ = calls(AddService(Service(ServiceKey("fwmark", "", 0, 9, 6), "rr", (), 60, "48")))
    assert svc["fwmark"] == 9 and "addr" not in svc and svc["netmask"] == "48.0.0.0"  # host-order prefix (LE)


def test_ipvs_applies_and_reads_back_through_pyroute2_messages() -> None:
    fake = FakeIPVS()
    dp = Ipvs(sock=fake)
    assert dp.read() == {}
    fwm6 = ServiceKey("fwmark", "", 0, 9, 6)
    dns = ServiceKey("udp", "2001:db8::1", 53, family=6)
    ops = OPS + [
        AddService(Service(fwm6, "mh", ("mh-fallback", "mh-port"), 60, "64")),
        AddDest(fwm6, Dest(DestKey("2001:db8::11", 0), 3, "tunnel")),
        AddService(Service(dns, "rr")), AddDest(dns, Dest(DestKey("2001:db8::12", 53), 1, "route")),
    ]
    dp.apply(ops)
    table = dp.read()
    assert table[WEB].service == Service(WEB, "sh", ("sh-port",), 300, "255.255.255.0")
    assert table[WEB].dests == {RS2: Dest(RS2, 0)}
    assert table[fwm6].service == Service(fwm6, "mh", ("mh-fallback", "mh-port"), 60, "64")
    assert table[fwm6].dests[DestKey("2001:db8::11", 0)].forward == "tunnel"
    assert table[dns].dests[DestKey("2001:db8::12", 53)] == Dest(DestKey("2001:db8::12", 53), 1, "route")
    assert all(c[1] != "update" for c in fake.calls)


def test_ipvs_errors_carry_op_and_errno() -> None:
    class Refusing(FakeIPVS):
        def service(self, command: str, service: Any = None) -> list[Any]:
            if command == "add":
                from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

                raise NetlinkError(17, "File exists")
            return super().service(command, service)

    dp = Ipvs(sock=Refusing())
    op = AddService(Service(WEB))
    with pytest.raises(DataplaneError) as e:
        dp.apply([op, DelService(WEB)])
    assert e.value.op == op and e.value.code == "EEXIST"


def test_ipvs_timeouts_and_sync_daemon_messages() -> None:
    fake = FakeIPVS()
    dp = Ipvs(sock=fake)
    dp.set_timeouts(SetTimeouts(0, 0, 0))
    assert fake.requests == []  # 0 leaves the kernel's timeouts
    dp.set_timeouts(SetTimeouts(900, 0, 300))
    dp.sync_daemon(StartSyncDaemon("backup", "eth1", 3))
    dp.sync_daemon(StopSyncDaemon("backup"))
    assert [m["cmd"] for m in fake.requests] == [12, 9, 10]
    assert timeouts_attrs(SetTimeouts(900, 0, 300)) == [("IPVS_CMD_ATTR_TIMEOUT_TCP", 900),
                                                        ("IPVS_CMD_ATTR_TIMEOUT_UDP", 300)]
    assert daemon_attrs(StartSyncDaemon("backup", "eth1", 3))[1] == [
        ("IPVS_DAEMON_ATTR_STATE", 2), ("IPVS_DAEMON_ATTR_MCAST_IFN", "eth1"), ("IPVS_DAEMON_ATTR_SYNC_ID", 3)]
    decoded = type(fake.requests[1])(fake.requests[1].data)
    decoded.decode()
    assert decoded.get_attr("IPVS_CMD_ATTR_DAEMON").get_attr("IPVS_DAEMON_ATTR_SYNC_ID") == 3


def test_ipvs_read_keeps_the_written_spelling_when_it_means_the_same() -> None:
    dp = Ipvs(sock=FakeIPVS())
    spelled = Service(WEB, "sh", ("sh-port", "sh-fallback"), 300, "24")
    dp.apply([AddService(spelled)])
    assert dp.read()[WEB].service == spelled  # kernel: ("sh-fallback", "sh-port"), "255.255.255.0"
    fresh = Ipvs(sock=dp.sock)  # a restarted daemon knows no spelling: the kernel's
    assert fresh.read()[WEB].service == Service(WEB, "sh", ("sh-fallback", "sh-port"), 300, "255.255.255.0")
