"""Sequence head: equals transformers' stock head; invariant to padding amount/side and pad == eos."""

import pytest
import torch
from helpers import make_tiny_dir, manual_batch, tiny_label_model
from transformers import AutoModelForSequenceClassification

TEXTS = ["the movie was great", "bad", "john smith lives in new york city", "the plot was boring"]


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_same_logits_as_llama_for_sequence_classification(tmp_path, pad_is_eos):
    path = make_tiny_dir(tmp_path, "llama", head="seq", pad_is_eos=pad_is_eos)
    ref = AutoModelForSequenceClassification.from_pretrained(path).eval()
    ours = tiny_label_model(path, pooling="last")
    with torch.no_grad():  # LoRA B = 0 gives the pretrained weights; copy the stock head
        for name, p in ours.named_parameters():
            if "lora_B" in name:
                p.zero_()
        ours.head.score.weight.copy_(ref.score.weight)
    assert ours.head.score.bias is None  # the default head is the stock one: no bias
    tok = ours.tokenizer
    texts = TEXTS if not pad_is_eos else TEXTS[:1] * 2  # stock head with pad == eos needs equal lengths
    enc = tok(texts, padding=True, return_tensors="pt")
    batch = manual_batch([tok(t)["input_ids"] for t in texts], tok.pad_token_id)
    with torch.no_grad():
        expected = ref(**enc).logits
        got = ours(batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("pad_is_eos", [False, True])
@pytest.mark.parametrize("unmask", ["none", "all"])  # "all": the paper's unLLaMA-seq
def test_logits_do_not_depend_on_padding(tmp_path, pooling, pad_is_eos, unmask):
    path = make_tiny_dir(tmp_path, "llama", pad_is_eos=pad_is_eos)
    model = tiny_label_model(path, pooling=pooling, unmask=unmask)
    tok = model.tokenizer
    seqs = [tok(t)["input_ids"] for t in TEXTS]
    with torch.no_grad():
        alone = torch.cat([model(manual_batch([s], tok.pad_token_id)).logits for s in seqs])
        for left in (False, True):
            for extra in (0, 5):
                got = model(manual_batch(seqs, tok.pad_token_id, extra_pad=extra, left=left)).logits
                torch.testing.assert_close(got, alone, atol=1e-5, rtol=0)


def test_pooling_reads_the_mask_not_pad_ids(tmp_path):
    """pad == eos and a real eos inside the text: 'last' must still pick the last real token."""
    path = make_tiny_dir(tmp_path, "llama", pad_is_eos=True)
    model = tiny_label_model(path, pooling="last")
    eos = model.tokenizer.eos_token_id
    seq = model.tokenizer("the movie")["input_ids"] + [eos]
    with torch.no_grad():
        a = model(manual_batch([seq], eos)).logits
        b = model(manual_batch([seq, seq + [5, 6]], eos)).logits[:1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family,pooling", [("llama", "last"), ("mistral", "last"),  # mistral: a sliding-window cache
                                            ("llama", "mean"), ("llama", "max")])
