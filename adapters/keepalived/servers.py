"""A keepalived `virtual_server` and its `real_server`s into an lvs.cf
`virtual` (convert.py has the rules; this file the LVS half).

lvs.cf keeps one health check per virtual, keepalived one or more per
real server: each real server's first checker becomes a `_Check` (the
lvs.cf keys it means), the first real server's decides the virtual's,
and a real server whose check differs is noted.  A MISC_CHECK's
`misc_path` is compared with the real server's address and port written
as `%h` and `%p`, so one program per server still makes one
`send_program`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from adapters.keepalived.syntax import Stmt
from adapters.keepalived.values import Reporter, check_text, command, family, fits, ip_of, number, seconds_ms, shown
from engine.model import SCHEDULERS, Server, Virtual

VipFor = Callable[[Stmt, str], tuple[str, str | None]]  # a virtual's address -> its VIP device and prefix
KINDS = {"NAT": "nat", "DR": "direct", "TUN": "tunnel"}
FLAGS = ("sh-port", "sh-fallback", "mh-port", "mh-fallback", "flag-1", "flag-2", "flag-3")
_CHECKERS = ("TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK", "UDP_CHECK", "PING_CHECK", "DNS_CHECK",
             "FILE_CHECK", "BFD_CHECK")
_TIMING = ("connect_timeout", "retry", "delay_before_retry", "delay_loop", "warmup")
_BEYOND_RE2 = re.compile(r"\\[1-9]|\\g<|\(\?P=|\(\?<?[=!]|\(\?>|\(\?\(")  # refused by the health checks' RE2


@dataclass(frozen=True, slots=True)
class _Check:
    """The lvs.cf keys a real server's checker means (None: the virtual's default)."""

    check: str = "none"
    http_path: str = "/"
    http_status: int = 200
    expect: str | None = None
    use_regex: bool = False
    send_program: str | None = None
    timeout_ms: int | None = None
    fall: int | None = None
    port: int | None = None  # connect_port


def virtual_server(conv: Reporter, vs: Stmt, vip_for: VipFor) -> tuple[Virtual, str] | None:
    """The lvs.cf virtual of `vs` and its network (nat, direct, tunnel); None: not carried over (noted)."""
    fields = _service(conv, vs, vip_for)
    if fields is None:
        return None
    read = _virtual_keys(conv, vs, fields)
    if read is None:
        return None
    network, timing, reals = read
    if "persistent_s" not in fields and "pmask" in fields:
        conv.note(vs, "persistence_granularity without persistence_timeout: not carried over", "persistence_granularity")
        del fields["pmask"]
    _sched_flags(conv, vs, fields)
    servers, checks = _real_servers(conv, reals, fields, timing, network)
    fields.update(_check_fields(conv, vs, servers, checks, fields, timing))
    fields["rise"] = 1
    delay = timing.get("delay_loop")
    fields["check_interval_ms"] = min(86_400_000, max(100, (seconds_ms(delay.args) if delay else None) or 60_000))
    for word in ("delay_before_retry", "warmup"):
        if word in timing:
            conv.skip(timing[word])
    return Virtual(servers=tuple(servers), **fields), network


def _service(conv: Reporter, vs: Stmt, vip_for: VipFor) -> dict[str, Any] | None:
    """The virtual's name and service: `IP PORT` (with its VIP's device and prefix) or `fwmark N`."""
    a = vs.args
    if a[:1] == ("fwmark",) and number(a[1:], 1, 2**32 - 1) is not None:
        return {"fwmark": number(a[1:], 1, 2**32 - 1), "name": f"fwmark{a[1]}"}
    address, port = ip_of(a[:1]), number(a[1:], 1, 65535)
    if address is None or port is None:
        why = "a virtual_server without a port (every port) cannot be an lvs.cf virtual" if address else \
            "expected virtual_server IP PORT or virtual_server fwmark N"
        conv.note(vs, why + ": not carried over", shown(vs))
        return None
    device, prefix = vip_for(vs, address)
    fields: dict[str, Any] = {"address": address, "port": port, "device": device, "name": _name(address, port)}
    if prefix is not None:
        fields["vip_nmask"] = prefix
    return fields


def _virtual_keys(conv: Reporter, vs: Stmt,
                  fields: dict[str, Any]) -> tuple[str, dict[str, Stmt], list[Stmt]] | None:
    """The virtual_server's own statements into `fields`; (network, checker timing, real_servers), or None."""
    kind = next((s.args[0] for s in vs.block or [] if s.word in ("lb_kind", "lvs_method") and s.args), "NAT")
    if kind not in KINDS:
        conv.note(vs, f"lb_kind {kind}: lvs.cf forwards by NAT, DR or TUN only: not carried over", shown(vs))
        return None
    timing: dict[str, Stmt] = {}
    reals: list[Stmt] = []
    for s in vs.block or []:
        w, args = s.word, s.args
        if w in ("lb_algo", "lvs_sched") and args:
            if args[0] in SCHEDULERS:
                fields["scheduler"] = args[0]
            else:
                conv.note(s, "an IPVS scheduler lvs.cf does not know: wrote the default (wlc)")
        elif w in ("lb_kind", "lvs_method") and len(args) > 1:
            conv.note(s, "the tunnel type is not carried over (lvs.cf tunnels are ipip)")
        elif w in ("lb_kind", "lvs_method"):
            pass
        elif w == "persistence_timeout":
            seconds = number(args, 0, 86400 * 31) if args else 360
            if seconds is None:
                conv.note(s, "not a number of seconds up to 31 days: not carried over")
            else:
                fields["persistent_s"] = seconds
        elif w == "persistence_granularity" and args:
            problem = fits("virtual", "pmask", args[0])
            if problem is None and "." in args[0] and ":" in fields.get("address", ""):
                problem = "a dotted mask for an IPv6 address"
            if problem is None:
                fields["pmask"] = args[0]
            else:
                conv.note(s, f"{problem}: not carried over")
        elif w == "protocol" and args:
            if args[0].upper() not in ("TCP", "UDP"):
                conv.note(vs, f"protocol {args[0]}: lvs.cf serves tcp and udp only: not carried over", shown(vs))
                return None
            fields["protocol"] = args[0].lower()
        elif w in ("quorum", "hysteresis") and number(args, 0, 2**32 - 1) is not None:
            fields[w] = number(args, 0, 2**32 - 1)
        elif w == "sorry_server" and ip_of(args[:1]):
            _sorry(conv, s, fields, KINDS[kind])
        elif w == "inhibit_on_failure" and args[:1] not in (("off",), ("false",), ("no",)):
            fields["quiesce_server"] = True
        elif w in FLAGS:
            if w not in fields.get("sched_flags", ()):
                fields["sched_flags"] = (*fields.get("sched_flags", ()), w)
        elif w in _TIMING:
            timing[w] = s
        elif w == "real_server":
            reals.append(s)
        else:
            conv.unread(s, ("lb_algo", "lvs_sched", "persistence_granularity", "protocol", "quorum", "hysteresis",
                            "sorry_server", "inhibit_on_failure"), "a virtual_server setting lvs.cf has no equivalent for")
    if "protocol" not in fields and "fwmark" not in fields:
        conv.note(vs, "no protocol: keepalived then serves UDP (it says \"no protocol set - defaulting to UDP\"), and "
                      "so does this lvs.cf (protocol = udp); write protocol TCP in keepalived.conf if TCP was meant",
                  shown(vs))
        fields["protocol"] = "udp"
    return KINDS[kind], timing, reals


