"""Access tokens minted by the Python gateway's own code, for bench/python-gateway.sh.

AuthManager.create_jwt_token is what the gateway's /token endpoint calls: it signs an RS256 JWT
with the configured key and stores the token's jti in Redis (its /verify refuses a jti that is not
there). The settings come from the same environment variables the server reads.

    python mint.py COUNT [TTL_SECONDS]   # COUNT tokens, one a line, on standard output
"""

import asyncio
import sys

import redis.asyncio as redis
from mcp_oauth_dynamicclient.auth_authlib import AuthManager
from mcp_oauth_dynamicclient.config import Settings


async def main() -> None:
    count = int(sys.argv[1])
    settings = Settings()
    if len(sys.argv) > 2:
        settings.access_token_lifetime = int(sys.argv[2])
    auth = AuthManager(settings)
    client = redis.from_url(settings.redis_url, decode_responses=True, password=settings.redis_password)
    claims = {
        "sub": "12345",
        "username": "bench",
        "email": "bench@example.com",
        "name": "bench",
        "scope": "openid profile email",
        "client_id": "bench-client",
    }
    for _ in range(count):
        print(await auth.create_jwt_token(dict(claims), client))
    await client.aclose()


asyncio.run(main())
