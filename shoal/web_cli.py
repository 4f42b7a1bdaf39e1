"""`shoal web -c FILE [--listen ADDR:PORT] [--users FILE] [--state-dir DIR] [--tls-cert F --tls-key F]`

The web tool (docs/WEB.md), in its own process, needing no root: the
daemon's control socket (`STATE_DIR/control.sock`), write access to FILE
and to the state directory (its audit log, `web-audit.log`).
`--partner URL --partner-user NAME --partner-password-file F
[--partner-ca F]`: the other router's web tool, to copy the configuration
to (adapters/web/partner.py).

It refuses to start, with a message saying what to do, when: the users
file has no admin (there is no default user: make one with `shoal passwd
USER --role admin`), the address is not loopback and no certificate is
given (plain HTTP only on 127.0.0.0/8 and ::1), FILE cannot be read, or
the audit log cannot be opened.  Exit 0 on SIGINT/SIGTERM; 2 bad
arguments; 1 cannot start.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import ssl
import sys

from adapters.web.partner import Partner

DEFAULT_LISTEN = "127.0.0.1:3636"


def parse_listen(value: str) -> tuple[str, int]:
    """`ADDR:PORT` or `[V6ADDR]:PORT` -> (address, port); ValueError when it is not one."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ValueError(f"{value}: expected ADDR:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address = ipaddress.ip_address(host)  # a name would be resolved: an address only
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"{value}: the port must be 1 to 65535")
    return str(address), number


def problems(args: argparse.Namespace, users_path: str) -> list[str]:
    from adapters.web.users import UsersError, load

    out = []
    host, _ = parse_listen(args.listen)
    if not ipaddress.ip_address(host).is_loopback and not (args.tls_cert and args.tls_key):
        out.append(f"{args.listen} is not a loopback address: plain HTTP only on loopback; give --tls-cert and "
                   f"--tls-key, or listen on 127.0.0.1")
    if bool(args.tls_cert) != bool(args.tls_key):
        out.append("--tls-cert and --tls-key go together")
    try:
        admins = [u for u in load(users_path).values() if u.role == "admin"]
    except UsersError as e:
        out.append(str(e))
    else:
        if not admins:
            out.append(f"no admin user in {users_path}: there is no default user; make one with "
                       f"`shoal passwd NAME --role admin" + (f" --users {users_path}`" if args.users else
                                                            f" --state-dir {args.state_dir}`"))
    if not os.access(args.config, os.R_OK):
        out.append(f"cannot read {args.config}")
    return out


def _partner(args: argparse.Namespace) -> Partner | None:
    """The partner's web tool from --partner*, or None; ValueError says what is wrong."""
    if not (args.partner or args.partner_user or args.partner_password_file):
        return None
    if not (args.partner and args.partner_user and args.partner_password_file):
        raise ValueError("--partner, --partner-user and --partner-password-file go together")
    try:
        with open(args.partner_password_file, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    except OSError as e:
        raise ValueError(f"--partner-password-file {args.partner_password_file}: {e.strerror or e}") from e
    partner = Partner(args.partner, args.partner_user, password, args.partner_ca)
    problem = partner.problem()
    if problem:
        raise ValueError(problem)
    return partner


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shoal web", description="the web tool (docs/WEB.md)")
    parser.add_argument("-c", "--config", required=True, help="the lvs.cf the daemon runs")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="ADDR:PORT (default 127.0.0.1:3636)")
    parser.add_argument("--users", default=None, help="the users file (default STATE_DIR/web-users)")
    parser.add_argument("--state-dir", default="/run/shoal")
    parser.add_argument("--tls-cert", default=None)
    parser.add_argument("--tls-key", default=None)
    parser.add_argument("--partner", default=None, help="the partner router's web tool, https://ADDR:PORT")
    parser.add_argument("--partner-user", default=None, help="an admin of the partner's web tool")
    parser.add_argument("--partner-password-file", default=None, help="that user's password (its first line)")
    parser.add_argument("--partner-ca", default=None, help="the CA (or certificate) the partner's is checked against")
    try:
        args = parser.parse_args(argv)
        host, port = parse_listen(args.listen)
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    except ValueError as e:
        print(f"shoal web: --listen {e}", file=sys.stderr)
        return 2
    users_path = args.users or os.path.join(args.state_dir, "web-users")
    found = problems(args, users_path)
    if found:
        for problem in found:
            print(f"shoal web: cannot start: {problem}", file=sys.stderr)
        return 1
    try:
        partner = _partner(args)
    except ValueError as e:
        print(f"shoal web: cannot start: {e}", file=sys.stderr)
        return 1
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            print(f"shoal web: cannot start: the certificate or key: {e}", file=sys.stderr)
            return 1

    from aiohttp import web

    from adapters.web.app import Options, make_app

    try:
        app = make_app(Options(config_path=os.path.abspath(args.config), state_dir=args.state_dir,
                               users_path=users_path, tls=context is not None, partner=partner))
    except OSError as e:
        print(f"shoal web: cannot start: the audit log in {args.state_dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    scheme = "https" if context else "http"
    shown = f"[{host}]" if ":" in host else host
    print(f"shoal web: {scheme}://{shown}:{port}/ (config {args.config}, daemon {args.state_dir}/control.sock, "
          f"users {users_path})", flush=True)
    try:
        web.run_app(app, host=host, port=port, ssl_context=context, print=None, access_log=None,
                    handle_signals=True, shutdown_timeout=2.0)
    except OSError as e:
        print(f"shoal web: cannot start: {args.listen}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0
