"""`shoal import keepalived.conf` (issue 14): the syntax keepalived reads
(includes, conditionals, parameters), what carries over to lvs.cf and
what is reported, hostile input, and every sample Debian's keepalived
package installs.  Every lvs.cf written must pass `shoal check-config`.
The simulator round trip is tests/sim/test_import_roundtrip.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from adapters.keepalived.convert import convert
from adapters.keepalived.syntax import KeepalivedError, braces, load, split_words
from engine.config import parse
from engine.model import Config, vrrp_priority
from shoal.check_config import main as check_config
from shoal.cli import main as shoal

SAMPLES = Path("/usr/share/doc/keepalived/samples")
# the samples with a virtual_server that lvs.cf can hold; the others (VRRP only, or a group) give exit 1
USABLE = {"HTTP_GET.port", "IPv6", "PING_CHECK", "SMTP_CHECK", "SSL_GET", "UDP_CHECK", "fwmark", "inhibit",
          "misc_check", "misc_check_arg", "quorum", "sample", "status_code", "virtualhost", "vrrp.lvs_syncd"}

PAIR = """\
vrrp_instance VI_1 {
    state MASTER
    interface eth1
    virtual_router_id 51
    priority 150
    advert_int 1
    unicast_src_ip 10.0.0.1
    unicast_peer {
        10.0.0.2
    }
    virtual_ipaddress {
        10.0.0.100/24 dev eth1 label eth1:1
    }
    notify_master "/usr/local/bin/became master"
    notify_backup /usr/local/bin/became-backup
}
virtual_server 10.0.0.100 80 {
    delay_loop 2
    lb_algo wrr
    lb_kind DR
    protocol TCP
    persistence_timeout 300
    sorry_server 10.1.0.99 8080
    quorum 2
    hysteresis 1
    real_server 10.1.0.11 80 {
        weight 3
        inhibit_on_failure
        notify_up "/bin/logger up"
        HTTP_GET {
            url {
                path /health
                status_code 204
                digest 640205b7b0fc66c1ea91c463fac6334d
            }
            connect_timeout 1.5
            retry 2
        }
    }
    real_server 10.1.0.12 80 {
        weight 1
        inhibit_on_failure
        HTTP_GET {
            url {
                path /health
                status_code 204
            }
            connect_timeout 1.5
            retry 2
        }
    }
}
"""


def run(tmp_path: Path, text: str, *args: str, name: str = "keepalived.conf") -> tuple[int, str, str, Config | None]:
    """Import `text`; (exit code, the lvs.cf, the report, its model)."""
    src = tmp_path / name
    src.write_text(text)
    out = tmp_path / "lvs.cf"
    if out.exists():
        out.unlink()
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = shoal(["import", str(src), "-o", str(out), *args])
    written = out.read_text() if out.exists() else ""
    return code, written, err.getvalue(), parse(written, "lvs.cf") if written else None


def test_a_pair_carries_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text, report, c = run(tmp_path, PAIR)
    assert code == 0 and c is not None
    assert (c.heartbeat_protocol, c.vrrp_version, c.virtual_router_id, c.priority, c.keepalive_ms) == (
        "vrrp", 2, 51, 150, 1000)
    assert (c.primary, c.backup, c.backup_active, c.vrrp_unicast, c.preempt) == (
        "10.0.0.1", "10.0.0.2", True, True, True)
    assert (c.active_cmd, c.inactive_cmd, c.network) == ("/usr/local/bin/became master",
                                                         "/usr/local/bin/became-backup", "direct")
    assert vrrp_priority(c, "primary") == 150
    (v,) = c.virtuals
    assert (v.name, v.address, v.device, v.vip_nmask, v.port, v.protocol, v.scheduler, v.persistent_s) == (
        "10.0.0.100:80", "10.0.0.100", "eth1:1", "24", 80, "tcp", "wrr", 300)
    assert (v.sorry_server, v.sorry_port, v.quorum, v.hysteresis, v.quiesce_server) == ("10.1.0.99", None, 2, 1, True)
    assert "sorry_server 10.1.0.99 8080: with lb_kind DR the sorry server takes the virtual server's port" in report
    assert (v.check, v.http_path, v.http_status, v.timeout_ms, v.fall, v.rise, v.check_interval_ms) == (
        "http", "/health", 204, 1500, 3, 1, 2000)
    assert [(s.name, s.address, s.weight, s.port, s.notify_up) for s in v.servers] == [
        ("10.1.0.11:80", "10.1.0.11", 3, None, "/bin/logger up"), ("10.1.0.12:80", "10.1.0.12", 1, None, None)]
    assert "keepalived.conf:34: digest 640205b7b0fc66c1ea91c463fac6334d: not checked" in report
    assert "Traceback" not in report
    assert check_config([str(tmp_path / "lvs.cf")]) == 0
    assert "# from " in text and "keepalived.conf:17" in text


def test_the_backup_s_file_makes_the_same_pair(tmp_path: Path) -> None:
    backup = PAIR.replace("state MASTER", "state BACKUP\n    nopreempt").replace("priority 150", "priority 100") \
        .replace("unicast_src_ip 10.0.0.1", "unicast_src_ip 10.0.0.2").replace("        10.0.0.2\n", "        10.0.0.1\n")
    code, _, _, c = run(tmp_path, backup)
    assert code == 0 and c is not None
    assert (c.primary, c.backup, c.priority, c.preempt) == ("10.0.0.1", "10.0.0.2", 100, False)


def test_unknown_addresses_are_placeholders_with_the_line_to_write(tmp_path: Path) -> None:
    text = PAIR.replace("    unicast_src_ip 10.0.0.1\n", "").replace("    unicast_peer {\n        10.0.0.2\n    }\n", "")
    code, written, report, c = run(tmp_path, text)
    assert code == 0 and c is not None
    assert (c.primary, c.backup, c.vrrp_unicast) == ("192.0.2.1", "192.0.2.2", False)
    assert "write `primary = ADDRESS` (this router's address on eth1 (the MASTER))" in report
    assert "--backup ADDRESS" in report
    assert "# TODO: a documentation address" in written
    code, _, report, c = run(tmp_path, text, "--primary", "10.9.0.1", "--backup", "10.9.0.2")
    assert c is not None and (c.primary, c.backup) == ("10.9.0.1", "10.9.0.2")
    assert "documentation address" not in report


def test_what_does_not_carry_over_is_reported_with_its_line(tmp_path: Path) -> None:
    text = PAIR + """\
