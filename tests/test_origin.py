"""origin: the ASGI app over real HTTP (uvicorn on loopback) and as a Lambda Function URL handler."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from personalizer import codec, keys
from personalizer_adapters.batch.build import Built
from personalizer_adapters.origin.app import SECRET_HEADER, create_app
from tests.runtime.harness import serve_asgi

SECRET = "origin-test-secret-0123456789"


@pytest.fixture(scope="module")
def app(built: Built, seed_dir: Path) -> Starlette:
    return create_app(seed_dir / "origin", SECRET)


@pytest.fixture(scope="module")
def origin(app: Starlette) -> Iterator[httpx.Client]:
    with serve_asgi(app) as url, httpx.Client(base_url=url, headers={SECRET_HEADER: SECRET}) as client:
        yield client


def resolve(origin: httpx.Client, key: str) -> httpx.Response:
    return origin.post("/v1/resolve", json={"key": key})


def test_origin_profile_is_identical_to_the_batch_one(origin: httpx.Client, built: Built) -> None:
    """For a pushed shopper, the origin computes exactly the payload the batch pushed (same code, same data)."""
    r = resolve(origin, keys.profile("c00001"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-msgpack"
    mine = codec.decode(r.content, expect="profile")
    pushed = codec.decode(built.records[keys.profile("c00001")], expect="profile")
    assert mine.data == pushed.data


def test_origin_computes_a_personal_list_for_a_store_only_shopper(origin: httpx.Client, built: Built) -> None:
    """c05001 was never pushed to KV; the origin builds their list from their history, minus what they bought."""
    assert keys.profile("c05001") not in built.records
    data = codec.decode(resolve(origin, keys.profile("c05001")).content, expect="profile").data
    assert data["id"] == "c05001" and len(data["cards"]) > 0
    assert not {c[0] for c in data["cards"]} & set(data["bought"])


def test_origin_serves_shared_records_of_the_active_generation_only(origin: httpx.Client, built: Built) -> None:
    """A segment or item record of the active generation is the batch's bytes; another generation is 404."""
    seg = next(k for k in built.records if ":seg:" in k)
    r = resolve(origin, seg)
    assert r.status_code == 200 and r.content == built.records[seg]
    assert resolve(origin, keys.item("g0-old", "p00001")).status_code == 404


@pytest.mark.parametrize("body,status,code", [
    pytest.param(b"not json", 400, "bad_body", id="not-json"),
    pytest.param(b'{"nokey": 1}', 400, "bad_body", id="no-key"),
    pytest.param(b'{"key": 5}', 400, "bad_body", id="key-not-a-string"),
    pytest.param(b'["pz1:manifest"]', 400, "bad_body", id="not-an-object"),
    pytest.param(b'{"key": "' + b"x" * 5000 + b'"}', 413, "too_large", id="oversized"),
    pytest.param(b"[" * 3000 + b"]" * 3000, 413, "too_large", id="deep-and-large"),
    pytest.param(b"[" * 2000, 400, "bad_body", id="deeply-nested"),
    pytest.param(b'{"key": {"a": ' * 200 + b"1" + b"}" * 400, 400, "bad_body", id="nested-object"),
    pytest.param(b'{"key": "pz1:p:bad id"}', 400, "bad_key", id="bad-key"),
    pytest.param(b'{"key": "pz1:p:c99999"}', 404, "not_found", id="unknown-person"),
])
def test_origin_rejects_bad_bodies_with_the_json_error_shape(origin: httpx.Client, body: bytes, status: int,
                                                              code: str) -> None:
    """Bad bodies are 400s, unknown people 404s, all with {"error": {"code", "message"}}."""
    r = origin.post("/v1/resolve", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and r.json()["error"]["code"] == code


def test_origin_caps_a_streamed_body_without_content_length(origin: httpx.Client) -> None:
    """A chunked body (no Content-Length) is counted as it streams and refused with 413 past the limit."""
    def chunks() -> Iterator[bytes]:
        yield b'{"key": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    r = origin.post("/v1/resolve", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


@pytest.mark.parametrize("secret", [None, "wrong-secret-0123456789", SECRET + "x"])
def test_origin_requires_the_shared_secret(origin: httpx.Client, secret: str | None) -> None:
    """No or wrong secret: 401, before anything is read."""
    headers = {SECRET_HEADER: secret} if secret else {}
    with httpx.Client(base_url=str(origin.base_url), headers=headers) as bare:
        r = bare.post("/v1/resolve", json={"key": keys.profile("c00001")})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("body", [b'{"beacons": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", b"[" * 100_000,
                                  b'{"beacons": [' + b'{"a":' * 600 + b"1" + b"}" * 600 + b"]}"],
                         ids=["5000", "100000-unclosed", "600-objects"])
def test_origin_refuses_deep_ingest_bodies_before_parsing(origin: httpx.Client, body: bytes) -> None:
    """The origin measures nesting before it parses, as the edge does: a deep body is a 400, never a 500."""
    r = origin.post("/v1/ingest", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_body"
    assert origin.get("/healthz").status_code == 200


def test_origin_wrong_method_and_path(origin: httpx.Client) -> None:
    """GET on the resolve route is a JSON 405 with Allow; an unknown path a JSON 404."""
    r = origin.get("/v1/resolve")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed" and "POST" in r.headers["allow"]
    assert origin.get("/nope").json()["error"]["code"] == "not_found"


class LambdaContext:
    function_name = "edge-personalizer-origin"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:edge-personalizer-origin"
    memory_limit_in_mb = 512
    aws_request_id = "8f5a8a4e-2f4d-4c43-9c2b-5d3c2e1f0a11"
    log_group_name = "/aws/lambda/edge-personalizer-origin"
    log_stream_name = "2026/11/22/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def function_url_event(key: str, secret: str) -> dict[str, object]:
    """A Lambda Function URL request, payload format 2.0, as AWS delivers it."""
    body = json.dumps({"key": key})
    host = "abcdefghijklmnop.lambda-url.eu-west-1.on.aws"
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/v1/resolve", "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": host, SECRET_HEADER: secret,
                    "x-forwarded-proto": "https", "x-forwarded-port": "443", "user-agent": "pz-edge"},
        "requestContext": {
            "accountId": "anonymous", "apiId": "abcdefghijklmnop", "domainName": host,
            "domainPrefix": "abcdefghijklmnop", "requestId": "c3b5f2a0-1234-4d5e-8f90-abcdef012345",
            "routeKey": "$default", "stage": "$default", "time": "22/Nov/2026:20:40:00 +0000",
            "timeEpoch": 1795380000000,
            "http": {"method": "POST", "path": "/v1/resolve", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9",
                     "userAgent": "pz-edge"}},
        "body": body, "isBase64Encoded": False,
    }