def _sorry(conv: Reporter, s: Stmt, fields: dict[str, Any], network: str) -> None:
    sorry = ip_of(s.args[:1]) or ""
    if "address" in fields and family(sorry) != family(fields["address"]):
        conv.note(s, f"a sorry server of another IP version than {fields['address']}: not carried over "
                     f"(only tunnels cross IP versions)")
        return
    fields["sorry_server"] = sorry
    port = number(s.args[1:], 1, 65535)
    if port is not None and network != "nat" and port != fields.get("port", port):
        conv.note(s, f"with lb_kind {'DR' if network == 'direct' else 'TUN'} the sorry server takes the virtual "
                     f"server's port: keepalived resets {port} to {fields['port']}, and so does this lvs.cf")
    elif port is not None:
        fields["sorry_port"] = port


def _sched_flags(conv: Reporter, vs: Stmt, fields: dict[str, Any]) -> None:
    """Scheduler flags only for their own scheduler (sh-*, mh-*) or flag-N, with sh or mh."""
    flags = fields.pop("sched_flags", ())
    scheduler = fields.get("scheduler", "wlc")
    kept = tuple(f for f in flags if f.startswith(scheduler + "-") or f.startswith("flag-"))
    if scheduler in ("sh", "mh") and kept:
        fields["sched_flags"] = kept
    if set(flags) - set(fields.get("sched_flags", ())):
        conv.note(vs, f"these scheduler flags do not belong to scheduler {scheduler}: not carried over",
                  " ".join(f for f in flags if f not in fields.get("sched_flags", ())))


