"""``pimwatch init [PATH]``: write a commented starter config (default ./pimwatch.yaml) that
``pimwatch check-config`` accepts; the commented-out sinks are valid too once uncommented and their
``${ENV}`` variables set (tests/test_cli_config.py holds both).

Exit codes: 0 written, 1 the file exists (``--force`` replaces it) or cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pimwatch.cli.checkconfig import DEFAULT_CONFIG

STARTER = """\
# pimwatch configuration (written by `pimwatch init`). Check it with `pimwatch check-config --config
# THIS_FILE`; `pimwatch detectors --config THIS_FILE` lists every detector with its values, and
# `pimwatch route --config THIS_FILE --detector ID` shows which sinks get an alert. Every key is
# optional: what is left out takes the default. Full reference: docs/sinks.md, docs/detectors.md.

# break_glass.accounts: the emergency-access accounts, by object id (best: it never changes) or UPN.
# Every sign-in of these accounts and every audit record they initiate or target is an alert.
break_glass:
  accounts: []
  # accounts:
  #   - 00000000-0000-0000-0000-000000000000   # bg-admin01@contoso.onmicrosoft.com
  #   - bg-admin02@contoso.onmicrosoft.com

# privileged_roles: roles whose changes are rated higher (names or template ids). Left out: the
# built-in list (Global Administrator, Privileged Role Administrator, Security Administrator, ...).
# privileged_roles:
#   - Global Administrator
#   - 62e90394-69f5-4237-9190-012177145e10

# detectors.<id>: `enabled: true|false`, `severity: critical|high|medium|low|info`, and the
# detector's parameters (docs/detectors.md). For example:
detectors:
  # Business hours of the activations (activation.off_hours alerts outside them).
  activation.off_hours: {timezone: UTC, start_hour: 7, end_hour: 19}
  # activation.simultaneous: {threshold: 3, within_minutes: 10}
  # pim.builtin_alert: {enabled: false}

# sinks.<name>: where alerts go, each with its routing: min_severity, detectors / exclude (globs on
# detector ids), digest_minutes. Secrets only as ${ENV} references (never in this file); check-config
# says which are not set, without printing any value.
sinks:
  screen: {type: console}
# --- production routing: uncomment, and set the environment variables it names ---
#   oncall:
#     type: pagerduty
#     min_severity: critical
#     routing_key: ${PAGERDUTY_ROUTING_KEY}
#   channel:
#     type: teams
#     min_severity: medium
#     webhook_url: ${TEAMS_WORKFLOW_URL}
#   siem:
#     type: sentinel
#     endpoint: ${DCE_INGESTION_URL}
#     rule_id: ${DCR_IMMUTABLE_ID}
#     stream_name: Custom-PimwatchAlerts
#   digest:                  # low and info alerts in one e-mail a day; higher ones at once
#     type: email
#     transport: graph
#     digest_minutes: 1440
#     sender: pimwatch@contoso.com
#     to: [secops@contoso.com]
#     tenant_id: ${AZURE_TENANT_ID}
#     client_id: ${MAIL_CLIENT_ID}
#     client_secret: ${MAIL_CLIENT_SECRET}
# --- end of production routing ---

# delivery: retries and dead letters (docs/sinks.md).
# delivery: {max_attempts: 12, max_age_hours: 24, run_deadline_seconds: 60}

# pipeline (the deployed app): no records for silent_minutes raises pipeline.silent.
# pipeline: {silent_minutes: 30}

# templates: a folder of template overrides (sinks/templates has the bundled ones and their context).
# templates: ./templates
"""


def add_parser(sub: Any) -> None:
    ip = sub.add_parser("init", help="write a commented starter config")
    ip.add_argument(
        "path", nargs="?", default=DEFAULT_CONFIG, metavar="PATH", help=f"default ./{DEFAULT_CONFIG}"
    )
    ip.add_argument("--force", action="store_true", help="replace an existing file")


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    try:
        with path.open("w" if args.force else "x", encoding="utf-8") as f:
            f.write(STARTER)
    except FileExistsError:
        sys.stderr.write(f"pimwatch: {path} exists; --force replaces it\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"pimwatch: cannot write {path}: {exc.strerror or exc}\n")
        return 1
    sys.stderr.write(f"pimwatch: wrote {path}; next: pimwatch check-config --config {path}\n")
    return 0
