#!/usr/bin/env python3
"""A real MCP client for the peer tests: the official Python SDK (PyPI `mcp`, pinned by
tests/peers/install.sh) over its Streamable HTTP transport.

It connects to URL, lists the tools, calls each requested tool in order within the one connection
(so a stateful server sees one session), and prints ONE JSON document on stdout:

    {
      "sdk": {"name": "mcp", "version": "2.3.0"},
      "mode": "legacy",                  # what was asked: auto | legacy | 2026-07-28
      "protocol_version": "2025-11-25",  # what was negotiated
      "era": "session",                  # "session" (initialize) or "stateless" (server/discover)
      "server_info": {...} | null,
      "capabilities": {...},
      "wire": [{"method": "server/discover", "status": 200, "session_id": false}, ...],
      "tools": [{"name": ..., "description": ..., "inputSchema": {...}}, ...],
      "calls": [{"tool": ..., "arguments": {...}, "isError": false,
                 "content": [...], "structuredContent": ...} | {"tool": ..., "error": {...}}]
    }

Usage:
    mcp_client.py URL [--mode auto|legacy|2026-07-28] [--header 'Name: value']...
                      [--call TOOL JSON_ARGS]... [--plan PLAN.json] [--timeout SECONDS]

A plan file is {"mode": ..., "headers": {...}, "calls": [{"tool": ..., "arguments": {...}}]};
command-line options add to it. `--mode auto` is the SDK's default: it probes `server/discover`
(protocol 2026-07-28) and falls back to `initialize` when the server answers with an error;
`legacy` forces the `initialize` handshake (a session, when the server keeps them); `2026-07-28`
adopts that version without a probe. The `wire` list records every HTTP request the SDK made (the
JSON-RPC method, or the HTTP verb for GET/DELETE) with its status, so a caller can see how the
server answered the discovery probe.

Exit status: 0 when the client connected and every step ran (a tool error is data, reported in
`calls`); 1 with a message on stderr when the connection or the listing failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from importlib.metadata import version as package_version
from typing import Any

try:
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError
except ImportError as e:  # pragma: no cover - depends on the venv
    sys.exit(
        f"mcp_client.py: the MCP Python SDK is missing ({e}); run tests/peers/install.sh and use "
        "the python of its venv ($MCP_PEERS_DIR/venv, default $HOME/.cache/mcp-authd/venv)"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the MCP endpoint, e.g. http://127.0.0.1:3000/mcp")
    p.add_argument("--mode", help="auto (default), legacy, or a modern protocol version such as 2026-07-28")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="sent on every request")
    p.add_argument("--call", action="append", nargs=2, default=[], metavar=("TOOL", "JSON_ARGS"), help="a tool call")
    p.add_argument("--plan", help="a JSON plan file (mode, headers, calls)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole run (default 60)")
    return p.parse_args(argv)


def build_plan(args: argparse.Namespace) -> dict[str, Any]:
    plan: dict[str, Any] = {"mode": "auto", "headers": {}, "calls": []}
    if args.plan:
        with open(args.plan, encoding="utf-8") as f:
            loaded = json.load(f)
        plan["mode"] = loaded.get("mode", plan["mode"])
        plan["headers"].update(loaded.get("headers", {}))
        plan["calls"].extend(loaded.get("calls", []))
    if args.mode:
        plan["mode"] = args.mode
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep:
            raise SystemExit(f"mcp_client.py: --header wants 'Name: value', got {header!r}")
        plan["headers"][name.strip()] = value.strip()
    for tool, raw in args.call:
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as e:
            raise SystemExit(f"mcp_client.py: the arguments of {tool} are not JSON: {e}") from e
        if not isinstance(arguments, dict):
            raise SystemExit(f"mcp_client.py: the arguments of {tool} must be a JSON object")
        plan["calls"].append({"tool": tool, "arguments": arguments})
    return plan


def dump(model: Any) -> Any:
    """A pydantic model (or list of them) as wire JSON (camelCase, no unset fields)."""
    if model is None:
        return None
    if isinstance(model, list):
        return [dump(m) for m in model]
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return model


class Wire:
    """Records each HTTP exchange the SDK makes (httpx2 event hooks)."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []

    async def on_request(self, request: httpx2.Request) -> None:
        method = request.method
        if request.method == "POST":
            try:
                body = json.loads(request.content or b"null")
                if isinstance(body, dict):
                    method = body.get("method") or ("response" if "result" in body or "error" in body else "POST")
            except (ValueError, httpx2.RequestNotRead):
                method = "POST"
        request.extensions["mcp_client_method"] = method

    async def on_response(self, response: httpx2.Response) -> None:
        self.exchanges.append(
            {
                "method": response.request.extensions.get("mcp_client_method", response.request.method),
                "status": response.status_code,
                "session_id": "mcp-session-id" in response.headers,
                "content_type": response.headers.get("content-type", ""),
            }
        )


async def run(url: str, plan: dict[str, Any]) -> dict[str, Any]:
    wire = Wire()
    http = httpx2.AsyncClient(
        headers=plan["headers"],
        timeout=httpx2.Timeout(30.0, read=300.0),
        event_hooks={"request": [wire.on_request], "response": [wire.on_response]},
    )
    out: dict[str, Any] = {"sdk": {"name": "mcp", "version": package_version("mcp")}, "mode": plan["mode"]}
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=plan["mode"]) as client:
            session = client.session
            out["protocol_version"] = client.protocol_version
            out["era"] = "stateless" if session.discover_result is not None else "session"
            out["server_info"] = dump(client.server_info)
            out["capabilities"] = dump(client.server_capabilities)
            tools = []
            cursor = None
            while True:
                listed = await client.list_tools(cursor=cursor)
                tools.extend(dump(listed.tools))
                cursor = listed.next_cursor
                if not cursor:
                    break
            out["tools"] = tools
            calls = []
            for step in plan["calls"]:
                entry: dict[str, Any] = {"tool": step["tool"], "arguments": step.get("arguments", {})}
                try:
                    result = await client.call_tool(step["tool"], step.get("arguments", {}))
                    entry["isError"] = bool(result.is_error)
                    entry["content"] = dump(result.content)
                    entry["structuredContent"] = result.structured_content
                except MCPError as e:
                    entry["error"] = {"code": e.error.code, "message": e.error.message, "data": e.error.data}
                calls.append(entry)
            out["calls"] = calls
    out["wire"] = wire.exchanges
    return out


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    plan = build_plan(args)
    try:
        out = asyncio.run(asyncio.wait_for(run(args.url, plan), args.timeout))
    except Exception as e:  # noqa: BLE001 - the message is the report
        detail = e
        # anyio task groups wrap the real cause.
        while isinstance(detail, BaseExceptionGroup) and detail.exceptions:
            detail = detail.exceptions[0]
        print(f"mcp_client.py: {args.url}: {type(detail).__name__}: {detail}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
