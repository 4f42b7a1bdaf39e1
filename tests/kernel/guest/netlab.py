"""A client, a director and real servers in namespaces, for IPVS traffic tests.

One `Lab` holds all three forwarding methods side by side; the director's
IPVS table is left to the test (program it through shoal's adapter)::

                              LAN A 10.72.0.0/24 (bridge br0 in `sw`)
    client 10.72.0.2 ----+---- director 10.72.0.1   (eth0, also holding the VIPs
                         |       NAT_VIP .110, DR_VIP .100, TUN_VIP .101 /32)
                         +---- rd1 10.72.0.11, rd2 10.72.0.12   (direct routing:
                         |       DR_VIP on lo, arp_ignore=1, arp_announce=2)
                         +---- gw 10.72.0.254 (a plain router, ip_forward=1)
                                  |  LAN B 10.75.0.0/24 (br1)
                                  +---- rt1 10.75.0.11, rt2 10.75.0.12 (tunnel: TUN_VIP on
                                          tunl0, rp_filter 0, default route via gw 10.75.0.254)
    director 10.71.0.1 (eth1, ip_forward=1) -- LAN C 10.71.0.0/24 (br2)
                         +---- rn1 10.71.0.11, rn2 .12, rn3 .13 (NAT: default route via
                                 the director)

The director reaches LAN B through gw.  It drops, before routing, every
packet whose source is DR_VIP or TUN_VIP (an nft rule with a counter): a
reply from a DR or tunnel real server can reach the client only without
passing through the director.

Every real server answers HTTP on port 80 from a thread of *this* process
(its listening socket was made inside its namespace), with the body
``NAME LOCAL_ADDRESS PEER_ADDRESS``: which server answered, the address the
request reached it at (the VIP for DR and tunnel, its own for NAT), and the
client's address as it saw it.  `Lab.get` and `KeepAlive` make requests
from the client namespace the same way (sockets made inside it).  Nothing
runs as another process but `ip`, `nft`, `ipvsadm` and `modprobe`, each
waited for; `Lab.close()` stops the threads and deletes the namespaces.
"""

from __future__ import annotations

import http.client
import socketserver
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from adapters import netns
from adapters.netns import batch, entered, run_entered, write_sysctl

PORT = 80
CLIENT = "10.72.0.2"
NAT_VIP = "10.72.0.110"
DR_VIP = "10.72.0.100"
TUN_VIP = "10.72.0.101"
NAT_SERVERS = {"rn1": "10.71.0.11", "rn2": "10.71.0.12", "rn3": "10.71.0.13"}
DR_SERVERS = {"rd1": "10.72.0.11", "rd2": "10.72.0.12"}
TUN_SERVERS = {"rt1": "10.75.0.11", "rt2": "10.75.0.12"}
TIMEOUT_S = 5.0  # per socket operation; TCG under load is slow, never this slow


@dataclass(frozen=True)
class Reply:
    server: str  # the real server's name
    local: str  # the address the request reached it at
    peer: str  # the client's address as the server saw it


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client says close
    timeout = 60  # an idle kept connection ends (a test keeps one a few seconds)
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server: Any = self.server
        local = self.connection.getsockname()[0]
        body = f"{server.name} {local} {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class NameServer(ThreadingHTTPServer):
    """An HTTP server listening in namespace `ns`, answering with `name`."""

    allow_reuse_address = True

    def __init__(self, ns: str, name: str) -> None:
        self.name = name
        with entered(ns):
            super().__init__(("0.0.0.0", PORT), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                       name=f"http-{name}", daemon=True)
        self.thread.start()

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks its address up in DNS (getfqdn): seconds lost in the guest
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "realserver", PORT

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _parse(body: bytes) -> Reply:
    server, local, peer = body.decode().split()
    return Reply(server, local, peer)


class KeepAlive:
    """One HTTP/1.1 connection from namespace `ns`, kept open across requests."""

    def __init__(self, ns: str, address: str, port: int = PORT) -> None:
        self.conn = http.client.HTTPConnection(address, port, timeout=TIMEOUT_S)
        with entered(ns):
            self.conn.connect()

    def get(self) -> Reply:
        self.conn.request("GET", "/")
        resp = self.conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body)
        assert not resp.will_close, "the server closed a keep-alive connection"
        return _parse(body)

    def close(self) -> None:
        self.conn.close()


