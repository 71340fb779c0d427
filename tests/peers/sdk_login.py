#!/usr/bin/env python3
"""The official MCP Python SDK (PyPI `mcp`, pinned by tests/peers/install.sh) logging in by
itself: its `OAuthClientProvider` meets the 401 of a protected MCP server, discovers the
protected-resource and authorization-server metadata, registers (RFC 7591) or, with
--client-metadata-url, uses that URL as its client id (Client ID Metadata Document), sends the
user to /authorize with PKCE and `resource`, redeems the code, and retries with the token.

The "browser" is this script: the SDK's redirect handler opens the authorization URL, signs in
on mcp-authd's login form as USER / PASSWORD (answering a consent page with Allow when one
comes), and hands the redirect's code, state and iss to the SDK's callback handler.

Then it lists the tools and calls each --call, and prints ONE JSON document:

    {"client_id": ..., "registered": true|false, "token_scope": ..., "wire": [[method, path, status], ...],
     "tools": [...], "calls": [{"tool": ..., "isError": ..., "content": [...]}],
     "browser": [[method, path, status], ...]}

With --again-after SECONDS it then waits (past the access token's lifetime, in the test) and
calls authContext once more: the SDK must refresh its token first ("again" in the report).

Usage: sdk_login.py URL --user U --password P [--client-metadata-url URL] [--call TOOL JSON]...
                    [--again-after SECONDS]
Exit status 1 with a message on stderr when the login or the session fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

try:
    import httpx2
    from mcp.client import Client
    from mcp.client.auth import OAuthClientProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
except ImportError as e:  # pragma: no cover - depends on the venv
    sys.exit(f"sdk_login.py: the MCP Python SDK is missing ({e}); run tests/peers/install.sh")

REDIRECT_URI = "http://127.0.0.1:33418/callback"


class Memory:
    """The SDK's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Browser:
    """Follows the authorization URL through mcp-authd's pages, as a person would."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.http = httpx2.AsyncClient(follow_redirects=False, timeout=30.0)
        self.result: AuthorizationCodeResult | None = None
        self.visits: list[list[Any]] = []

    async def _go(self, method: str, url: str, **kw: Any) -> httpx2.Response:
        res = await self.http.request(method, url, **kw)
        self.visits.append([method, urlsplit(url).path, res.status_code])
        return res

    async def open(self, authorization_url: str) -> None:
        res = await self._go("GET", authorization_url)
        for _ in range(10):
            location = res.headers.get("location")
            if res.status_code in (302, 303) and location:
                url = urljoin(str(res.request.url), location)
                if url.startswith(REDIRECT_URI):
                    q = parse_qs(urlsplit(url).query)
                    if "code" not in q:
                        raise RuntimeError(f"the authorization ended without a code: {url}")
                    one = lambda k: q[k][0] if k in q else None  # noqa: E731
                    self.result = AuthorizationCodeResult(code=one("code"), state=one("state"), iss=one("iss"))
                    return
                res = await self._go("GET", url)
                continue
            path = urlsplit(str(res.request.url)).path
            session = parse_qs(urlsplit(str(res.request.url)).query).get("session", [""])[0]
            base = str(res.request.url).split(path, 1)[0]
            if res.status_code == 200 and path == "/login":
                res = await self._go(
                    "POST", base + "/login", data={"session": session, "username": self.user, "password": self.password}
                )
            elif res.status_code == 200 and path == "/consent":
                res = await self._go("POST", base + "/consent", data={"session": session, "decision": "allow"})
            else:
                raise RuntimeError(f"unexpected page {res.status_code} at {res.request.url}: {res.text[:500]}")
        raise RuntimeError("too many steps in the browser")

    async def callback(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("the browser did not come back with a code")
        return self.result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    storage = Memory()
    browser = Browser(args.user, args.password)
    metadata = OAuthClientMetadata(
        client_name="mcp-authd SDK login test",
        redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    auth = OAuthClientProvider(
        server_url=args.url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.callback,
        client_metadata_url=args.client_metadata_url,
    )
    wire: list[list[Any]] = []

    async def on_response(res: httpx2.Response) -> None:
        wire.append([res.request.method, urlsplit(str(res.request.url)).path, res.status_code])

    http = httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(30.0, read=120.0), event_hooks={"response": [on_response]})
    out: dict[str, Any] = {}
    async with http, browser.http:
        async with Client(streamable_http_client(args.url, http_client=http), mode="legacy") as client:
            listed = await client.list_tools()
            out["tools"] = [t.name for t in listed.tools]
            calls = []
            for tool, raw in args.call:
                result = await client.call_tool(tool, json.loads(raw))
                calls.append(
                    {
                        "tool": tool,
                        "isError": bool(result.is_error),
                        "content": [c.model_dump(mode="json", exclude_none=True) for c in result.content],
                    }
                )
            out["calls"] = calls
            if args.again_after:
                # The access token has expired by now: the SDK refreshes it (a rotation) first.
                first_refresh = storage.tokens.refresh_token if storage.tokens else None
                await asyncio.sleep(args.again_after)
                result = await client.call_tool("authContext", {})
                out["again"] = {
                    "isError": bool(result.is_error),
                    "content": [c.model_dump(mode="json", exclude_none=True) for c in result.content],
                    "refresh_rotated": bool(storage.tokens and storage.tokens.refresh_token != first_refresh),
                }
    out["client_id"] = storage.client.client_id if storage.client else None
    out["registered"] = any(path == "/register" for _, path, _ in wire)
    out["token_scope"] = storage.tokens.scope if storage.tokens else None
    out["wire"] = wire
    out["browser"] = browser.visits
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--client-metadata-url")
    p.add_argument("--call", action="append", nargs=2, default=[], metavar=("TOOL", "JSON_ARGS"))
    p.add_argument("--again-after", type=float, default=0.0, help="then wait this long and call authContext again")
    p.add_argument("--timeout", type=float, default=90.0)
    args = p.parse_args(argv)
    try:
        out = asyncio.run(asyncio.wait_for(run(args), args.timeout))
    except BaseException as e:  # noqa: BLE001 - report whatever ended the run
        detail = e
        while isinstance(detail, BaseExceptionGroup) and detail.exceptions:
            detail = detail.exceptions[0]
        print(f"sdk_login.py: {type(detail).__name__}: {detail}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
