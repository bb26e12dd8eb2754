#!/usr/bin/env python3
"""A stand-in for the Microsoft identity platform, for chunkcache's Azure AD tests (tests/azure_ad.rs).

It serves, over HTTPS with the test's certificate:
- POST /{tenant}/oauth2/v2.0/token: the token endpoint, with the client credentials grant (client_secret)
  and the client assertion grant (client_assertion, as workload identity federation sends it);
- GET /metadata/identity/oauth2/token: the instance metadata service (IMDS) of a managed identity.

Every request is CHECKED against what the test configured (tenant, client id, scope, secret, assertion,
managed identity client id, the Metadata header), and refused with the identity platform's error shape
otherwise, so a test fails when the wrong flow runs or the wrong credential is sent. The tokens are
unsigned JWTs with the audience and issuer that Azurite's `--oauth basic` mode checks (it does not check
signatures). Each issued token is logged as one line `issued <flow>` on stdout.
"""

import argparse
import base64
import json
import ssl
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STORAGE_SCOPE = "https://storage.azure.com/.default"
STORAGE_RESOURCE = "https://storage.azure.com"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def storage_token(tenant: str) -> str:
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {
        "aud": STORAGE_RESOURCE,
        "iss": f"https://sts.windows.net/{tenant}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "tid": tenant,
    }
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(b"unsigned")])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--assertion", required=True, help="the one OIDC token the federated credential accepts")
    parser.add_argument("--msi-client-id", required=True, help="the user-assigned managed identity")
    options = parser.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def refuse(self, status: int, code: str, description: str) -> None:
            print(f"refused {code}: {description}", flush=True)
            self.answer(status, {"error": code, "error_description": description})

        def do_POST(self) -> None:
            path = urllib.parse.urlparse(self.path).path
            if path != f"/{options.tenant}/oauth2/v2.0/token":
                return self.refuse(400, "invalid_request", f"AADSTS90002: Tenant of {path} not found.")
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            if form.get("grant_type") != "client_credentials" or form.get("scope") != STORAGE_SCOPE:
                return self.refuse(400, "invalid_request", "AADSTS900144: grant_type or scope is wrong.")
            if form.get("client_id") != options.client_id:
                return self.refuse(400, "unauthorized_client", "AADSTS700016: Application not found in the directory.")
            if "client_secret" in form:
                if form["client_secret"] != options.client_secret:
                    return self.refuse(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
                flow = "client_secret"
            elif "client_assertion" in form:
                if form.get("client_assertion_type") != ASSERTION_TYPE or form["client_assertion"] != options.assertion:
                    return self.refuse(
                        400,
                        "invalid_client",
                        "AADSTS700211: No matching federated identity record found for presented assertion.",
                    )
                flow = "client_assertion"
            else:
                return self.refuse(400, "invalid_request", "AADSTS7000218: no client_secret or client_assertion.")
            print(f"issued {flow}", flush=True)
            self.answer(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": storage_token(options.tenant)})

        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path != "/metadata/identity/oauth2/token":
                return self.refuse(404, "invalid_request", f"no such endpoint {url.path}")
            if self.headers.get("Metadata", "").lower() != "true":
                return self.refuse(400, "invalid_request", "Required metadata header not specified")
            if query.get("resource") != STORAGE_RESOURCE or "api-version" not in query:
                return self.refuse(400, "invalid_resource", "resource or api-version is wrong")
            if query.get("client_id") != options.msi_client_id:
                return self.refuse(400, "invalid_request", "Identity not found")
            print("issued managed_identity", flush=True)
            expires_on = str(int(time.time()) + 3600)
            self.answer(
                200,
                {
                    "access_token": storage_token(options.tenant),
                    "expires_on": expires_on,
                    "resource": STORAGE_RESOURCE,
                    "token_type": "Bearer",
                },
            )

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
            sys.stdout.write("%s\n" % (format % args))
            sys.stdout.flush()

    server = ThreadingHTTPServer(("127.0.0.1", options.port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(options.cert, options.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