vrrp_instance VI_2 {
    virtual_router_id 52
    track_script {
        chk
    }
}
virtual_server_group G {
    10.0.0.5 80
}
virtual_server group G {
    real_server 10.1.0.1 80 {
    }
}
virtual_server 10.0.0.100 443 {
    lb_kind NAT
    real_server 10.1.0.11 443 {
        DNS_CHECK {
        }
    }
}
"""
    code, _, report, c = run(tmp_path, text)
    assert code == 0 and c is not None and len(c.virtuals) == 1
    lines = report.splitlines()
    assert any(line.startswith(f"{tmp_path}/keepalived.conf:53: vrrp_instance VI_2: a second vrrp_instance") for line in lines)
    assert any(line.startswith(f"{tmp_path}/keepalived.conf:59: virtual_server_group: ") for line in lines)
    assert any(line.startswith(f"{tmp_path}/keepalived.conf:62: virtual_server group G: virtual_server_group is not supported")
               for line in lines)
    assert "DNS_CHECK" not in report  # what is inside a virtual_server not carried over is not noted again
    assert any(line.startswith(f"{tmp_path}/keepalived.conf:66: virtual_server 10.0.0.100 443: lb_kind differs") for line in lines)


def test_dr_and_tun_real_servers_take_the_virtual_server_s_port_as_in_keepalived(tmp_path: Path) -> None:
    text = "virtual_server 10.0.0.100 80 {\n lb_kind TUN\n protocol TCP\n real_server 10.1.0.11 8080 {\n }\n}\n"
    code, _, report, c = run(tmp_path, text, "--primary", "10.0.0.1")
    assert c is not None and c.network == "tunnel" and c.virtuals[0].servers[0].port is None
    assert "keepalived resets 8080 to 80" in report
    code, _, _, c = run(tmp_path, text.replace("TUN", "NAT"), "--primary", "10.0.0.1")
    assert c is not None and c.virtuals[0].servers[0].port == 8080  # NAT maps ports


def test_checkers(tmp_path: Path) -> None:
    text = """\
