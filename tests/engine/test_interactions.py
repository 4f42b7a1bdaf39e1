"""Data-driven interaction tests, in the style of etcd-io/raft's testdata.

Each file in `testdata/` is a series of blocks separated by blank lines:

    # prose saying what the block shows
    command args
    optional body lines (a config for `config` and `reload`)
    ----
    the expected output, one line each

Run with SHOAL_REWRITE=1 to regenerate the expected outputs, then review
the diff.  Commands (times in seconds):

    config [F.cf] [latency=MS] [key=HEX]
                              start a world with this lvs.cf (body), or file F
                              with the body's `key = value` lines replacing its own
    boot NODE...              start engines (primary, backup)
    run T                     advance the world to T
    cut PATH [from NODE]      lose heartbeats on public|private|all (one way with from)
    heal PATH                 undo `cut` on that path (both directions)
    server ADDR:PORT MODE     up | down | hang | wrong
    load ADDR VALUE           the load a load_monitor read returns (none: unreadable)
    crash NODE                the router dies (its kernel table with it)
    kill NODE                 the daemon alone dies: the kernel keeps its table;
                              `boot NODE` then starts over it (adoption)
    link NODE up|down DEV...  the engine hears those interfaces' link state
                              (LinksChanged; heartbeats are cut with `cut`)
    ipvsadm NODE ARGS         a change behind the engine's back: -A -E -D -a -e -d
                              with -t/-u ADDR:PORT, -s, -r ADDR:PORT, -w, -m/-g/-i
    table NODE                the node's kernel table
    admin NODE ACTION [SRV] [N]  failover | drain | undrain | weight (N) | force_down
                              | force_up | auto
    reload [F.cf] [NODE]      both engines (or NODE) get the config (as `config`)
    stall NODE T              NODE is descheduled until T: its inputs wait
    inject NODE PATH SRC HEX  a raw datagram on NODE's heartbeat port
    status NODE               the status snapshot, summarised
    show heartbeats|checks on|off
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.config import parse
from engine.events import (
    AddDest, AddService, AdminRequested, ConfigLoaded, DelDest, DelService, EditDest, EditService,
    HeartbeatReceived, LinksChanged, TableOp,
)
from engine.table import Dest, DestKey, Service, ServiceKey
from tests.engine.world import NODES, World

TESTDATA = Path(__file__).parent / "testdata"
REWRITE = os.environ.get("SHOAL_REWRITE") == "1"


def parse_blocks(text: str) -> list[tuple[list[str], list[str], list[str]]]:
    """(comment+command lines, body, expected) per block."""
    blocks = []
    for chunk in text.strip("\n").split("\n\n"):
        lines = chunk.split("\n")
        if "----" not in lines:
            raise ValueError(f"block without '----':\n{chunk}")
        sep = lines.index("----")
        head, expected = lines[:sep], lines[sep + 1:]
        comments = [line for line in head if line.startswith("#")]
        rest = [line for line in head if not line.startswith("#")]
        blocks.append((comments + rest[:1], rest[1:], expected))
    return blocks


class Runner:
    def __init__(self) -> None:
        self.world: World | None = None

    def run(self, command: str, body: list[str]) -> list[str]:
        name, *args = command.split()
        handler = getattr(self, f"do_{name}", None)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        out: list[str] = handler(args, body) or []
        assert self.world is not None
        return self.world.take_log() + out

    def do_config(self, args: list[str], body: list[str]) -> None:
        files = [a for a in args if a.endswith(".cf")]
        opts = dict(a.split("=", 1) for a in args if "=" in a)
        text = config_text(files[0] if files else None, body)
        key = bytes.fromhex(opts["key"]) if "key" in opts else None
        self.world = World(parse(text, "test.cf"), latency_ms=int(opts.get("latency", "1")), key=key)

    @property
    def w(self) -> World:
        assert self.world is not None, "no config yet"
        return self.world

    def do_boot(self, args: list[str], body: list[str]) -> None:
        for node in args:
            self.w.boot(node)

    def do_run(self, args: list[str], body: list[str]) -> None:
        self.w.run_until(round(float(args[0]) * 1000))

    def do_cut(self, args: list[str], body: list[str]) -> None:
        paths = ("public", "private") if args[0] == "all" else (args[0],)
        senders = (args[2],) if len(args) > 2 and args[1] == "from" else NODES
        self.w.cut |= {(s, p) for s in senders for p in paths}

    def do_heal(self, args: list[str], body: list[str]) -> None:
        paths = ("public", "private") if args[0] == "all" else (args[0],)
        self.w.cut = {(s, p) for s, p in self.w.cut if p not in paths}

    def do_server(self, args: list[str], body: list[str]) -> None:
        self.w.servers[args[0]] = args[1]

    def do_load(self, args: list[str], body: list[str]) -> None:
        self.w.loads[args[0]] = None if args[1] == "none" else float(args[1])

    def do_crash(self, args: list[str], body: list[str]) -> None:
        self.w.crash(args[0])

    def do_kill(self, args: list[str], body: list[str]) -> None:
        self.w.kill(args[0])

    def do_link(self, args: list[str], body: list[str]) -> None:
        node, state, devices = args[0], args[1], set(args[2:])
        down = self.w.links.setdefault(node, set())
        if state == "down":
            down |= devices
        else:
            down -= devices
        self.w.feed(node, LinksChanged(frozenset(down)))

    def do_ipvsadm(self, args: list[str], body: list[str]) -> None:
        self.w.tamper(args[0], ipvsadm_op(args[1:]))

    def do_table(self, args: list[str], body: list[str]) -> list[str]:
        lines = []
        table = self.w.tables.get(args[0], {})
        for key in sorted(table):
            entry = table[key]
            lines.append(f"{key} {entry.service.scheduler}")
            lines.extend(f"  -> {d.key} {d.forward} weight {d.weight}" for _, d in sorted(entry.dests.items()))
        return lines or ["(empty)"]

    def do_admin(self, args: list[str], body: list[str]) -> None:
        weight = int(args[3]) if len(args) > 3 else None
        self.w.feed(args[0], AdminRequested(args[1], args[2] if len(args) > 2 else "",  # type: ignore[arg-type]
                                            weight=weight))

    def do_reload(self, args: list[str], body: list[str]) -> None:
        files = [a for a in args if a.endswith(".cf")]
        nodes = [a for a in args if a in NODES] or list(NODES)
        config = parse(config_text(files[0] if files else None, body), "reload.cf")
        if nodes == list(NODES):
            self.w.config = config
        for node in nodes:
            if node in self.w.engines:
                self.w.feed(node, ConfigLoaded(config, self.w.key))

    def do_stall(self, args: list[str], body: list[str]) -> None:
        self.w.paused[args[0]] = round(float(args[1]) * 1000)

    def do_inject(self, args: list[str], body: list[str]) -> None:
        node, path, source, payload = args
        self.w.feed(node, HeartbeatReceived(path, source, bytes.fromhex(payload)))  # type: ignore[arg-type]

    def do_show(self, args: list[str], body: list[str]) -> None:
        setattr(self.w, f"show_{args[0]}", args[1] == "on")

    def do_status(self, args: list[str], body: list[str]) -> list[str]:
        status = self.w.engines[args[0]].status
        p = status.partner
        lines = [
            f"role {status.role} vips {' '.join(status.vips) or '-'}",
            f"partner alive={p.alive} state={p.state} serial={p.serial_no} deaf={p.deaf} drift={p.drift}",
        ]
        counters = " ".join(f"{k}={v}" for k, v in status.counters.items() if v)
        if counters:
            lines.append(f"counters {counters}")
        t = status.table
        if t.drifts or t.stale_reads:
            last = "-" if t.last_drift_ms is None else f"{t.last_drift_ms / 1000:.3f}"
            lines.append(f"table checks={t.checks} stale={t.stale_reads} drifts={t.drifts} last={last}")
            lines.extend(f"  {op}" for op in t.last_drift)
        for service in status.services:
            lines.append(f"service {service.name} quorum_ok={service.quorum_ok} sorry={service.sorry_in_table}")
            for s in service.servers:
                lines.append(
                    f"  {s.name} {s.health} admin={s.admin}"
                    + (f"/{s.admin_weight}" if s.admin_weight is not None else "")
                    + f" in_table={s.in_table} weight={s.weight}"
                    f" ok={s.checks_ok} failed={s.checks_failed}"
                )
        return lines


def ipvsadm_op(args: list[str]) -> TableOp:
    """The table operation an `ipvsadm` command line makes (the few options the tests use)."""
    opts: dict[str, str] = {}
    rest = iter(args[1:])
    for flag in rest:
        if flag not in ("-m", "-g", "-i"):
            opts[flag] = next(rest)
    forward = "route" if "-g" in args else "tunnel" if "-i" in args else "masq"
    proto, where = ("tcp", opts["-t"]) if "-t" in opts else ("udp", opts["-u"])
    host, port = where.rsplit(":", 1)
    key = ServiceKey(proto, host, int(port))
    service = Service(key, opts.get("-s", "wlc"), persistent_s=int(opts.get("-p", "0")))
    dest = None
    if "-r" in opts:
        address, dport = opts["-r"].rsplit(":", 1)
        dest = Dest(DestKey(address, int(dport)), int(opts.get("-w", "1")), forward)  # type: ignore[arg-type]
    match args[0], dest:
        case "-A", _:
            return AddService(service)
        case "-E", _:
            return EditService(service)
        case "-D", _:
            return DelService(key)
        case "-a", Dest():
            return AddDest(key, dest)
        case "-e", Dest():
            return EditDest(key, dest)
        case "-d", Dest():
            return DelDest(key, dest.key)
    raise ValueError(f"not an ipvsadm command the tests know: {args}")


def config_text(name: str | None, body: list[str]) -> str:
    """A config from a file in testdata (its `key = value` lines replaced by
    the body's), or the body itself."""
    if name is None:
        return "\n".join(body) + "\n"
    lines = (TESTDATA / name).read_text().splitlines()
    for override in body:
        key = override.split("=", 1)[0].strip()
        at = [i for i, line in enumerate(lines) if line.split("=", 1)[0].strip() == key]
        if at:
            lines[at[0]] = override
        else:
            lines.insert(0, override)
    return "\n".join(lines) + "\n"


def files() -> list[Path]:
    return sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", files(), ids=lambda p: p.stem)
def test_interaction(path: Path) -> None:
    runner = Runner()
    blocks = parse_blocks(path.read_text())
    rewritten = []
    failures = []
    for head, body, expected in blocks:
        command = head[-1]
        actual = runner.run(command, body)
        if actual != expected:
            failures.append(f"{command}\n--- expected\n" + "\n".join(expected) + "\n--- actual\n" + "\n".join(actual))
        rewritten.append("\n".join(head + body + ["----"] + actual))
    if REWRITE:
        path.write_text("\n\n".join(rewritten) + "\n")
        return
    assert not failures, f"{path.name}:\n" + "\n\n".join(failures)


def test_testdata_present() -> None:
    assert len(files()) >= 6
