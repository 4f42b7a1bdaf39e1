"""`GET /metrics`: the daemon's status as Prometheus text.

Built afresh for each scrape from one `{"cmd": "status"}` answer (a
registry of its own, never the process-wide one):

- `shoal_up` 1 when the daemon answered, 0 when it did not (then nothing else);
- `shoal_role` 1 active, 0 standby (label `node`);
- `shoal_server_up` 1 up, 0 down or unknown, and `shoal_server_weight`, the
  weight in the table (labels `virtual`, `server`);
- `shoal_server_connections` (labels `virtual`, `server`, `state`
  "active" or "inactive"): the dataplane's connection counters, for the
  servers whose status has them (`connections` not null: the ipvs dataplane);
- `shoal_failovers_total`: the daemon's `failovers` counter when its status
  has one, else the changes to active this web tool saw on the event stream;
- `shoal_heartbeats_received_total` (label `path`): the daemon's per-path
  counters (`heartbeats_received_public`, `..._private`) when it has them,
  else its total with `path="all"`;
- `shoal_partner_alive`, `shoal_serial_match`, `shoal_table_drifts_total`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # type: ignore[no-untyped-call]  # a registry per scrape: its creation time would mean nothing

__all__ = ["CONTENT_TYPE_LATEST", "render"]


def render(status: dict[str, Any] | None, failovers_seen: int) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    up = Gauge("shoal_up", "1 when the daemon answered this scrape", registry=registry)
    if status is None:
        up.set(0)
        return generate_latest(registry)
    up.set(1)
    node = str(status.get("node", ""))
    Gauge("shoal_role", "1 active, 0 standby", ["node"], registry=registry).labels(node).set(
        1 if status.get("role") == "active" else 0)
    server_up = Gauge("shoal_server_up", "1 when the real server is up", ["virtual", "server"], registry=registry)
    weight = Gauge("shoal_server_weight", "the real server's weight in the table", ["virtual", "server"],
                   registry=registry)
    connections = Gauge("shoal_server_connections", "the real server's connections in the dataplane",
                        ["virtual", "server", "state"], registry=registry)
    for service in status.get("services", ()):
        for server in service.get("servers", ()):
            labels = (str(service.get("name")), str(server.get("name")))
            server_up.labels(*labels).set(1 if server.get("health") == "up" else 0)
            weight.labels(*labels).set(float(server.get("weight") or 0))
            counted = server.get("connections")
            if isinstance(counted, dict):
                for state in ("active", "inactive"):
                    connections.labels(*labels, state).set(float(counted.get(state) or 0))
    counters = status.get("counters") or {}
    failovers = Counter("shoal_failovers", "times a router of this daemon became active after being standby",
                        registry=registry)
    failovers.inc(counters.get("failovers", failovers_seen))
    heartbeats = Counter("shoal_heartbeats_received", "partner heartbeats accepted", ["path"], registry=registry)
    by_path = {k.removeprefix("heartbeats_received_"): v for k, v in counters.items()
               if k.startswith("heartbeats_received_")}
    for path, count in sorted(by_path.items() or [("all", counters.get("heartbeats_received", 0))]):
        heartbeats.labels(path).inc(count)
    partner = status.get("partner") or {}
    Gauge("shoal_partner_alive", "1 when the partner is heard", registry=registry).set(1 if partner.get("alive") else 0)
    Gauge("shoal_serial_match", "1 when the partner's serial_no is ours", registry=registry).set(
        0 if partner.get("drift") else 1)
    drifts = Counter("shoal_table_drifts", "kernel table changes made behind shoal's back", registry=registry)
    drifts.inc(((status.get("table") or {}).get("drift") or {}).get("count", 0))
    return generate_latest(registry)
