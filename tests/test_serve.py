"""The server under a real uvicorn on 127.0.0.1: concurrent requests micro-batched and answered in
order, every limit, malformed input, the API key, and the server still answering after each."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from helpers import tiny_label_model

from labeltune.serve import ServeLimits, create_app

TEXTS = ["the movie was great", "awful plot", "the actors were fine and the film was fun", "boring", "good"]
KEY = "s3cret-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base url, model, app) of a run served by uvicorn in a thread, with small limits and a key."""
    from helpers import make_tiny_dir

    path = make_tiny_dir(tmp_path_factory.mktemp("models"), "llama")
    model = tiny_label_model(path)
    run = tmp_path_factory.mktemp("run") / "run"
    model.save_pretrained(run)
    limits = ServeLimits(max_texts=8, max_chars=200, max_body_bytes=4000, max_wait_ms=20, batch_tokens=4096)
    app = create_app(run, api_key=KEY, limits=limits)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}", model, app
    srv.should_exit = True
    thread.join(timeout=30)
    assert not app.state.batcher.worker.is_alive()  # shutdown finished the queue and stopped the worker


AUTH = {"Authorization": f"Bearer {KEY}"}


def _predict(base, texts, headers=AUTH):
    return httpx.post(f"{base}/predict", json={"texts": texts}, headers=headers, timeout=60)


def _still_answers(base):
    r = _predict(base, ["still there"])
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_concurrent_requests_are_batched_and_answered_in_order(server):
    base, model, app = server
    requests = [[TEXTS[(i + j) % len(TEXTS)] + f" {i}" * (j % 3) for j in range(1 + i % 4)] for i in range(24)]
    before = app.state.batcher.batches
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda texts: _predict(base, texts), requests))
    assert all(a.status_code == 200 for a in answers)
    for texts, answer in zip(requests, answers):
        rows = answer.json()["predictions"]
        assert [r["text"] for r in rows] == texts  # each request gets its own rows, in its order
        expected = model.predict(texts)
        assert [r["label"] for r in rows] == [e["label"] for e in expected]
        for r, e in zip(rows, expected):
            assert r["scores"] == pytest.approx(e["scores"], abs=1e-5)
    assert app.state.batcher.batches - before < len(requests)  # some requests shared a forward pass


@pytest.mark.parametrize("body,status,reason", [
    ({"texts": []}, 422, "at least 1"),
    ({"texts": ["a"] * 9}, 422, "at most 8"),
    ({"texts": ["x" * 201]}, 422, "at most 200 characters"),
    ({"texts": ["fine", "  "]}, 422, "is empty or only whitespace"),
    ({"texts": "not a list"}, 422, "list"),
    ({"texts": [1, 2]}, 422, "string"),
    ({"texts": ["a"], "pairs": ["b"]}, 422, "this run labels single texts; give no pairs"),
    ({"texts": ["a"], "extra": 1}, 422, "is not a field of this API"),
    ({"text": ["a"]}, 422, "Field required"),
])
def test_bad_requests_get_a_4xx_with_a_reason(server, body, status, reason):
    base, _, _ = server
    r = httpx.post(f"{base}/predict", json=body, headers=AUTH, timeout=30)
    assert r.status_code == status and reason in json.dumps(r.json()), r.text
    _still_answers(base)


def test_malformed_json_and_oversized_bodies(server):
    base, _, _ = server
    r = httpx.post(f"{base}/predict", content=b'{"texts": ["a",', headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and "is not valid JSON" in r.text
    _still_answers(base)
    r = httpx.post(f"{base}/predict", content=json.dumps({"texts": ["y" * 150] * 30}).encode(),
                   headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413 and "over the limit of 4000 bytes" in r.json()["detail"]
    _still_answers(base)


def test_api_key(server):
    base, model, _ = server
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "nope"}):
        r = _predict(base, ["a"], headers=headers)
        assert r.status_code == 401 and "API key" in r.json()["detail"]
        assert httpx.get(f"{base}/info", headers=headers).status_code == 401
    assert _predict(base, ["a"], headers={"X-API-Key": KEY}).status_code == 200
    info = httpx.get(f"{base}/info", headers=AUTH).json()
    assert info["labels"] == model.labels.names and info["task"] == "sequence"
    assert info["limits"] == {"max_texts": 8, "max_chars": 200, "max_body_bytes": 4000}
    assert httpx.get(f"{base}/health").json()["status"] == "ok"  # open to load balancers