virtual_server 10.0.0.100 25 {
    real_server 10.1.0.11 25 {
        MISC_CHECK {
            misc_path "/usr/local/bin/check 10.1.0.11:25 --strict"
            misc_timeout 4
        }
    }
    real_server 10.1.0.12 25 {
        MISC_CHECK {
            misc_path "/usr/local/bin/check 10.1.0.12:25 --strict"
            misc_timeout 4
        }
    }
}
virtual_server 10.0.0.100 53 {
    protocol UDP
    real_server 10.1.0.11 53 {
        UDP_CHECK {
            connect_timeout 2
        }
    }
}
virtual_server 10.0.0.100 443 {
    protocol TCP
    real_server 10.1.0.11 443 {
        SSL_GET {
            url {
                path /
                status_code 200-299 400
                regex "ok|fine"
            }
        }
    }
    real_server 10.1.0.12 443 {
    }
}
"""
    code, _, report, c = run(tmp_path, text, "--primary", "10.0.0.1", "--interface", "eth2")
    assert code == 0 and c is not None
    misc, dns, web = c.virtuals
    assert (misc.send_program, misc.timeout_ms, misc.fall, misc.device, misc.protocol) == (
        "/usr/local/bin/check %h:%p --strict", 4000, 1, "eth2", "udp")
    assert "virtual_server 10.0.0.100 25: no protocol: keepalived then serves UDP" in report  # as keepalived 2.2.7
    assert (dns.protocol, dns.check, dns.timeout_ms, dns.fall) == ("udp", "udp", 2000, 2)
    assert (web.check, web.http_status, web.expect, web.use_regex) == ("https", 200, "ok|fine", True)
    assert "status_code 200-299 400: lvs.cf's http_status is one status: wrote 200" in report
    assert "real_server 10.1.0.12 443: its check differs from the first real server's (this one has no checker)" in report


def test_advert_interval_fits_the_version(tmp_path: Path) -> None:
    text = PAIR.replace("advert_int 1", "advert_int 0.25\n    version 3\n    preempt_delay 30")
    code, _, _, c = run(tmp_path, text)
    assert c is not None and (c.vrrp_version, c.keepalive_ms, c.preempt_delay_ms) == (3, 250, 30_000)
    code, _, report, c = run(tmp_path, PAIR.replace("advert_int 1", "advert_int 0.25"))
    assert c is not None and c.keepalive_ms == 1000
    assert "VRRPv2 adverts come every whole second (1-255): wrote keepalive = 1" in report


def test_includes_follow_globs_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "vrrp.conf").write_text(PAIR.split("virtual_server")[0])
    (tmp_path / "conf.d" / "sub").mkdir()
    (tmp_path / "conf.d" / "sub" / "b.conf").write_text("virtual_server" + PAIR.split("virtual_server", 1)[1])
    (tmp_path / "conf.d" / "services.conf").write_text("include sub/*.conf\n")
    code, _, report, c = run(tmp_path, "include conf.d/vrrp.conf\ninclude conf.d/services.conf\ninclude none/*.x\n")
    assert code == 0 and c is not None and len(c.virtuals[0].servers) == 2
    assert "keepalived.conf:3: (read): include none/*.x: no file matches" in report
    assert "conf.d/sub/b.conf:18: digest" in report  # notes name the included file


def test_include_takes_csh_braces_as_keepalived_s_glob_does(tmp_path: Path) -> None:
    (tmp_path / "vrrp.conf").write_text(PAIR.split("virtual_server")[0])
    (tmp_path / "lvs").mkdir()
    (tmp_path / "lvs" / "web.conf").write_text("virtual_server" + PAIR.split("virtual_server", 1)[1])
    code, _, _, c = run(tmp_path, "include {vrrp,lvs/web}.conf\n")
    assert code == 0 and c is not None and c.virtual_router_id == 51 and len(c.virtuals) == 1
    assert braces("{foo/{,cat,dog},bar}") == ["foo/", "foo/cat", "foo/dog", "bar"]
    assert len(braces("{a,b}" * 40)) == 1000  # bounded


def test_conditionals_and_parameters(tmp_path: Path) -> None:
    text = """\