class Lab:
    """The namespaces of the diagram above and the real servers' HTTP threads.

    Built with one `ip -batch` in the root namespace (namespaces, bridges,
    veths created straight into their namespaces) and one per namespace
    (addresses, routes), with adapters/netns.py's batch helpers: under TCG
    every process started costs a few hundred milliseconds, so a dozen of
    them rather than a hundred.
    """

    def __init__(self) -> None:
        netns.require()
        self.prefix = netns.new_prefix()  # sh<pid>-<n>-: netns.sweep() knows it
        self.ns: dict[str, str] = {}
        self.servers: list[NameServer] = []

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the HTTP threads, delete every namespace (and with them every device)."""
        for server in self.servers:
            server.stop()
        self.servers.clear()
        if self.ns:
            batch(None, [f"netns del {name}" for name in self.ns.values()], force=True)
            self.ns.clear()

    @property
    def director(self) -> str:
        return self.ns["director"]

    # ------------------------------------------------------------ building

    def _build(self) -> None:
        done = subprocess.run(["modprobe", "ipip"], capture_output=True, text=True)
        assert done.returncode == 0, f"modprobe ipip (the tunnel real servers' tunl0): {done.stderr}"
        shorts = ["sw", "client", "director", "gw", *NAT_SERVERS, *DR_SERVERS, *TUN_SERVERS]
        root: list[str] = []
        for short in shorts:
            self.ns[short] = self.prefix + short
            root.append(f"netns add {self.ns[short]}")
        sw = self.ns["sw"]
        ports: list[tuple[str, str]] = []  # (port in sw, bridge)
        for bridge in ("br0", "br1", "br2"):
            root.append(f"link add {bridge} netns {sw} type bridge forward_delay 0")

        config: dict[str, list[str]] = {short: ["link set lo up"] for short in shorts}

        def attach(short: str, dev: str, bridge: str, cidr: str) -> None:
            port = f"p-{short}-{dev}"[:15]
            root.append(f"link add {dev} netns {self.ns[short]} type veth peer name {port} netns {sw}")
            ports.append((port, bridge))
            config[short] += [f"link set {dev} up", f"addr add {cidr} dev {dev}"]

        attach("client", "eth0", "br0", f"{CLIENT}/24")
        attach("director", "eth0", "br0", "10.72.0.1/24")
        attach("director", "eth1", "br2", "10.71.0.1/24")
        config["director"] += [f"addr add {vip}/32 dev eth0" for vip in (NAT_VIP, DR_VIP, TUN_VIP)]
        config["director"].append("route add 10.75.0.0/24 via 10.72.0.254")
        attach("gw", "eth0", "br0", "10.72.0.254/24")
        attach("gw", "eth1", "br1", "10.75.0.254/24")
        for name, address in NAT_SERVERS.items():
            attach(name, "eth0", "br2", f"{address}/24")
            config[name].append("route add default via 10.71.0.1")
        for name, address in DR_SERVERS.items():
            attach(name, "eth0", "br0", f"{address}/24")
            config[name].append(f"addr add {DR_VIP}/32 dev lo")
        for name, address in TUN_SERVERS.items():
            attach(name, "eth0", "br1", f"{address}/24")
            config[name] += ["route add default via 10.75.0.254", "link set tunl0 up",
                             f"addr add {TUN_VIP}/32 dev tunl0"]
        config["sw"] += [f"link set {bridge} up" for bridge in ("br0", "br1", "br2")]
        config["sw"] += [line for port, bridge in ports
                         for line in (f"link set {port} master {bridge}", f"link set {port} up")]

        batch(None, root)
        # Sysctls first: the DR servers must not answer ARP for the VIP once up.
        d = self.director
        write_sysctl(d, "net.ipv4.ip_forward", "1")  # NAT replies are routed back through IPVS
        write_sysctl(self.ns["gw"], "net.ipv4.ip_forward", "1")
        for name in DR_SERVERS:
            for dev in ("all", "eth0"):
                write_sysctl(self.ns[name], f"net.ipv4.conf.{dev}.arp_ignore", "1")
                write_sysctl(self.ns[name], f"net.ipv4.conf.{dev}.arp_announce", "2")
        for name in TUN_SERVERS:
            for dev in ("all", "default", "eth0", "tunl0"):
                write_sysctl(self.ns[name], f"net.ipv4.conf.{dev}.rp_filter", "0")
        for short in shorts:
            batch(self.ns[short], config[short])
        rules = (f"table ip proof {{\n chain pre {{\n type filter hook prerouting priority -300;\n"
                 f" ip saddr {{ {DR_VIP}, {TUN_VIP} }} counter drop\n }}\n}}\n")
        run_entered(d, ["nft", "-f", "-"], rules)

        for name in (*NAT_SERVERS, *DR_SERVERS, *TUN_SERVERS):
            self.servers.append(NameServer(self.ns[name], name))

    # ------------------------------------------------------------ traffic

    def get(self, address: str, port: int = PORT) -> Reply:
        """One request on a new connection from the client namespace."""
        conn = http.client.HTTPConnection(address, port, timeout=TIMEOUT_S)
        try:
            with entered(self.ns["client"]):
                conn.connect()
            conn.request("GET", "/", headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (resp.status, body)
            return _parse(body)
        finally:
            conn.close()

    def count(self, address: str, n: int) -> tuple[Counter[str], list[Reply]]:
        """`n` requests, each on a new connection: how many each server answered."""
        replies = [self.get(address) for _ in range(n)]
        return Counter(r.server for r in replies), replies

    def keep_alive(self, address: str) -> KeepAlive:
        return KeepAlive(self.ns["client"], address)

    def dropped_at_director(self) -> str:
        """The director's nft rule dropping packets from DR_VIP/TUN_VIP, with its counter."""
        return run_entered(self.director, ["nft", "list", "chain", "ip", "proof", "pre"])

    def ipvsadm(self, *args: str) -> str:
        """`ipvsadm ARGS` in the director's namespace (an independent reader of its table)."""
        return run_entered(self.director, ["ipvsadm", *args])