def test_shared_template_prefix_equals_inline_prefix(tmp_path, family, pooling, monkeypatch):
    """A template's prefix is run once per batch and reused from the cache: same logits and same
    gradients as running it inside every row, where pooling skips it too."""
    from labeltune import LabelModel, RunConfig
    from labeltune.data import LabelMap
    from labeltune.data.batching import collate
    from labeltune.template import encode_texts

    path = make_tiny_dir(tmp_path, family)
    cfg = RunConfig.from_dict({"model": {"name": str(path), "pooling": pooling},
                               "data": {"template": "the film was {text} fun"},
                               "lora": {"target_modules": "q_proj,v_proj", "dropout": 0.0}})
    torch.manual_seed(0)
    model = LabelModel.from_config(cfg, LabelMap(["neg", "pos"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    assert model.template.prefix_ids == model.tokenizer("the film was")["input_ids"]
    from labeltune.data import Encoded

    ids, _ = encode_texts(model.tokenizer, TEXTS, None, 64, template=cfg.data.template)
    batch = collate([[i] for i in range(len(ids))], [Encoded(x, i % 2) for i, x in enumerate(ids)],
                    model.tokenizer.pad_token_id, "single_label")
    calls = []
    import labeltune.modeling

    class CountingSharedPrefix(labeltune.modeling.SharedPrefix):
        def run(self, *a, **k):
            calls.append(1)
            return super().run(*a, **k)

    monkeypatch.setattr(labeltune.modeling, "SharedPrefix", CountingSharedPrefix)

    def run():
        model.zero_grad()
        out = model(batch)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    shared_logits, shared_grads = run()
    assert calls == [1]
    monkeypatch.setattr(model, "_shareable_prefix", lambda *a: 0)  # the plain path: the prefix inside every row
    inline_logits, inline_grads = run()
    assert calls == [1]
    torch.testing.assert_close(shared_logits, inline_logits, atol=1e-5, rtol=0)
    for n in inline_grads:
        torch.testing.assert_close(shared_grads[n], inline_grads[n], atol=1e-5, rtol=1e-4)


def test_inference_runs_in_the_runs_mixed_precision(tmp_path):
    # a run trained under bf16 autocast is evaluated and served under it; "no" stays fp32
    model = tiny_label_model(make_tiny_dir(tmp_path, "llama"))
    encoded, _ = model.encode(["the film was good", "a dull and tired plot"])
    fp32 = torch.stack(model.logits(encoded))
    model.config.train.mixed_precision = "bf16"
    bf16 = torch.stack(model.logits(encoded))
    assert not torch.equal(fp32, bf16)  # bf16 matmuls round differently
    torch.testing.assert_close(bf16, fp32, atol=0.05, rtol=0.05)
    model.config.train.mixed_precision = "no"
    assert torch.equal(torch.stack(model.logits(encoded)), fp32)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_mean_and_max_skip_the_template_prefix_and_max_its_closing(tmp_path, pooling):
    # reference by hand: one plain backbone pass per text, pooled over the text (+ closing tokens for mean)
    from labeltune import LabelModel, RunConfig
    from labeltune.data import LabelMap

    cfg = RunConfig.from_dict({"model": {"name": str(make_tiny_dir(tmp_path, "llama")), "pooling": pooling},
                               "data": {"template": "the film was {text} fun"},
                               "lora": {"target_modules": "q_proj,v_proj"}, "train": {"mixed_precision": "no"}})
    torch.manual_seed(0)
    model = LabelModel.from_config(cfg, LabelMap(["neg", "pos"])).eval()
    tok = model.tokenizer
    assert model.template.suffix_ids == tok(" fun", add_special_tokens=False)["input_ids"]
    texts = ["great", "the plot was boring and the actors were awful"]
    got = torch.stack(model.logits(model.encode(texts)[0]))
    P, S = len(model.template.prefix_ids), len(model.template.suffix_ids)
    with torch.no_grad():
        for text, row in zip(texts, got):
            ids = tok(cfg.data.template.format(text=text))["input_ids"]
            assert ids[:P] == model.template.prefix_ids and ids[-S:] == model.template.suffix_ids
            hidden = model.backbone(input_ids=torch.tensor([ids])).last_hidden_state[0]
            pooled = hidden[P:].mean(0) if pooling == "mean" else hidden[P:len(ids) - S].max(0).values
            torch.testing.assert_close(row, model.head.score(pooled), atol=1e-5, rtol=0)


def test_focal_loss_is_cross_entropy_at_gamma_0_and_down_weights_what_is_already_right():
    import torch.nn.functional as F

    from labeltune.heads import label_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 4, generator=g)
    labels = torch.randint(0, 4, (12,), generator=g)
    labels[3] = -100
    weights = torch.tensor([0.5, 1.0, 2.0, 1.5])
    for w in (None, weights):
        ce = F.cross_entropy(logits, labels, weight=w, ignore_index=-100)
        torch.testing.assert_close(label_loss(logits, labels, "single_label", w, 0.0), ce)
        # by hand: mean over kept targets (weighted) of -(1 - p)^2 log p
        keep = labels != -100
        p = logits[keep].softmax(-1).gather(1, labels[keep][:, None])[:, 0]
        ww = w[labels[keep]] if w is not None else torch.ones_like(p)
        hand = (ww * -(1 - p) ** 2 * p.log()).sum() / ww.sum()
        torch.testing.assert_close(label_loss(logits, labels, "single_label", w, 2.0), hand)
    # a confident right answer loses far more of its loss than a wrong one
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    y = torch.tensor([0])
    ratio = lambda x: float(label_loss(x, y, "single_label", None, 2.0) / label_loss(x, y, "single_label"))  # noqa: E731
    assert ratio(easy) < 0.001 and ratio(hard) > 0.5


def test_focal_gamma_is_checked():
    from labeltune import ConfigError, RunConfig

    with pytest.raises(ConfigError, match="focal_gamma=-1"):
        RunConfig.from_dict({"train": {"focal_gamma": -1}})
    with pytest.raises(ConfigError, match="focal_gamma applies to problem_type=single_label"):
        RunConfig.from_dict({"model": {"problem_type": "multi_label"}, "train": {"focal_gamma": 2}})
    assert RunConfig.from_dict({"model": {"task": "token"}, "train": {"focal_gamma": 2}}).train.focal_gamma == 2
