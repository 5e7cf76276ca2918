"""`labeltune serve RUN`: an HTTP app (FastAPI) that labels texts with a saved or exported run.

    GET  /health   -> {"status": "ok", "task", "labels", "problem_type", "run"}   (open: for load balancers)
    GET  /info     -> task, labels, problem type, base model, version, limits
    POST /predict  {"texts": [...], "pairs": [...]?} -> {"predictions": [one object per text, in order]}

A prediction is what `labeltune predict` writes and `LabelModel.predict` returns: ``label`` + ``scores``
(sequence task; ``labels`` for multi-label, ``value`` for regression) or ``tags`` + ``entities`` with
character offsets (token task).

Concurrent requests are micro-batched: a worker thread takes what the queue holds, adds requests
until the batch reaches the token budget (estimated from characters) or ``max_wait_ms`` passes, runs
one forward pass over all their texts (length-sorted inside, as ever) and hands each request its own
rows, in order. Limits: ``max_body_bytes`` (413), ``max_texts`` per request and ``max_chars`` per text
(422), all with a JSON reason. With an API key (``--api-key`` or ``LABELTUNE_API_KEY``), /predict and
/info answer 401 without ``Authorization: Bearer KEY`` (or ``X-API-Key: KEY``). The default bind is
127.0.0.1; uvicorn stops cleanly on SIGTERM, and the worker finishes the requests it holds first.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime, and the
# request model is local to create_app

import hmac
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import ConfigError

__all__ = ["create_app", "MicroBatcher", "ServeLimits", "API_KEY_ENV"]

API_KEY_ENV = "LABELTUNE_API_KEY"


@dataclass
class ServeLimits:
    max_texts: int = 256  # texts per request
    max_chars: int = 20_000  # characters per text
    max_body_bytes: int = 4_000_000  # request body
    max_wait_ms: float = 5.0  # how long a batch waits for more requests
    batch_tokens: int = 0  # estimated tokens per forward pass; 0: the run's eval_batch_tokens; 1: a request a pass

    def __post_init__(self):
        if min(self.max_texts, self.max_chars, self.max_body_bytes) < 1 or self.batch_tokens < 0 or self.max_wait_ms < 0:
            raise ConfigError(f"serve limits must be positive (got {self})")


def _estimated_tokens(texts: list, pairs: Optional[list]) -> int:
    """A cheap token estimate for batching (about 4 characters a token, plus the template's share)."""
    chars = sum(len(t) for t in texts) + sum(len(p) for p in pairs or [])
    return chars // 4 + 16 * len(texts)


class MicroBatcher:
    """Joins concurrent requests into one forward pass. ``submit`` returns a Future of the request's
    rows; one worker thread owns the model, so requests never run in parallel on it."""

    def __init__(self, model, batch_tokens: int, max_wait_ms: float):
        self.model, self.batch_tokens, self.max_wait = model, batch_tokens, max_wait_ms / 1000
        self.queue: "queue.Queue[Optional[tuple]]" = queue.Queue()
        self.batches = 0  # forward passes run (for /info and tests)
        self.texts = 0  # texts labelled
        self.worker = threading.Thread(target=self._work, name="labeltune-batcher", daemon=True)
        self.worker.start()

    def submit(self, texts: list, pairs: Optional[list]) -> Future:
        future: Future = Future()
        self.queue.put((texts, pairs, future))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        self.queue.put(None)
        self.worker.join(timeout=60)

    def _work(self) -> None:
        stop = False
        while not stop:
            first = self.queue.get()
            if first is None:
                break
            batch, tokens = [first], _estimated_tokens(first[0], first[1])
            deadline = time.monotonic() + self.max_wait
            while tokens < self.batch_tokens:
                try:
                    item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                tokens += _estimated_tokens(item[0], item[1])
            self._run(batch)

    def _run(self, batch: list) -> None:
        texts = [t for item in batch for t in item[0]]
        pairs = [p for item in batch for p in item[1]] if batch[0][1] is not None else None
        try:
            rows = self.model.predict(texts, pairs)
        except Exception as e:  # noqa: BLE001 — every waiting request learns of it
            for item in batch:
                item[2].set_exception(e)
            return
        self.batches += 1
        self.texts += len(texts)
        start = 0
        for item_texts, _, future in batch:
            future.set_result(rows[start:start + len(item_texts)])
            start += len(item_texts)


def create_app(run: "str | Path", max_texts: int = 256, device: "str | None" = None, api_key: "str | None" = None,
               limits: "ServeLimits | None" = None, model=None, abstain_below: float = 0.0):
    """The FastAPI app for ``run`` (or an already loaded ``model``). ``api_key``: None reads
    ``LABELTUNE_API_KEY``; empty: no key. ``abstain_below`` P: label null where the top score is under P."""
    try:
        import uvicorn  # noqa: F401  (checked here, before the slow model load; `labeltune serve` runs it)
        from fastapi import Depends, FastAPI, HTTPException, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from pydantic import BaseModel, ConfigDict, Field, StringConstraints
        from typing_extensions import Annotated
    except ImportError:
        raise ConfigError("serving needs FastAPI and uvicorn: pip install 'labeltune[serve]'") from None
    from contextlib import asynccontextmanager

    from . import __version__
    from .modeling import LabelModel
    from .precision import resolve_device

    if max_texts < 1:
        raise ConfigError(f"max_texts={max_texts}: a request must be allowed at least one text")
    model = model or LabelModel.from_pretrained(run, device=resolve_device(device))
    limits = limits or ServeLimits(max_texts=max_texts)
    if not 0.0 <= abstain_below <= 1.0:
        raise ConfigError(f"abstain_below={abstain_below}: give a probability in [0, 1]")
    model.abstain_below = abstain_below
    key = os.environ.get(API_KEY_ENV, "") if api_key is None else api_key
    batcher = MicroBatcher(model, limits.batch_tokens or model.config.train.eval_batch_tokens, limits.max_wait_ms)

    # a text: at most max_chars characters, at least one that is not whitespace (the schema says what the
    # task checks, so a schema-valid request is never refused)
    Text = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_chars, pattern=r"\S")]

    class Problem(BaseModel):
        detail: "str | list" = Field(description="what is wrong and how to fix it (a list: the fields at fault)")

    errors = {code: {"model": Problem, "description": text} for code, text in (
        (400, "a body that is not UTF-8 JSON"), (401, "no valid API key"), (411, "no Content-Length"), (413, "body over the limit"),
        (422, "invalid request (a reason for each field at fault, or the task's reason)"))}

    Texts = Annotated[list[Text], Field(min_length=1, max_length=limits.max_texts)]

    # the schema is the run's: a pair run requires pairs, a single-text run has no such field (unknown fields: 422)
    if model.config.data.text_pair_column:
        class PredictRequest(BaseModel):
            model_config = ConfigDict(extra="forbid")
            texts: Texts = Field(description="texts to label")
            pairs: Texts = Field(description=f"the second texts ({model.config.data.text_pair_column}), one per text")
    else:
        class PredictRequest(BaseModel):
            model_config = ConfigDict(extra="forbid")
            texts: Texts = Field(description="texts to label")
            pairs: None = Field(None, description="this run labels single texts: no pairs")

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()  # on shutdown (SIGTERM): answer what is queued, then stop

    app = FastAPI(title="labeltune", version=__version__, lifespan=lifespan,
                  description=f"{model.config.model.task} labelling with the run {run}")
    app.state.batcher = batcher

    reasons = {"string_pattern_mismatch": "is empty or only whitespace; send text",
               "none_required": "this run labels single texts; give no pairs",
               "extra_forbidden": "is not a field of this API; send texts (and pairs for a pair run)",
               "json_invalid": "is not valid JSON"}

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        """422 with one entry per field at fault: where (loc), the pydantic type and a reason to act on."""
        return JSONResponse({"detail": [{"loc": list(e.get("loc", ())), "type": e.get("type"),
                                         "msg": reasons.get(e.get("type"), e.get("msg"))} for e in exc.errors()]}, 422)

    @app.middleware("http")
    async def body_limit(request: Request, call_next):
        length = request.headers.get("content-length")
        if request.method == "POST":
            if length is None:
                return JSONResponse({"detail": "send a Content-Length header (chunked bodies are not accepted)"}, 411)
            if not length.isdigit() or int(length) > limits.max_body_bytes:
                return JSONResponse({"detail": f"request body of {length} bytes is over the limit of "
                                               f"{limits.max_body_bytes} bytes; send fewer or shorter texts"}, 413)
        return await call_next(request)

    def check_key(request: Request) -> None:
        if not key:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode(), key.encode()):
            raise HTTPException(401, "a valid API key is required: send Authorization: Bearer KEY",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "task": model.config.model.task, "labels": model.labels.names,
                "problem_type": model.labels.problem_type, "run": str(run)}

    @app.get("/info", dependencies=[Depends(check_key)], responses={401: errors[401]})
    def info() -> dict:
        return {"task": model.config.model.task, "labels": model.labels.names,
                "problem_type": model.labels.problem_type, "base_model": model.config.model.name,
                "pairs": bool(model.config.data.text_pair_column), "version": __version__,
                "temperature": model.temperature, "abstain_below": model.abstain_below,
                "served": {"batches": batcher.batches, "texts": batcher.texts},
                "limits": {"max_texts": limits.max_texts, "max_chars": limits.max_chars,
                           "max_body_bytes": limits.max_body_bytes}, "run": str(run)}

    @app.post("/predict", dependencies=[Depends(check_key)], responses=errors)
    async def predict(request: PredictRequest) -> dict:
        import asyncio

        try:  # the task's checks (pairs against the run, empty texts): their reason becomes the 422's
            model.task.from_texts(request.texts, request.pairs, model.config)
        except ConfigError as e:
            raise HTTPException(422, str(e)) from None
        rows = await asyncio.wrap_future(batcher.submit(list(request.texts), request.pairs))
        # (the worker joins this request's texts with other requests' and returns its own rows, in order)
        return {"predictions": rows}

    return app
