#!/usr/bin/env python3
"""An MCP client that signs in to a metamcp endpoint with OAuth, using the official Python SDK.

The SDK (`mcp`, pinned in requirements.txt) does the client's whole OAuth part itself through
`mcp.client.auth.OAuthClientProvider`, an `httpx2.Auth`: on the endpoint's 401 it reads
`resource_metadata` from `WWW-Authenticate`, fetches the protected-resource metadata (RFC 9728)
and the authorization-server metadata (RFC 8414), registers (RFC 7591) or uses a client ID
metadata document URL as its client_id (CIMD), sends the user to the authorization endpoint with
PKCE (S256), `state`, `resource` and `scope`, checks `state` and `iss` (RFC 9207) on the way back,
exchanges the code, and later refreshes the access token once its `expires_in` has run out.

This script plays the two parts the SDK leaves to an application:
- the browser: `redirect_handler` receives the authorization URL; a separate HTTP client with a
  cookie jar signs in as the test user through the JSON API, loads the consent page, posts the
  consent form with decision=approve, and reads the 303's Location;
- the callback: `callback_handler` hands the code, `state` and `iss` back to the SDK.

Then it talks MCP over Streamable HTTP (initialize, tools/list, tools/call) and, on request,
checks a refresh (`--expect-refresh`) and a revocation (`--revoke`).

Every step prints one JSON object on stdout; any failure prints {"step": "error", ...} and a
message on stderr, and exits 1. Every network step has a timeout, and the whole run has one
(`--timeout`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

CLIENT_NAME = "metamcp e2e client (MCP Python SDK)"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:53682/callback"
GRANT_TYPES = ["authorization_code", "refresh_token"]


class Failure(Exception):
    """A check failed; the message says which and why."""


def emit(step: str, **fields: Any) -> None:
    print(json.dumps({"step": step, **fields}, default=str), flush=True)


def fingerprint(secret: str | None) -> str | None:
    """A short, stable stand-in for a token in the output (the token itself is never printed)."""
    if secret is None:
        return None
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def cimd_document(client_metadata_url: str, redirect_uri: str) -> dict[str, Any]:
    """The client ID metadata document this client expects to be served at `client_metadata_url`."""
    return {
        "client_id": client_metadata_url,
        "client_name": CLIENT_NAME,
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "none",
        "grant_types": GRANT_TYPES,
        "response_types": ["code"],
    }


# --------------------------------------------------------------------------------------------
# Token storage: in memory, keeping every token set the SDK stored so refreshes can be checked.


class MemoryStorage:
    """`mcp.client.auth.TokenStorage`: the SDK reads it once, then writes every new token set."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.token_history: list[OAuthToken] = []
        self.client_info_writes = 0

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.token_history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info
        self.client_info_writes += 1


# --------------------------------------------------------------------------------------------
# The browser.