def test_lambda_handler_answers_like_the_http_app(origin: httpx.Client, built: Built, seed_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  request: pytest.FixtureRequest) -> None:
    """Mangum + the app, given a Function URL event, returns what the app returns over HTTP."""
    monkeypatch.setenv("PZ_ORIGIN_DATA", str(seed_dir / "origin"))
    monkeypatch.setenv("ORIGIN_SECRET", SECRET)
    sys.modules.pop("personalizer_adapters.origin.lambda_handler", None)
    handler = importlib.import_module("personalizer_adapters.origin.lambda_handler").handler
    # Mangum installs an event loop on this thread, as it should in a Lambda process; close it after.
    request.addfinalizer(lambda: (asyncio.get_event_loop_policy().get_event_loop().close(),
                                  asyncio.set_event_loop(None)))
    seg = next(k for k in built.records if ":seg:" in k)
    for key, secret in ((seg, SECRET), (keys.profile("c05001"), SECRET), (keys.profile("c99999"), SECRET),
                        (seg, "wrong-secret-0123456789")):
        out = handler(function_url_event(key, secret), LambdaContext())
        body = base64.b64decode(out["body"]) if out["isBase64Encoded"] else out["body"].encode()
        over_http = httpx.post(f"{origin.base_url}/v1/resolve", json={"key": key}, headers={SECRET_HEADER: secret})
        assert out["statusCode"] == over_http.status_code
        if key.startswith("pz1:p:") and out["statusCode"] == 200:
            assert codec.decode(body, expect="profile").data == codec.decode(over_http.content, expect="profile").data
        else:
            assert body == over_http.content


def test_a_read_only_data_directory_serves_resolve_and_defers_ingest(built: Built, seed_dir: Path,
                                                                     tmp_path: Path) -> None:
    """The origin on a read-only copy of its data (a Lambda package, a read-only mount), as `personalizer origin`
    runs it: it starts, /v1/resolve answers from the copy, and /v1/ingest is a 503 with Retry-After (the queue
    keeps the events) rather than a crash at start. The directory is made read-only by a bind mount in a mount
    namespace of the test's own (unshare), which holds for root too."""
    import shutil
    import subprocess
    import sys
    import time

    from tests.test_edge_events import free_port

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("unshare cannot make a mount namespace here (needed for a read-only mount)")
    data = tmp_path / "origin"
    shutil.copytree(seed_dir / "origin", data, ignore=shutil.ignore_patterns("events.sqlite*"))
    (tmp_path / "dev.vars").write_text(f"ORIGIN_SECRET={SECRET}\n")
    port = free_port()
    script = (f'mount --bind "{data}" "{data}" && mount -o remount,bind,ro "{data}" && exec "{sys.executable}" '
              f'-m personalizer_adapters.cli origin --data "{data}" --port {port} --dev-vars "{tmp_path}/dev.vars"')
    proc = subprocess.Popen(["unshare", "-rm", "sh", "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={SECRET_HEADER: SECRET}, timeout=10) as c:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the origin did not start on a read-only directory"
                time.sleep(0.2)
            r = c.post("/v1/resolve", json={"key": keys.profile("c00001")})
            assert r.status_code == 200 and r.content == built.records[keys.profile("c00001")]
            ingest = c.post("/v1/ingest", json={"beacons": []})
            assert ingest.status_code == 503 and ingest.headers["retry-after"] == "30"
            assert ingest.json()["error"]["code"] == "unavailable"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    assert not (data / "events.sqlite").exists()