@lb1 $SRC=10.0.0.1
@lb2 $SRC=10.0.0.2
$PEER_lb1=10.0.0.2
$PEER_lb2=10.0.0.1
$RS= \\
    real_server 10.1.0.${N} 80 { \\
        weight ${N} \\
    }
vrrp_instance VI_1 {
    @lb1 state MASTER
    @^lb1 state BACKUP
    interface eth0
    virtual_router_id 7
    unicast_src_ip $SRC
    unicast_peer {
        ${PEER_${_INSTANCE}}
    }
    virtual_ipaddress {
        10.0.0.100
    }
}
virtual_server 10.0.0.100 80 {
    $N=11
    $RS
    $N=12
    $RS
    ~SEQ(X, 1, 3) real_server 10.1.0.$X 80 {
}
"""
    code, _, report, c = run(tmp_path, text, "--config-id", "lb1")
    assert code == 0 and c is not None
    assert (c.primary, c.backup) == ("10.0.0.1", "10.0.0.2")
    assert [(s.address, s.weight) for s in c.virtuals[0].servers] == [("10.1.0.11", 11), ("10.1.0.12", 12)]
    assert "the file has @lb1, @lb2; read with config-id lb1" in report
    assert "~SEQ lines are not expanded" in report
    code, _, _, c = run(tmp_path, text, "--config-id", "lb2")  # the other router's view: the same pair
    assert c is not None and (c.primary, c.backup, c.priority) == ("10.0.0.1", "10.0.0.2", 100)


def test_nothing_usable_is_exit_1(tmp_path: Path) -> None:
    code, written, report, _ = run(tmp_path, PAIR.split("virtual_server")[0])
    assert (code, written) == (1, "")
    assert "nothing usable" in report and "10.0.0.100: a VIP without a virtual_server" in report


@pytest.mark.parametrize(("text", "message"), [
    ("vrrp_instance VI_1 {\n  state MASTER\n", "keepalived.conf:1: missing '}' for vrrp_instance VI_1 opened at line 1"),
    ("global_defs {\n}\n}\n", "keepalived.conf:3: '}' without a matching '{'"),
    ('virtual_server 10.0.0.1 80 {\n  real_server "10.1.0.1 80 {\n}\n', "keepalived.conf:2: a quote (\") is not closed"),
    ("include keepalived.conf\n", "keepalived.conf:1: include loop: "),
    ("{\n" * 40, "keepalived.conf:1: '{' without a statement before it"),
    ("$A=${A}${A}\nx $A\n", "keepalived.conf:2: parameters expand"),
    ("$A=" + "x" * 4000 + "\ny" + " $A" * 20 + "\n", "keepalived.conf:2: parameters expand this line to more than"),
    ("$A=$B $B $B $B $B $B $B $B\n$B=$C $C $C $C $C $C $C $C\n$C=$D $D $D $D $D $D $D $D\n"
     "$D=$E $E $E $E $E $E $E $E\n$E=$F $F $F $F $F $F $F $F\n$F=xxxxxxxxxxxxxxxxxxxx\nx $A\n",
     "keepalived.conf:7: parameters expand more than 64 times over"),
])
def test_hostile_input_is_a_clear_error_naming_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    code, written, report, _ = run(tmp_path, text)
    assert (code, written) == (2, "")
    assert message in report, report
    assert "Traceback" not in report


def test_multi_line_parameters_that_multiply_are_bounded(tmp_path: Path) -> None:
    """Eight definitions of ten lines, each naming the next: 10**8 lines, each only a comment."""
    lines = []
    for name, following in zip("ABCDEFG", "BCDEFGH"):
        lines += [f"${name}= \\", *[f"${following} \\"] * 9, f"${following}"]
    lines += ["$H= \\", "${_HASH} \\", "${_HASH}", "$A"]
    started = time.monotonic()
    code, written, report, _ = run(tmp_path, "\n".join(lines) + "\n")
    assert (code, written) == (2, "") and time.monotonic() - started < 30
    assert "keepalived.conf:81: more than 1000000 lines to read once parameters are expanded" in report


def test_an_include_that_matches_too_many_files(tmp_path: Path) -> None:
    (tmp_path / "many").mkdir()
    for n in range(1001):
        (tmp_path / "many" / f"{n}.conf").write_text("! nothing\n")
    code, _, report, _ = run(tmp_path, "global_defs {\n}\ninclude many/*.conf\n")
    assert code == 2 and "keepalived.conf:3: include many/*.conf matches more than 1000 files" in report


def test_include_loop_through_two_files(tmp_path: Path) -> None:
    (tmp_path / "b.conf").write_text("\n\ninclude keepalived.conf\n")
    code, _, report, _ = run(tmp_path, "include b.conf\n")
    assert code == 2
    assert report.startswith(f"{tmp_path / 'b.conf'}:3: include loop: ") or "b.conf:3: include loop" in report


def test_huge_file_is_refused_at_once(tmp_path: Path) -> None:
    src = tmp_path / "keepalived.conf"
    src.write_text("! padding\n" * 500_000)  # 5 MB
    started = time.monotonic()
    code = shoal(["import", str(src), "-o", str(tmp_path / "lvs.cf")])
    assert code == 2 and time.monotonic() - started < 5
    assert not (tmp_path / "lvs.cf").exists()


def test_unreadable_file_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert shoal(["import", str(tmp_path / "nope.conf")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert shoal(["import", str(tmp_path)]) == 2
    assert shoal(["import"]) == 2
    assert shoal(["import", "x", "--primary", "not-an-address"]) == 2


def test_lvs_cf_goes_to_stdout_without_o(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "k.conf").write_text(PAIR)
    assert shoal(["import", str(tmp_path / "k.conf")]) == 0
    out = capsys.readouterr()
    assert parse(out.out).virtual_router_id == 51
    assert "digest" in out.err


def test_words_as_keepalived_cuts_them() -> None:
    assert split_words('abcd" efg h jkl "mnop') == (["abcd efg h jkl mnop"], None)
    assert split_words('abcd "efg h jkl" mnop') == (["abcd", "efg h jkl", "mnop"], None)
    assert split_words("a{b}c") == (["a", "{", "b", "}", "c"], None)
    assert split_words(r'"a\"b\tc"') == (['a"b\tc'], None)


def test_comments_anywhere_but_inside_quotes(tmp_path: Path) -> None:
    (tmp_path / "k.conf").write_text('global_defs { ! a comment\n router_id "a#b!c" # another\n}\n')
    tree = load(str(tmp_path / "k.conf"))
    assert tree.statements[0].block is not None and tree.statements[0].block[0].args == ("a#b!c",)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.sampled_from(list("{}\"'#!@^$\\ \n\tabvirtual_server 10.0.1 80rel_{}include*") + ["\x00", "é"]),
               max_size=300))
def test_any_text_is_read_or_refused_never_a_traceback(tmp_path: Path, text: str) -> None:
    read_or_refused(tmp_path, text)


def read_or_refused(tmp_path: Path, text: str) -> None:
    """`text` is refused with file:line problems, or gives nothing usable, or an lvs.cf that parses."""
    path = tmp_path / "fuzz.conf"
    path.write_text(text)
    try:
        tree = load(str(path))
    except KeepalivedError as e:
        assert e.problems and all(w.line >= 1 for w, _ in e.problems)
        return
    result = convert(tree)
    if result.config is not None:
        from shoal.import_cli import lvs_cf

        out = lvs_cf(tree, result, str(path))
        assert out is not None
        parse(out)


def sample_ids() -> list[str]:
    return sorted(p.name.removeprefix("keepalived.conf.") for p in SAMPLES.glob("keepalived.conf.*"))


@pytest.mark.parametrize("sample", sample_ids() or ["(none: Debian's keepalived package is not installed)"])
def test_every_debian_sample(tmp_path: Path, sample: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lvs.cf"
    code = shoal(["import", str(SAMPLES / f"keepalived.conf.{sample}"), "-o", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if sample in USABLE:
        assert code == 0, err
        assert check_config([str(out)]) == 0
    else:
        assert code == 1 and not out.exists()
        assert "nothing usable" in err


def test_the_docs_show_the_report_as_the_import_makes_it_now() -> None:
    """docs/IMPORT-KEEPALIVED.md's sample reports; after a deliberate change:
    PYTHONPATH=. .venv/bin/python scripts/import_samples.py --write, and review the diff."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "import_samples.py"
    spec = importlib.util.spec_from_file_location("import_samples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.current() == module.section()


def test_more_than_one_lvs_cf_holds_is_noted_and_the_rest_written(tmp_path: Path) -> None:
    text = "".join(f"virtual_server 10.{n // 250}.{n % 250}.1 80 {{\n}}\n" for n in range(4100))
    code, _, report, c = run(tmp_path, text)
    assert code == 0 and c is not None and len(c.virtuals) == 4096
    assert report.count("beyond what one lvs.cf holds (4096 virtuals") == 4


# A grammar of keepalived.conf with values lvs.cf may or may not take: whatever it makes, the import
# writes a file that passes check-config, or nothing, or refuses the input: never a traceback.
_GRAMMAR = {
    "top": ["global_defs", "vrrp_instance VI_1", "vrrp_instance VI_2", "virtual_server", "virtual_server fwmark",
            "virtual_server group G", "vrrp_script x", "foo"],
    "vi": ["state MASTER", "state BACKUP", "interface", "virtual_router_id", "priority", "advert_int", "version",
           "nopreempt", "preempt_delay", "unicast_src_ip", "unicast_peer", "virtual_ipaddress", "notify_master",
           "lvs_sync_daemon_interface", "lvs_sync_daemon", "vrrp_version", "authentication"],
    "vs": ["delay_loop", "lb_algo", "lb_kind", "persistence_timeout", "persistence_granularity", "protocol", "quorum",
           "hysteresis", "sorry_server", "inhibit_on_failure", "sh-port", "flag-1", "real_server", "connect_timeout",
           "retry", "alpha"],
    "rs": ["weight", "inhibit_on_failure", "notify_up", "notify_down", "TCP_CHECK", "HTTP_GET", "SSL_GET",
           "MISC_CHECK", "SMTP_CHECK", "UDP_CHECK", "PING_CHECK"],
    "ck": ["connect_timeout", "connect_port", "retry", "misc_path", "misc_dynamic", "url", "delay_before_retry"],
    "url": ["path", "status_code", "digest", "regex"],
}
_VALUES = ["1", "0", "255", "256", "100000", "0.5", "3", "abc", "10.0.0.1", "10.0.0.2", "10.0.0.100", "2001:db8::5",
           "2001:db8::2", "::", "10.0.0.100/24", "10.0.0.100/99", "eth0", "eth0:1", "averyveryverylonginterfacename",
           "NAT", "DR", "TUN", "GRE", "rr", "sh", "TCP", "UDP", "SCTP", "/", "/x", "noslash", "/bin/x 10.0.0.1",
           "255.255.255.0", "255.0.255.0", "200-299", "600", "dev", "label", "(?=x)", "([", "80", "65536", "fwmark"]
_SUB = {"global_defs": "vi", "vrrp_instance VI_1": "vi", "vrrp_instance VI_2": "vi", "url": "url",
        **{c: "ck" for c in ("TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK", "SMTP_CHECK", "UDP_CHECK", "PING_CHECK")}}


@st.composite
def keepalived_confs(draw: st.DrawFn, kind: str = "top", depth: int = 0) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 5 if depth < 3 else 0))):
        word = draw(st.sampled_from(_GRAMMAR[kind]))
        values = " ".join(draw(st.lists(st.sampled_from(_VALUES).map(lambda v: f'"{v}"' if " " in v else v),
                                        max_size=3)))
        if word == "virtual_server":
            word += " " + draw(st.sampled_from(["10.0.0.100 80", "2001:db8::1 443", "10.0.0.101 80", "x", "10.0.0.1"]))
        elif word == "virtual_server fwmark":
            word += " " + draw(st.sampled_from(["1", "0", "x"]))
        elif word == "real_server":
            word += " " + draw(st.sampled_from(["10.1.0.1 80", "10.1.0.2 8080", "2001:db8::9 80", "bad", "10.1.0.3"]))
        sub = "vs" if word.startswith("virtual_server") else "rs" if word.startswith("real_server") else _SUB.get(word)
        if word in ("unicast_peer", "virtual_ipaddress"):
            inner = draw(st.lists(st.sampled_from(_VALUES), max_size=3))
            lines += [word + " {", *(f"{a} {values}" for a in inner), "}"]
        elif sub is not None:
            lines += [word + " {", draw(keepalived_confs(sub, depth + 1)), "}"]
        else:
            lines.append(f"{word} {values}")
    return "\n".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keepalived_confs())
