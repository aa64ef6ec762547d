"""A reverse proxy in front of a real Prefect server that answers 503 to a share of API requests.

    python -m tests.flaky_proxy UPSTREAM_URL PORT SHARE     # e.g. http://127.0.0.1:4200 8123 0.2

The 503 is the one the server itself sends when its SQLite database is locked
(`{"exception_message": "Service Unavailable"}`); the rest, websockets included, pass through
unchanged. Each refusal is counted on stdout as `503 METHOD PATH`, so a test can assert some hit
the paths it cares about. Health checks always pass, so start-up probes do not flake.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

import httpx
import uvicorn
import websockets

HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}


def make_app(upstream: str, share: float):
    client = httpx.AsyncClient(base_url=upstream, timeout=120)
    rng = random.Random(1)

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "websocket":
            await _websocket(upstream, scope, receive, send)
        else:
            await _http(client, rng, share, scope, receive, send)

    return app


async def _http(client, rng, share, scope, receive, send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if not path.endswith("/health") and rng.random() < share:
        print(f"503 {scope['method']} {path}", flush=True)
        payload = json.dumps({"exception_message": "Service Unavailable"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return
    headers = [(k, v) for k, v in scope["headers"] if k.decode().lower() not in HOP]
    url = path + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
    request = client.build_request(scope["method"], url, headers=headers, content=body)
    response = await client.send(request, stream=True)
    try:
        kept = [(k.encode(), v.encode()) for k, v in response.headers.items() if k.lower() not in HOP]
        await send({"type": "http.response.start", "status": response.status_code, "headers": kept})
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await response.aclose()


async def _websocket(upstream, scope, receive, send) -> None:
    await receive()  # websocket.connect
    url = upstream.replace("http", "ws", 1) + scope["path"]
    try:
        # the `prefect` subprotocol decides whether the server expects an auth handshake
        offered = scope.get("subprotocols") or None
        async with websockets.connect(url, additional_headers=_auth(scope), subprotocols=offered) as remote:
            await send({"type": "websocket.accept", "subprotocol": remote.subprotocol})

            async def down() -> None:
                async for message in remote:
                    key = "text" if isinstance(message, str) else "bytes"
                    await send({"type": "websocket.send", key: message})

            pump = asyncio.create_task(down())
            try:
                while True:
                    message = await receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    await remote.send(message.get("text") or message.get("bytes"))
            finally:
                pump.cancel()
    except (OSError, websockets.WebSocketException):
        await send({"type": "websocket.close", "code": 1011})


def _auth(scope) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in scope["headers"] if k.decode().lower() == "authorization"}


if __name__ == "__main__":
    upstream, port, share = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    uvicorn.run(
        make_app(upstream, share), host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
    )
