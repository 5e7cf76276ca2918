"""Every bad-input case gives one clear message: file, row/line, what is wrong, the fix; the CLI
exits non-zero without a traceback."""

import subprocess
import sys

import pytest

from labeltune import DataError, RunConfig
from labeltune.config import DataSettings
from labeltune.data import LabelMap, read_text_examples


def _read(path, **settings):
    return read_text_examples(path, DataSettings(**settings))


def test_missing_column_lists_the_columns(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("sentence,label\nhello,1\n")
    with pytest.raises(DataError) as e:
        _read(f)
    msg = str(e.value)
    assert str(f) in msg and "column 'text' not found" in msg and "sentence, label" in msg and "--text-column" in msg


def test_empty_text_names_the_row(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text('text,label\nfine,1\n"  ",0\n')
    with pytest.raises(DataError, match=r"a\.csv, row 2 \(line 3\): text in column 'text' is empty"):
        _read(f)


def test_empty_label_names_the_row(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "fine", "label": 1}\n{"text": "bad", "label": ""}\n')
    with pytest.raises(DataError, match=r"a\.jsonl, line 2: label in column 'label' is empty"):
        _read(f)


def test_eval_label_never_seen_in_training(tmp_path):
    labels = LabelMap.build(["pos", "neg"])
    with pytest.raises(DataError) as e:
        labels.encode("neutral", "dev.csv", "row 7 (line 8)")
    msg = str(e.value)
    assert "dev.csv, row 7 (line 8)" in msg and "'neutral' never appears in the training data" in msg
    assert "known labels: neg, pos" in msg


@pytest.mark.parametrize("content,problem", [(None, "file not found"), ("", "file is empty"),
                                            ("   \n\n", "file is empty")])
def test_missing_or_empty_file(tmp_path, content, problem):
    f = tmp_path / "a.csv"
    if content is not None:
        f.write_text(content)
    with pytest.raises(DataError, match=problem):
        _read(f)


def test_header_only_file_has_no_examples(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("text,label\n")
    with pytest.raises(DataError, match="no examples found"):
        _read(f)


def test_not_utf8(tmp_path):
    f = tmp_path / "a.csv"
    f.write_bytes(b"text,label\n\xff\xfe bad,1\n")
    with pytest.raises(DataError, match="is not UTF-8 text.*re-save the file as UTF-8"):
        _read(f)


@pytest.mark.parametrize("name,content,where,problem", [
    ("a.csv", "text,label\nok,1\ntoo,many,fields\n", r"row 2 \(line 3\)", "expected 2 fields"),
    ("a.tsv", "text\tlabel\nok\t1\nno label here\n", r"row 2 \(line 3\)", "expected 2 fields"),
    ("a.csv", 'text,label\n"unclosed,1\n', "line 2", "malformed CSV"),
    ("a.jsonl", '{"text": "ok", "label": 1}\n{"text": "broken"\n', "line 2", "not valid JSON"),
    ("a.jsonl", '["a", 1]\n', "line 1", "expected a JSON object"),
])
def test_malformed_rows(tmp_path, name, content, where, problem):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(DataError, match=f"{where}: {problem}"):
        _read(f)


def test_unknown_extension_says_how_to_fix(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("1 hello\n")
    with pytest.raises(DataError, match="pass --format"):
        _read(f)


def test_label_text_format_and_label_delimiter(tmp_path):
    f = tmp_path / "TREC.train"
    f.write_text("DESC:manner How did serfdom develop ?\nENTY:cremat What films featured the character ?\n")
    ex = _read(f, format="label-text", label_delimiter=":")
    assert [(e.label, e.text) for e in ex] == [("DESC", "How did serfdom develop ?"),
                                              ("ENTY", "What films featured the character ?")]


def test_parquet_and_pairs(tmp_path):
    import pandas as pd

    f = tmp_path / "a.parquet"
    pd.DataFrame({"premise": ["a b", "c"], "hypothesis": ["d", "e f"], "label": [0, 1]}).to_parquet(f)
    ex = _read(f, text_column="premise", text_pair_column="hypothesis")
    assert [(e.text, e.pair, e.label) for e in ex] == [("a b", "d", 0), ("c", "e f", 1)]


def test_cli_reports_bad_input_without_traceback(tmp_path):
    f = tmp_path / "train.csv"
    f.write_text("sentence,label\nhello,1\n")
    proc = subprocess.run([sys.executable, "-m", "labeltune.cli", "train", "--train", str(f), "--output",
                           str(tmp_path / "run"), "--model", str(tmp_path / "nowhere")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "column 'text' not found; the columns are: sentence, label" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_truncation_is_counted(tiny_llama):
    from labeltune.template import encode_texts
    from labeltune.backbone import load_tokenizer

    tok = load_tokenizer(str(tiny_llama))
    ids, n = encode_texts(tok, ["the movie", "the movie was great fun and the actors were good"], None, 4)
    assert n == 1 and [len(x) for x in ids] == [2, 4]


def test_template_wraps_the_text_and_truncation_cuts_only_the_text(tiny_llama):
    from labeltune.backbone import load_tokenizer
    from labeltune.template import encode_texts

    tok = load_tokenizer(str(tiny_llama))
    template = "the film {text} was great"
    ids, n = encode_texts(tok, ["bad", "the movie was boring and the actors were awful fun"], None, 8,
                          template=template)
    assert ids[0] == tok("the film bad was great")["input_ids"]
    assert n == 1 and len(ids[1]) == 8
    assert ids[1][:3] == tok("the film the")["input_ids"] and ids[1][-2:] == tok("was great")["input_ids"]


def test_auto_template_is_the_chat_template_around_the_text():
    from helpers import make_tokenizer

    from labeltune.template import resolve_template

    tok = make_tokenizer()
    assert resolve_template("auto", tok, "sequence", False) is None  # no chat template: the text as is
    tok.chat_template = ("{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
                         "{% if add_generation_prompt %}<s> assistant {% endif %}")
    assert resolve_template("auto", tok, "sequence", False) == "<s> user {text} </s> <s> assistant "
    assert resolve_template("auto", tok, "sequence", True) == "<s> user {text}\n{pair} </s> <s> assistant "
    assert resolve_template("auto", tok, "token", False) is None
    assert resolve_template("none", tok, "sequence", False) is None
    assert resolve_template("A {text}", tok, "sequence", False) == "A {text}"


def test_template_settings_are_checked():
    from labeltune import ConfigError

    with pytest.raises(ConfigError, match="has no {text} field"):
        RunConfig.from_dict({"data": {"template": "Review:"}})
    with pytest.raises(ConfigError, match="KeyError\\('review'\\)\\); use {text} \\(and {pair}\\)"):
        RunConfig.from_dict({"data": {"template": "Review: {review}"}})
    with pytest.raises(ConfigError, match="not a valid format string"):
        RunConfig.from_dict({"data": {"template": "Review: {text"}})
    with pytest.raises(ConfigError, match="has no {pair} field for text_pair_column 'hypothesis'"):
        RunConfig.from_dict({"data": {"template": "{text}", "text_pair_column": "hypothesis"}})
    with pytest.raises(ConfigError, match="has a {pair} field but no text_pair_column"):
        RunConfig.from_dict({"data": {"template": "{text} {pair}"}})
    with pytest.raises(ConfigError, match="sequence task only"):
        RunConfig.from_dict({"model": {"task": "token"}, "data": {"template": "{text}"}})


def test_config_round_trip_and_validation(tmp_path):
    from labeltune import ConfigError

    cfg = RunConfig.from_dict({"model": {"pooling": "mean", "unmask": "from:3"}, "train": {"epochs": 2}})
    cfg.save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json") == cfg
    with pytest.warns(UserWarning, match="ignoring unknown settings"):
        RunConfig.from_dict({"model": {"pooling": "mean", "future_knob": 1}})
    with pytest.raises(ConfigError, match="pooling='avg' is not valid; choose one of last, mean, max"):
        RunConfig.from_dict({"model": {"pooling": "avg"}})
    with pytest.raises(ConfigError, match="unmask"):
        RunConfig.from_dict({"model": {"unmask": "some"}})
