"""Bench machinery: prompting scores with the shared-prefix cache equal full-sequence scores; strict
entity parsing; suites load and list."""

import json
import sys
from pathlib import Path

import pytest
import torch
from helpers import make_tokenizer
from transformers import AutoConfig, AutoModelForCausalLM

from labeltune import ConfigError
from labeltune.baselines.prompting import (CONTENT_FREE, _split_template, label_likelihood_predict, label_scores,
                                           ner_prompt_predict, parse_entities)
from labeltune.bench import list_suites, load_suite

TEMPLATE = ("{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
            "{% if add_generation_prompt %}<s> assistant {% endif %}")


@pytest.fixture(scope="module")
def tiny_lm():
    tok = make_tokenizer()
    tok.chat_template = TEMPLATE
    torch.manual_seed(0)
    cfg = AutoConfig.for_model("llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok), pad_token_id=3)
    return AutoModelForCausalLM.from_config(cfg).eval(), tok


def _full_sequence_scores(lm, tok, texts, verbalizers, instruction, demos):
    """Reference: each (text, verbaliser) scored by one plain forward pass over the whole prompt."""
    before, after = _split_template(tok, instruction, demos)
    rows = []
    with torch.no_grad():
        for t in texts:
            prompt = tok(before, add_special_tokens=False)["input_ids"] + tok(t + after, add_special_tokens=False)["input_ids"]
            scores = []
            for v in verbalizers:
                lab = tok(v, add_special_tokens=False)["input_ids"]
                logp = torch.log_softmax(lm(input_ids=torch.tensor([prompt + lab])).logits[0].float(), -1)
                scores.append(sum(float(logp[len(prompt) + k - 1, x]) for k, x in enumerate(lab)))
            rows.append(scores)
    return torch.tensor(rows)


VERBALIZERS = ["good", "bad acting", "so so so"]  # 1, 2 and 3 tokens: exercises the continuation pass
INSTRUCTION = "the film {text}"
DEMOS = [("fun plot", "good"), ("awful film", "bad acting")]


@pytest.mark.parametrize("verbalizers", [VERBALIZERS, ["bad acting", "good", "so so so"], ["good", "bad"]])
def test_label_scores_with_prefix_cache_equal_full_sequences(tiny_lm, verbalizers):
    # multi-token labels last, first, or none at all: each label's continuation lands on its own column
    lm, tok = tiny_lm
    texts = ["the movie was great", "bad", "the plot was boring and the actors were awful"]
    expected = _full_sequence_scores(lm, tok, texts, verbalizers, INSTRUCTION, DEMOS)
    scores, lengths = label_scores(lm, tok, texts, verbalizers, INSTRUCTION, DEMOS, batch_size=2)
    assert torch.allclose(scores, expected, atol=1e-4)
    assert lengths == [len(tok(v, add_special_tokens=False)["input_ids"]) for v in verbalizers]
    preds = label_likelihood_predict(lm, tok, texts, verbalizers, INSTRUCTION, DEMOS, batch_size=2)
    assert preds == expected.argmax(-1).tolist()


def test_length_normalised_and_calibrated_scoring(tiny_lm):
    lm, tok = tiny_lm
    texts = ["the movie was great", "bad", "fun"]
    lengths = torch.tensor([len(tok(v, add_special_tokens=False)["input_ids"]) for v in VERBALIZERS], dtype=torch.float)
    expected = _full_sequence_scores(lm, tok, texts, VERBALIZERS, INSTRUCTION, DEMOS) / lengths
    got = label_likelihood_predict(lm, tok, texts, VERBALIZERS, INSTRUCTION, DEMOS, normalize="mean")
    assert got == expected.argmax(-1).tolist()
    # contextual calibration by hand: p(label | text) / mean over content-free inputs of p(label | input)
    free = _full_sequence_scores(lm, tok, list(CONTENT_FREE), VERBALIZERS, INSTRUCTION, DEMOS) / lengths
    prior = torch.softmax(free, -1).mean(0)
    calibrated = (torch.softmax(expected, -1) / prior).argmax(-1).tolist()
    got = label_likelihood_predict(lm, tok, texts, VERBALIZERS, INSTRUCTION, DEMOS, normalize="mean", calibrate=True)
    assert got == calibrated


def test_ner_prompt_batches_agree(tiny_lm):
    lm, tok = tiny_lm
    sents = [["john", "smith", "lives", "in", "paris"], ["acme", "corp"], ["the", "movie", "was", "great", "fun"]]
    one, _ = ner_prompt_predict(lm, tok, sents, ["PER"], "PER", batch_size=1, max_new_tokens=6)
    many, _ = ner_prompt_predict(lm, tok, sents, ["PER"], "PER", batch_size=3, max_new_tokens=6)
    assert one == many and [len(t) for t in one] == [5, 2, 5]


def test_parse_entities_is_strict():
    tokens = ["John", "Smith", "visited", "New", "York", "."]
    tags, rejected = parse_entities("PER: John Smith\nLOC: New York\nORG: Acme\nfoo\nLOC: Smith visited", tokens,
                                    ["PER", "LOC", "ORG"])
    assert tags == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    assert rejected == 3  # entity not in the sentence, unparseable line, overlapping span


def test_suites_list_and_validate(tmp_path):
    suites = list_suites()
    assert {"quick", "paper"} <= set(suites)
    paper = load_suite("paper")
    assert {"sst2", "sst5", "twitter_fin", "trec6", "conll2003", "wnut17"} == set(paper["datasets"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [yelp]\nmethods: []\n")
    with pytest.raises(ConfigError, match="unknown datasets \\[.yelp.\\]"):
        load_suite(str(bad))


def test_suite_seeds_per_method_dataset_filter_and_resume(tmp_path, monkeypatch):
    """Cells run as the suite says (seeds: n, datasets:, zero-shot prompting once) and --resume
    reruns nothing that results.json already holds."""
    from labeltune.bench import runner

    root = tmp_path / "data"
    for name, header, rows in (("sst2", "sentence\tlabel", ["good film\t1", "bad film\t0"]),):
        (root / name).mkdir(parents=True)
        for split in ("train.tsv", "dev.tsv"):
            (root / name / split).write_text("\n".join([header] + rows) + "\n")
    calls = []

    def fake(ds, method, suite, model, train_file, eval_file, seed, work):
        calls.append((ds.name, method["name"], seed))
        return {"accuracy": 0.5 + 0.1 * seed, "macro_f1": 0.5, "n": 2}

    monkeypatch.setattr(runner, "_METHODS", {"ls": fake, "prompt": fake, "encoder": fake})
    suite = {"name": "t", "datasets": ["sst2"], "train_size": 2, "methods": [
        {"name": "A", "kind": "ls"}, {"name": "B", "kind": "ls", "seeds": 1}, {"name": "E", "kind": "ls", "seeds": 2},
        {"name": "C", "kind": "prompt", "shots": 0}, {"name": "D", "kind": "encoder", "datasets": ["trec6"]}]}
    out = tmp_path / "out"
    runner.run_suite(suite, "default", root, out, seeds=[0, 1, 2], echo=lambda s: None)
    assert sorted(calls) == [("sst2", "A", 0), ("sst2", "A", 1), ("sst2", "A", 2), ("sst2", "B", 0), ("sst2", "C", 0),
                             ("sst2", "E", 0), ("sst2", "E", 1)]
    table = (out / "RESULTS.md").read_text()
    assert "| A | 60.0 ± 10.0 |" in table and "| B | 50.0 |" in table and "| D | — |" in table
    assert "| E | 55.0 ± 7.1 (2 seeds) |" in table  # fewer seeds than the table's most: said in the cell
    calls.clear()
    runner.run_suite(suite, "default", root, out, seeds=[0, 1, 2], resume=True, echo=lambda s: None)
    assert calls == []
    assert len(json.loads((out / "results.json").read_text())["rows"]) == 7


def test_size_sweep_runs_every_size_once_and_zero_shot_prompting_once(tmp_path, monkeypatch):
    """`train_sizes` (the sizes suite): a column per dataset and size, each method on the same subsets;
    zero-shot prompting, which reads no training data, runs once per dataset and fills every size."""
    from labeltune.bench import runner

    root = tmp_path / "data"
    (root / "sst2").mkdir(parents=True)
    rows = [f"film number {i}\t{i % 2}" for i in range(40)]
    for split in ("train.tsv", "dev.tsv"):
        (root / "sst2" / split).write_text("\n".join(["sentence\tlabel"] + rows) + "\n")
    calls = []

    def fake(ds, method, suite, model, train_file, eval_file, seed, work):
        n = len(train_file.read_text().splitlines()) - 1
        calls.append((method["name"], n))
        return {"accuracy": n / 100, "macro_f1": 0.5, "n": 10}

    monkeypatch.setattr(runner, "_METHODS", {"ls": fake, "prompt": fake, "encoder": fake})
    suite = {"name": "s", "datasets": ["sst2"], "train_sizes": {"sequence": [10, 30]}, "eval_size": 10,
             "methods": [{"name": "LS", "kind": "ls"}, {"name": "P", "kind": "prompt", "shots": 0}]}
    runner.run_suite(suite, "default", root, tmp_path / "out", echo=lambda s: None)
    assert calls == [("LS", 10), ("P", 10), ("LS", 30)]
    table = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "| method | sst2@10 (acc) | sst2@30 (acc) |" in table
    assert "| LS | 10.0 | 30.0 |" in table and "| P | 10.0 | 10.0 |" in table
    # cells that finished largest first (as --jobs runs them) still give columns in ascending size
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    results["rows"].reverse()
    assert runner.results_table(results, suite).startswith("| method | sst2@10 (acc) | sst2@30 (acc) |")


def test_jobs_run_cells_side_by_side_in_worker_processes_and_score_as_one_at_a_time(tmp_path, tiny_llama, monkeypatch):
    """--jobs 2: cells run in two spawned worker processes with the cores shared out (one thread each
    on two cores); every cell is run, recorded once, and scores exactly as when run one at a time."""
    from labeltune.bench import runner

    root = tmp_path / "data"
    (root / "sst2").mkdir(parents=True)
    rows = [f"{'good' if i % 2 else 'bad'} film {i}\t{i % 2}" for i in range(40)]
    for split in ("train.tsv", "dev.tsv"):
        (root / "sst2" / split).write_text("\n".join(["sentence\tlabel"] + rows) + "\n")
    suite = {"name": "p", "datasets": ["sst2"], "train_sizes": {"sequence": [8, 16]}, "eval_size": 10,
             "train": {"epochs": 1, "batch_size": 4, "calibration": "none"},
             "methods": [{"name": "LS", "kind": "ls"}, {"name": "LS r4", "kind": "ls", "lora": {"r": 4}}]}
    monkeypatch.setattr(runner, "_cores", lambda: 2)
    one = runner.run_suite(suite, str(tiny_llama), root, tmp_path / "one", echo=lambda s: None)
    two = runner.run_suite(suite, str(tiny_llama), root, tmp_path / "two", echo=lambda s: None, jobs=2)

    def cells(results):
        return {(r["train_size"], r["method"]): (r["accuracy"], r["macro_f1"], r["n_eval"]) for r in results["rows"]}

    assert len(two["rows"]) == 4 and cells(two) == cells(one)
    assert {r["threads"] for r in two["rows"]} == {1}
    assert "2 cell(s) at a time" in (tmp_path / "two" / "RESULTS.md").read_text()
    # a run directory per size and method: two sizes of one method may train at the same time
    runs = [p for p in (tmp_path / "two" / "work").glob("run-*") if p.is_dir() and "checkpoints" not in p.name]
    assert len(runs) == 4
    with pytest.raises(ConfigError, match="--jobs must be at least 1"):
        runner.run_suite(suite, str(tiny_llama), root, tmp_path / "z", jobs=0)


def test_token_subsets_split_sentences_as_the_conll_reader_does(tmp_path):
    """WNUT-17's training file separates most sentences by a line holding only a tab: a subset of n
    sentences must hold n sentences as the reader reads them (a split on empty lines alone once made
    the "1,000-sentence" WNUT subset all 3,394); its dev file has a line holding only a byte-order mark,
    which the reader also reads as a break."""
    from labeltune.bench.datasets import DATASETS, prepare
    from labeltune.config import DataSettings
    from labeltune.data.conll import read_token_examples

    root = tmp_path / "data"
    (root / "wnut17").mkdir(parents=True)
    seps = ["\n\n", "\n\t\n", "\n \t \n", "\n\n\n", "\n\ufeff\n"]
    sentences = [f"word{i}\tO\nPlace{i}\tB-location" for i in range(40)]
    text = "-DOCSTART- -X- -X- O\n\n" + "".join(s + seps[i % len(seps)] for i, s in enumerate(sentences))
    for name in ("wnut17train.conll", "emerging.dev.conll"):
        (root / "wnut17" / name).write_text(text)
    train, dev = prepare(DATASETS["wnut17"], root, 10, 0, tmp_path / "work", 25)
    got = read_token_examples(str(train), DataSettings())
    assert len(got) == 10 and len({tuple(e.tokens) for e in got}) == 10
    assert all(len(e.tokens) == 2 and e.tags == ["O", "B-location"] for e in got)
    assert len(read_token_examples(str(dev), DataSettings())) == 25


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_bench_workers_end_with_their_parent():
    """A bench stopped with SIGTERM/SIGKILL (``pkill -f 'labeltune bench'`` reaches the parent only) must
    not leave its worker processes computing cells on the cores."""
    import os
    import signal
    import subprocess
    import time

    parent = subprocess.Popen([sys.executable, "-c", """
import multiprocessing, os, time
from concurrent.futures import ProcessPoolExecutor
from labeltune.bench.runner import _init_worker
if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(1, os.getpid()))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)
    time.sleep(120)
"""], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(100):  # the kernel signals at once; allow for a loaded machine
        try:
            if Path(f"/proc/{worker}/stat").read_text().split(") ")[-1].startswith("Z"):
                return  # ended, not yet reaped by whichever process adopted it
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail(f"worker {worker} outlived its parent")


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_bench_worker_whose_parent_is_already_gone_ends_at_once():
    """The parent may die between spawning a worker and the worker's prctl: then no signal will ever
    come, so the worker must notice (its parent is no longer the pid it was given) and end itself."""
    import subprocess

    code = "from labeltune.bench.runner import _init_worker; _init_worker(1, {parent}); print('computing')"
    gone = subprocess.run([sys.executable, "-c", code.format(parent=1)], capture_output=True, text=True, timeout=120)
    assert gone.returncode == 1 and "computing" not in gone.stdout  # pid 1 is not this process's parent
    alive = subprocess.run([sys.executable, "-c", code.format(parent="__import__('os').getppid()")],
                           capture_output=True, text=True, timeout=120)
    assert alive.returncode == 0 and "computing" in alive.stdout