class ConsentFormParser(HTMLParser):
    """Finds `<form id="consent">`: its method, action, hidden inputs and decision buttons."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = False
        self.method: str | None = None
        self.action: str | None = None
        self.hidden: list[tuple[str, str]] = []
        self.decisions: list[str] = []
        self._depth = 0  # >0 while inside the consent form

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            if self._depth:
                self._depth += 1
            elif a.get("id") == "consent":
                self.found = True
                self.method = a.get("method", "get").lower()
                self.action = a.get("action")
                self._depth = 1
            return
        if not self._depth:
            return
        if tag == "input" and a.get("type", "").lower() == "hidden" and a.get("name"):
            self.hidden.append((a["name"], a.get("value", "")))
        elif tag == "button" and a.get("name") == "decision" and a.get("type", "submit").lower() == "submit":
            self.decisions.append(a.get("value", ""))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # `<input ... />`: same as a start tag, and it opens nothing.
        if tag == "form":
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._depth:
            self._depth -= 1


class Browser:
    """Does what the user's browser does between the authorization URL and the redirect back."""

    def __init__(self, base: str, email: str, password: str, timeout: float) -> None:
        self.base = base
        self.email = email
        self.password = password
        # A cookie jar, and nothing followed automatically.
        self.http = httpx2.AsyncClient(timeout=timeout, follow_redirects=False)
        self.signed_in = False

    async def aclose(self) -> None:
        await self.http.aclose()

    async def sign_in(self) -> None:
        r = await self.http.post(
            urljoin(self.base, "/api/auth/sign-in/email"),
            json={"email": self.email, "password": self.password},
            headers={"Origin": self.base},
        )
        if r.status_code != 200:
            raise Failure(f"sign-in as {self.email} failed: HTTP {r.status_code}: {r.text[:300]}")
        if not self.http.cookies:
            raise Failure("sign-in answered 200 but set no cookie")
        self.signed_in = True
        emit("signed_in", email=self.email, cookies=sorted(self.http.cookies.keys()))

    async def authorize(self, authorization_url: str, expected_issuer: str) -> AuthorizationCodeResult:
        sent = parse_qs(urlsplit(authorization_url).query)
        state = one(sent, "state", "the authorization URL")
        redirect_uri = one(sent, "redirect_uri", "the authorization URL")

        # 1. Open the authorization URL. Signed out, the gateway sends the browser to its login
        #    page with the authorization request to come back to; sign in and open it again.
        r = await self.http.get(authorization_url)
        if r.status_code == 303 and urlsplit(r.headers.get("location", "")).path == "/login":
            loc = urlsplit(r.headers["location"])
            return_to = parse_qs(loc.query).get("return_to", [None])[0]
            au = urlsplit(authorization_url)
            expected_return = f"{au.path}?{au.query}"
            if return_to != expected_return:
                raise Failure(f"/login return_to is {return_to!r}, expected the authorize request {expected_return!r}")
            emit("login_redirect", return_to_matches=True)
            if self.signed_in:
                raise Failure("the authorization endpoint sent a signed-in browser to /login")
            await self.sign_in()
            r = await self.http.get(authorization_url)
        if r.status_code != 200:
            raise Failure(
                f"authorization endpoint answered HTTP {r.status_code} "
                f"(Location: {r.headers.get('location')!r}): {r.text[:300]}"
            )
        if not r.headers.get("content-type", "").lower().startswith("text/html"):
            raise Failure(f"consent page has Content-Type {r.headers.get('content-type')!r}, expected text/html")

        # 2. The consent page: one form, hidden fields, approve and deny buttons.
        form = ConsentFormParser()
        form.feed(r.text)
        form.close()
        if not form.found:
            raise Failure(f'consent page has no <form id="consent">: {r.text[:500]}')
        if form.method != "post":
            raise Failure(f"consent form method is {form.method!r}, expected post")
        if form.action != "/oauth/authorize":
            raise Failure(f"consent form action is {form.action!r}, expected /oauth/authorize")
        if sorted(form.decisions) != ["approve", "deny"]:
            raise Failure(f"consent form decision buttons are {form.decisions!r}, expected approve and deny")
        emit("consent_page", hidden_fields=sorted({name for name, _ in form.hidden}))

        # 3. Approve: post the form as the browser would (its fields, the button, the Origin).
        fields = [*form.hidden, ("decision", "approve")]
        r = await self.http.post(
            urljoin(self.base, form.action),
            content=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": self.base},
        )
        if r.status_code != 303:
            raise Failure(f"consent POST answered HTTP {r.status_code}, expected 303: {r.text[:300]}")
        location = r.headers.get("location")
        if not location:
            raise Failure("consent POST answered 303 without a Location")

        # 4. The redirect back to the client: to its redirect_uri, with code, state and iss.
        loc = urlsplit(location)
        want = urlsplit(redirect_uri)
        if (loc.scheme, loc.netloc, loc.path) != (want.scheme, want.netloc, want.path):
            raise Failure(f"redirected to {location!r}, not to the redirect_uri {redirect_uri!r}")
        got = parse_qs(loc.query)
        if "error" in got:
            raise Failure(f"authorization refused: {got}")
        got_state = one(got, "state", "the redirect")
        if got_state != state:
            raise Failure(f"redirect state {got_state!r} is not the state sent {state!r}")
        iss = one(got, "iss", "the redirect")
        if iss != expected_issuer:
            raise Failure(f"redirect iss {iss!r} is not the issuer {expected_issuer!r} (RFC 9207)")
        code = one(got, "code", "the redirect")
        emit("authorized", iss=iss, state_matches=True)
        return AuthorizationCodeResult(code=code, state=got_state, iss=iss)


def one(params: dict[str, list[str]], name: str, where: str) -> str:
    values = params.get(name)
    if not values or len(values) != 1:
        raise Failure(f"{where} has {len(values or [])} `{name}` parameters, expected 1")
    return values[0]


