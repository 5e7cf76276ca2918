"""Training and inference throughput: stock transformers + PEFT padded loop vs labeltune, same model,
same data, same LoRA (r 12 on q_proj/v_proj), one process, side by side.

    CPU  (embedded SmolLM2-135M, SST-2 sentences):
        .venv/bin/python benchmarks/throughput.py
    GPU  (random weights of a real architecture, SST-2-like log-normal lengths, bf16):
        python benchmarks/throughput.py --device cuda --arch llama-2-7b

Prints real (non-pad) tokens/s for both sides, the ratio and peak memory, for training and inference.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path

import torch

from common import SHARED, hardware, read_tsv, sync, timed_label_steps

ARCHS = {  # shapes of real models, for random-weight speed runs (values do not change speed)
    "llama-2-7b": dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, vocab_size=32000),
    "mistral-7b": dict(model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=32000, sliding_window=4096),
    "tiny-llama": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,  # smoke test
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=32000),
}


def peak_memory_gib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS (KiB -> GiB)


def load_texts(args, tokenizer) -> list[list[int]]:
    """Token id lists: SST-2 sentences, or (GPU, random weights) log-normal lengths with mean ~25."""
    if args.lengths == "sst2":
        texts, _ = read_tsv(SHARED / "sst2" / "train.tsv")
        random.Random(0).shuffle(texts)
        return tokenizer(texts[: args.examples])["input_ids"]
    rng = random.Random(0)
    mu = args.mean_length
    sigma = 0.6
    lens = [max(2, min(args.max_length, int(rng.lognormvariate(__import__("math").log(mu) - sigma**2 / 2, sigma))))
            for _ in range(args.examples)]
    return [[rng.randrange(10, 30000) for _ in range(n)] for n in lens]


def model_source(args) -> str:
    if args.arch == "default":
        from labeltune.backbone import resolve_model_dir

        return resolve_model_dir("default")
    from transformers import AutoConfig, AutoModel

    out = Path(args.work) / args.arch
    if not (out / "config.json").exists():
        spec = dict(ARCHS[args.arch])
        cfg = AutoConfig.for_model(spec.pop("model_type"), **spec, pad_token_id=0)
        with torch.device("cuda" if args.device == "cuda" else "cpu"):
            model = AutoModel.from_config(cfg, dtype=torch.bfloat16)
        model.save_pretrained(out)
        del model
        save_placeholder_tokenizer(out, cfg.vocab_size)
    return str(out)


def save_placeholder_tokenizer(out: Path, vocab_size: int) -> None:
    """A word-level tokenizer over the whole vocabulary, so that a random-weight model directory loads like
    a real one (no Hub here); the benchmark feeds token ids directly, the tokenizer only names pad/eos."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"t{i}": i for i in range(3, vocab_size)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<unk>").save_pretrained(out)