def _name(address: str, port: int | None) -> str:
    host = f"[{address}]" if ":" in address else address
    return host if port is None else f"{host}:{port}"


def _real_servers(conv: Reporter, reals: list[Stmt], vfields: dict[str, Any], timing: dict[str, Stmt],
                  network: str) -> tuple[list[Server], list[tuple[Stmt, _Check | None]]]:

    servers: list[Server] = []
    checks: list[tuple[Stmt, _Check | None]] = []
    quiesce = []
    for rs in reals:
        address, port = ip_of(rs.args[:1]), number(rs.args[1:], 1, 65535)
        if address is None or (len(rs.args) > 1 and port is None):
            conv.note(rs, "expected real_server IP [PORT]: not carried over")
            continue
        vip = vfields.get("address")
        if vip is not None and family(address) != family(vip) and network != "tunnel":
            conv.note(rs, f"a real server of another IP version than {vip}: not carried over (only tunnels, lb_kind "
                          f"TUN, cross IP versions)")
            continue
        if port is not None and vfields.get("port") is not None and port != vfields["port"] and network != "nat":
            conv.note(rs, f"with lb_kind {'DR' if network == 'direct' else 'TUN'} a real server takes the virtual "
                          f"server's port: keepalived resets {port} to {vfields['port']} (\"ports don't match - "
                          f"resetting\"), and so does this lvs.cf")
            port = vfields["port"]
        fields: dict[str, Any] = {"name": _name(address, port), "address": address}
        if port is not None and port != vfields.get("port"):
            fields["port"] = port
        if any(s.name == fields["name"] for s in servers):
            conv.note(rs, "the same real server twice: not carried over")
            continue
        check: _Check | None = None
        checkers = 0
        inhibit = False
        for s in rs.block or []:
            if s.word == "weight" and number(s.args, 0, 65535) is not None:
                fields["weight"] = number(s.args, 0, 65535)
            elif s.word == "inhibit_on_failure":
                inhibit = s.args[:1] not in (("off",), ("false",), ("no",))
            elif s.word in ("notify_up", "notify_down") and s.args:
                text = command(s.args[0])
                if text is None:
                    conv.note(s, "a command lvs.cf cannot hold (too long, or a control character)")
                else:
                    fields[s.word] = text
                if len(s.args) > 1:
                    conv.note(s, "the user and group are not carried over (shoal runs it as itself)")
            elif s.word in _CHECKERS:
                checkers += 1
                if checkers == 1:
                    check = _checker(conv, s, address, port or vfields.get("port"), timing)
                else:
                    conv.note(s, "lvs.cf checks a server one way: only its first checker is carried over", s.word)
            elif s.word in ("lvs_method",) and s.args and KINDS.get(s.args[0]) is not None:
                conv.note(s, "lvs.cf forwards every server of the pair's virtuals one way (network): not carried over")
            else:
                conv.unread(s, ("weight", "notify_up", "notify_down", "lvs_method"),
                            "a real_server setting lvs.cf has no equivalent for")
        quiesce.append((rs, inhibit))
        servers.append(Server(**fields))
        checks.append((rs, check))
    if any(i for _, i in quiesce) and not vfields.get("quiesce_server"):
        if all(i for _, i in quiesce):
            vfields["quiesce_server"] = True
        else:
            for rs, i in quiesce:
                if not i:
                    conv.note(rs, "lvs.cf quiesces all the servers of a virtual or none: this one is quiesced too "
                                  "(inhibit_on_failure is on for another)", _shown_rs(rs))
            vfields["quiesce_server"] = True
    return servers, checks


def _shown_rs(rs: Stmt) -> str:
    return rs.text()


