"""`ipvsadm`'s text formats, both ways, for a `Table`.

- `restore_line(op)`: one table operation as an `ipvsadm` restore line
  (`-A -t 10.0.0.1:80 -s wlc`, `-a -t 10.0.0.1:80 -r 10.1.0.11:80 -m -w 1`,
  `-E`, `-e`, `-D`, `-d`); what the dry-run dataplane prints.
- `format_save(table)`: the table as `ipvsadm -S -n` prints it (`-A` then its
  `-a` lines, services and destinations in ipvsadm's sort order).
- `format_ln(table)`: the table in the layout of `ipvsadm -Ln` (connection
  counters are 0: a `Table` does not hold them); what `shoal table` shows.
- `parse_save(text)`: the inverse of `format_save`, for the output of the
  real `ipvsadm -Sn` too (tests read the kernel with it independently).
- `canonical(table)`: the form the kernel gives back (IPv4 persistence
  masks dotted, IPv6 ones as a prefix length, the all-ones mask dropped,
  scheduler flags in the kernel's bit order, names dropped), so that a table
  written and one read back compare equal.

The layouts follow ipvsadm 1.31's `print_service_entry`: `-Ln` service line
`"%s  %s %s"` (protocol, address:port, scheduler), then ` (flags)`,
` persistent T` and ` mask M`; destination line
`"  -> %-28s %-7s %-6d %-10u %-10u"`.  Restore lines put `-b flags` after
`-p T -M mask`, and tunnel destinations end in `--tun-type ipip`, as
`ipvsadm -Sn` prints them (checked against ipvsadm 1.31 and Linux 6.1 in
tests/kernel/guest/test_ipvs_adapter.py).

What ipvsadm does that a `Table` does not: for a destination of a
non-fwmark service forwarded by route or tunnel, `ipvsadm -a/-e` replaces
the destination's port with the service's (the kernel itself keeps any
port given over netlink), and it refuses a non-persistent service on port 0
(the kernel accepts it).  So the restore lines of such a table, fed to
`ipvsadm -R`, do not give that table back.
"""

from __future__ import annotations

import ipaddress

from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService, TableOp
from engine.table import Dest, DestKey, Forward, Service, ServiceEntry, ServiceKey, Table

FORWARD_FLAG: dict[Forward, str] = {"masq": "-m", "route": "-g", "tunnel": "-i"}
FORWARD_OF_FLAG: dict[str, Forward] = {v: k for k, v in FORWARD_FLAG.items()}
FORWARD_NAME: dict[Forward, str] = {"masq": "Masq", "route": "Route", "tunnel": "Tunnel"}

# The kernel's scheduler flag bits (IP_VS_SVC_F_SCHED1..3) and their names
# per scheduler, in bit order.
SCHED_FLAG_BITS: dict[str, int] = {
    "sh-fallback": 0x08, "sh-port": 0x10,
    "mh-fallback": 0x08, "mh-port": 0x10,
    "flag-1": 0x08, "flag-2": 0x10, "flag-3": 0x20,
}


def sched_flag_names(scheduler: str, bits: int) -> tuple[str, ...]:
    """The names ipvsadm prints for the scheduler flag `bits` of a service."""
    if scheduler in ("sh", "mh"):
        names = [f"{scheduler}-fallback", f"{scheduler}-port", "flag-3"]
    else:
        names = ["flag-1", "flag-2", "flag-3"]
    return tuple(name for name, bit in zip(names, (0x08, 0x10, 0x20)) if bits & bit)


def sched_flag_bits(flags: tuple[str, ...]) -> int:
    bits = 0
    for flag in flags:
        if flag not in SCHED_FLAG_BITS:
            raise ValueError(f"unknown scheduler flag {flag!r}")
        bits |= SCHED_FLAG_BITS[flag]
    return bits


def _host(address: str, family: int) -> str:
    return f"[{address}]" if family == 6 else address


def service_spec(key: ServiceKey) -> str:
    """`-t 10.0.0.1:80`, `-u [2001:db8::1]:53`, `-f 5` or `-f 5 -6`."""
    if key.protocol == "fwmark":
        return f"-f {key.fwmark}" + (" -6" if key.family == 6 else "")
    flag = {"tcp": "-t", "udp": "-u"}.get(key.protocol)
    if flag is None:
        raise ValueError(f"ipvsadm has no protocol {key.protocol!r}")
    return f"{flag} {_host(key.address, key.family)}:{key.port}"


def _dest_spec(key: ServiceKey, dest: DestKey) -> str:
    return f"{_host(dest.address, _family(dest.address, key.family))}:{dest.port}"


def _family(address: str, default: int) -> int:
    return 6 if ":" in address else (4 if address else default)


def default_pmask(family: int) -> str:
    return "128" if family == 6 else "255.255.255.255"