def test_any_keepalived_conf_gives_a_valid_lvs_cf_or_nothing(tmp_path: Path, text: str) -> None:
    read_or_refused(tmp_path, text)


NESTED = r"""$RS= \
real_server 192.168.${VS_NUM}.${RS_NUM} 80 { \
    weight ${RS_NUM} \
    inhibit_on_failure \
    MISC_CHECK { \
        misc_path "${_PWD}/scripts/vs.sh 10.0.${VS_NUM}.4:80->192.168.${VS_NUM}.${RS_NUM}:80" \
    } \
}

$VS= \
virtual_server 10.0.${VS_NUM}.4 80 { \
    quorum 2 \
    $RS_NUM=1 \
    $RS \
    $RS_NUM=2 \
    $RS \
}

$VS_NUM=0
$VS

$VS_NUM=1
$VS
"""


def test_the_manual_s_nested_multi_line_definitions(tmp_path: Path) -> None:
    """keepalived.conf(5), "Parameter substitution": a definition inside a multi-line value applies to the
    lines after it; ${_PWD} is the file's directory; one program per server becomes one send_program."""
    code, _, _, c = run(tmp_path, NESTED, "--primary", "10.9.9.9")
    assert code == 0 and c is not None
    assert [(v.name, v.quorum, v.send_program, v.quiesce_server) for v in c.virtuals] == [
        ("10.0.0.4:80", 2, f"{tmp_path}/scripts/vs.sh 10.0.0.4:80->%h:%p", True),
        ("10.0.1.4:80", 2, f"{tmp_path}/scripts/vs.sh 10.0.1.4:80->%h:%p", True)]
    assert [(s.address, s.weight) for s in c.virtuals[1].servers] == [("192.168.1.1", 1), ("192.168.1.2", 2)]


