"""Prefect's basic auth for etlctl's server and every client of it, from the environment only.

    PREFECT_API_AUTH_STRING=etl:long-random-secret      # one line in the env file of every host

The server (prefect/server/api/server.py, 3.9) refuses every API request without the header
`Authorization: Basic base64(<auth string>)` with 401, except GET /api/health and /api/ready;
Prefect's clients, workers and flow runs send that header when PREFECT_API_AUTH_STRING is set.
`etlctl server start` takes the server's string from PREFECT_SERVER_API_AUTH_STRING, else from the
clients' PREFECT_API_AUTH_STRING, so one env-file line serves the server host too. Never from a
command line: any user of the host can read those with ps.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping

SERVER_AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"
CLIENT_AUTH_ENV = "PREFECT_API_AUTH_STRING"


def server_auth(env: Mapping[str, str]) -> str | None:
    """The auth string a server started with this environment enforces; None for none."""
    return env.get(SERVER_AUTH_ENV) or env.get(CLIENT_AUTH_ENV) or None


def auth_headers(env: Mapping[str, str]) -> dict[str, str]:
    """The header Prefect's own clients send, for etlctl's few direct HTTP requests."""
    auth = env.get(CLIENT_AUTH_ENV)
    if not auth:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth.encode("utf-8")).decode("ascii")}


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach an API listening on `host`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, auth: str | None) -> str | None:
    """What `etlctl server start` says when it serves an API that others can reach, with no auth."""
    if auth or is_loopback(host):
        return None
    return (
        f"the Prefect API on {host} has no authentication: anyone who reaches it can run commands "
        f"on the workers, which hold the database passwords. Set {CLIENT_AUTH_ENV}=user:secret in "
        "the env file of every host (docs/operations.md, 'Securing the API')"
    )
