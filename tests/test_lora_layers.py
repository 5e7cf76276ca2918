"""lora.layers: adapters on a chosen set of decoder layers; below the lowest one nothing is trained, so
the backward pass never runs there (what makes `from:0.5` faster)."""

import pytest
import torch

from helpers import tiny_label_model

from labeltune import LabelModel, RunConfig
from labeltune.data.batching import collate
from labeltune.errors import ConfigError

TEXTS = ["john smith lives in paris", "the movie was great"]


def _model(model_dir, layers: str, targets: str = "all-linear", task: str = "token") -> LabelModel:
    labels = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC") if task == "token" else ("neg", "pos")
    return tiny_label_model(model_dir, labels, lora={"target_modules": targets, "layers": layers}, task=task,
                            depth="all")  # both layers (the token default keeps 0.67: one of two)


def _adapted(model) -> set[tuple[int, str]]:
    """{(layer index, module leaf name)} of every LoRA-adapted linear layer."""
    out = set()
    for name, module in model.backbone.named_modules():
        if hasattr(module, "lora_A") and len(module.lora_A):
            parts = name.split(".")
            index = next(int(p) for p in parts if p.isdigit())
            out.add((index, parts[-1]))
    return out


def test_adapters_sit_only_on_the_chosen_layers(tiny_llama):
    every = _adapted(_model(tiny_llama, "all"))
    upper = _adapted(_model(tiny_llama, "from:1"))
    assert {i for i, _ in every} == {0, 1}
    # all-linear on layer 1 alone adapts exactly what all-linear adapts there: the 7 projections
    assert upper == {(i, leaf) for i, leaf in every if i == 1}
    assert len(upper) == 7
    assert _adapted(_model(tiny_llama, "0", targets="q_proj,v_proj")) == {(0, "q_proj"), (0, "v_proj")}
    # a fraction of the depth, as unmask reads it: from:0.5 of 2 layers = layer 1
    assert _adapted(_model(tiny_llama, "from:0.5")) == upper


def test_the_backward_pass_stops_at_the_lowest_adapted_layer(tiny_llama):
    def grads_reach_layer_0(model) -> bool:
        seen = []
        hook = model.base_model.layers[0].register_forward_hook(
            lambda module, args, output: seen.append((output[0] if isinstance(output, tuple) else output).requires_grad))
        model.train()
        pieces, _ = model.task.pieces(model.encode(TEXTS)[0])
        batch = collate([[i] for i in range(len(pieces))], pieces, model.tokenizer.pad_token_id, "none")
        model(batch).logits.sum().backward()
        hook.remove()
        return seen[0]

    assert grads_reach_layer_0(_model(tiny_llama, "all"))
    upper = _model(tiny_llama, "from:1")
    assert not grads_reach_layer_0(upper)  # no graph is built below layer 1
    assert all(p.grad is not None for n, p in upper.named_parameters() if p.requires_grad and "lora_" in n)


@pytest.mark.parametrize("task", ["token", "sequence"])
def test_a_run_with_upper_adapters_saves_and_reloads_to_the_same_logits(tmp_path, tiny_llama, task):
    model = _model(tiny_llama, "from:1", task=task)
    model.save_pretrained(tmp_path / "run")
    loaded = LabelModel.from_pretrained(tmp_path / "run")
    assert loaded.config.lora.layers == "from:1"
    assert _adapted(loaded) == _adapted(model)
    enc, _ = model.encode(TEXTS)
    for a, b in zip(model.logits(enc), loaded.logits(enc)):
        assert torch.equal(a, b)


def test_layers_that_adapt_nothing_or_do_not_exist_are_refused(tiny_llama):
    for spec in ("none", "from:x", "1,,z"):
        with pytest.raises(ConfigError, match="lora.layers"):
            RunConfig.from_dict({"lora": {"layers": spec}})
    with pytest.raises(ConfigError, match=r"lora.layers='from:5'.*0\.\.1"):
        _model(tiny_llama, "from:5")
    with pytest.raises(ConfigError, match=r"lora.layers='0,7'.*\[7\]"):
        _model(tiny_llama, "0,7")


def test_the_layers_are_the_tasks_default_saved_resolved_and_old_runs_read_as_all(tmp_path, tiny_llama):
    import json

    from labeltune.rundir import read_run
    from labeltune.tasks import get_task

    for task in ("sequence", "token"):
        cfg = RunConfig.from_dict({"model": {"name": str(tiny_llama), "task": task}})
        assert cfg.lora.layers is None
        assert get_task(task).with_defaults(cfg).lora.layers == get_task(task).default_lora["layers"]
    model = _model(tiny_llama, "from:1")
    model.save_pretrained(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lora"]["layers"] == "from:1"
    # a run written before lora.layers existed had adapters on every layer
    raw = json.loads((tmp_path / "run" / "config.json").read_text())
    del raw["lora"]["layers"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(raw))
    assert read_run(tmp_path / "run").config.lora.layers == "all"
