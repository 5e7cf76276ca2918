"""Does torch.compile or a fused loss pay on this machine? labeltune's training step (bucketed batches
of 32 SST-2 sentences, bf16 autocast where native, LoRA r12 q/v) eager vs every decoder layer compiled
in place (``layer.compile(dynamic=True)``: state-dict keys unchanged), and the share of the forward
pass spent in the label head + loss (the most a fused cross-entropy could save).

    .venv/bin/python benchmarks/compile_probe.py eager
    .venv/bin/python benchmarks/compile_probe.py compile

Run the two modes as separate processes (one at a time) so neither inherits the other's caches.
"""

from __future__ import annotations

import json
import random
import sys
import time

import torch

from common import SHARED, read_tsv, timed_label_steps


def main(mode: str) -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    from labeltune import LabelModel, RunConfig
    from labeltune.backbone import resolve_model_dir
    from labeltune.data import Encoded, LabelMap
    from labeltune.data.batching import collate, plan_batches
    from labeltune.precision import resolve_mixed_precision

    bf16 = resolve_mixed_precision("auto") == "bf16"
    cfg = RunConfig.from_dict({"model": {"name": resolve_model_dir("default")}, "data": {"template": "none"},
                               "train": {"mixed_precision": "bf16" if bf16 else "no"},
                               "lora": {"r": 12, "alpha": 32, "dropout": 0.1, "target_modules": "q_proj,v_proj"}})
    model = LabelModel.from_config(cfg, LabelMap(["0", "1"]))
    texts, _ = read_tsv(SHARED / "sst2" / "train.tsv")
    random.Random(0).shuffle(texts)
    enc = [Encoded(s, random.Random(i).randrange(2)) for i, s in enumerate(model.tokenizer(texts[:2000])["input_ids"])]
    plan = plan_batches([len(e) for e in enc], "bucketed", 32, 4096, 128, random.Random(0))
    if mode == "compile":
        for layer in model.base_model.layers:
            layer.compile(dynamic=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    res: dict = {"mode": mode, "bf16": bf16}
    # compilation happens in the warm-up steps
    res["train_real_tok_s"], res["warmup_s"] = timed_label_steps(model, plan[:35], enc, opt, autocast, warmup=5)
    t0 = time.perf_counter()
    with autocast:
        model.logits(enc[:1000])
    res["infer_real_tok_s"] = sum(len(e) for e in enc[:1000]) / (time.perf_counter() - t0)
    if mode == "eager":  # forward time: backbone vs head + loss, 5 repeats of one batch
        batch = collate(plan[5], enc, 0, "single_label")
        backbone_s = head_s = 0.0
        for _ in range(5):
            with autocast:
                t0 = time.perf_counter()
                hidden = model.backbone(input_ids=batch["input_ids"], attention_mask=(batch["segment_ids"] > 0).long(),
                                        position_ids=batch["position_ids"], use_cache=False).last_hidden_state
                t1 = time.perf_counter()
                logits = model.head(hidden, batch["example_ids"], batch["num_examples"])
                loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
                t2 = time.perf_counter()
            backbone_s, head_s = backbone_s + t1 - t0, head_s + t2 - t1
            loss.backward()
            opt.zero_grad()
        res["head_and_loss_share_of_forward"] = head_s / (backbone_s + head_s)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "eager")
