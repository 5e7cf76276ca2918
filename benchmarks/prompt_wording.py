"""How the prompting baseline's wording was chosen (docs/RESULTS.md): for each sequence dataset, the
question before or after the text, label words lower-case or capitalised, scored zero-shot by label
log-likelihood (per token) — raw and contextually calibrated — on 200 *training* examples (seed 7),
never on the evaluation split. Embedded SmolLM2-135M-Instruct in bf16, as `labeltune bench` runs it.

    .venv/bin/python benchmarks/prompt_wording.py          # ~2 minutes on 2 CPU cores
"""

from __future__ import annotations

import torch

from common import SHARED

QUESTIONS = {  # dataset -> (field name, question); "before" puts the question first
    "sst2": ("Review", "What is the sentiment of this movie review? Answer positive or negative.",
             "Is the sentiment of this movie review positive or negative?"),
    "sst5": ("Review", "How positive is this movie review? Answer terrible, bad, neutral, good or great.",
             "How positive is this movie review: terrible, bad, neutral, good or great?"),
    "twitter_fin": ("Tweet", "Is this financial tweet bearish, bullish or neutral?",
                    "Is this financial tweet bearish, bullish or neutral?"),
    "trec6": ("Question", "What does this question ask for? Answer abbreviation, description, entity, human, "
              "location or number.", "What does this question ask for: abbreviation, description, entity, human, "
              "location or number?"),
}


def main() -> None:
    from pathlib import Path

    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from labeltune.backbone import resolve_model_dir
    from labeltune.baselines.prompting import CONTENT_FREE, label_scores
    from labeltune.bench.datasets import DATASETS, prepare
    from labeltune.bench.runner import label_ids, label_names, read_split

    transformers.utils.logging.set_verbosity_error()
    src = resolve_model_dir("default")
    tok = AutoTokenizer.from_pretrained(src)
    tok.pad_token = tok.pad_token or tok.eos_token
    lm = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).eval()
    print("| dataset | question | label words | raw acc | calibrated acc |\n|---|---|---|---|---|")
    for name, (field, before_q, after_q) in QUESTIONS.items():
        ds = DATASETS[name]
        train, _ = prepare(ds, SHARED, 200, 7, Path("bench_out/prompt_wording"))
        examples = read_split(ds, train)
        names = label_names(examples)
        gold = torch.tensor(label_ids(examples, names))
        for where, instruction in (("before", f"{before_q}\n{field}: {{text}}"), ("after", f"{field}: {{text}}\n{after_q}")):
            for case in ("lower", "Capitalised"):
                words = [ds.verbalizers[n] if case == "lower" else ds.verbalizers[n].capitalize() for n in names]
                scores, lengths = label_scores(lm, tok, [e.text for e in examples], words, instruction)
                free, _ = label_scores(lm, tok, list(CONTENT_FREE), words, instruction)
                per_token = torch.tensor(lengths, dtype=scores.dtype)
                scores, free = scores / per_token, free / per_token
                prior = torch.softmax(free, -1).mean(0)
                calibrated = (torch.log_softmax(scores, -1) - prior.log()).argmax(-1)
                raw_acc = (scores.argmax(-1) == gold).float().mean()
                print(f"| {name} | {where} | {case} | {100 * raw_acc:.1f} | {100 * (calibrated == gold).float().mean():.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
