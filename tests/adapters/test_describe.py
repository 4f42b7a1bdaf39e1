"""adapters/describe.py: every command and notice as its log line and its
JSON fields, one row each; a command type or notice kind of the engine
without a row fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

import pytest

from adapters.describe import COMMAND_TYPES, NOTICE_KINDS, Said, command_words, describe, failed, quoted
from engine.events import (
    AddDest, AddService, AddVip, CheckSpec, Command, DelDest, DelService, DelVip, EditDest, EditService, Notify,
    ReadLoad, ReadTable, RunCommand, SendAdvert, SendGratuitousArp, SendHeartbeat, SetTimeouts, StartCheck, StartSyncDaemon,
    StopSyncDaemon,
)
from engine.model import Config, Server, Virtual
from engine.table import Dest, DestKey, Service, ServiceKey

WEB = ServiceKey("tcp", "10.50.0.100", 80)
DNS6 = ServiceKey("udp", "2001:db8::1", 53, family=6)
WEB6 = ServiceKey("tcp", "2001:db8::1", 80, family=6)
MARK = ServiceKey("fwmark", "", 0, fwmark=5)
MARK6 = ServiceKey("fwmark", "", 0, fwmark=7, family=6)
RS1 = DestKey("10.60.1.11", 80)
CONFIG = Config(deadtime_ms=5_000, keepalive_ms=2_000, virtuals=(
    Virtual("web", address="10.50.0.100", device="eth0:1", servers=(Server("rs1", "10.60.1.11"),)),
    Virtual("marked", fwmark=5),
))

# (command, its line, its fields); the config above is given to each.
CASES: list[tuple[Command, str, dict[str, object]]] = [
    # --- the table
    (AddService(Service(WEB, "wlc", name="web")), "table: -A -t 10.50.0.100:80 -s wlc (web)",
     {"kind": "table", "op": "-A", "service": "TCP 10.50.0.100:80", "scheduler": "wlc", "virtual": "web"}),
    (EditService(Service(WEB, "sh", ("sh-port",), 300, "255.255.255.0")),
     "table: -E -t 10.50.0.100:80 -s sh -p 300 -M 255.255.255.0 -b sh-port",
     {"kind": "table", "op": "-E", "service": "TCP 10.50.0.100:80", "scheduler": "sh", "persistent": 300,
      "pmask": "255.255.255.0", "flags": "sh-port"}),
    (DelService(WEB, "web"), "table: -D -t 10.50.0.100:80 (web)",
     {"kind": "table", "op": "-D", "service": "TCP 10.50.0.100:80", "virtual": "web"}),
    (AddDest(WEB, Dest(RS1, 3, "masq", "rs1")), "table: -a -t 10.50.0.100:80 -r 10.60.1.11:80 -m -w 3 (web/rs1)",
     {"kind": "table", "op": "-a", "service": "TCP 10.50.0.100:80", "server": "10.60.1.11:80", "method": "-m",
      "weight": 3, "virtual": "web", "name": "rs1"}),
    (EditDest(WEB, Dest(RS1, 0, "route")), "table: -e -t 10.50.0.100:80 -r 10.60.1.11:80 -g -w 0 (web)",
     {"kind": "table", "op": "-e", "service": "TCP 10.50.0.100:80", "server": "10.60.1.11:80", "method": "-g",
      "weight": 0, "virtual": "web"}),
    (DelDest(WEB, RS1, "rs1"), "table: -d -t 10.50.0.100:80 -r 10.60.1.11:80 (web/rs1)",
     {"kind": "table", "op": "-d", "service": "TCP 10.50.0.100:80", "server": "10.60.1.11:80", "virtual": "web",
      "name": "rs1"}),
    # IPv6, UDP, fwmark (v4 and v6), tunnelling
    (AddService(Service(DNS6, "rr")), "table: -A -u [2001:db8::1]:53 -s rr",
     {"kind": "table", "op": "-A", "service": "UDP [2001:db8::1]:53", "scheduler": "rr"}),
    (AddDest(WEB6, Dest(DestKey("2001:db8:1::11", 80), 1, "tunnel", "v6a")),
     "table: -a -t [2001:db8::1]:80 -r [2001:db8:1::11]:80 -i -w 1 --tun-type ipip (v6a)",
     {"kind": "table", "op": "-a", "service": "TCP [2001:db8::1]:80", "server": "[2001:db8:1::11]:80",
      "method": "-i", "weight": 1, "name": "v6a"}),
    (AddService(Service(MARK, "wlc", name="marked")), "table: -A -f 5 -s wlc (marked)",
     {"kind": "table", "op": "-A", "service": "FWM 5", "scheduler": "wlc", "virtual": "marked"}),
    (AddDest(MARK, Dest(DestKey("10.60.1.12", 0), 2, "route", "rs2")),
     "table: -a -f 5 -r 10.60.1.12:0 -g -w 2 (marked/rs2)",
     {"kind": "table", "op": "-a", "service": "FWM 5", "server": "10.60.1.12:0", "method": "-g", "weight": 2,
      "virtual": "marked", "name": "rs2"}),
    (DelService(MARK6), "table: -D -f 7 -6", {"kind": "table", "op": "-D", "service": "FWM 7 IPv6"}),
    (ReadTable(), "table: read back from the kernel", {"kind": "table", "op": "read"}),
    # --- addresses, ARP, heartbeats
    (AddVip("10.50.0.100", 24, "eth0", "eth0:1"), "vip: add 10.50.0.100/24 dev eth0:1",
     {"kind": "vip", "op": "add", "address": "10.50.0.100", "prefix": 24, "device": "eth0", "label": "eth0:1"}),
    (DelVip("2001:db8::100", 64, "eth0", ""), "vip: del 2001:db8::100/64 dev eth0",
     {"kind": "vip", "op": "del", "address": "2001:db8::100", "prefix": 64, "device": "eth0", "label": ""}),
    (SendGratuitousArp("10.50.0.100", "eth0"), "arp: 10.50.0.100 on eth0",
     {"kind": "arp", "address": "10.50.0.100", "device": "eth0"}),
    (SendGratuitousArp("2001:db8::100", "eth0"), "arp: 2001:db8::100 on eth0 (unsolicited neighbour advertisement)",
     {"kind": "arp", "address": "2001:db8::100", "device": "eth0"}),
    (SendHeartbeat("private", "fd09:1::2", 539, b"\x00" * 24),
     "heartbeat: send to [fd09:1::2]:539 on the private path (24 bytes)",
     {"kind": "heartbeat", "op": "send", "path": "private", "address": "fd09:1::2", "port": 539, "bytes": 24}),
    (SendAdvert(bytes.fromhex("31339602006437e00a6300640a630065")), "vrrp: advert sent, priority 150 (16 bytes)",
     {"kind": "vrrp", "op": "send", "priority": 150, "bytes": 16}),
    # --- the kernel's other settings
    (SetTimeouts(900, 120, 300), "timeouts: ipvsadm --set 900 120 300",
     {"kind": "timeouts", "tcp": 900, "tcpfin": 120, "udp": 300}),
    (StartSyncDaemon("master", "eth1", 7), "syncd: ipvsadm --start-daemon master --mcast-interface eth1 --syncid 7",
     {"kind": "syncd", "op": "start", "state": "master", "iface": "eth1", "syncid": 7}),
    (StopSyncDaemon("backup"), "syncd: ipvsadm --stop-daemon backup",
     {"kind": "syncd", "op": "stop", "state": "backup"}),
    # --- checks, loads, operators' commands
    (StartCheck(4, CheckSpec("10.60.1.11", 80, "tcp", send="GET / HTTP/1.0\r\n\r\n", expect="HTTP")),
     'check 4: tcp 10.60.1.11:80, expect "HTTP", timeout 10.0 s',
     {"kind": "check", "check_id": 4, "type": "tcp", "address": "10.60.1.11", "port": 80, "timeout": 10.0,
      "expect": "HTTP"}),
    (StartCheck(5, CheckSpec("2001:db8:1::11", 443, "https", timeout_ms=2_500)),
     "check 5: https [2001:db8:1::11]:443/, status 200 wanted, timeout 2.5 s",
     {"kind": "check", "check_id": 5, "type": "https", "address": "2001:db8:1::11", "port": 443, "timeout": 2.5,
      "path": "/", "status": 200}),
    (StartCheck(6, CheckSpec("10.60.1.11", 53, "udp", send_program="/bin/probe %h %p", expect="^ok", use_regex=True)),
     'check 6: send_program "/bin/probe %h %p" for 10.60.1.11:53, expect "^ok" (regex), timeout 10.0 s',
     {"kind": "check", "check_id": 6, "type": "udp", "address": "10.60.1.11", "port": 53, "timeout": 10.0,
      "send_program": "/bin/probe %h %p", "expect": "^ok"}),
    (ReadLoad(2, "10.60.1.11", "uptime"), "load: read 10.60.1.11 by uptime",
     {"kind": "load", "load_id": 2, "address": "10.60.1.11", "method": "uptime"}),
    (ReadLoad(3, "10.60.1.11", "command", 'ssh %h cat "/proc/loadavg"'),
     'load: read 10.60.1.11 by "ssh %h cat \\"/proc/loadavg\\""',
     {"kind": "load", "load_id": 3, "address": "10.60.1.11", "method": "command",
      "command": 'ssh %h cat "/proc/loadavg"'}),
    (RunCommand("/usr/local/sbin/up.sh\tnow", "active_cmd", 30_000),
     'command: run "/usr/local/sbin/up.sh\\tnow" (active_cmd)',
     {"kind": "command", "command": "/usr/local/sbin/up.sh\tnow", "reason": "active_cmd", "timeout": 30.0}),
    # --- every notice kind the engine emits
    (Notify("role", {"from": "standby", "to": "active", "reason": "partner dead: no heartbeat for deadtime"}),
     "role: standby -> active (partner dead: no heartbeat for 5.0 s)",
     {"kind": "role", "from": "standby", "to": "active", "reason": "partner dead: no heartbeat for 5.0 s"}),
    (Notify("health", {"service": "web", "server": "rs2", "from": "up", "to": "down", "detail": "connection refused"}),
     "health web/rs2: up -> down (connection refused)",
     {"kind": "health", "service": "web", "server": "rs2", "from": "up", "to": "down",
      "detail": "connection refused"}),
    (Notify("health", {"service": "web", "server": "rs1", "from": "unknown", "to": "up", "detail": ""}),
     "health web/rs1: unknown -> up",
     {"kind": "health", "service": "web", "server": "rs1", "from": "unknown", "to": "up", "detail": ""}),
    (Notify("weight", {"service": "web", "server": "rs1", "weight": 4}), "weight web/rs1: 4 (load_monitor)",
     {"kind": "weight", "service": "web", "server": "rs1", "weight": 4}),
    (Notify("partner", {"alive": False, "reason": "no heartbeat for deadtime"}),
     "partner: dead (no heartbeat for 5.0 s)",
     {"kind": "partner", "alive": False, "reason": "no heartbeat for 5.0 s"}),
    (Notify("heartbeat_lost", {"path": "private"}), "heartbeat: nothing heard on the private path",
     {"kind": "heartbeat_lost", "path": "private"}),
    (Notify("heartbeat_ignored", {"counter": "heartbeats_foreign", "why": "not from the partner",
                                  "path": "public", "source": "10.50.0.66"}),
     "heartbeat: ignored from 10.50.0.66 on the public path: not from the partner (counted in heartbeats_foreign)",
     {"kind": "heartbeat_ignored", "counter": "heartbeats_foreign", "why": "not from the partner",
      "path": "public", "source": "10.50.0.66"}),
    (Notify("heartbeat_ignored", {"counter": "claims_unconfirmed", "why": "a claim not confirmed"}),
     "heartbeat: ignored: a claim not confirmed (counted in claims_unconfirmed)",
     {"kind": "heartbeat_ignored", "counter": "claims_unconfirmed", "why": "a claim not confirmed"}),
    (Notify("quorum", {"service": "web", "ok": False}), "quorum web: lost",
     {"kind": "quorum", "service": "web", "ok": False}),
    (Notify("config", {"serial_no": 3}), "config: serial_no 3 in force", {"kind": "config", "serial_no": 3}),
    (Notify("error", {"what": "AddDest failed: EEXIST: destination 10.60.1.11:80 exists in TCP 10.50.0.100:80"}),
     "error: table -a failed: EEXIST: destination 10.60.1.11:80 exists in TCP 10.50.0.100:80",
     {"kind": "error", "what": "table -a failed: EEXIST: destination 10.60.1.11:80 exists in TCP 10.50.0.100:80"}),
    (Notify("admin_refused", {"action": "failover", "server": "", "reason": "the partner is not heard"}),
     "admin: failover refused: the partner is not heard",
     {"kind": "admin_refused", "action": "failover", "server": "", "reason": "the partner is not heard"}),
    (Notify("admin_refused", {"action": "drain", "server": "web/rs9", "reason": "no such server"}),
     "admin: drain web/rs9 refused: no such server",
     {"kind": "admin_refused", "action": "drain", "server": "web/rs9", "reason": "no such server"}),
    (Notify("vip_cleanup", {"reason": "starting standby: configured VIPs removed if present",
                            "addresses": "10.50.0.100 2001:db8::100"}),
     "vip: cleanup at start of 10.50.0.100 2001:db8::100 (starting standby: configured VIPs removed if present)",
     {"kind": "vip_cleanup", "reason": "starting standby: configured VIPs removed if present",
      "addresses": "10.50.0.100 2001:db8::100"}),
    (Notify("drift", {"what": "kernel table differs from what was applied; reconciling", "ops": 1,
                      "diff": "-a -t 10.50.0.100:80 -r 10.60.1.11:80 -m -w 1"}),
     "table: drift: kernel table differs from what was applied; reconciling; 1 operation(s): "
     "-a -t 10.50.0.100:80 -r 10.60.1.11:80 -m -w 1",
     {"kind": "drift", "what": "kernel table differs from what was applied; reconciling", "ops": 1,
      "diff": "-a -t 10.50.0.100:80 -r 10.60.1.11:80 -m -w 1"}),
    (Notify("stall", {"reason": "step late: listening one more keepalive"}),
     "stall: step late: listening one more keepalive",
     {"kind": "stall", "reason": "step late: listening one more keepalive"}),
    (Notify("hold", {"reason": "the partner did not take over within deadtime + keepalive of the operator's "
                               "failover: the usual rules apply again"}),
     "role: active kept (the partner did not take over within 7.0 s of the operator's failover: "
     "the usual rules apply again)",
     {"kind": "hold", "reason": "the partner did not take over within 7.0 s of the operator's failover: "
                                "the usual rules apply again"}),
    (Notify("links", {"down": "eth0 eth2", "went_down": "eth0", "came_up": "", "monitor_links": 1}),
     "links: eth0 down; down now: eth0 eth2 (monitor_links = 1)",
     {"kind": "links", "down": "eth0 eth2", "went_down": "eth0", "came_up": "", "monitor_links": 1}),
    (Notify("overrides", {"from": "partner", "generation": 3, "count": 2}),
     "overrides: the partner's set taken (generation 3, 2 override(s))",
     {"kind": "overrides", "from": "partner", "generation": 3, "count": 2}),
    (Notify("links", {"down": "", "went_down": "", "came_up": "eth1", "monitor_links": 0}),
     "links: eth1 up; all up (monitor_links = 0: noted only)",
     {"kind": "links", "down": "", "went_down": "", "came_up": "eth1", "monitor_links": 0}),
]

# What no operator-facing line may hold: a dataclass or call repr, a dict or
# tuple repr, a bytes repr, an object's default repr.
REPR = re.compile(r"[A-Z][A-Za-z]+\([a-z_]+=|\{'|\('|b'|b\"|<[\w.]+ object at|\bNone\b|\bTrue\b|\bFalse\b")


@pytest.mark.parametrize("command,text,fields", CASES, ids=[c[1][:60] for c in CASES])
def test_each_command_and_notice(command: Command, text: str, fields: dict[str, object]) -> None:
    said = describe(command, CONFIG)
    assert (said.text, said.fields) == (text, fields)
    assert not REPR.search(said.text), said.text
    assert json.loads(json.dumps(said.fields)) == said.fields  # JSON values only


def test_every_command_type_has_a_row_and_a_case() -> None:
    union = set(get_args(Command))
    assert set(COMMAND_TYPES) == union, "a command type without a description in adapters/describe.py"
    assert {type(c) for c, _, _ in CASES} == union, "a command type without a case here"


def test_every_notice_kind_the_engine_emits_has_a_row_and_a_case() -> None:
    source = "".join(p.read_text() for p in Path(__file__).parents[2].joinpath("engine").rglob("*.py"))
    emitted = set(re.findall(r'Notify\("(\w+)"', source))
    assert emitted, "no Notify(...) found in engine/: has the way notices are made changed?"
    assert emitted <= set(NOTICE_KINDS), f"notice kinds without a line: {sorted(emitted - set(NOTICE_KINDS))}"
    assert emitted <= {c.kind for c, _, _ in CASES if isinstance(c, Notify)}


def test_loud_ones() -> None:
    loud = {text for c, text, _ in CASES if describe(c, CONFIG).loud}
    assert "health web/rs2: up -> down (connection refused)" in loud
    assert "partner: dead (no heartbeat for 5.0 s)" in loud and "quorum web: lost" in loud
    assert "role: standby -> active (partner dead: no heartbeat for 5.0 s)" not in loud


def test_without_a_config_the_engine_words_stay() -> None:
    said = describe(Notify("role", {"from": "standby", "to": "active", "reason": "partner dead: no heartbeat for deadtime"}))
    assert said.text == "role: standby -> active (partner dead: no heartbeat for deadtime)"
    assert describe(DelDest(WEB, RS1)).text == "table: -d -t 10.50.0.100:80 -r 10.60.1.11:80"


def test_an_unknown_notice_kind_is_said_plainly() -> None:
    said = describe(Notify("link", {"device": "eth0", "up": False, "since": None, "load": 0.5}))
    assert said.text == "link: device eth0, up 0, since -, load 0.5"
    assert said.fields == {"kind": "link", "device": "eth0", "up": False, "since": None, "load": 0.5}


def test_failed_and_command_words() -> None:
    said = failed(AddVip("10.50.0.100", 24, "eth0", "eth0:1"), "no such device eth0")
    assert said == Said("vip: add 10.50.0.100/24 dev eth0:1 failed: no such device eth0",
                        {"kind": "vip", "op": "add", "address": "10.50.0.100", "prefix": 24, "device": "eth0",
                         "label": "eth0:1", "failed": "no such device eth0"}, True)
    assert command_words("ReadTable failed: EIO; SendGratuitousArp failed") == "table read failed: EIO; arp failed"
    assert command_words("AddDestination") == "AddDestination"  # whole words only


def test_a_table_operation_ipvsadm_cannot_say_still_has_a_line() -> None:
    said = describe(AddService(Service(ServiceKey("sctp", "10.0.0.1", 80))))
    assert said.text.startswith("table: -A ") and not REPR.search(said.text), said.text


def test_quoted() -> None:
    assert quoted("GET / HTTP/1.0\r\n\r\n") == '"GET / HTTP/1.0\\r\\n\\r\\n"'
    assert quoted(b"\xff\x00ok\"\\") == '"\\xff\\x00ok\\"\\\\"'
    assert quoted("héllo") == '"héllo"'
    assert quoted("a" * 10, limit=4) == '"aaaa"...'


def test_the_daemon_s_inputs_are_said_without_a_repr() -> None:
    from adapters.inputs import describe as describe_input
    from engine.events import CommandFailed, LoadRead

    assert describe_input(LoadRead(3, None)) == "load reading 3 (unreadable)"
    assert describe_input(LoadRead(3, 0.25)) == "load reading 3 (0.25)"
    failure = CommandFailed(AddDest(WEB, Dest(RS1, 3)), "EEXIST: destination 10.60.1.11:80 exists")
    assert describe_input(failure) == ("the failure of table: -a -t 10.50.0.100:80 -r 10.60.1.11:80 -m -w 3 "
                                       "(EEXIST: destination 10.60.1.11:80 exists)")
