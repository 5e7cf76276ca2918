"""The schedule sized to the data (issue 10): bounded, monotone, explicit values win, said and saved."""

import json

import pytest

from labeltune.recipe import MAX_EPOCHS, MAX_STEPS, MIN_STEPS, size_recipe

SIZES = [10, 30, 100, 249, 250, 300, 1000, 1499, 1500, 2000, 5000, 20_000, 67_349, 100_000, 128_000, 1_000_000]


def test_steps_are_bounded_and_grow_with_the_data():
    recipes = [size_recipe(n, 24) for n in SIZES]
    steps = [r.steps for r in recipes]
    assert steps == sorted(steps), steps  # monotone: more data never means fewer steps
    assert all(r.steps <= MAX_STEPS and r.epochs <= MAX_EPOCHS for r in recipes)
    for n, r in zip(SIZES, recipes):  # small sets get MIN_STEPS steps unless MAX_EPOCHS passes come first
        assert r.steps >= MIN_STEPS or r.epochs == MAX_EPOCHS, (n, r)
    assert size_recipe(100, 24).steps >= 150 and size_recipe(300, 24).steps >= 150  # 0.2 gave them ~4 and ~25
    assert size_recipe(1_000_000, 24).steps == MAX_STEPS and size_recipe(1_000_000, 24).epochs < 1


def test_two_thousand_examples_keep_the_measured_sst2_schedule():
    # docs/BENCHMARKS.md: batch 32, 2.5 epochs at 2,000 SST-2 sentences (88.8%)
    r = size_recipe(2000, 24)
    assert (r.batch_size, r.lr, r.warmup_ratio) == (32, 1e-3, 0.1) and abs(r.epochs - 2.5) < 0.02


def test_long_examples_get_smaller_batches():
    assert size_recipe(300, 24).batch_size == 16
    assert size_recipe(300, 400).batch_size == 8 and size_recipe(300, 2000).batch_size == 4


@pytest.mark.parametrize("given", [dict(batch_size=4), dict(epochs=1.5), dict(lr=3e-4), dict(warmup_ratio=0.0),
                                   dict(batch_size=64, epochs=2, lr=2e-4, warmup_ratio=0.05)])
def test_explicit_values_win(given):
    r = size_recipe(300, 24, **given)
    for key, value in given.items():
        assert getattr(r, key) == value
    line = r.line()
    assert line.count("(set)") == len(given) and line.count("(recipe)") == 4 - len(given)
    if "batch_size" in given and "epochs" not in given:  # the passes adapt to the batch that was set
        assert r.steps >= MIN_STEPS


def test_the_line_is_printed_and_the_values_saved(tmp_path, tiny_llama):
    import labeltune

    rows = [{"text": f"the movie was {w}", "label": w} for w in ("great", "awful")] * 10
    said = []
    model = labeltune.train(rows, model=str(tiny_llama), output=tmp_path / "run", progress=False, echo=said.append)
    line = next(s for s in said if s.startswith("20 examples"))
    assert "batch 8 (recipe)" in line and "30 epochs (recipe)" in line and "lr 0.001 (recipe)" in line
    assert line.endswith("warm-up 10% (recipe)") and f"= {model.metrics['steps']} steps" in line
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (saved["batch_size"], saved["epochs"], saved["lr"], saved["warmup_ratio"]) == (8, 30.0, 1e-3, 0.1)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["recipe"] == line
    # explicit values are kept as given and said to be set
    said.clear()
    labeltune.train(rows, model=str(tiny_llama), epochs=1, batch_size=5, progress=False, echo=said.append)
    assert any(s.startswith("20 examples") and "batch 5 (set), 1 epochs (set) = 4 steps" in s for s in said), said


def test_a_tasks_floor_on_passes_keeps_steps_monotone_bounded_and_is_said():
    """The token task's floor (min_passes=10 passes of 16 examples, at most PASS_FLOOR_STEPS steps):
    1,000 sentences get 10 passes instead of 2.4; steps still never fall as the data grow (also where
    the recipe's batch doubles: 249 -> 250, 1,499 -> 1,500) and stay within the bounds."""
    from labeltune.recipe import PASS_FLOOR_STEPS

    recipes = [size_recipe(n, 24, min_passes=10) for n in SIZES]
    steps = [r.steps for r in recipes]
    assert steps == sorted(steps), steps
    assert all(r.steps <= MAX_STEPS and r.epochs <= MAX_EPOCHS for r in recipes)
    r = size_recipe(1000, 24, min_passes=10)
    assert (r.batch_size, r.steps, r.epochs) == (16, 625, 10.0)
    assert "10 epochs (recipe: this task's floor, 10 passes of 16, at most 640 steps) = 625 steps" in r.line()
    assert size_recipe(5000, 24, min_passes=10).steps == PASS_FLOOR_STEPS  # bounded: 4.1 passes there
    big = size_recipe(100_000, 24, min_passes=10)  # large sets: the 2.5-pass rule, as without a floor
    assert big.steps == size_recipe(100_000, 24).steps and "floor" not in big.line()
    assert size_recipe(100, 24, min_passes=10).steps == size_recipe(100, 24).steps == MIN_STEPS
    # an explicit batch: the floor counts passes at that batch; explicit epochs: no floor at all
    assert size_recipe(1000, 24, batch_size=8, min_passes=10).steps == PASS_FLOOR_STEPS  # 10 x 1000 / 8, capped
    assert size_recipe(1000, 24, epochs=2, min_passes=10).epochs == 2


def test_a_token_run_trains_the_tasks_floor_of_passes(tmp_path, tiny_llama):
    import labeltune
    from labeltune.tasks import get_task

    assert get_task("token").min_passes == 10 and get_task("sequence").min_passes == 0
    rows = [{"tokens": ["John", "lives", "in", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}] * 300
    said = []
    model = labeltune.train(rows, task="token", model=str(tiny_llama), max_steps=1, progress=False, echo=said.append)
    line = next(s for s in said if s.startswith("300 examples"))
    assert "batch 16 (recipe), 10 epochs (recipe: this task's floor" in line and "= 1 steps" in line
    assert model.config.train.epochs == 188 / (300 / 16)  # ceil(10 x 300 / 16) steps, saved unrounded
