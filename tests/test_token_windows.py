"""Long documents for the token task (issue 14): windows over words, each word tagged once from the
window where it has most context; a sentence that fits encodes exactly as without windows; sentences
read with their document around them; windows batch as examples of their own (memory bounded by
the token budget, whatever the document's length)."""

import random

import torch
from helpers import tiny_label_model
from hypothesis import given, settings
from hypothesis import strategies as st

from labeltune.config import DataSettings
from labeltune.data.conll import read_token_examples
from labeltune.data.examples import TokenExample
from labeltune.data.windows import word_windows
from labeltune.tasks.token import encode_token_examples

TAGS = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
FILLER = "the a movie film was is plot actors lives in works at visited".split()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_windows_label_every_word_once_in_order_and_fit(data):
    lens = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=60))
    a = data.draw(st.integers(0, len(lens) - 1))
    b = data.draw(st.integers(a + 1, len(lens)))
    room = data.draw(st.integers(4, 24))
    step = data.draw(st.integers(1, room))
    spans = word_windows(lens, a, b, room, step)
    labelled = [k for _, _, la, lb in spans for k in range(la, lb)]
    assert labelled == list(range(a, b))  # each word once, in order
    for s, e, la, lb in spans:
        assert s <= la < lb <= e and sum(lens[s:e]) <= room
    if sum(lens[a:b]) <= room:  # fits: one window holding the sentence and context while it fits
        (s, e, _, _), = spans
        assert (s == 0 or sum(lens[s - 1:e]) > room) and (e == len(lens) or sum(lens[s:e + 1]) > room)
    else:  # windows stay inside the sentence; the last one ends with it
        assert spans[0][0] == a and spans[-1][1] == b and all(a <= s and e <= b for s, e, _, _ in spans)


def test_a_word_is_labelled_where_it_has_most_context():
    # 12 one-token words in windows of 6, a new window every 3: [0,6) [3,9) [6,12)
    spans = word_windows([1] * 12, 0, 12, 6, 3)
    assert [(s, e) for s, e, _, _ in spans] == [(0, 6), (3, 9), (6, 12)]
    # word 3: 3 tokens before / 2 after in [0,6), 0 before in [3,9): the first window; word 5: none after
    # in [0,6), 2 / 3 in [3,9): the middle one; word 4: 4 / 1 and 1 / 4, a tie: the earlier window
    assert [(la, lb) for _, _, la, lb in spans] == [(0, 5), (5, 8), (8, 12)]


def _examples(rng, n, words, document=None):
    out = []
    for i in range(n):
        toks = [rng.choice(FILLER + ["paris", "london", "john"]) for _ in range(words)]
        tags = ["B-LOC" if t in ("paris", "london") else "B-PER" if t == "john" else "O" for t in toks]
        out.append(TokenExample(toks, tags, f"sentence {i + 1}", document=document))
    return out


def test_sentences_that_fit_encode_exactly_as_without_windows(tiny_llama):
    model = tiny_label_model(tiny_llama, labels=TAGS, task="token", label_alignment="all", max_length=16)
    examples = _examples(random.Random(0), 6, 10)
    for training in (False, True):
        plain, _ = encode_token_examples(model.tokenizer, examples, model.labels, model.config, training=training)
        cfg = model.config.with_overrides({"data": {"long_documents": "window"}})
        windowed, cut = encode_token_examples(model.tokenizer, examples, model.labels, cfg, training=training)
        assert cut == 0 and all(w.windows is None for w in windowed)
        assert [(e.input_ids, e.units, e.target) for e in plain] == [(e.input_ids, e.units, e.target) for e in windowed]


def test_a_sentence_of_ten_windows_is_tagged_whole_in_batches_under_the_budget(tiny_llama, monkeypatch):
    from labeltune import modeling

    model = tiny_label_model(tiny_llama, labels=TAGS, task="token", max_length=12, long_documents="window")
    long, short = _examples(random.Random(1), 1, 120)[0], _examples(random.Random(2), 1, 8)[0]
    enc, cut = model.task.encode(model, [long, short])
    assert cut == 0 and len(enc[0].windows) >= 10 and enc[1].windows is None
    pieces, owner = model.task.pieces(enc)
    assert all(len(p) <= 12 for p in pieces) and owner.count(0) == len(enc[0].windows)
    widths = []
    real_collate = modeling.collate
    monkeypatch.setattr(modeling, "collate", lambda rows, *a: widths.append(
        (len(rows), max(len(pieces[i]) for r in rows for i in r))) or real_collate(rows, *a))
    logits = model.logits(enc, max_tokens=36)
    assert [t.shape[0] for t in logits] == [120, 8]  # a tag for every word
    assert all(n * w <= 36 for n, w in widths) and len(widths) > 3  # the 120 words never in one batch
    # the long sentence's windows are its pieces: each word's logits are those of the window labelling it
    spans_logits = torch.cat([model.logits([p])[0] for p, o in zip(pieces, owner) if o == 0])
    torch.testing.assert_close(logits[0], spans_logits)
    assert len(model.task.word_tags(model, [long], enc[:1], logits[:1])[0]) == 120


