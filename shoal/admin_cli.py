"""`shoal admin`: the operator's requests to a running daemon (SPEC.md,
"Operating a running pair").

    shoal admin drain VIRTUAL/SERVER [--state-dir DIR]
    shoal admin undrain VIRTUAL/SERVER
    shoal admin weight VIRTUAL/SERVER N
    shoal admin failover
    shoal admin reload

Exit 0: applied (the daemon accepted it); 1: refused, the reason on stderr
(or no daemon answers); 2: bad arguments.  `reload` prints what changed,
or every error of the new file on stderr.  Talks to the daemon over its
control socket (`adapters.control`).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

MAX_WEIGHT = 65535
RELOAD_TIMEOUT_S = 120.0  # the daemon reads and checks the new file with its own bound
TIMEOUT_S = 10.0

_NAME = re.compile(r"[^\s/]+")


def member(text: str) -> str:
    """VIRTUAL/SERVER: two names of lvs.cf blocks, no blank, one slash."""
    virtual, slash, server = text.partition("/")
    if not slash or not _NAME.fullmatch(virtual) or not _NAME.fullmatch(server):
        raise argparse.ArgumentTypeError(f"{text!r} is not VIRTUAL/SERVER (the names of a virtual and a server "
                                         "block of lvs.cf)")
    return text


def weight(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) > MAX_WEIGHT:
        raise argparse.ArgumentTypeError(f"{text!r} is not a weight: an integer 0 to {MAX_WEIGHT}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="shoal admin", description="requests to a running shoal daemon")
    top.add_argument("--state-dir", default="/run/shoal", help="the daemon's state directory (default /run/shoal)")
    common = argparse.ArgumentParser(add_help=False)  # also after the action: not to override the one before it
    common.add_argument("--state-dir", default=argparse.SUPPRESS, help="as above")
    sub = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_ in (("drain", "weight 0 (open connections finish), kept until undrain"),
                          ("undrain", "back to the configured (or health-derived) weight")):
        p = sub.add_parser(action, parents=[common], help=help_)
        p.add_argument("server", type=member, metavar="VIRTUAL/SERVER")
    p = sub.add_parser("weight", parents=[common], help="an operator weight, kept like a drain")
    p.add_argument("server", type=member, metavar="VIRTUAL/SERVER")
    p.add_argument("weight", type=weight, metavar="N")
    sub.add_parser("failover", parents=[common], help="the active router hands over to its partner")
    sub.add_parser("reload", parents=[common], help="as SIGHUP; prints what changed or every error")
    return top


def main(argv: list[str]) -> int:
    from adapters.control import ask

    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse: usage errors exit 2, --help 0
        return int(e.code) if isinstance(e.code, int) else 2
    request: dict[str, Any]
    if args.action == "reload":
        request = {"cmd": "reload"}
    else:
        request = {"cmd": "admin", "action": args.action, "server": getattr(args, "server", "")}
        if args.action == "weight":
            request["weight"] = args.weight
    where = f"{args.state_dir}/control.sock"
    try:
        answer = ask(args.state_dir, request, RELOAD_TIMEOUT_S if args.action == "reload" else TIMEOUT_S)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"shoal admin: no shoal daemon is running with state directory {args.state_dir} "
              f"(nothing answers on {where}; start it with shoal run, or give --state-dir)", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"shoal admin: the daemon on {where} did not answer in time", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"shoal admin: cannot talk to the daemon on {where}: {e}", file=sys.stderr)
        return 1
    return report(args.action, answer)


def report(action: str, answer: dict[str, Any]) -> int:
    """Print the daemon's answer; the exit status."""
    if answer.get("ok") is True:
        if action == "reload":
            print(answer.get("detail") or "reloaded")
        return 0
    reason = answer.get("error") or "refused, no reason given"
    print(f"shoal admin {action}: {reason}", file=sys.stderr)
    for error in answer.get("errors") or ():
        print(error, file=sys.stderr)
    return 1
