"""`labeltune serve RUN`: an HTTP app (FastAPI) that labels texts with a saved or exported run.

    GET  /health   -> {"status": "ok", "task", "labels", "problem_type", "run"}
    POST /predict  {"texts": [...], "pairs": [...]?} -> {"predictions": [one object per text, in order]}

A prediction is what `labeltune predict` writes: ``label`` + ``scores`` (sequence task; ``labels``
for multi-label, ``value`` for regression) or ``tags`` + ``entities`` with character offsets (token
task). The model is loaded once; requests are served one at a time (one model, one device), each
request's texts batched by length under the run's token budget.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime, and the
# request model is local to create_app

import threading
from pathlib import Path

from .errors import ConfigError

__all__ = ["create_app"]


def create_app(run: "str | Path", max_texts: int = 256, device: "str | None" = None):
    try:
        import uvicorn  # noqa: F401  (checked here, before the slow model load; `labeltune serve` runs it)
        from fastapi import FastAPI, HTTPException
        from pydantic import BaseModel, Field
    except ImportError:
        raise ConfigError("serving needs FastAPI and uvicorn: pip install 'labeltune[serve]'") from None
    from . import __version__
    from .modeling import LabelModel
    from .precision import resolve_device

    if max_texts < 1:
        raise ConfigError(f"max_texts={max_texts}: a request must be allowed at least one text")
    model = LabelModel.from_pretrained(run, device=resolve_device(device))
    lock = threading.Lock()  # one forward at a time: FastAPI runs sync endpoints in a thread pool

    class PredictRequest(BaseModel):
        texts: list[str] = Field(min_length=1, max_length=max_texts, description="texts to label")
        pairs: list[str] | None = Field(None, description="second texts, one per text (runs trained on pairs)")

    app = FastAPI(title="labeltune", version=__version__,
                  description=f"{model.config.model.task} labelling with the run {run}")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "task": model.config.model.task, "labels": model.labels.names,
                "problem_type": model.labels.problem_type, "run": str(run)}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict:
        empty = [i for i, t in enumerate(request.texts) if not t.strip()]
        if empty:
            raise HTTPException(422, f"texts {empty[:10]} are empty; send non-empty strings")
        with lock:
            try:  # the task checks the pairs against the run; its reason becomes the 422's
                return {"predictions": model.predict(request.texts, request.pairs)}
            except ConfigError as e:
                raise HTTPException(422, str(e)) from None

    return app