def test_ipv6_pair_runs_vrrp_version_3_and_priority_255_becomes_254(tmp_path: Path) -> None:
    text = PAIR.replace("10.0.0.100/24", "2001:db8::100/64").replace("10.0.0.100 80", "2001:db8::100 80") \
        .replace("10.0.0.1\n", "2001:db8::a\n").replace("10.0.0.2\n", "2001:db8::b\n") \
        .replace("10.1.0.99", "2001:db8:1::99").replace("10.1.0.1", "2001:db8:1::1").replace("priority 150", "priority 255")
    code, _, report, c = run(tmp_path, text)
    assert code == 0 and c is not None
    assert (c.primary, c.backup, c.vrrp_version, c.priority, c.keepalive_ms) == (
        "2001:db8::a", "2001:db8::b", 3, 254, 1000)
    assert (c.virtuals[0].address, c.virtuals[0].vip_nmask) == ("2001:db8::100", "64")
    assert "VRRPv2 is IPv4 only: wrote vrrp_version = 3" in report
    assert "priority 255 (the address owner's) is written as 254" in report


def test_lvs_sync_daemon_interface_and_instance_choice(tmp_path: Path) -> None:
    text = PAIR.replace("    advert_int 1\n", "    advert_int 1\n    lvs_sync_daemon_interface eth2\n") + \
        PAIR.split("virtual_server")[0].replace("VI_1", "VI_2").replace("virtual_router_id 51", "virtual_router_id 52")
    code, _, report, c = run(tmp_path, text)
    assert c is not None and (c.syncdaemon, c.syncd_iface, c.syncd_id, c.virtual_router_id) == (True, "eth2", 51, 51)
    code, _, report, c = run(tmp_path, text, "--instance", "VI_2")
    assert c is not None and c.virtual_router_id == 52
    assert "vrrp_instance VI_1: a second vrrp_instance: an lvs.cf has one (vrrp_instance VI_2 was taken" in report


