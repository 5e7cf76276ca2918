"""train.ema_decay: a moving average of the trainable weights is what is scored, kept and saved; a
resumed run ends where an uninterrupted one ends."""

import json

import pytest
import torch

from helpers import SENTIMENT_ROWS

from labeltune import ConfigError, LabelModel, RunConfig
from labeltune.checkpoint import Checkpoints
from labeltune.weight_average import WeightAverage

ROWS = SENTIMENT_ROWS


def test_the_average_follows_the_warmed_up_recursion_and_swaps_in_and_out():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    average = WeightAverage([p], decay=0.9)
    expected = [1.0, -2.0]
    for t, value in enumerate([3.0, 5.0, -1.0, 0.5, 2.0] * 10, start=1):
        with torch.no_grad():
            p.fill_(value)
        average.update()
        d = min(0.9, (1 + t) / (10 + t))  # by hand: the decay warms up, then stays at 0.9
        expected = [d * e + (1 - d) * value for e in expected]
        torch.testing.assert_close(average.shadow[0], torch.tensor(expected), atol=1e-6, rtol=0)
    with average.applied():
        torch.testing.assert_close(p.detach(), torch.tensor(expected), atol=1e-6, rtol=0)
    assert torch.equal(p.detach(), torch.tensor([2.0, 2.0]))  # the raw weights are back
    copy = WeightAverage([torch.nn.Parameter(torch.zeros(2))], decay=0.9)
    copy.load_state_dict(average.state_dict())
    assert copy.updates == 50 and torch.equal(copy.shadow[0], average.shadow[0])


def test_ema_decay_is_validated():
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ConfigError, match="ema_decay"):
            RunConfig.from_dict({"train": {"ema_decay": bad}})
    assert RunConfig.from_dict({"train": {"ema_decay": 0.99}}).train.ema_decay == 0.99


def _kwargs(tiny, **more):
    return dict(model=str(tiny), progress=False, epochs=3, batch_size=4, checkpoint_every=2, seed=3,
                mixed_precision="no", calibration="none", echo=lambda s: None, **more)


def test_the_averaged_weights_are_scored_and_saved(tmp_path, tiny_llama):
    import labeltune

    plain = labeltune.train(ROWS, ROWS[:8], **_kwargs(tiny_llama))
    averaged = labeltune.train(ROWS, ROWS[:8], output=tmp_path / "ref", **_kwargs(tiny_llama, ema_decay=0.8))
    # not the last weights: the averaged run's weights differ from the same run without the average
    a_state, plain_state = averaged.trainable_state(), plain.trainable_state()
    assert not all(torch.allclose(a_state[k], plain_state[k], atol=1e-4) for k in a_state)
    # what was scored is what was saved: the run reloaded gives its best epoch's evaluation loss
    metrics = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    again = LabelModel.from_pretrained(tmp_path / "ref").evaluate(ROWS[:8])
    assert again["loss"] == pytest.approx(metrics["loss"], abs=1e-5)
    assert again["loss"] != pytest.approx(plain.metrics["loss"], abs=1e-4)


def test_a_resumed_run_continues_the_average(tmp_path, tiny_llama, monkeypatch):
    """Without evaluation data the run ends on the average of its last steps, so the final weights
    depend on the average carried through the checkpoint (a fresh average at the resume would differ)."""
    import labeltune

    reference = labeltune.train(ROWS, output=tmp_path / "ref", **_kwargs(tiny_llama, ema_decay=0.8))
    last = labeltune.train(ROWS, **_kwargs(tiny_llama)).trainable_state()  # the same run's last weights
    assert not all(torch.allclose(v, last[k], atol=1e-4) for k, v in reference.trainable_state().items())
    real = Checkpoints.save  # killed right after the step-8 checkpoint (mid-epoch 2)

    def save_then_die(self, step, *a, **k):
        real(self, step, *a, **k)
        if step == 8:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoints, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        labeltune.train(ROWS, output=tmp_path / "run", **_kwargs(tiny_llama, ema_decay=0.8))
    monkeypatch.setattr(Checkpoints, "save", real)
    resumed = labeltune.train(ROWS, output=tmp_path / "run", resume=True, **_kwargs(tiny_llama, ema_decay=0.8))
    assert resumed.metrics["steps"] == reference.metrics["steps"] == 18
    ref_state, resumed_state = reference.trainable_state(), resumed.trainable_state()
    for name, p in ref_state.items():  # LoRA and head
        torch.testing.assert_close(resumed_state[name], p, atol=1e-6, rtol=0)
