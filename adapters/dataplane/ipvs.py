"""The ipvs dataplane: the kernel's IPVS table over generic netlink (pyroute2).

Tested on a real kernel (Linux 6.1 in the qemu guest) by
tests/kernel/guest/test_ipvs_adapter.py: every key, family, scheduler,
forwarding method, persistence and edit round-trips through `read()` and
`ipvsadm -Sn`; refusals carry the errno `engine.diff.apply` models.  On the
host (no IPVS) tests/adapters/test_dataplane_dryrun.py tests the
translation with a fake IPVS socket.  Written from pyroute2 0.9.7's
`pyroute2/ipvs.py` and `pyroute2/netlink/generic/ipvs.py`, and the kernel's
`ip_vs_ctl.c`
(`ip_vs_genl_parse_service`, `ip_vs_genl_parse_dest`, `ip_vs_genl_set_config`,
`ip_vs_genl_new_daemon`).

What it covers: services by protocol (tcp/udp) + VIP + port and by fwmark,
IPv4 and IPv6; every scheduler the kernel has (the name is passed through:
rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos); scheduler flags
(sh-fallback/sh-port, mh-fallback/mh-port, flag-1..3 = IP_VS_SVC_F_SCHED1..3);
persistence and its netmask; forwarding masq/route/tunnel; weights
(including 0); the tcp/tcpfin/udp timeouts (IPVS_CMD_SET_CONFIG; 0 leaves
the kernel's value); the connection sync daemon (IPVS_CMD_NEW_DAEMON /
DEL_DAEMON, master or backup, interface, syncid).

pyroute2 pitfalls handled (see MACHINE-NOTES.md):
- its command `"update"` is mapped to the *delete* command: edits use `"set"`;
- `IPVSDest` defaults to `fwd_method=3` (direct routing): it is always passed
  (0 masq, 2 tunnel, 3 route);
- `IPVSService` adds a netmask for IPv4 only: the netmask is always passed.
  For IPv6 the kernel reads the netmask attribute as a prefix length in host
  byte order (what libipvs sends); pyroute2 encodes the attribute as an IPv4
  address, so the prefix length is passed as the address whose bytes are
  that host-order integer;
- the timeout and daemon attributes are declared "hex" in pyroute2's message
  class: those commands are sent with this module's own message class;
- adding a destination fails with EINVAL when `lo` is down in the namespace:
  the constructor brings `lo` up (best effort).

What the kernel said that the model does not (test_ipvs_adapter.py):
- a scheduler it lacks (twos before 6.2) is ENOENT on add/set: reported as
  EINVAL naming the scheduler (`scheduler_refusal`, `refusal`);
- fwmark 0 means "no fwmark": it would make the service TCP 0.0.0.0:0, so
  it is refused here (EINVAL) before it reaches the kernel;
- an IPv6 destination in an IPv4 service is EINVAL unless tunnelled;
- a second sync daemon of one state is EEXIST and stopping none is ESRCH:
  `sync_daemon` replaces and ignores (it is idempotent); a master needs its
  interface up (ENETUNREACH), a backup does not; no interface: ENODEV.

Errors: a refused operation raises `DataplaneError` with the kernel's errno
name as `code` (EEXIST, ESRCH, ENOENT, EINVAL...) and the operation as `op`.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
import struct
import threading
from typing import Any, Iterable, Sequence

from adapters.dataplane import Counters, DataplaneError, genl
from adapters.describe import describe, ipvsadm_args
from adapters.dataplane.genl import IpvsNetlink
from adapters.dataplane.ipvsadm import canonical, canonical_pmask, default_pmask, sched_flag_bits, sched_flag_names
from engine.events import AddDest, AddService, DelDest, DelService, EditDest, EditService, SetTimeouts
from engine.events import StartSyncDaemon, StopSyncDaemon, TableOp
from engine.table import Dest, DestKey, Forward, Service, ServiceEntry, ServiceKey, Table

IP_VS_SVC_F_PERSISTENT = 0x0001
IP_VS_SVC_F_SCHED_MASK = 0x0038
FLAGS_MASK = 0xFFFFFFFF  # as libipvs: every flag is set from our value
FWD_METHOD: dict[Forward, int] = {"masq": 0, "tunnel": 2, "route": 3}
FORWARD_OF_METHOD: dict[int, Forward] = {v: k for k, v in FWD_METHOD.items()}
IP_VS_CONN_F_FWD_MASK = 0x0007
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
DAEMON_STATE = {"master": 1, "backup": 2}

IPVS_CMD_NEW_DAEMON = 9
IPVS_CMD_DEL_DAEMON = 10
IPVS_CMD_SET_CONFIG = 12


# ------------------------------------------------------------------ translation (pure)


def _af(family: int) -> int:
    return socket.AF_INET6 if family == 6 else socket.AF_INET


def netmask_attr(family: int, pmask: str | None) -> str:
    """The value of IPVS_SVC_ATTR_NETMASK as pyroute2 wants it (an IPv4 address string)."""
    mask = pmask if pmask is not None else default_pmask(family)
    if family == 6:
        return socket.inet_ntoa(struct.pack("=I", int(mask)))
    canonical = canonical_pmask(4, mask)
    return canonical if canonical is not None else "255.255.255.255"


def netmask_from_attr(family: int, value: str | None) -> str | None:
    """The inverse of `netmask_attr`, canonical (None for the all-ones default)."""
    if value is None:
        return None
    if family == 6:
        return canonical_pmask(6, str(struct.unpack("=I", socket.inet_aton(value))[0]))
    return canonical_pmask(4, value)


def key_args(key: ServiceKey) -> dict[str, Any]:
    """The fields that name a service (IPVSService key fields)."""
    if key.protocol == "fwmark":
        if not 0 < key.fwmark < 2**32:
            # fwmark 0 means "no fwmark" to the kernel: it would make TCP 0.0.0.0:0
            raise DataplaneError(f"IPVS has no fwmark service {key.fwmark}", code="EINVAL")
        return {"af": _af(key.family), "fwmark": key.fwmark}
    if key.protocol not in PROTOCOLS:
        raise DataplaneError(f"IPVS has no protocol {key.protocol}", code="EINVAL")
    return {"af": _af(key.family), "protocol": PROTOCOLS[key.protocol], "addr": key.address, "port": key.port}


def service_args(service: Service) -> dict[str, Any]:
    """Every field of a service, for "add" and "set"."""
    flags = sched_flag_bits(service.sched_flags)
    if service.persistent_s:
        flags |= IP_VS_SVC_F_PERSISTENT
    args = key_args(service.key)
    args.update({
        "sched_name": service.scheduler,
        "flags": {"flags": flags, "mask": FLAGS_MASK},
        "timeout": service.persistent_s,
        "netmask": netmask_attr(service.key.family, service.pmask if service.persistent_s else None),
    })
    return args


def dest_args(dest: Dest) -> dict[str, Any]:
    return {
        "addr": dest.key.address,
        "port": dest.key.port,
        "addr_family": _af(6 if ":" in dest.key.address else 4),
        "fwd_method": FWD_METHOD[dest.forward],
        "weight": dest.weight,
        "u_thresh": 0,
        "l_thresh": 0,
    }


def dest_key_args(dkey: DestKey) -> dict[str, Any]:
    return {"addr": dkey.address, "port": dkey.port, "addr_family": _af(6 if ":" in dkey.address else 4)}


def calls(op: TableOp) -> tuple[str, str, dict[str, Any], dict[str, Any] | None]:
    """(method, command, service fields, dest fields or None) for one operation:
    the pyroute2 call `IPVS.<method>(<command>, service=IPVSService(**s), dest=IPVSDest(**d))`."""
    match op:
        case AddService(service):
            return "service", "add", service_args(service), None
        case EditService(service):
            return "service", "set", service_args(service), None  # never "update": that deletes
        case DelService(key):
            return "service", "del", key_args(key), None
        case AddDest(key, dest):
            return "dest", "add", key_args(key), dest_args(dest)
        case EditDest(key, dest):
            return "dest", "set", key_args(key), dest_args(dest)
        case DelDest(key, dkey):
            return "dest", "del", key_args(key), dest_key_args(dkey)
    raise TypeError(f"not a table operation: a {type(op).__name__}")


def _attr(nla: Any, name: str) -> Any:
    return nla.get_attr(name)


def _address(value: Any) -> str:
    return str(ipaddress.ip_address(str(value)))


def service_from_nla(svc: Any) -> Service:
    """A `Service` from the IPVS_CMD_ATTR_SERVICE of a dump reply."""
    family = 6 if _attr(svc, "IPVS_SVC_ATTR_AF") == socket.AF_INET6 else 4
    fwmark = _attr(svc, "IPVS_SVC_ATTR_FWMARK") or 0
    if fwmark:
        key = ServiceKey("fwmark", "", 0, int(fwmark), family)
    else:
        proto = int(_attr(svc, "IPVS_SVC_ATTR_PROTOCOL"))
        key = ServiceKey(PROTOCOL_NAMES.get(proto, str(proto)), _address(_attr(svc, "IPVS_SVC_ATTR_ADDR")),
                         int(_attr(svc, "IPVS_SVC_ATTR_PORT")), 0, family)
    flags_nla = _attr(svc, "IPVS_SVC_ATTR_FLAGS")
    flags = int(flags_nla["flags"]) if flags_nla is not None else 0
    scheduler = str(_attr(svc, "IPVS_SVC_ATTR_SCHED_NAME"))
    persistent_s = int(_attr(svc, "IPVS_SVC_ATTR_TIMEOUT") or 0) if flags & IP_VS_SVC_F_PERSISTENT else 0
    pmask = netmask_from_attr(family, _attr(svc, "IPVS_SVC_ATTR_NETMASK")) if persistent_s else None
    return Service(key, scheduler, sched_flag_names(scheduler, flags & IP_VS_SVC_F_SCHED_MASK), persistent_s, pmask)


def dest_from_nla(dst: Any) -> Dest:
    method = int(_attr(dst, "IPVS_DEST_ATTR_FWD_METHOD") or 0) & IP_VS_CONN_F_FWD_MASK
    forward = FORWARD_OF_METHOD.get(method)
    if forward is None:
        raise DataplaneError(f"destination with forwarding method {method} (local node) is not supported")
    dkey = DestKey(_address(_attr(dst, "IPVS_DEST_ATTR_ADDR")), int(_attr(dst, "IPVS_DEST_ATTR_PORT")))
    return Dest(dkey, int(_attr(dst, "IPVS_DEST_ATTR_WEIGHT")), forward)


def _config_msg_class() -> Any:
    from pyroute2.netlink import genlmsg, nla  # type: ignore[import-untyped]

    class ipvs_config_msg(genlmsg):  # type: ignore[misc]  # the daemon and timeout attributes, typed
        prefix = "IPVS_CMD_ATTR_"
        nla_map = (
            ("IPVS_CMD_ATTR_UNSPEC", "none"),
            ("IPVS_CMD_ATTR_SERVICE", "hex"),
            ("IPVS_CMD_ATTR_DEST", "hex"),
            ("IPVS_CMD_ATTR_DAEMON", "daemon"),
            ("IPVS_CMD_ATTR_TIMEOUT_TCP", "uint32"),
            ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", "uint32"),
            ("IPVS_CMD_ATTR_TIMEOUT_UDP", "uint32"),
        )

        class daemon(nla):  # type: ignore[misc]
            nla_map = (
                ("IPVS_DAEMON_ATTR_UNSPEC", "none"),
                ("IPVS_DAEMON_ATTR_STATE", "uint32"),
                ("IPVS_DAEMON_ATTR_MCAST_IFN", "asciiz"),
                ("IPVS_DAEMON_ATTR_SYNC_ID", "uint32"),
            )

    return ipvs_config_msg


def timeouts_attrs(cmd: SetTimeouts) -> list[tuple[str, int]]:
    """The IPVS_CMD_SET_CONFIG attributes (only the non-zero timeouts: 0 leaves the kernel's)."""
    pairs = (("IPVS_CMD_ATTR_TIMEOUT_TCP", cmd.tcp_s), ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", cmd.tcpfin_s),
             ("IPVS_CMD_ATTR_TIMEOUT_UDP", cmd.udp_s))
    return [(name, value) for name, value in pairs if value]


def daemon_attrs(cmd: StartSyncDaemon | StopSyncDaemon) -> tuple[int, list[tuple[str, Any]]]:
    """(command, IPVS_CMD_ATTR_DAEMON's nested attributes)."""
    if isinstance(cmd, StartSyncDaemon):
        return IPVS_CMD_NEW_DAEMON, [("IPVS_DAEMON_ATTR_STATE", DAEMON_STATE[cmd.state]),
                                     ("IPVS_DAEMON_ATTR_MCAST_IFN", cmd.iface),
                                     ("IPVS_DAEMON_ATTR_SYNC_ID", cmd.syncid)]
    return IPVS_CMD_DEL_DAEMON, [("IPVS_DAEMON_ATTR_STATE", DAEMON_STATE[cmd.state])]


# ------------------------------------------------------------------ the dataplane


def _code(e: BaseException) -> str:
    number = getattr(e, "code", None)
    if isinstance(number, int) and number in errno.errorcode:
        return errno.errorcode[number]
    return "EIO"


def scheduler_refusal(command: str, service: Any, number: object) -> DataplaneError | None:
    """The contract's error for a kernel that has no such scheduler, or None.

    Adding or editing a service (`command` "add" or "set", `service` its
    fields) whose scheduler the kernel cannot load (`ip_vs_scheduler_get`:
    no module ip_vs_<name>, e.g. twos before Linux 6.2) fails with errno
    `number` ENOENT, which the contract reserves for a missing destination:
    it is EINVAL (not expressible by this kernel), and says which scheduler.
    """
    if command not in ("add", "set") or number != errno.ENOENT:
        return None
    name = service.get("sched_name") if hasattr(service, "get") else None
    return DataplaneError(f"EINVAL: the kernel has no IPVS scheduler {name} (no module ip_vs_{name}; "
                          f"it answered ENOENT)", code="EINVAL")


def refusal(op: TableOp, number: int) -> DataplaneError:
    """The contract's error for the kernel refusing `op` with errno `number`
    (for a path that gets the errno itself, as a batched apply does)."""
    method, command, s, _ = calls(op)
    missing = scheduler_refusal(command, s, number) if method == "service" else None
    if missing is not None:
        return DataplaneError(f"{missing} (ipvsadm {ipvsadm_args(op)})", op, missing.code)
    code = errno.errorcode.get(number, "EIO")
    return DataplaneError(f"{code}: {command} {method} failed: {os.strerror(number)} (ipvsadm {ipvsadm_args(op)})",
                          op, code)


@functools.lru_cache(maxsize=4096)
def _service_attr(key: ServiceKey) -> bytes:
    return genl.service_attr(key_args(key))


def encode_op(op: TableOp) -> bytes:
    """One operation as the generic-netlink payload genl.py sends: the
    destination operations (the bulk) by the fast path, the rest through
    `calls` (pyroute2's field names; the same translation either way)."""
    match op:
        case AddDest(key, dest):
            return genl.encode_dest("add", _service_attr(key), dest.key.address, dest.key.port,
                                    FWD_METHOD[dest.forward], dest.weight)
        case EditDest(key, dest):
            return genl.encode_dest("set", _service_attr(key), dest.key.address, dest.key.port,
                                    FWD_METHOD[dest.forward], dest.weight)
        case DelDest(key, dkey):
            return genl.encode_dest("del", _service_attr(key), dkey.address, dkey.port)
    method, command, s, d = calls(op)
    return genl.encode(method, command, s, d)


class Ipvs:
    name = "ipvs"

    def __init__(self, netns: str | None = None, sock: Any = None) -> None:
        """`sock`: an `IPVS`-like object (tests pass a fake); by default
        pyroute2's `IPVS` in `netns`."""
        self.netns = netns
        # Table writes and reads go through genl.py (batched, struct-encoded:
        # faster than `ipvsadm -R`); pyroute2 keeps the config commands
        # (timeouts, sync daemon) and is what tests fake.
        self.fast: IpvsNetlink | None = None
        if sock is None:
            try:
                sock = _Owned(netns)
                self.fast = IpvsNetlink(netns)
            except Exception as e:
                raise DataplaneError(f"cannot open the IPVS netlink family (is ip_vs loaded?): {e}") from None
        self.sock = sock
        # The engine may spell a service differently from the kernel (pmask
        # "24" for "255.255.255.0", flags in another order): read() gives
        # back the spelling last written when it means what the kernel holds,
        # so a reconcile does not edit the service forever.
        self.spelling: dict[ServiceKey, Service] = {}
        # `connections()` runs in an executor thread while `apply` may run
        # on the loop: it has a netlink socket of its own, made on first use.
        self.counting: IpvsNetlink | None = None
        self.counting_lock = threading.Lock()
        self.read()  # fails now, clearly, when the kernel has no IPVS

    def _service(self, fields: dict[str, Any]) -> Any:
        from pyroute2 import IPVSService  # type: ignore[import-untyped]

        return IPVSService(**fields)

    def _dest(self, fields: dict[str, Any]) -> Any:
        from pyroute2 import IPVSDest

        return IPVSDest(**fields)

    def apply(self, ops: Sequence[TableOp]) -> None:
        if self.fast is not None:
            self._apply_batched(self.fast, ops)
            return
        for op in ops:
            method, command, s, d = calls(op)
            try:
                if method == "service":
                    self.sock.service(command, service=self._service(s))
                else:
                    self.sock.dest(command, service=self._service(s), dest=self._dest(d or {}))
            except DataplaneError as e:
                raise DataplaneError(str(e), op, e.code) from None
            except Exception as e:
                code = _code(e)
                raise DataplaneError(f"{code}: {command} {method} failed: {e}", op, code) from None
            if isinstance(op, (AddService, EditService)):
                self.spelling[op.service.key] = op.service

    def _apply_batched(self, fast: IpvsNetlink, ops: Sequence[TableOp]) -> None:
        """`apply` through genl.py: every operation encoded, then sent in
        batches.  On a failure the operations after the failing one in its
        batch may have been carried out too (the kernel goes on): the caller
        reads the table back, as after any failure."""
        payloads = []
        for op in ops:
            try:
                payloads.append(encode_op(op))
            except DataplaneError as e:
                raise DataplaneError(str(e), op, e.code) from None
        try:
            failed = fast.send_batch(payloads)
        except OSError as e:
            code = _code(e)
            raise DataplaneError(f"{code}: sending {len(ops)} IPVS operation(s) failed: {e}", ops[0] if ops else None,
                                 code) from None
        done = len(ops) if failed is None else failed[0]
        for op in ops[:done]:
            if isinstance(op, (AddService, EditService)):
                self.spelling[op.service.key] = op.service
        if failed is not None:
            raise refusal(ops[failed[0]], failed[1])

    def _dumped_services(self) -> list[Any]:
        if self.fast is not None:
            return self.fast.services()
        return [msg.get_attr("IPVS_CMD_ATTR_SERVICE") for msg in self.sock.service("dump")]

    def _dumped_dests(self, key: ServiceKey) -> dict[DestKey, Dest]:
        dests: dict[DestKey, Dest] = {}
        if self.fast is not None:
            for address, port, method, weight in self.fast.dest_tuples(key_args(key)):
                forward = FORWARD_OF_METHOD.get(method & IP_VS_CONN_F_FWD_MASK)
                if forward is None:
                    raise DataplaneError(f"destination with forwarding method {method} (local node) is not supported")
                dkey = DestKey(address, port)
                dests[dkey] = Dest(dkey, weight, forward)
            return dests
        for reply in self.sock.dest("dump", service=self._service(key_args(key))):
            dest = dest_from_nla(reply.get_attr("IPVS_CMD_ATTR_DEST"))
            dests[dest.key] = dest
        return dests

    def read(self) -> Table:
        out: dict[ServiceKey, ServiceEntry] = {}
        try:
            for nla in self._dumped_services():
                service = service_from_nla(nla)
                written = self.spelling.get(service.key)
                if written is not None and _same(written, service):
                    service = written
                out[service.key] = ServiceEntry(service, self._dumped_dests(service.key))
        except DataplaneError:
            raise
        except Exception as e:
            raise DataplaneError(f"reading the IPVS table failed: {e}", code=_code(e)) from None
        return out

    def connections(self) -> dict[tuple[ServiceKey, DestKey], Counters] | None:
        """Every destination's counters (IPVS_DEST_ATTR_ACTIVE_CONNS,
        _INACT_CONNS and the nested _STATS64/_STATS), dumped on a socket of
        its own (thread-safe against `apply`).  None without the generic
        netlink path (a test's fake IPVS socket)."""
        if self.fast is None:
            return None
        with self.counting_lock:
            try:
                if self.counting is None:
                    self.counting = IpvsNetlink(self.netns)
                out: dict[tuple[ServiceKey, DestKey], Counters] = {}
                for nla in self.counting.services():
                    key = service_from_nla(nla).key
                    for address, port, c in self.counting.dest_counters(key_args(key)):
                        out[(key, DestKey(address, port))] = Counters(**c)
                return out
            except DataplaneError:
                raise
            except Exception as e:
                if self.counting is not None:  # a fresh socket next time
                    self.counting.close()
                    self.counting = None
                raise DataplaneError(f"reading the IPVS connection counters failed: {e}", code=_code(e)) from None

    def _config(self, cmd_number: int, attrs: Iterable[tuple[str, Any]],
                what: SetTimeouts | StartSyncDaemon | StopSyncDaemon) -> None:
        from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST

        msg = _config_msg_class()()
        msg["cmd"] = cmd_number
        msg["version"] = 1
        msg["attrs"] = list(attrs)
        try:
            list(self.sock.nlm_request(msg, msg_type=self.sock.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK))
        except Exception as e:
            code = _code(e)
            raise DataplaneError(f"{code}: {describe(what).text} failed: {e}", what, code) from None

    def set_timeouts(self, cmd: SetTimeouts) -> None:
        attrs = timeouts_attrs(cmd)
        if attrs:
            self._config(IPVS_CMD_SET_CONFIG, attrs, cmd)

    def sync_daemon(self, cmd: StartSyncDaemon | StopSyncDaemon) -> None:
        """Idempotent, as the engine means it (the state it names holds after):
        stopping a daemon that does not run (the kernel: ESRCH) is done;
        starting one where one of that state runs already (EEXIST: a previous
        shoal's, or another interface or syncid) replaces it."""
        number, attrs = daemon_attrs(cmd)
        try:
            self._config(number, [("IPVS_CMD_ATTR_DAEMON", {"attrs": attrs})], cmd)
        except DataplaneError as e:
            if isinstance(cmd, StopSyncDaemon) and e.code == "ESRCH":
                return
            if not (isinstance(cmd, StartSyncDaemon) and e.code == "EEXIST"):
                raise
            stop_number, stop_attrs = daemon_attrs(StopSyncDaemon(cmd.state))
            self._config(stop_number, [("IPVS_CMD_ATTR_DAEMON", {"attrs": stop_attrs})], cmd)
            self._config(number, [("IPVS_CMD_ATTR_DAEMON", {"attrs": attrs})], cmd)

    def close(self) -> None:
        if self.fast is not None:
            self.fast.close()
        with self.counting_lock:
            if self.counting is not None:
                self.counting.close()
                self.counting = None
        close = getattr(self.sock, "close", None)
        if close is not None:
            close()


class _Owned:
    """pyroute2's `IPVS` owned by one private worker thread.

    pyroute2 0.9's synchronous sockets run an event loop of their own and
    cannot be made or used inside a running asyncio loop (the daemon's:
    "This event loop is already running"), so, as in adapters/vips.py, one
    worker thread makes the socket and makes every call on it; a reply that
    is an iterator is read to its end there.
    """

    def __init__(self, netns: str | None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._worker = ThreadPoolExecutor(1, thread_name_prefix="shoal-ipvs")

        def make() -> Any:
            _lo_up(netns)
            from pyroute2 import IPVS

            return IPVS(netns=netns) if netns else IPVS()

        try:
            self._sock = self._run(make)
        except BaseException:
            self._worker.shutdown(wait=False)
            raise

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        def inside() -> Any:
            result = fn(*args, **kwargs)
            return list(result) if hasattr(result, "__next__") else result

        return self._worker.submit(inside).result()

    @property
    def prid(self) -> Any:
        return self._run(lambda: self._sock.prid)

    def service(self, command: str, service: Any = None) -> Any:
        try:
            return self._run(self._sock.service, command, service=service)
        except Exception as e:
            missing = scheduler_refusal(command, service, getattr(e, "code", None))
            if missing is None:
                raise
            raise missing from None

    def dest(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self._sock.dest, *args, **kwargs)

    def nlm_request(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self._sock.nlm_request, *args, **kwargs)

    def close(self) -> None:
        try:
            self._run(self._sock.close)
        finally:
            self._worker.shutdown(wait=False)


def _same(written: Service, kernel: Service) -> bool:
    entry = canonical({written.key: ServiceEntry(written, {})})[written.key]
    return entry.service == kernel


def _lo_up(netns: str | None) -> None:
    """IPVS refuses destinations (EINVAL) while `lo` is down: bring it up."""
    try:
        from pyroute2 import IPRoute, NetNS

        with (NetNS(netns) if netns else IPRoute()) as ipr:
            idx = ipr.link_lookup(ifname="lo")
            if idx:
                ipr.link("set", index=idx[0], state="up")
    except Exception:  # best effort: the add that needs it reports the failure
        pass
