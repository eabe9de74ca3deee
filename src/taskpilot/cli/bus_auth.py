"""``taskpilot nats``: the bus's users, from :mod:`taskpilot.runtime.permissions`.

* ``server-config``: the ``authorization`` block of a nats-server config (one user per
  service, ``admin``, and the teams given), passwords from ``--passwords`` (JSON) or new ones.
* ``helm-values``: the same for the official NATS Helm chart, passwords from a Secret
  (deploy/helm/examples/nats-auth-values.yaml is its output).
* ``team-credentials NAME``: a user for an internal team (publish ``team.NAME.>``, read the
  public events); with the embedded default it is added to the data directory's users.
* ``provision``: create or update every declared stream, as the admin user.

The embedded default (``taskpilot dev``) keeps its users in ``<data dir>/nats-users.json``
(owner-only) and starts nats-server with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import yaml

from taskpilot.runtime.permissions import (
    ADMIN,
    SERVICES,
    TEAM_ROOT,
    Permissions,
    all_permissions,
    server_authorization,
    team_permissions,
)
from taskpilot.runtime.settings import CommonSettings, NatsCredentials

AUTH_FILE = "nats-users.json"
HELM_SECRET = "taskpilot-nats-users"  # noqa: S105 (a Secret's name)


def add_nats_parser(commands: Any) -> None:
    nats = commands.add_parser("nats", help="bus users and permissions, stream provisioning")
    actions = nats.add_subparsers(dest="nats_command", required=True)
    config = actions.add_parser("server-config", help="nats-server authorization block")
    config.add_argument("--team", action="append", default=[], help="an internal team")
    config.add_argument("--passwords", type=Path, help="JSON {user: password} (default: new)")
    helm = actions.add_parser("helm-values", help="values for the official NATS chart")
    helm.add_argument("--team", action="append", default=[], help="an internal team")
    team = actions.add_parser("team-credentials", help="a user for an internal team")
    team.add_argument("name", help="the team (lowercase letters, digits, - or _)")
    actions.add_parser("provision", help="create or update every stream (as admin)")


def run_nats(args: argparse.Namespace) -> int:
    if args.nats_command == "server-config":
        teams = tuple(args.team)
        users = [p.user for p in all_permissions(teams)]
        given = json.loads(args.passwords.read_text()) if args.passwords else {}
        print(server_authorization({u: given.get(u) or new_password() for u in users}, teams))
    elif args.nats_command == "helm-values":
        print(helm_values(tuple(args.team)), end="")
    elif args.nats_command == "team-credentials":
        print(team_credentials(args.name, args.data_dir.resolve()))
    elif args.nats_command == "provision":
        settings = CommonSettings()
        credentials = settings.nats_credentials(ADMIN)
        asyncio.run(provision(settings.nats_url, credentials, settings.stream_replicas))
        print("streams provisioned")
    return 0


def new_password() -> str:
    return secrets.token_urlsafe(24)


def dev_passwords(data_dir: Path) -> tuple[Path, dict[str, str]]:
    """The embedded default's users (created on first use, kept across runs)."""
    path = data_dir / AUTH_FILE
    passwords: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [u for u in (ADMIN, *SERVICES) if u not in passwords]
    if missing or not path.exists():
        passwords |= {u: new_password() for u in missing}
        _write_private(path, json.dumps(passwords, indent=2))
    return path, passwords


def dev_teams(passwords: dict[str, str]) -> tuple[str, ...]:
    prefix = f"{TEAM_ROOT}-"
    return tuple(u.removeprefix(prefix) for u in passwords if u.startswith(prefix))


def dev_server_config(passwords: dict[str, str]) -> str:
    return server_authorization(passwords, dev_teams(passwords))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def team_credentials(team: str, data_dir: Path) -> str:
    permissions = team_permissions(team)
    path = data_dir / AUTH_FILE
    lines = []
    if path.exists():  # the embedded default: remember it, applied at the next start
        _, passwords = dev_passwords(data_dir)
        password = passwords.setdefault(permissions.user, new_password())
        _write_private(path, json.dumps(passwords, indent=2))
        lines.append(f"added to {path}; restart `taskpilot dev` to apply")
    else:
        password = new_password()
        lines.append("add this user to the NATS server's authorization users:")
        lines.append(json.dumps(permissions.to_config(password), indent=2))
    lines += [
        f"user:          {permissions.user}",
        f"password:      {password}",
        f"inbox prefix:  {permissions.inbox_prefix}  (nats.connect(inbox_prefix=...))",
        f"may publish:   {', '.join(permissions.publish)}",
        f"may subscribe: {', '.join(permissions.subscribe)}",
    ]
    return "\n".join(lines)


def helm_values(teams: tuple[str, ...] = ()) -> str:
    """Values for the official NATS chart: every user, its password from the Secret
    ``taskpilot-nats-users`` (one key per user) through the server's environment."""
    users: list[dict[str, Any]] = []
    env: list[dict[str, Any]] = []
    for permissions in all_permissions(teams):
        var = _env_var(permissions)
        entry = permissions.to_config(f"<< ${var} >>")
        users.append(entry)
        env.append(
            {
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": HELM_SECRET, "key": permissions.user}},
            }
        )
    values = {
        "config": {"merge": {"authorization": {"users": users}}},
        "container": {"env": {e["name"]: {"valueFrom": e["valueFrom"]} for e in env}},
    }
    header = (
        "# Generated by `taskpilot nats helm-values` from libs/runtime permissions.py: do not\n"
        "# edit (tests/integration/security/test_bus_permissions.py checks it is current).\n"
        "# Bus users for the official NATS chart, on top of nats-values.yaml:\n"
        "#\n"
        "#   kubectl -n nats create secret generic taskpilot-nats-users \\\n"
        "#     --from-literal=admin=... --from-literal=ingest=... (one key per user below)\n"
        "#   helm install nats nats/nats -n nats -f deploy/helm/examples/nats-values.yaml \\\n"
        "#     -f deploy/helm/examples/nats-auth-values.yaml\n"
        "#\n"
        "# The TaskPilot chart gives each service its user with nats.auth.enabled (values.yaml).\n"
    )
    return header + yaml.dump(values, Dumper=_Indented, sort_keys=False, width=100)


class _Indented(yaml.SafeDumper):
    """Block sequences indented under their key, as yamllint wants (deploy/yamllint.yaml)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _env_var(permissions: Permissions) -> str:
    return "TASKPILOT_NATS_" + permissions.user.upper().replace("-", "_")


async def provision(url: str, credentials: NatsCredentials | None, replicas: int = 1) -> None:
    from taskpilot.contracts.subjects import ALL_STREAMS
    from taskpilot.runtime.bus import Bus, ensure_streams
    from taskpilot.runtime.dlq import RUNTIME_STREAMS

    bus = Bus(url, name="provision", credentials=credentials)
    await bus.connect()
    try:
        await ensure_streams(bus.js, ALL_STREAMS + RUNTIME_STREAMS, replicas=replicas)
    finally:
        await bus.close()