def test_sentences_are_read_with_their_documents_words_around_them(tmp_path, tiny_llama):
    f = tmp_path / "docs.conll"
    f.write_text("-DOCSTART- O\n\njohn B-PER\nlives O\n\nin O\nparis B-LOC\n\nthe O\nplot O\n\n"
                 "-DOCSTART- O\n\nacme B-ORG\ncorp I-ORG\n\n")
    examples = read_token_examples(f, DataSettings())
    assert [e.document for e in examples] == [0, 0, 0, 1]
    model = tiny_label_model(tiny_llama, labels=("O", "B-LOC", "B-ORG", "I-ORG", "B-PER"), task="token",
                             max_length=16, long_documents="window")
    enc, _ = model.task.encode(model, examples)
    vocab = model.tokenizer.convert_ids_to_tokens
    assert vocab(enc[1].input_ids) == ["john", "lives", "in", "paris", "the", "plot"]  # its document's words
    assert [u for u in enc[1].units] == [-1, -1, 0, 1, -1, -1] and enc[1].target == [0, 1]
    assert vocab(enc[3].input_ids) == ["acme", "corp"]  # another document: no context
    narrow = model.config.with_overrides({"data": {"max_length": 4}})  # 4 tokens: one word on each side
    enc4, _ = encode_token_examples(model.tokenizer, examples, model.labels, narrow)
    assert vocab(enc4[1].input_ids) == ["lives", "in", "paris", "the"]
    # JSONL / in-memory rows name the document in a column
    rows = [{"tokens": ["john"], "tags": ["B-PER"], "document": "d1"}, {"tokens": ["paris"], "tags": ["B-LOC"],
                                                                         "document": "d1"}]
    assert [e.document for e in read_token_examples(rows, DataSettings(long_documents="window"))] == ["d1", "d1"]
    assert [e.document for e in read_token_examples(rows, DataSettings())] == [None, None]  # read only when used
    rows[1]["document"] = 2.0  # pandas: an integer column with gaps is float
    assert [e.document for e in read_token_examples(rows, DataSettings(long_documents="window"))] == ["d1", 2]


def test_windows_tag_what_truncation_cuts_off_and_the_run_round_trips(tmp_path, tiny_llama):
    import labeltune
    from labeltune import LabelModel

    rng = random.Random(3)
    train = [{"tokens": e.tokens, "tags": e.tags} for e in _examples(rng, 24, 40)]
    dev = [{"tokens": e.tokens, "tags": e.tags} for e in _examples(rng, 12, 40)]
    # the head at 10x (not the token default's 1x): a random tiny model learns this synthetic tagging in
    # 6 epochs so (F1 0.79 at 1x); what is tested is windows against truncation, not the default's rate
    common = dict(model=str(tiny_llama), task="token", max_length=12, epochs=6, batch_size=8, lr=5e-3, seed=0,
                  head_lr_scale=10, unmask="none", progress=False, mixed_precision="no", echo=lambda s: None)
    windowed = labeltune.train(train, dev, long_documents="window", output=tmp_path / "run", **common)
    truncated = labeltune.train(train, dev, **common)
    # 12 tokens of 40-word sentences: truncation tags 70% of the words O. Observed F1 1.00 and 0.46.
    assert windowed.metrics["f1"] >= 0.9, windowed.metrics["f1"]
    assert truncated.metrics["f1"] <= 0.6, truncated.metrics["f1"]
    assert windowed.metrics["truncated_train_examples"] == 0 and windowed.metrics["train_examples"] == 24
    loaded = LabelModel.from_pretrained(tmp_path / "run")
    text = " ".join(dev[0]["tokens"])
    row = loaded.predict(text)
    assert row["tags"] == windowed.predict(text)["tags"] and len(row["tags"]) == 40
    assert {e["text"] for e in row["entities"]} <= {"paris", "london", "john"} and row["entities"]


def test_a_documents_sentences_read_as_running_text_with_a_real_tokenizer():
    from labeltune import RunConfig
    from labeltune.backbone import load_tokenizer, resolve_model_dir
    from labeltune.data import LabelMap
    from labeltune.template import special_tokens

    tok = load_tokenizer(resolve_model_dir("default"))  # SmolLM2's BPE: "He" and " He" differ
    examples = [TokenExample(["John", "lives", "here", "."], ["B-PER", "O", "O", "O"], "s1", document=0),
                TokenExample(["He", "works", "."], ["O", "O", "O"], "s2", document=0)]
    cfg = RunConfig.from_dict({"model": {"task": "token"}, "data": {"long_documents": "window", "max_length": 64}})
    enc, _ = encode_token_examples(tok, examples, LabelMap(["O", "B-PER"], "single_label"), cfg)
    prefix, suffix = special_tokens(tok)
    body = enc[1].input_ids[len(prefix): len(enc[1].input_ids) - len(suffix)]
    assert body == tok("John lives here . He works .", add_special_tokens=False)["input_ids"]
    assert tok.decode(body) == "John lives here . He works ."
    # alone, a sentence starts the text: no leading space, as without windows
    alone = [TokenExample(["He", "works", "."], None, "s")]
    plain, _ = encode_token_examples(tok, alone, None, cfg.with_overrides({"data": {"long_documents": "truncate"}}))
    assert encode_token_examples(tok, alone, None, cfg)[0][0].input_ids == plain[0].input_ids