def _checker(conv: Reporter, c: Stmt, address: str, port: int | None, timing: dict[str, Stmt]) -> _Check:

    kv = {s.word: s for s in c.block or []}
    retry_default = 0 if c.word == "MISC_CHECK" else 1
    retry_stmt = kv.get("retry") or timing.get("retry")
    retry = number(retry_stmt.args, 0, 65534) if retry_stmt else retry_default
    timeout_stmt = kv.get("connect_timeout") or kv.get("misc_timeout") or timing.get("connect_timeout")
    timeout = seconds_ms(timeout_stmt.args) if timeout_stmt else 5000
    common: dict[str, Any] = {"timeout_ms": min(86_400_000, max(1, timeout or 5000)),
                              "fall": (retry if retry is not None else 1) + 1}
    if "delay_before_retry" in kv:
        conv.skip(kv["delay_before_retry"])
    cport = number(kv["connect_port"].args, 1, 65535) if "connect_port" in kv else None
    for word, s in kv.items():
        if word in ("bindto", "bind_port", "bind_if", "fwmark", "connect_ip", "warmup", "alpha", "log_all_failures"):
            conv.skip(s, f"a {c.word} setting lvs.cf has no equivalent for")
    if c.word == "TCP_CHECK":
        return _Check("tcp", port=cport, **common)
    if c.word in ("HTTP_GET", "SSL_GET"):
        return _http(conv, c, kv, cport, common)
    if c.word == "MISC_CHECK":
        if "misc_path" not in kv or not kv["misc_path"].args:
            conv.note(c, "MISC_CHECK without misc_path: check = none written", c.word)
            return _Check("none")
        after = r"(?![0-9A-Fa-f:])" if ":" in address else r"(?![0-9]|\.[0-9])"
        path = re.sub(rf"(?<![0-9A-Za-z.:]){re.escape(address)}{after}", "%h", kv["misc_path"].args[0].replace("%", "%%"))
        if port is not None:  # the port only right after the address: "%h:80", "%h 80"
            path = re.sub(rf"%h([: ]){port}(?![0-9])", r"%h\g<1>%p", path)
        if "misc_dynamic" in kv:
            conv.note(kv["misc_dynamic"], "lvs.cf does not set weights from a program's exit status: exit 0 is up, "
                                          "anything else down")
        if "user" in kv:
            conv.skip(kv["user"], "shoal runs the program as itself")
        text = command(path)
        if text is None:
            conv.note(kv["misc_path"], "a command lvs.cf cannot hold: check = none written")
            return _Check("none")
        return _Check("none", send_program=text, **common)
    if c.word == "SMTP_CHECK":
        conv.note(c, "lvs.cf has no SMTP check: carried over as a TCP connect to the server's port (no HELO)",
                  c.word)
        return _Check("tcp", port=cport, **common)
    if c.word == "UDP_CHECK":
        for word in ("payload", "require_reply", "min_reply_length", "max_reply_length"):
            if word in kv:
                conv.note(kv[word], "not carried over: lvs.cf's udp check sends an empty datagram and fails only on "
                                    "an ICMP unreachable (send and expect can say more)")
        return _Check("udp", port=cport, **common)
    conv.note(c, f"lvs.cf has no {c.word.removesuffix('_CHECK').lower()} check: wrote check = none (the server stays in "
                 f"the table whatever its health; write a check by hand)", c.word)
    return _Check("none")


def _http(conv: Reporter, c: Stmt, kv: dict[str, Stmt], cport: int | None, common: dict[str, Any]) -> _Check:

    kind = "https" if c.word == "SSL_GET" else "http"
    urls = [s for s in c.block or [] if s.word == "url"]
    if not urls:
        conv.note(c, f"{c.word} without url: check = {kind} of / for status 200", c.word)
        return _Check(kind, port=cport, **common)
    for extra in urls[1:]:
        conv.note(extra, "lvs.cf checks one path: only the first url is carried over", "url")
    out: dict[str, Any] = {}
    for s in urls[0].block or []:
        if s.word == "path" and s.args:
            why = fits("virtual", "http_path", s.args[0])
            if why is None:
                out["http_path"] = s.args[0]
            else:
                conv.note(s, f"{why}: http_path stays /")
        elif s.word == "status_code" and s.args:
            out["http_status"] = _status(conv, s)
        elif s.word == "digest":
            conv.note(s, "not checked: lvs.cf compares the status (and expect), not an MD5 digest of the page; "
                         "write expect = TEXT the page holds to check its content")
        elif s.word == "regex" and s.args:
            text = check_text(s.args[0])
            if text is None or _BEYOND_RE2.search(text) or not _compiles(text):
                conv.note(s, "a regular expression lvs.cf's checks cannot run (RE2, at most 255 characters): not "
                             "carried over")
            else:
                out.update(expect=text, use_regex=True)
        else:
            conv.skip(s, "a url setting lvs.cf has no equivalent for")
    if "http_status" not in out:
        conv.note(urls[0], "keepalived accepts any 2xx by default; lvs.cf's http_status is one status: wrote 200",
                  "url (no status_code)")
    if "regex_no_match" in {s.word for s in urls[0].block or []} and out.get("expect"):
        del out["expect"], out["use_regex"]
    return _Check(kind, port=cport, **out, **common)


