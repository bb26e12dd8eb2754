#!/usr/bin/env python3
"""Stand-ins for Google's endpoints, for chunkcache's GCS tests (tests/gcs.rs). One role per process:

- `sts`: Google STS (POST /v1/token), the token exchange of workload identity federation. It checks the
  grant type, the audience (the pool provider), the scope, the requested and subject token types and the
  subject token (the OIDC token) against what the test configured, and issues the configured federated token.
- `iam`: IAM Credentials (POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken). It checks the
  bearer (the federated token), the service account and the scope, and issues the configured access token.
- `storage`: a front for fake-gcs-server (the GCS emulator, started beside it). It lets through only requests
  whose bearer is the configured access token, or a self-signed JWT of the configured service account (what
  object_store sends with a service-account key; its signature is not checked), and refuses the rest with
  GCS's 401. fake-gcs-server serves the XML API's reads, lists and deletes, but takes uploads only through the
  JSON API: an XML `PUT /{bucket}/{object}` is sent on as a JSON multipart upload, with
  `x-goog-if-generation-match` as `ifGenerationMatch` (so create-if-absent still answers 412), and its answer
  turned back into the XML API's (ETag and x-goog-generation headers). Everything else goes on as sent.

Refusals have the shape of Google's answers. Each role logs one line per decision on stdout, without any
token: `exchanged audience=... scope=... subject_token_type=...`, `issued service_account=... scope=...`,
`authorized METHOD PATH by access_token|self_signed_jwt`, and `refused ...`.
"""

import argparse
import base64
import datetime
import http.client
import json
import sys
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
# Not forwarded: they describe one hop, or the credentials only the front checks.
HOP_HEADERS = {"host", "connection", "keep-alive", "transfer-encoding", "authorization", "content-length"}


def log(line: str) -> None:
    print(line, flush=True)


class Handler(BaseHTTPRequestHandler):
    options: argparse.Namespace

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0") or "0"))

    def answer(self, status: int, data: bytes, content_type: str = "application/json", headers=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def answer_json(self, status: int, body: dict) -> None:
        self.answer(status, json.dumps(body).encode())

    def bearer(self) -> str:
        value = self.headers.get("Authorization", "")
        return value[len("Bearer "):] if value.startswith("Bearer ") else ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


class Sts(Handler):
    def refuse(self, code: str, description: str) -> None:
        log(f"refused {code}: {description}")
        self.answer_json(400, {"error": code, "error_description": description})

    def do_POST(self) -> None:
        o = self.options
        if urllib.parse.urlparse(self.path).path != "/v1/token":
            return self.answer_json(404, {"error": "not_found", "error_description": f"no {self.path} here"})
        try:
            request = json.loads(self.body())
        except ValueError:
            return self.refuse("invalid_request", "The request body is not JSON.")
        if request.get("grantType") != EXCHANGE_GRANT:
            return self.refuse("unsupported_grant_type", f"Unsupported grant type {request.get('grantType')!r}.")
        if request.get("audience") != o.audience:
            return self.refuse(
                "invalid_target",
                "The target service indicated by the \"audience\" parameters is invalid. This might either be "
                "because the pool or provider is disabled or deleted or because it doesn't exist.",
            )
        if request.get("scope") != SCOPE or request.get("requestedTokenType") != ACCESS_TOKEN_TYPE:
            return self.refuse("invalid_request", "Invalid value for \"scope\" or \"requested_token_type\".")
        if request.get("subjectTokenType") != ID_TOKEN_TYPE:
            return self.refuse("invalid_request", "Invalid value for \"subject_token_type\".")
        if request.get("subjectToken") != o.subject_token:
            return self.refuse(
                "invalid_grant",
                "The audience in ID Token [chunkcache-test] does not match the expected audience.",
            )
        log(
            f"exchanged audience={request['audience']} scope={request['scope']} "
            f"subject_token_type={request['subjectTokenType']} requested_token_type={request['requestedTokenType']}"
        )
        self.answer_json(
            200,
            {
                "access_token": o.federated_token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": 3599,
            },
        )


class Iam(Handler):
    def refuse(self, status: int, state: str, message: str) -> None:
        log(f"refused {state}: {message}")
        self.answer_json(status, {"error": {"code": status, "message": message, "status": state}})

    def do_POST(self) -> None:
        o = self.options
        path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
        prefix, suffix = "/v1/projects/-/serviceAccounts/", ":generateAccessToken"
        if not (path.startswith(prefix) and path.endswith(suffix)):
            return self.refuse(404, "NOT_FOUND", f"no {path} here")
        if self.bearer() != o.federated_token:
            return self.refuse(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.",
            )
        email = path[len(prefix):-len(suffix)]
        if email != o.service_account:
            return self.refuse(
                403,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
            )
        try:
            scopes = json.loads(self.body()).get("scope")
        except ValueError:
            scopes = None
        if scopes != [SCOPE]:
            return self.refuse(400, "INVALID_ARGUMENT", "Invalid scope.")
        log(f"issued service_account={email} scope={' '.join(scopes)}")
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        self.answer_json(200, {"accessToken": o.access_token, "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ")})


