"""The `shoal` command line (see ../shared/SPEC.md, "The command line")."""

from __future__ import annotations

import sys


USAGE = """usage: shoal COMMAND [ARGS]

commands:
  sim [SCENARIO.toml] [--seed N] [--json] [--until T]   run a scenario in the simulator
  check-config FILE                                      parse and validate an lvs.cf
  import KEEPALIVED.CONF [-o LVS.CF] [--primary A] [--backup A] [--config-id ID]   an lvs.cf from keepalived.conf
  keygen FILE [--force]                                  write a new heartbeat key (mode 0600)
  run -c FILE [--dataplane ipvs|nft|dry-run] [--state-dir DIR]   the router daemon
  status [--json] [--state-dir DIR]                      what a running daemon knows
  table [--state-dir DIR]                                the applied table (ipvsadm -Ln layout)
  lab SCENARIO.toml [--time-scale F]                     the scenario on real namespaces
  admin drain|undrain V/S, weight V/S N, failover, reload [--state-dir DIR]   a running daemon
  replay JOURNAL... [--key FILE]                         re-decide a daemon's journal and compare
  replay --scenario JOURNAL_A JOURNAL_B [-o OUT.toml]    the journals of both routers as a scenario
  web -c FILE [--listen ADDR:PORT] [--users FILE]        the web tool;  passwd USER [--role R]: a web user
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "check-config":
        from shoal.check_config import main as check_config

        return check_config(rest)
    if command == "import":
        from shoal.import_cli import main as import_

        return import_(rest)
    if command == "keygen":
        from shoal.keygen import main as keygen

        return keygen(rest)
    if command == "sim":
        from shoal.sim_cli import main as sim

        return sim(rest)
    if command == "run":
        from adapters.daemon import main as run

        return run(rest)
    if command in ("status", "table"):
        return _client(command, rest)
    if command in ("web", "passwd"):  # the web tool and its users (docs/WEB.md)
        return __import__(f"shoal.{'web_cli' if command == 'web' else 'passwd'}", fromlist=["main"]).main(rest)
    if command == "admin":
        from shoal.admin_cli import main as admin

        return admin(rest)
    if command == "lab":
        from shoal.lab_cli import main as lab

        return lab(rest)
    if command == "replay":
        from shoal.replay_cli import main as replay

        return replay(rest)
    print(f"shoal: unknown command {command!r}\n{USAGE}", file=sys.stderr, end="")
    return 2


def _client(command: str, argv: list[str]) -> int:
    import argparse
    import json

    from adapters.control import ask, status_text

    parser = argparse.ArgumentParser(prog=f"shoal {command}")
    parser.add_argument("--state-dir", default="/run/shoal")
    if command == "status":
        parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        answer = ask(args.state_dir, {"cmd": command})
    except (OSError, ValueError) as e:
        print(f"shoal {command}: no daemon answers at {args.state_dir}/control.sock: {e}", file=sys.stderr)
        return 1
    if "error" in answer:
        print(f"shoal {command}: {answer['error']}", file=sys.stderr)
        return 1
    if command == "status":
        print(json.dumps(answer, indent=2) if args.json else status_text(answer))
    else:
        print(answer["text"], end="" if answer["text"].endswith("\n") else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
