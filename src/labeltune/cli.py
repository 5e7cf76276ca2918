"""`labeltune train|evaluate|predict|serve|export|bench|demo` (typer). Flags override a --config
YAML, which overrides the dataclass defaults; the resolved settings are saved in the run directory."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import LabeltuneError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Label-supervised fine-tuning of decoder LLMs for classification and NER.")

_DEVICE_HELP = "auto (the GPU when there is one, else the CPU), cuda, cuda:1, cpu"
_ABSTAIN_HELP = ("sequence task: give no label (label null; scores kept) when the top score is under this "
                 "probability (the run's calibrated scores when it has calibration.json)")


def _quiet_libraries() -> None:
    """Quiet the model libraries through their environment variables and loggers, without importing
    them (``labeltune --help`` and input errors answer before torch loads)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    warnings.filterwarnings("ignore", module="peft")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    logging.getLogger("accelerate").setLevel(logging.ERROR)


def _resolve_config(config_file: Optional[Path], flags: dict):
    from .config import RunConfig

    cfg = RunConfig.load(config_file) if config_file else RunConfig()
    if flags.get("template") is not None:  # a shell passes \n literally
        flags["template"] = flags["template"].replace("\\n", "\n").replace("\\t", "\t")
    return cfg.with_settings(**flags)