def canonical_pmask(family: int, pmask: str | None) -> str | None:
    """A persistence mask as the kernel gives it back: IPv4 dotted, IPv6 a
    prefix length; the all-ones mask (the default) is None."""
    if pmask is None:
        return None
    if family == 6:
        text = str(int(pmask))
    elif pmask.isdigit():
        text = str(ipaddress.IPv4Network(f"0.0.0.0/{int(pmask)}").netmask)
    else:
        text = str(ipaddress.IPv4Address(pmask))
    return None if text == default_pmask(family) else text


def _service_options(service: Service) -> str:
    # ipvsadm -Sn's order: -s, -p, -M, then -b (the -Ln line puts the flags first)
    out = f" -s {service.scheduler}"
    if service.persistent_s:
        out += f" -p {service.persistent_s}"
        mask = canonical_pmask(service.key.family, service.pmask)
        if mask is not None:
            out += f" -M {mask}"
    if service.sched_flags:
        names = sched_flag_names(service.scheduler, sched_flag_bits(service.sched_flags))
        out += " -b " + ",".join(names)
    return out


def _dest_line(cmd: str, key: ServiceKey, dest: Dest) -> str:
    line = f"{cmd} {service_spec(key)} -r {_dest_spec(key, dest.key)} {FORWARD_FLAG[dest.forward]} -w {dest.weight}"
    # ipvsadm -Sn names the tunnel type (the kernel's IPVS_DEST_ATTR_TUN_TYPE,
    # ipip unless set otherwise); a Table's tunnel is ipip.
    return line + " --tun-type ipip" if dest.forward == "tunnel" else line


def restore_line(op: TableOp) -> str:
    """One table operation as an `ipvsadm` restore line."""
    match op:
        case AddService(service):
            return f"-A {service_spec(service.key)}{_service_options(service)}"
        case EditService(service):
            return f"-E {service_spec(service.key)}{_service_options(service)}"
        case DelService(key):
            return f"-D {service_spec(key)}"
        case AddDest(key, dest):
            return _dest_line("-a", key, dest)
        case EditDest(key, dest):
            return _dest_line("-e", key, dest)
        case DelDest(key, dkey):
            return f"-d {service_spec(key)} -r {_dest_spec(key, dkey)}"
    raise TypeError(f"not a table operation: {op!r}")


def _address_bytes(address: str) -> bytes:
    return ipaddress.ip_address(address).packed if address else b""


def _service_order(key: ServiceKey) -> tuple[int, int, int, bytes, int]:
    # ipvsadm's ipvs_cmp_services: fwmark, family, protocol, address, port.
    proto = {"tcp": 6, "udp": 17}.get(key.protocol, 0)
    return key.fwmark, key.family, proto, _address_bytes(key.address), key.port


def _dest_order(dest: DestKey) -> tuple[int, bytes, int]:
    packed = _address_bytes(dest.address)
    return len(packed), packed, dest.port


def sorted_services(table: Table) -> list[ServiceEntry]:
    return [table[k] for k in sorted(table, key=_service_order)]


def sorted_dests(entry: ServiceEntry) -> list[Dest]:
    return [entry.dests[d] for d in sorted(entry.dests, key=_dest_order)]


def save_lines(table: Table) -> list[str]:
    lines: list[str] = []
    for entry in sorted_services(table):
        lines.append(restore_line(AddService(entry.service)))
        lines.extend(_dest_line("-a", entry.service.key, d) for d in sorted_dests(entry))
    return lines


def format_save(table: Table) -> str:
    """The table as `ipvsadm -S -n` prints it."""
    return "".join(line + "\n" for line in save_lines(table))


def format_ln(table: Table, version: str = "1.2.1", size: int = 4096) -> str:
    """The table in the layout of `ipvsadm -Ln`."""
    out = [
        f"IP Virtual Server version {version} (size={size})",
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
    ]
    for entry in sorted_services(table):
        service = entry.service
        key = service.key
        if key.protocol == "fwmark":
            name = f"FWM  {key.fwmark}" + (" IPv6" if key.family == 6 else "")
        else:
            name = f"{key.protocol.upper()}  {_host(key.address, key.family)}:{key.port}"
            if key.family != 6:
                name = name[:33]
        line = f"{name} {service.scheduler}"
        if service.sched_flags:
            line += " (" + ",".join(sched_flag_names(service.scheduler, sched_flag_bits(service.sched_flags))) + ")"
        if service.persistent_s:
            line += f" persistent {service.persistent_s}"
            mask = canonical_pmask(key.family, service.pmask)
            if mask is not None:
                line += f" mask {mask}"
        out.append(line)
        for dest in sorted_dests(entry):
            dname = _dest_spec(key, dest.key)
            if ":" not in dest.key.address:
                dname = dname[:28]
            out.append(f"  -> {dname:<28} {FORWARD_NAME[dest.forward]:<7} {dest.weight:<6d} {0:<10d} {0:<10d}")
    return "".join(line + "\n" for line in out)


