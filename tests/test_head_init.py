"""head_init=labels (issue 10): the label head starts from the model's output embeddings of the label
words, so that step 0 scores exactly as zero-shot prompting on those tokens under the same template."""

import pytest
import torch
from helpers import make_tiny_dir
from transformers import AutoModelForCausalLM

from labeltune import ConfigError, LabelModel, RunConfig
from labeltune.data import LabelMap

TEMPLATE = "the movie was {text} so it was"
TEXTS = ["great fun", "the plot was boring and the actors were awful", "fine", "loved the film"]


def _model(path, **model):
    cfg = RunConfig.from_dict({"model": {"name": str(path), "head_init": "labels", **model},
                               "data": {"template": TEMPLATE}, "train": {"mixed_precision": "no"}})
    torch.manual_seed(0)
    return LabelModel.from_config(cfg, LabelMap(["neg", "pos"])).eval()  # LoRA B = 0: the backbone as loaded


@pytest.mark.parametrize("tied", [False, True])
def test_step_zero_scores_equal_prompting_scores_of_the_label_tokens(tmp_path, tied):
    path = make_tiny_dir(tmp_path, "llama", head="lm", tie_word_embeddings=tied)
    model = _model(path, label_words={"neg": "bad", "pos": "great"})
    lm = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = model.tokenizer
    words = [tok("bad", add_special_tokens=False)["input_ids"][0], tok("great", add_special_tokens=False)["input_ids"][0]]
    got = model.predict(TEXTS)
    with torch.no_grad():
        for text, row in zip(TEXTS, got):
            ids = tok(TEMPLATE.format(text=text), return_tensors="pt")["input_ids"]
            prompt = torch.softmax(lm(input_ids=ids).logits[0, -1, words], -1)  # prompting: the label words' scores
            torch.testing.assert_close(torch.tensor([row["scores"]["neg"], row["scores"]["pos"]]), prompt,
                                       atol=1e-5, rtol=0)
    # and the head is not what a random init gives
    assert model.head.score.bias is None  # the sequence head has no bias (as the stock class)


def test_label_names_are_the_words_by_default_and_clashes_are_refused(tmp_path):
    path = make_tiny_dir(tmp_path, "llama", head="lm")
    cfg = RunConfig.from_dict({"model": {"name": str(path), "head_init": "labels"}, "data": {"template": TEMPLATE}})
    model = LabelModel.from_config(cfg, LabelMap(["bad", "great"]))
    table = AutoModelForCausalLM.from_pretrained(path).lm_head.weight
    ids = [model.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("bad", "great")]
    assert torch.equal(model.head.score.weight, table[ids])
    with pytest.raises(ConfigError, match="start with the same token"):
        _model(path, label_words={"neg": "zzz", "pos": "yyy"})  # both unknown to the word-level vocabulary: <unk>
    with pytest.raises(ConfigError, match="label_words=.*name=word pairs"):
        RunConfig.from_dict({"model": {"label_words": "neg:bad"}})
    assert RunConfig.from_dict({"model": {"label_words": "0=negative, 1=positive"}}).model.label_words == \
        {"0": "negative", "1": "positive"}
    with pytest.raises(ConfigError, match="head_init=labels applies to the sequence task"):
        RunConfig.from_dict({"model": {"task": "token", "head_init": "labels"}})