# --------------------------------------------------------------------------------------------
# The run.


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.storage = MemoryStorage()
        parts = urlsplit(args.url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.browser = Browser(self.base, args.email, args.password, args.http_timeout)
        self.authorizations = 0
        self.failure: Failure | None = None  # raised inside the SDK's flow; reported first
        self.pending: AuthorizationCodeResult | None = None
        self.requests: list[tuple[str, str, str | None]] = []  # (method, url, grant_type)

        metadata = OAuthClientMetadata(
            client_name=CLIENT_NAME,
            redirect_uris=[args.redirect_uri],
            grant_types=GRANT_TYPES,
            response_types=["code"],
            # The SDK leaves token_endpoint_auth_method out of its registration request unless
            # it is set (RFC 7591 then means client_secret_basic); --omit-auth-method tests that.
            token_endpoint_auth_method=None if args.omit_auth_method else "none",
        )
        self.provider = OAuthClientProvider(
            server_url=args.url,
            client_metadata=metadata,
            storage=self.storage,
            redirect_handler=self.redirect_handler,
            callback_handler=self.callback_handler,
            client_metadata_url=args.client_metadata_url if args.mode == "cimd" else None,
        )

    # The SDK's two hooks. Failures are recorded before being raised: the SDK runs them inside
    # the transport's task group, whose exceptions reach the caller wrapped.

    async def redirect_handler(self, authorization_url: str) -> None:
        try:
            self.authorizations += 1
            if self.authorizations > 1:
                raise Failure(
                    "the SDK asked for a second authorization: a request got 401 (or a refresh failed) "
                    "where a refresh was expected; the server's expires_in must not exceed the token's "
                    "real lifetime, and a refresh must answer 200"
                )
            ctx = self.provider.context
            if ctx.oauth_metadata is None:
                raise Failure("the SDK reached authorization without authorization-server metadata")
            prm = ctx.protected_resource_metadata
            if prm is None:
                raise Failure("the SDK reached authorization without protected-resource metadata")
            emit(
                "discovered",
                resource=str(prm.resource),
                authorization_servers=[str(s) for s in prm.authorization_servers],
                scopes_supported=prm.scopes_supported,
                issuer=str(ctx.oauth_metadata.issuer),
                client_id_metadata_document_supported=ctx.oauth_metadata.client_id_metadata_document_supported,
                authorization_response_iss_parameter_supported=(
                    ctx.oauth_metadata.authorization_response_iss_parameter_supported
                ),
            )
            self.check_client()
            q = parse_qs(urlsplit(authorization_url).query)
            sent = {k: v[0] for k, v in q.items() if k not in ("state", "code_challenge")}
            emit("authorize_request", **sent)
            if sent.get("code_challenge_method") != "S256":
                raise Failure(f"the SDK sent code_challenge_method {sent.get('code_challenge_method')!r}")
            if sent.get("resource") != str(prm.resource):
                raise Failure(f"the SDK sent resource {sent.get('resource')!r}, expected {prm.resource}")
            self.pending = await self.browser.authorize(authorization_url, str(ctx.oauth_metadata.issuer))
        except Failure as e:
            self.failure = self.failure or e
            raise

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self.pending is None:
            self.failure = self.failure or Failure("the SDK asked for the callback before the redirect")
            raise self.failure
        result, self.pending = self.pending, None
        return result

    def check_client(self) -> None:
        """The client the SDK is about to authorize as: registered (dcr) or the CIMD URL (cimd)."""
        info = self.storage.client_info
        if info is None:
            raise Failure("the SDK has no client information at authorization time")
        registered = any(m == "POST" and u.endswith("/oauth/register") for m, u, _ in self.requests)
        if self.args.mode == "cimd":
            if info.client_id != self.args.client_metadata_url or registered:
                raise Failure(
                    "the SDK registered instead of using the client metadata URL: the authorization "
                    "server metadata must say client_id_metadata_document_supported: true"
                )
            emit("client", mode="cimd", client_id=info.client_id)
            return
        if not registered:
            raise Failure("the SDK did not register at /oauth/register")
        if info.client_secret is not None:
            raise Failure("registration issued a client_secret to a public client")
        if info.token_endpoint_auth_method != "none":
            raise Failure(f"registered with token_endpoint_auth_method {info.token_endpoint_auth_method!r}")
        emit(
            "registered",
            client_id=info.client_id,
            token_endpoint_auth_method=info.token_endpoint_auth_method,
            redirect_uris=[str(u) for u in info.redirect_uris or []],
            scope=info.scope,
        )

    async def on_request(self, request: httpx2.Request) -> None:
        """httpx2 event hook: every request the MCP client sends, the SDK's OAuth ones included."""
        grant = None
        if request.method == "POST" and request.url.path.endswith("/oauth/token"):
            grant = parse_qs(request.content.decode()).get("grant_type", [None])[0]
        self.requests.append((request.method, str(request.url.copy_with(query=None)), grant))

    def grants(self) -> list[str | None]:
        return [g for _, _, g in self.requests if g is not None]

    # ----------------------------------------------------------------------------------------

    async def main(self) -> None:
        args = self.args
        timeout = httpx2.Timeout(args.http_timeout)
        try:
            async with httpx2.AsyncClient(
                auth=self.provider, timeout=timeout, event_hooks={"request": [self.on_request]}
            ) as http:
                async with streamable_http_client(args.url, http_client=http) as (read, write):
                    async with ClientSession(read, write, read_timeout_seconds=args.http_timeout) as session:
                        await self.session(session)
            if args.revoke:
                await self.revoke()
        finally:
            await self.browser.aclose()

    async def session(self, session: ClientSession) -> None:
        args = self.args
        init = await session.initialize()
        if self.storage.tokens is None or self.authorizations != 1:
            raise Failure(f"initialize succeeded after {self.authorizations} authorizations, expected exactly 1")
        token = self.storage.tokens
        emit(
            "token",
            grants=self.grants(),
            token_type=token.token_type,
            expires_in=token.expires_in,
            scope=token.scope,
            has_refresh_token=token.refresh_token is not None,
        )
        if token.refresh_token is None:
            raise Failure("the token response carried no refresh_token")
        emit(
            "initialized",
            protocol_version=init.protocol_version,
            server=init.server_info.name,
        )
        await self.tools(session)

        if args.expect_refresh:
            before = self.storage.tokens
            assert before is not None
            await self.wait_for_expiry()
            await self.tools(session)
            after = self.storage.tokens
            assert after is not None
            if self.authorizations != 1:
                raise Failure("the SDK authorized again instead of refreshing")
            if "refresh_token" not in self.grants():
                raise Failure(f"no refresh_token grant was sent (token requests: {self.grants()})")
            if after.access_token == before.access_token:
                raise Failure("the access token did not change after expiry")
            if after.refresh_token is None or after.refresh_token == before.refresh_token:
                raise Failure("the refresh token was not rotated (same or absent in the refresh response)")
            emit(
                "refreshed",
                grants=self.grants(),
                access_token=[fingerprint(before.access_token), fingerprint(after.access_token)],
                refresh_token=[fingerprint(before.refresh_token), fingerprint(after.refresh_token)],
                expires_in=after.expires_in,
                scope=after.scope,
            )

    async def tools(self, session: ClientSession) -> None:
        listed = await session.list_tools()
        names = [t.name for t in listed.tools]
        emit("tools", names=names)
        if not self.args.tool:
            return
        if self.args.tool not in names:
            raise Failure(f"tool {self.args.tool!r} is not listed: {names}")
        result = await session.call_tool(self.args.tool, self.args.tool_args)
        content = getattr(result, "content", None)
        if content is None:
            raise Failure(f"tools/call returned no content: {result!r}")
        texts = [c.text for c in content if getattr(c, "type", None) == "text"]
        if getattr(result, "is_error", False):
            raise Failure(f"tool {self.args.tool} returned an error: {texts}")
        emit("call", tool=self.args.tool, text="\n".join(texts))

    async def wait_for_expiry(self) -> None:
        """Poll the clock until the SDK deems its access token expired (it refreshes only then)."""
        expiry = self.provider.context.token_expiry_time
        if expiry is None:
            raise Failure("the token response carried no expires_in; nothing would make the SDK refresh")
        remaining = expiry - time.time()
        if remaining > self.args.max_expiry_wait:
            raise Failure(
                f"the access token expires in {remaining:.1f}s, more than --max-expiry-wait "
                f"{self.args.max_expiry_wait}s: set a short OAUTH_ACCESS_TOKEN_LIFETIME"
            )
        emit("waiting_for_expiry", seconds=round(max(remaining, 0.0), 3))
        # The SDK's test is `time.time() <= expiry` (expiry = receipt time + expires_in).
        while time.time() <= expiry:
            await anyio.sleep(min(0.05, max(expiry - time.time(), 0.0) + 0.001))

    async def revoke(self) -> None:
        ctx = self.provider.context
        tokens = self.storage.tokens
        info = self.storage.client_info
        if ctx.oauth_metadata is None or tokens is None or info is None or tokens.refresh_token is None:
            raise Failure("nothing to revoke: no metadata, tokens or client")
        endpoint = ctx.oauth_metadata.revocation_endpoint
        if endpoint is None:
            raise Failure("the authorization-server metadata has no revocation_endpoint")
        resource = str(ctx.protected_resource_metadata.resource) if ctx.protected_resource_metadata else None
        async with httpx2.AsyncClient(timeout=self.args.http_timeout, follow_redirects=False) as http:
            r = await http.post(
                str(endpoint),
                data={"token": tokens.refresh_token, "token_type_hint": "refresh_token", "client_id": info.client_id},
            )
            if r.status_code != 200:
                raise Failure(f"revocation answered HTTP {r.status_code}: {r.text[:300]}")
            refresh = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token, "client_id": info.client_id}
            if resource:
                refresh["resource"] = resource
            r = await http.post(str(ctx.oauth_metadata.token_endpoint), data=refresh)
            try:
                error = r.json().get("error")
            except ValueError:
                error = None
            if r.status_code != 400 or error != "invalid_grant":
                raise Failure(
                    f"a refresh with the revoked token answered HTTP {r.status_code} {r.text[:300]}, "
                    "expected 400 invalid_grant"
                )
            # For information: whether the grant's access token still opens the endpoint.
            r = await http.post(
                self.args.url,
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "revocation-check", "version": "0"},
                    },
                },
                headers={
                    "Authorization": f"Bearer {tokens.access_token}",
                    "Accept": "application/json, text/event-stream",
                },
            )
            emit("revoked", refresh_after_revoke="invalid_grant", access_token_after_revoke_status=r.status_code)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="the endpoint's MCP URL, B/metamcp/E/mcp")
    p.add_argument("--email", help="the test user the browser signs in as")
    p.add_argument("--password")
    p.add_argument("--mode", choices=["dcr", "cimd"], default="dcr")
    p.add_argument("--client-metadata-url", help="cimd: the https URL of the client metadata document")
    p.add_argument("--redirect-uri", default=DEFAULT_REDIRECT_URI, help=f"default {DEFAULT_REDIRECT_URI}")
    p.add_argument(
        "--print-cimd-document",
        action="store_true",
        help="print the client metadata document this client expects at --client-metadata-url, and exit",
    )
    p.add_argument("--tool", help="a tool to call")
    p.add_argument("--args", dest="tool_args_json", default="{}", help="the tool's arguments, a JSON object")
    p.add_argument("--expect-refresh", action="store_true", help="wait for the access token to expire, call again")
    p.add_argument("--revoke", action="store_true", help="revoke the refresh token at the end, check it is dead")
    p.add_argument(
        "--omit-auth-method",
        action="store_true",
        help="dcr: register without token_endpoint_auth_method (the SDK's default)",
    )
    p.add_argument("--http-timeout", type=float, default=15.0, help="seconds, each network step (default 15)")
    p.add_argument("--max-expiry-wait", type=float, default=60.0, help="seconds, --expect-refresh (default 60)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds, the whole run (default 120)")
    p.add_argument("--verbose", action="store_true", help="the SDK's debug log on stderr")
    args = p.parse_args(argv)
    if args.mode == "cimd" and not args.client_metadata_url:
        p.error("--mode cimd needs --client-metadata-url")
    if args.print_cimd_document:
        if not args.client_metadata_url:
            p.error("--print-cimd-document needs --client-metadata-url")
        return args
    if not args.email or not args.password:
        p.error("--email and --password are required")
    try:
        args.tool_args = json.loads(args.tool_args_json)
    except ValueError as e:
        p.error(f"--args is not JSON: {e}")
    if not isinstance(args.tool_args, dict):
        p.error("--args must be a JSON object")
    return args


def flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in flatten(sub)]
    return [exc]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # The SDK's own warnings (e.g. "Token refresh failed: 400") and errors go to stderr.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    if args.verbose:
        logging.getLogger("mcp").setLevel(logging.DEBUG)
    if args.print_cimd_document:
        print(json.dumps(cimd_document(args.client_metadata_url, args.redirect_uri), indent=2))
        return 0
    try:
        run = Run(args)
    except ValueError as e:  # e.g. the SDK refusing a client_metadata_url that is not https
        emit("error", message=str(e))
        print(f"oauth client: {e}", file=sys.stderr)
        return 1

    async def go() -> None:
        with anyio.fail_after(args.timeout):
            await run.main()

    try:
        anyio.run(go)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported the same way
        if isinstance(exc, KeyboardInterrupt):
            raise
        leaves = flatten(exc)
        failures = [e for e in leaves if isinstance(e, Failure)]
        if run.failure is not None:
            message = str(run.failure)
        elif failures:
            message = str(failures[0])
        elif any(isinstance(e, TimeoutError) for e in leaves):
            message = f"timed out after {args.timeout}s (the whole run)"
        else:
            message = "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
        emit("error", message=message, requests=[f"{m} {u}" + (f" {g}" if g else "") for m, u, g in run.requests])
        print(f"oauth client: {message}", file=sys.stderr)
        return 1
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