def _print_metrics(metrics: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    Console(stderr=False).print(table)


@app.command()
def train(
    train: Path = typer.Option(..., "--train", help="training file (csv/tsv/jsonl/parquet/conll) or hf:ID:SPLIT"),
    output: Path = typer.Option(..., "--output", help="run directory to create"),
    eval: Optional[Path] = typer.Option(None, "--eval", help="evaluation file; the best epoch on it is kept"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON with sections model/lora/data/train"),
    model: Optional[str] = typer.Option(None, help="default | hub id | local dir | file.gguf"),
    task: Optional[str] = typer.Option(None, help="sequence | token"),
    pooling: Optional[str] = typer.Option(None, help="last | mean | max"),
    problem_type: Optional[str] = typer.Option(None, help="single_label | multi_label | regression"),
    unmask: Optional[str] = typer.Option(None, help="none | all | from:K | from:F | i,j,k (bidirectional layers; "
                                         "default: none for sequence, all for token)"),
    depth: Optional[str] = typer.Option(None, help="decoder layers that run: all, K (the first K) or a fraction "
                                        "(0.67: the lower two thirds); the head reads the last one"),
    attn_implementation: Optional[str] = typer.Option(None, help="sdpa | eager"),
    quantize: Optional[str] = typer.Option(None, help="none | 4bit | 8bit: QLoRA, the base weights quantised by "
                                           "bitsandbytes (CUDA GPU only)"),
    label_alignment: Optional[str] = typer.Option(None, help="token task: first | last | mean | all"),
    head_dropout: Optional[float] = typer.Option(None),
    head_bias: Optional[bool] = typer.Option(None, help="a bias in the label head (default: none for sequence, "
                                             "as the stock classes, so the run exports to plain transformers)"),
    head_init: Optional[str] = typer.Option(None, help="random | labels (the head from the model's output "
                                            "embeddings of the label words; sequence task)"),
    label_words: Optional[str] = typer.Option(None, help="the word of each label for --head-init labels: "
                                              "0=negative,1=positive (default: the label names)"),
    lora_r: Optional[int] = typer.Option(None), lora_alpha: Optional[int] = typer.Option(None),
    lora_dropout: Optional[float] = typer.Option(None),
    lora_target_modules: Optional[str] = typer.Option(None, help="comma list or all-linear"),
    lora_layers: Optional[str] = typer.Option(None, help="all | from:K | from:F | i,j,k: the decoder layers that get "
                                              "adapters (from:0.5 trains faster: the backward pass stops there)"),
    text_column: Optional[str] = typer.Option(None), text_pair_column: Optional[str] = typer.Option(None),
    label_column: Optional[str] = typer.Option(None),
    tokens_column: Optional[str] = typer.Option(None, help="token task, JSONL/datasets: the word-list column"),
    tags_column: Optional[str] = typer.Option(None, help="token task, JSONL/datasets: the tag-list column "
                                              "(default tags; ner_tags when tags is absent)"),
    threshold: Optional[float] = typer.Option(None, help="multi_label: decision threshold on sigmoid scores"),
    format: Optional[str] = typer.Option(None, help="auto | csv | tsv | jsonl | parquet | label-text | conll"),
    label_delimiter: Optional[str] = typer.Option(None, help="keep the label part before this (TREC coarse: ':')"),
    max_length: Optional[int] = typer.Option(None),
    document_column: Optional[str] = typer.Option(None, help="token task, JSONL/datasets: the column naming each "
                                                  "sentence's document (CoNLL: -DOCSTART- lines)"),
    long_documents: Optional[str] = typer.Option(None, help="truncate | window | stream (read texts longer than "
                                                 "--max-length whole: window, in overlapping windows; token task: "
                                                 "each sentence with its document's words around it; stream, "
                                                 "sequence task: in chunks that each read all chunks before, as "
                                                 "one forward over the whole text)"),
    window_stride: Optional[int] = typer.Option(None, help="text tokens between window starts (default: half a window)"),
    window_pooling: Optional[str] = typer.Option(None, help="mean | max | attention | last: how a text's windows "
                                                 "are combined (attention: a learned query, the mean at step 0; "
                                                 "last: the last window alone, with --window-memory the one that "
                                                 "has read the most)"),
    window_memory: Optional[bool] = typer.Option(None, help="each window also attends to its text's previous "
                                                 "window (keys and values, no gradient), so context flows across "
                                                 "windows; windows then follow one another"),
    append_eos: Optional[bool] = typer.Option(None, help="end each text with EOS (sequence task)"),
    template: Optional[str] = typer.Option(None, help="wrap each text: 'Review: {text}\\nSentiment:' (\\n, \\t understood)"),
    conll_tag_column: Optional[int] = typer.Option(None, help="CoNLL files: index of the tag column (-1 = last)"),
    epochs: Optional[float] = typer.Option(None),
    lr: Optional[float] = typer.Option(None), head_lr_scale: Optional[float] = typer.Option(None, help="head lr = lr x this"),
    batch_size: Optional[int] = typer.Option(None),
    batching: Optional[str] = typer.Option(None, help="packed | bucketed | padded"),
    max_tokens_per_batch: Optional[int] = typer.Option(None), grad_accum: Optional[int] = typer.Option(None),
    seed: Optional[int] = typer.Option(None), class_weights: Optional[str] = typer.Option(None),
    focal_gamma: Optional[float] = typer.Option(None, help="focal loss exponent (default 0: cross-entropy)"),
    ema_decay: Optional[float] = typer.Option(None, help="keep a moving average of the trained weights with this "
                                              "decay, e.g. 0.99 (default 0: the last weights)"),
    warmup_ratio: Optional[float] = typer.Option(None), weight_decay: Optional[float] = typer.Option(None),
    mixed_precision: Optional[str] = typer.Option(None), time_budget_s: Optional[float] = typer.Option(None),
    gradient_checkpointing: Optional[bool] = typer.Option(None),
    calibration: Optional[str] = typer.Option(None, help="auto (a temperature, or per-label thresholds, fitted on "
                                              "held-out data; sequence task) | none"),
    calibration_split: Optional[float] = typer.Option(None, help="fraction of the training data set aside to fit "
                                                      "the calibration (default 0: the evaluation data)"),
    checkpoint_every: Optional[int] = typer.Option(None, help="a checkpoint every N steps (default 0: at each epoch's "
                                                   "end), beside OUTPUT as OUTPUT.checkpoints/"),
    keep_checkpoints: Optional[int] = typer.Option(None, help="newest checkpoints kept (default 2)"),
    resume: bool = typer.Option(False, help="continue from the newest checkpoint of OUTPUT (same settings and data)"),
    overwrite: bool = typer.Option(False, help="replace an existing run directory"),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Fine-tune a decoder with LoRA and a label head; write the run directory."""
    from .config import FLAT_SETTINGS

    flags = {k: v for k, v in locals().items() if k in FLAT_SETTINGS}
    cfg = _resolve_config(config, flags)
    from .training import fit

    model = fit(cfg, str(train), str(eval) if eval else None, output, overwrite=overwrite, progress=not quiet,
                echo=lambda s: typer.echo(s, err=True), resume=resume)
    metrics = model.metrics
    _print_metrics(metrics, f"{output} (best epoch {metrics.get('best_epoch')})")
    typer.echo(f"run: {output}  plots: {output / 'plots'}")


@app.command()
def evaluate(run: Path = typer.Argument(..., help="run directory from `labeltune train`"),
             data: Path = typer.Option(..., "--data", help="labelled file in the training format"),
             out: Optional[Path] = typer.Option(None, "--out", help="also write the metrics to this JSON file"),
             device: str = typer.Option("auto", help=_DEVICE_HELP)):
    """Score a run on labelled data; updates RUN/metrics.json."""
    from .inference import evaluate_run

    metrics = evaluate_run(run, str(data), out, device=device)
    _print_metrics(metrics, f"{run} on {data}")


@app.command()
def predict(run: Path = typer.Argument(..., help="run directory from `labeltune train`"),
            data: Optional[Path] = typer.Option(None, "--data", help="file of texts (label column not needed)"),
            text: Optional[list[str]] = typer.Option(None, "--text", help="a text to label (repeatable)"),
            out: Optional[Path] = typer.Option(None, "--out", help="write JSONL (or .csv) here instead of stdout"),
            abstain_below: float = typer.Option(0.0, min=0.0, max=1.0, help=_ABSTAIN_HELP),
            device: str = typer.Option("auto", help=_DEVICE_HELP)):
    """Label texts with a trained run: JSON lines with label and scores, in input order."""
    from .inference import predict_run

    if (data is None) == (not text):
        raise LabeltuneError("give exactly one of --data FILE or --text TEXT")
    predict_run(run, str(data) if data else None, text, out, device=device, abstain_below=abstain_below)


@app.command()
def serve(run: Path = typer.Argument(..., help="run directory from `labeltune train` or `labeltune export`"),
          host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0: every interface)"),
          port: int = typer.Option(8000, help="TCP port"),
          max_texts: int = typer.Option(256, min=1, help="most texts one request may send (422 beyond)"),
          max_chars: int = typer.Option(20_000, min=1, help="most characters a text may have (422 beyond)"),
          max_body_bytes: int = typer.Option(4_000_000, min=1, help="largest request body (413 beyond)"),
          max_wait_ms: float = typer.Option(5.0, min=0, help="how long a batch waits for more concurrent requests"),
          batch_tokens: Optional[int] = typer.Option(None, min=1, help="estimated tokens per forward pass (default: "
                                                     "the run's eval_batch_tokens; 1: one request at a time)"),
          api_key: Optional[str] = typer.Option(None, help="require this key (Authorization: Bearer KEY) on "
                                                "/predict and /info; default: $LABELTUNE_API_KEY, else none"),
          abstain_below: float = typer.Option(0.0, min=0.0, max=1.0, help=_ABSTAIN_HELP),
          device: str = typer.Option("auto", help=_DEVICE_HELP)):
    """Serve a run over HTTP: POST /predict {"texts": [...]}, GET /info, GET /health (needs labeltune[serve])."""
    from .serve import API_KEY_ENV, ServeLimits, create_app

    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    if host not in ("127.0.0.1", "localhost", "::1") and not key:
        typer.secho(f"warning: serving on {host} without an API key: anyone who reaches the port can use the "
                    f"model (set --api-key or {API_KEY_ENV})", err=True, fg="yellow")
    limits = ServeLimits(max_texts=max_texts, max_chars=max_chars, max_body_bytes=max_body_bytes,
                         max_wait_ms=max_wait_ms, batch_tokens=batch_tokens or 0)
    app_ = create_app(run, max_texts, device, api_key=key, limits=limits, abstain_below=abstain_below)
    import uvicorn

    uvicorn.run(app_, host=host, port=port, log_level="info")


@app.command()
def export(run: Path = typer.Argument(..., help="run directory from `labeltune train`"),
           output: Path = typer.Option(..., "--output", help="directory for the self-contained merged run"),
           dtype: str = typer.Option("float32", help="weights on disk: float32, bfloat16 or float16"),
           format: str = typer.Option("labeltune", "--format", help="labeltune (a run directory for labeltune's "
                                      "evaluate/predict/serve) or transformers (a stock *ForSequenceClassification / "
                                      "*ForTokenClassification checkpoint for plain transformers, pipelines, vLLM...)"),
           overwrite: bool = typer.Option(False, help="replace OUTPUT if it exists")):
    """Merge the LoRA adapters into the backbone: a checkpoint that needs neither PEFT nor the base model."""
    from .export import export_run

    check = export_run(run, output, dtype, overwrite, format)
    typer.echo(f"exported {run} -> {output} ({dtype}); checked on {check['probes']} probe texts: "
               f"max |logit diff| {check['max_abs_logit_diff']:.2e}, same predictions: {check['same_predictions']}")


@app.command()
def demo(output: Path = typer.Option(Path("runs/demo"), "--output", help="where to write the demo run"),
         epochs: Optional[float] = typer.Option(None, help="passes over the bundled sample (default: sized to it)"),
         model: str = typer.Option("default", help="decoder to fine-tune (default: embedded SmolLM2-135M)")):
    """Fine-tune the embedded SmolLM2-135M on a bundled financial-tweet sample (~5.5 min on 2 CPU cores)."""
    from .demo import run_demo

    run_demo(output, epochs, model)


def _suites_help() -> str:
    try:
        from .bench import list_suites

        return "; ".join(f"{k}: {v}" for k, v in list_suites().items())
    except Exception:  # help must render even if a suite file is broken
        return "see labeltune/suites/"


@app.command(help="Compare label supervision with prompting and an encoder on the paper's datasets. "
                  "Suites: " + _suites_help())
def bench(suite: str = typer.Argument("quick", help="suite name or YAML path"),
          model: str = typer.Option("default", help="decoder for LS and prompting (hub id on a GPU, e.g. a 7B)"),
          data_root: Path = typer.Option(Path(__file__).resolve().parents[2].parent / "shared" / "data",
                                         help="folder with sst2/, sst5/, twitter_fin/, trec/, conll2003/, wnut17/"),
          output: Path = typer.Option(Path("bench_out"), help="results.json, RESULTS.md and results.png go here"),
          seeds: Optional[str] = typer.Option(None, help="comma list, overrides the suite's seeds"),
          datasets: Optional[str] = typer.Option(None, help="comma list, a subset of the suite's datasets"),
          resume: bool = typer.Option(False, help="keep the cells already in OUTPUT/SUITE/results.json, run the rest"),
          jobs: int = typer.Option(1, help="cells run at once, each in its own process with cores // jobs CPU threads "
                                           "(on a 2-core CPU, --jobs 2 runs two one-thread cells side by side)")):
    from .bench import load_suite, run_suite

    spec = load_suite(suite)
    run_suite(spec, model, data_root, output / spec["name"], [int(x) for x in seeds.split(",")] if seeds else None,
              datasets.split(",") if datasets else None, resume=resume, echo=typer.echo, jobs=jobs)
    typer.echo(f"results: {output / spec['name']}/RESULTS.md, chart: {output / spec['name']}/results.png")


def main() -> None:
    _quiet_libraries()
    try:
        app()
    except LabeltuneError as e:
        typer.secho(f"error: {e}", err=True, fg="red")
        sys.exit(2)


if __name__ == "__main__":
    main()
