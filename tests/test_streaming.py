"""`labeltune predict --data` streams (issue 13): read, predicted and written in chunks, memory bounded
whatever the file size, output in input order, nothing written on an error."""

import csv
import json
import tracemalloc

import pytest
from helpers import tiny_label_model

from labeltune import DataError, LabelModel
from labeltune.inference import predict_run


@pytest.fixture
def run(tmp_path, tiny_llama):
    tiny_label_model(tiny_llama).save_pretrained(tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_chunked_prediction_equals_whole_prediction_in_input_order(run, tmp_path, suffix):
    import pandas as pd

    texts = [f"the movie was {w} number {i}" for i, w in enumerate(["great", "bad", "awful", "fine"] * 5)]
    data = tmp_path / f"data{suffix}"
    frame = pd.DataFrame({"text": texts})
    {".csv": lambda: frame.to_csv(data, index=False), ".jsonl": lambda: frame.to_json(data, orient="records", lines=True),
     ".parquet": lambda: frame.to_parquet(data)}[suffix]()
    out = tmp_path / "out.jsonl"
    assert predict_run(run, str(data), None, out, chunk=3) == 20
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == LabelModel.from_pretrained(run).predict(texts)
    csv_out = tmp_path / "out.csv"
    predict_run(run, str(data), None, csv_out, chunk=7)
    got = list(csv.DictReader(csv_out.open()))
    assert [r["text"] for r in got] == texts and [r["label"] for r in got] == [r["label"] for r in rows]


def test_memory_stays_bounded_by_a_chunk_whatever_the_file_size(run, tmp_path, monkeypatch):
    text = "the movie was great and the plot was fine " * 25  # ~1 kB a row
    data = tmp_path / "big.csv"
    with data.open("w") as f:
        f.write("text\n")
        for i in range(40_000):
            f.write(f"{text}{i}\n")
    size = data.stat().st_size
    assert size > 40e6
    seen = []

    def cheap(self, examples, source="data"):  # the model is not what is measured here
        seen.append(len(examples))
        return [{"text": e.text[-6:], "label": "pos"} for e in examples]

    monkeypatch.setattr(LabelModel, "predict_examples", cheap)
    tracemalloc.start()
    count = predict_run(run, str(data), None, tmp_path / "out.jsonl", chunk=500)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 40_000 and max(seen) == 500 and sum(seen) == 40_000
    assert peak < size / 8, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB file"
    last = (tmp_path / "out.jsonl").read_text().splitlines()
    assert json.loads(last[0])["text"].endswith(" 0") and json.loads(last[-1])["text"].endswith("39999")


def test_a_bad_row_late_in_the_file_writes_nothing(run, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": f"great {i}"}) + "\n" for i in range(10)) + '{"text": ""}\n')
    with pytest.raises(DataError, match="line 11"):
        predict_run(run, str(data), None, tmp_path / "out.jsonl", chunk=4)
    assert not (tmp_path / "out.jsonl").exists()


def test_token_runs_stream_conll_in_chunks_that_never_cut_a_document(tmp_path, tiny_llama):
    from labeltune.data.conll import iter_token_examples
    from labeltune.inference import _chunks

    # three documents of 3 sentences; with windows, each sentence is read with its document around it
    words = "john lives in paris the plot was fine acme corp works at london".split()
    doc = "\n\n".join("\n".join(f"{words[(d + s + k) % len(words)]} O" for k in range(4)) for s in range(3) for d in [0])
    data = tmp_path / "docs.conll"
    data.write_text("".join(f"-DOCSTART- O\n\n{doc.replace('john', ['john', 'acme', 'paris'][d])}\n\n" for d in range(3)))
    model = tiny_label_model(tiny_llama, labels=("O", "B-PER"), task="token", max_length=16,
                             long_documents="window")
    model.save_pretrained(tmp_path / "run")
    sentences = list(iter_token_examples(data, model.config.data, require_labels=False))
    assert [e.document for e in sentences] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    parts = list(_chunks(iter(sentences), 2, model))
    assert [len(p) for p in parts] == [3, 3, 3]  # 2 a chunk, extended to the document's end
    truncating = tiny_label_model(tiny_llama, labels=("O", "B-PER"), task="token", max_length=16)
    assert [len(p) for p in _chunks(iter(sentences), 2, truncating)] == [2, 2, 2, 2, 1]  # no context: no grouping
    whole = model.predict_examples(sentences)
    for chunk in (1, 2, 100):
        out = tmp_path / f"out{chunk}.jsonl"
        assert predict_run(tmp_path / "run", str(data), None, out, chunk=chunk) == 9
        assert [json.loads(line) for line in out.read_text().splitlines()] == json.loads(json.dumps(whole))


def test_a_large_conll_file_streams_with_bounded_memory(tmp_path, tiny_llama, monkeypatch):
    tiny_label_model(tiny_llama, labels=("O", "B-PER"), task="token").save_pretrained(tmp_path / "run")
    seen = []

    def cheap(self, examples, source="data"):  # the model is not what is measured here
        seen.append(len(examples))
        return [{"tokens": e.tokens[:1]} for e in examples]

    monkeypatch.setattr(LabelModel, "predict_examples", cheap)
    peaks = {}
    for n in (3_000, 30_000):
        data = tmp_path / f"big{n}.conll"
        with data.open("w") as f:
            for i in range(n):
                f.write("".join(f"word{k}_{i} O\n" for k in range(40)) + "\n")
        tracemalloc.start()
        count = predict_run(tmp_path / "run", str(data), None, tmp_path / "out.jsonl", chunk=500)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == n and max(seen) == 500
    # ten times the file (1.7 MB -> 17 MB), the same peak: observed 3.43 MB both times
    assert peaks[30_000] < 1.2 * peaks[3_000], peaks