def _compiles(text: str) -> bool:
    try:
        re.compile(text)
    except re.error:
        return False
    return True


def _status(conv: Reporter, s: Stmt) -> int:
    codes = s.args
    if len(codes) == 1 and re.fullmatch(r"[1-5][0-9][0-9]", codes[0]):
        return int(codes[0])
    first = codes[0].split("-")[0]
    chosen = int(first) if re.fullmatch(r"[1-5][0-9][0-9]", first) else 200
    for code in codes:
        lo, _, hi = code.partition("-")
        if lo.isdigit() and hi.isdigit() and int(lo) <= 200 <= int(hi):
            chosen = 200
            break
    conv.note(s, f"lvs.cf's http_status is one status: wrote {chosen} (the others now fail the check)")
    return chosen


def _check_fields(conv: Reporter, vs: Stmt, servers: list[Server], checks: list[tuple[Stmt, _Check | None]],
                  vfields: dict[str, Any], timing: dict[str, Stmt]) -> dict[str, Any]:
    """The virtual's check keys from its servers' checks (the first server's decides)."""
    chosen = next((c for _, c in checks if c is not None), None) if checks else None
    if chosen is None:
        return {"check": "none"}
    for rs, c in checks:
        if c != chosen:
            conv.note(rs, f"its check differs from the first real server's ({_differences(chosen, c)}), which lvs.cf "
                          f"applies to every server of the virtual", rs.text())
    out: dict[str, Any] = {"check": chosen.check, "timeout_ms": chosen.timeout_ms or 5000, "fall": chosen.fall or 1}
    if chosen.check == "udp" and vfields.get("protocol", "tcp") == "tcp":
        out["check"] = "tcp"
        conv.note(vs, "a UDP_CHECK on a TCP service: carried over as a TCP connect", "UDP_CHECK")
    if chosen.check in ("http", "https"):
        if vfields.get("protocol") == "udp":
            conv.note(vs, "an HTTP check on a UDP service: wrote check = none", chosen.check)
            return {"check": "none"}
        out.update(http_path=chosen.http_path, http_status=chosen.http_status)
        if chosen.expect is not None:
            out.update(expect=chosen.expect, use_regex=chosen.use_regex)
    if chosen.send_program is not None:
        out.update(send_program=chosen.send_program, check="auto")
    if chosen.port is not None:
        _connect_port(conv, vs, servers, chosen.port, vfields)
    return out


_KEYS = (("check", "check"), ("http_path", "http_path"), ("http_status", "http_status"), ("expect", "expect"),
         ("send_program", "send_program"), ("timeout_ms", "timeout"), ("fall", "fall"), ("port", "connect_port"))


def _differences(chosen: _Check, other: _Check | None) -> str:
    """What differs, in lvs.cf's words: "timeout 10 here, 30 there"."""
    if other is None:
        return "this one has no checker"
    said = []
    for attr, key in _KEYS:
        mine, theirs = getattr(other, attr), getattr(chosen, attr)
        if mine != theirs:
            if attr == "timeout_ms":
                mine, theirs = f"{(mine or 0) / 1000:g}", f"{(theirs or 0) / 1000:g}"
            said.append(f"{key} {mine} here, {theirs} there")
    return "; ".join(said)


def _connect_port(conv: Reporter, vs: Stmt, servers: list[Server], port: int, vfields: dict[str, Any]) -> None:
    """lvs.cf checks a server on its own port; a connect_port elsewhere is noted (a fwmark virtual takes it)."""
    if vfields.get("fwmark") is not None and "port" not in vfields:
        vfields["port"] = port
        for n, s in enumerate(servers):
            if s.port == port:
                servers[n] = replace(s, port=None)
        return
    if any((s.port or vfields.get("port")) != port for s in servers):
        conv.note(vs, f"lvs.cf checks each real server on its own port, not on connect_port {port}", "connect_port")
