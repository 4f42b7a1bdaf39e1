"""Connection counters in the web tool (issue 11): the monitoring page shows
each server's active / inactive connections where its status has them ("-"
otherwise), and /metrics exports them as shoal_server_connections."""

from __future__ import annotations

import re

from tests.web.harness import Harness, basic, run


def _counted(h: Harness) -> None:
    servers = h.fake.status["services"][0]["servers"]
    servers[0]["connections"] = {"active": 3, "inactive": 17, "total": 90}
    servers[1]["connections"] = None
    servers[2].pop("connections")  # a daemon from before the counters


def _cell(page: str, server: str) -> str:
    row = re.search(r'<tr data-server="HTTP/' + server + r'".*?</tr>', page, re.S)
    assert row, page
    cell = re.search(r'<td data-field="connections"[^>]*>([^<]*)</td>', row.group(0))
    assert cell, row.group(0)
    return cell.group(1)


def test_the_monitoring_page_shows_connections_where_counted(tmp_path):
    async def body(h: Harness) -> None:
        _counted(h)
        await h.login("viewer")
        page = await (await h.client.get("/")).text()
        assert "<th>connections</th>" in page
        assert _cell(page, "web1") == "3 / 17"
        assert _cell(page, "web2") == "-"
        assert page.count('data-field="connections"') == 3  # the escaped third server included
        script = await (await h.client.get("/static/shoal.js")).text()
        assert '"connections"' in script and 'c.active + " / " + c.inactive' in script  # the live rows too
    run(tmp_path, body)


def test_metrics_export_active_and_inactive_connections(tmp_path):
    async def body(h: Harness) -> None:
        text = await (await h.client.get("/metrics", headers=basic("viewer"))).text()
        assert "shoal_server_connections{" not in text  # nobody counted
        _counted(h)
        text = await (await h.client.get("/metrics", headers=basic("viewer"))).text()
        assert 'shoal_server_connections{server="web1",state="active",virtual="HTTP"} 3.0' in text
        assert 'shoal_server_connections{server="web1",state="inactive",virtual="HTTP"} 17.0' in text
        assert 'server="web2",state="active"' not in text
    run(tmp_path, body)