def jwt_claims(token: str) -> dict:
    """The claims of a JWT, unverified; {} when it is none."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        return json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}


def xml_error(code: str, message: str) -> bytes:
    return (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()


class Storage(Handler):
    def authorized(self) -> bool:
        o = self.options
        token = self.bearer()
        claims = jwt_claims(token)
        if o.access_token and token == o.access_token:
            by = "access_token"
        elif o.client_email and claims.get("iss") == o.client_email and claims.get("scope") == SCOPE:
            by = "self_signed_jwt"
        else:
            log(f"refused {self.command} {urllib.parse.unquote(self.path)}: no valid bearer")
            self.answer(
                401,
                xml_error("AuthenticationRequired", "Authentication required."),
                "application/xml; charset=UTF-8",
            )
            return False
        # Logged decoded: object_store encodes every `/` of an object name.
        log(f"authorized {self.command} {urllib.parse.unquote(self.path)} by {by}")
        return True

    def upstream(self, method: str, path: str, body: bytes, headers: dict):
        host, port = self.options.upstream
        connection = http.client.HTTPConnection(host, port, timeout=60)
        try:
            connection.request(method, path, body=body if method not in ("GET", "HEAD") else None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def forward(self) -> None:
        if not self.authorized():
            return
        body = self.body()
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_HEADERS}
        if body:
            headers["Content-Length"] = str(len(body))
        status, response_headers, data = self.upstream(self.command, self.path, body, headers)
        self.send_response(status)
        for name, value in response_headers:
            if name.lower() not in HOP_HEADERS:
                self.send_header(name, value)
        content_length = dict((name.lower(), value) for name, value in response_headers).get("content-length")
        self.send_header("Content-Length", content_length if self.command == "HEAD" and content_length else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_PUT(self) -> None:
        if not self.authorized():
            return
        data = self.body()
        url = urllib.parse.urlparse(self.path)
        bucket, _, name = url.path.lstrip("/").partition("/")
        if not name:
            return self.answer(400, xml_error("InvalidArgument", "No object name."), "application/xml")
        content_type = self.headers.get("Content-Type", "application/octet-stream")
        query = {"uploadType": "multipart"}
        condition = self.headers.get("x-goog-if-generation-match")
        if condition is not None:
            query["ifGenerationMatch"] = condition
        boundary = uuid.uuid4().hex
        metadata = json.dumps({"name": urllib.parse.unquote(name), "contentType": content_type}).encode()
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                metadata,
                f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        status, _, answer = self.upstream(
            "POST",
            f"/upload/storage/v1/b/{bucket}/o?{urllib.parse.urlencode(query)}",
            body,
            {"Content-Type": f"multipart/related; boundary={boundary}", "Content-Length": str(len(body))},
        )
        if status == 200:
            stored = json.loads(answer)
            return self.answer(
                200, b"", "text/html", [("ETag", f"\"{stored['etag']}\""), ("x-goog-generation", stored["generation"])]
            )
        if status == 412:
            message = "At least one of the pre-conditions you specified did not hold."
            return self.answer(412, xml_error("PreconditionFailed", message), "application/xml")
        if status == 404:
            return self.answer(404, xml_error("NoSuchBucket", "The specified bucket does not exist."), "application/xml")
        self.answer(status, answer)

    do_GET = forward
    do_HEAD = forward
    do_DELETE = forward
    do_POST = forward


def main() -> None:
    parser = argparse.ArgumentParser()
    roles = parser.add_subparsers(dest="role", required=True)
    sts = roles.add_parser("sts")
    sts.add_argument("--audience", required=True, help="the pool provider the exchange must name")
    sts.add_argument("--subject-token", required=True, help="the one OIDC token the provider accepts")
    sts.add_argument("--federated-token", required=True, help="the token issued for it")
    iam = roles.add_parser("iam")
    iam.add_argument("--federated-token", required=True, help="the bearer generateAccessToken must carry")
    iam.add_argument("--service-account", required=True, help="the one service account the pool may impersonate")
    iam.add_argument("--access-token", required=True, help="the token issued for it")
    storage = roles.add_parser("storage")
    storage.add_argument("--upstream", required=True, help="fake-gcs-server's host:port")
    storage.add_argument("--access-token", default="", help="a bearer accepted as is")
    storage.add_argument("--client-email", default="", help="a service account whose self-signed JWTs are accepted")
    for role in (sts, iam, storage):
        role.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    if options.role == "storage":
        host, _, port = options.upstream.rpartition(":")
        options.upstream = (host, int(port))
    handler = {"sts": Sts, "iam": Iam, "storage": Storage}[options.role]
    handler.options = options
    server = ThreadingHTTPServer(("127.0.0.1", options.port), handler)
    sys.stdout.write(f"{options.role} listening on 127.0.0.1:{options.port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