def canonical(table: Table) -> dict[ServiceKey, ServiceEntry]:
    """`table` as the kernel gives it back (see the module docstring)."""
    out: dict[ServiceKey, ServiceEntry] = {}
    for key, entry in table.items():
        s = entry.service
        flags = sched_flag_names(s.scheduler, sched_flag_bits(s.sched_flags))
        pmask = canonical_pmask(key.family, s.pmask) if s.persistent_s else None
        service = Service(key, s.scheduler, flags, s.persistent_s, pmask)
        dests = {k: Dest(k, d.weight, d.forward) for k, d in entry.dests.items()}
        out[key] = ServiceEntry(service, dests)
    return out


# ------------------------------------------------------------------ parsing


def _split_hostport(text: str) -> tuple[str, int, int]:
    """`10.0.0.1:80` or `[2001:db8::1]:80` -> (address, port, family)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad address {text!r}")
        return ipaddress.IPv6Address(host).compressed, int(port), 6
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"bad address {text!r}")
    return str(ipaddress.IPv4Address(host)), int(port), 4


def _parse_service_key(tokens: list[str], i: int) -> tuple[ServiceKey, int]:
    flag = tokens[i]
    if flag in ("-t", "-u"):
        address, port, family = _split_hostport(tokens[i + 1])
        return ServiceKey("tcp" if flag == "-t" else "udp", address, port, 0, family), i + 2
    if flag == "-f":
        mark = int(tokens[i + 1])
        i += 2
        family = 4
        if i < len(tokens) and tokens[i] == "-6":
            family, i = 6, i + 1
        return ServiceKey("fwmark", "", 0, mark, family), i
    raise ValueError(f"expected -t, -u or -f, found {flag!r}")


def _parse_service(tokens: list[str]) -> Service:
    key, i = _parse_service_key(tokens, 1)
    scheduler, flags, persistent_s, pmask = "wlc", "", 0, None
    while i < len(tokens):
        opt = tokens[i]
        if opt == "-6":
            key = ServiceKey(key.protocol, key.address, key.port, key.fwmark, 6)
            i += 1
            continue
        if i + 1 >= len(tokens):
            if opt == "-b":  # as above, at the end of the line
                break
            raise ValueError(f"option {opt} needs a value")
        value = tokens[i + 1]
        if opt == "-s":
            scheduler = value
        elif opt == "-b":
            if value.startswith("-"):  # ipvsadm prints "-b " for a flag it has no name for
                i += 1
                continue
            flags = value
        elif opt == "-p":
            persistent_s = int(value)
        elif opt == "-M":
            pmask = value
        else:
            raise ValueError(f"unknown service option {opt!r}")
        i += 2
    names = tuple(f for f in flags.split(",") if f)
    sched_flags = sched_flag_names(scheduler, sched_flag_bits(names)) if names else ()
    return Service(key, scheduler, sched_flags, persistent_s,
                   canonical_pmask(key.family, pmask) if persistent_s else None)


def _parse_dest(tokens: list[str]) -> tuple[ServiceKey, Dest]:
    key, i = _parse_service_key(tokens, 1)
    address = ""
    port = 0
    forward: Forward = "route"  # ipvsadm's default forwarding method
    weight = 1
    while i < len(tokens):
        opt = tokens[i]
        if opt in FORWARD_OF_FLAG:
            forward = FORWARD_OF_FLAG[opt]
            i += 1
        elif opt in ("--tun-nocsum", "--tun-csum", "--tun-remcsum"):
            i += 1
        elif opt in ("-r", "-w", "-x", "-y", "--tun-type", "--tun-port") and i + 1 < len(tokens):
            if opt == "-r":
                address, port, _ = _split_hostport(tokens[i + 1])
            elif opt == "-w":
                weight = int(tokens[i + 1])
            i += 2
        else:
            raise ValueError(f"unknown destination option {opt!r}")
    if not address:
        raise ValueError("destination without -r")
    dkey = DestKey(address, port)
    return key, Dest(dkey, weight, forward)


def parse_save(text: str) -> dict[ServiceKey, ServiceEntry]:
    """A table from `ipvsadm -S -n` output (or `format_save`'s); raises
    ValueError naming the line for anything else."""
    services: dict[ServiceKey, Service] = {}
    dests: dict[ServiceKey, dict[DestKey, Dest]] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        tokens = raw.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        try:
            if tokens[0] == "-A":
                service = _parse_service(tokens)
                services[service.key] = service
                dests.setdefault(service.key, {})
            elif tokens[0] == "-a":
                key, dest = _parse_dest(tokens)
                if key not in services:
                    raise ValueError(f"destination of unknown service {key}")
                dests[key][dest.key] = dest
            else:
                raise ValueError(f"expected -A or -a, found {tokens[0]!r}")
        except (ValueError, IndexError) as e:
            raise ValueError(f"line {n}: {e}: {raw!r}") from None
    return {key: ServiceEntry(service, dests[key]) for key, service in services.items()}