def test_v3_checksum_as_v2(tmp_path: Path) -> None:
    text = "global_defs {\n    v3_checksum_as_v2\n}\n" + PAIR.replace("advert_int 1", "advert_int 1\n    version 3")
    code, _, _, c = run(tmp_path, text)
    assert c is not None and (c.vrrp_version, c.vrrp_v3_checksum_as_v2) == (3, True)
    code, _, report, c = run(tmp_path, text.replace("    version 3\n", ""))
    assert c is not None and (c.vrrp_version, c.vrrp_v3_checksum_as_v2) == (2, False)
    assert "v3_checksum_as_v2 applies to VRRPv3 only" in report
    code, _, report, c = run(tmp_path, "global_defs {\n    v3_checksum_as_v2 yes\n}\n" + "virtual_server" + PAIR.split("virtual_server", 1)[1])
    assert c is not None and (c.heartbeat_protocol, c.vrrp_v3_checksum_as_v2) == ("pulse", False)
    assert "keepalived.conf:2: v3_checksum_as_v2 yes: no vrrp_instance: not carried over" in report


def test_the_keepalived_conf_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "k.conf").write_text("include inc.conf\n")
    (tmp_path / "inc.conf").write_text(PAIR)
    for target in ("k.conf", "inc.conf"):
        assert shoal(["import", str(tmp_path / "k.conf"), "-o", str(tmp_path / target)]) == 2
        assert "not overwritten" in capsys.readouterr().err
    assert (tmp_path / "inc.conf").read_text() == PAIR


def test_a_bad_value_is_named_as_such(tmp_path: Path) -> None:
    text = ("vrrp_instance V {\n virtual_router_id abc\n priority 0\n}\nvirtual_server 10.0.0.100 80 {\n protocol TCP\n"
            " quorum -1\n real_server 10.1.0.1 80 {\n  weight 99999999\n }\n}\n")
    code, _, report, c = run(tmp_path, text)
    assert code == 0 and c is not None and (c.virtual_router_id, c.priority) == (1, 100)
    for line in (2, 3, 7, 9):
        assert f"keepalived.conf:{line}: " in report
    assert report.count("a value lvs.cf cannot take: not carried over") == 4
    assert "no valid virtual_router_id (1-255): wrote 1" in report