def padded(seqs, idx):
    """Right-padded (ids, mask) for examples ``idx``, as the tokenizer pads by default."""
    width = max(len(seqs[i]) for i in idx)
    ids = torch.zeros(len(idx), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, i in enumerate(idx):
        ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
        mask[r, : len(seqs[i])] = 1
    return ids, mask


def stock_train(src, seqs, labels, args, dtype):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=2, dtype=dtype, pad_token_id=0)
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=12, lora_alpha=32, lora_dropout=0.1,
                                             target_modules=["q_proj", "v_proj"])).to(args.device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    bs = args.stock_batch
    batches = [list(range(s, min(s + bs, len(seqs)))) for s in range(0, len(seqs), bs)]
    real, t0 = 0, None
    batches = batches[: args.steps + args.warmup]
    warmup = min(args.warmup, len(batches) - 1)
    for k, idx in enumerate(batches):
        if k == warmup:
            sync(args.device)
            t0, real = time.perf_counter(), 0
        ids, mask = padded(seqs, idx)
        out = model(input_ids=ids.to(args.device), attention_mask=mask.to(args.device),
                    labels=torch.tensor([labels[i] for i in idx], device=args.device))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        real += int(mask.sum())
    sync(args.device)
    train_tps = real / (time.perf_counter() - t0)
    # inference: batch 32 in file order, padded
    model.eval()
    n_inf = min(len(seqs), args.infer_examples)
    with torch.no_grad():  # warm-up: kernel selection and allocator growth are not throughput
        ids, mask = padded(seqs, range(min(32, n_inf)))
        model(input_ids=ids.to(args.device), attention_mask=mask.to(args.device))
    sync(args.device)
    real, t0 = 0, time.perf_counter()
    with torch.no_grad():
        for s in range(0, n_inf, 32):
            ids, mask = padded(seqs, range(s, min(s + 32, n_inf)))
            model(input_ids=ids.to(args.device), attention_mask=mask.to(args.device))
            real += int(mask.sum())
    sync(args.device)
    return train_tps, real / (time.perf_counter() - t0)


def labeltune_train(src, seqs, labels, args, dtype):
    from labeltune import LabelModel, RunConfig
    from labeltune.data import Encoded, LabelMap
    from labeltune.data.batching import plan_batches

    cfg = RunConfig.from_dict({
        "model": {"name": src, "pooling": "last", "unmask": args.unmask},
        "lora": {"r": 12, "alpha": 32, "dropout": 0.1, "target_modules": "q_proj,v_proj"},
        "data": {"max_length": args.max_length},
        "train": {"batching": args.batching, "batch_size": args.batch_size,
                  "max_tokens_per_batch": args.max_tokens, "gradient_checkpointing": args.checkpointing,
                  "eval_batch_tokens": args.infer_tokens, "mixed_precision": "bf16" if args.bf16 else "no"}})
    model = LabelModel.from_config(cfg, LabelMap(["0", "1"]), dtype=dtype).to(args.device)
    if args.checkpointing:
        model.base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.base_model.enable_input_require_grads()
    enc = [Encoded(s, y) for s, y in zip(seqs, labels)]
    plan = plan_batches([len(e) for e in enc], args.batching, args.batch_size, args.max_tokens, args.row_tokens,
                        random.Random(0))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.bf16)
    train_tps, _ = timed_label_steps(model, plan[: args.steps_labeltune + args.warmup], enc, opt, autocast,
                                     args.warmup, args.device)
    n_inf = min(len(enc), args.infer_examples)
    with autocast:  # warm-up, as on the stock side
        model.logits(enc[: min(256, n_inf)])
    sync(args.device)
    t0 = time.perf_counter()
    with autocast:
        model.logits(enc[:n_inf])
    sync(args.device)
    return train_tps, sum(len(e) for e in enc[:n_inf]) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--arch", default=None, help="default (embedded model) or " + ", ".join(ARCHS))
    ap.add_argument("--lengths", default=None, choices=["sst2", "lognormal"])
    ap.add_argument("--mean-length", type=float, default=25)
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=40, help="stock steps timed (batch 8)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--stock-batch", type=int, default=8)
    ap.add_argument("--batching", default="bucketed", choices=["bucketed", "packed", "padded"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=2048)
    ap.add_argument("--row-tokens", type=int, default=1024)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--infer-examples", type=int, default=1000)
    ap.add_argument("--infer-tokens", type=int, default=4096)
    ap.add_argument("--bf16", action="store_true", help="labeltune side under bf16 autocast (always on for cuda)")
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--unmask", default="none", help="labeltune side: bidirectional layers (none, all, from:K)")
    ap.add_argument("--stock-from", type=Path, default=None,
                    help="reuse the stock side of an earlier JSON from this same machine (variants of one session)")
    ap.add_argument("--work", default="bench_out/models")
    ap.add_argument("--out", type=Path, default=Path("bench_out/throughput.json"))
    args = ap.parse_args()
    args.arch = args.arch or ("default" if args.device == "cpu" else "llama-2-7b")
    args.lengths = args.lengths or ("sst2" if args.arch == "default" else "lognormal")
    args.bf16 = args.bf16 or args.device == "cuda"
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    src = model_source(args)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src) if args.arch == "default" else None
    seqs = load_texts(args, tok)
    labels = [random.Random(i).randrange(2) for i in range(len(seqs))]
    # the same number of real tokens on both sides: labeltune's steps cover what the stock steps cover
    stock_tokens = sum(len(s) for s in seqs[: (args.steps + args.warmup) * args.stock_batch])
    args.steps_labeltune = max(4, int(stock_tokens / max(1, sum(map(len, seqs)) / len(seqs)) / args.batch_size))
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.stock_from:
        prior = json.loads(args.stock_from.read_text())["stock"]
        s_train, s_inf, s_mem = prior["train_real_tok_s"], prior["infer_real_tok_s"], prior["peak_mem_gib"]
    else:
        s_train, s_inf = stock_train(src, seqs, labels, args, dtype)
        s_mem = peak_memory_gib(args.device)
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    l_train, l_inf = labeltune_train(src, seqs, labels, args, dtype)
    l_mem = peak_memory_gib(args.device)
    res = {"hardware": hardware(), "arch": args.arch, "lengths": args.lengths,
           "mean_tokens": sum(map(len, seqs)) / len(seqs), "labeltune_settings": {
               k: getattr(args, k) for k in ("batching", "batch_size", "max_tokens", "row_tokens", "bf16",
                                             "checkpointing", "infer_tokens", "unmask")},
           "stock_from": str(args.stock_from) if args.stock_from else None,
           "stock": {"train_real_tok_s": s_train, "infer_real_tok_s": s_inf, "peak_mem_gib": s_mem},
           "labeltune": {"train_real_tok_s": l_train, "infer_real_tok_s": l_inf,
                         "peak_mem_gib": l_mem if args.device == "cuda" else None},
           "train_ratio": l_train / s_train, "infer_ratio": l_inf / s_inf}
    print(json.dumps(res, indent=2))
    print(f"\n| side | train real tok/s | inference real tok/s | peak mem GiB |\n|---|---|---|---|\n"
          f"| stock HF+PEFT (padded, batch {args.stock_batch}/32) | {s_train:.0f} | {s_inf:.0f} | {s_mem:.1f} |\n"
          f"| labeltune ({args.batching}, {'bf16' if args.bf16 else 'fp32'}) | {l_train:.0f} | {l_inf:.0f} | "
          f"{l_mem if args.device == 'cuda' else float('nan'):.1f} |\n"
          f"| ratio | {res['train_ratio']:.2f}x | {res['infer_ratio']:.2f}x | |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
