"""The input format of the sequence task: a template around each text, as one object.

``Template`` knows the resolved format string (``auto`` = the model's chat template with the text as
the user's turn, ending where the assistant's answer begins), encodes texts into it (truncating the
text, never the template), and knows which tokens are the template's own: the prefix (the same for
every example: context, never pooled, computed once per batch by ``prefix_cache``) and the closing
suffix (skipped by max pooling). The token task has none (a Template whose format is None: falsy).
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["Template", "resolve_template", "encode_texts", "special_tokens"]

_SLOT = "\u0000TEXT\u0000"
_SLOT2 = "\u0000PAIR\u0000"


def resolve_template(template: str | None, tokenizer, task: str, pairs: bool) -> str | None:
    """``auto``: the model's chat template with the text as the user's turn, ending where the
    assistant's answer would start (its last token is what last-pooling reads); no template for
    tokenizers without a chat template and for tasks without templates. ``none``/None: the text as is."""
    if template in (None, "none"):
        return None
    if template != "auto":
        return template
    from .tasks import get_task

    if not get_task(task).uses_template or not getattr(tokenizer, "chat_template", None):
        return None
    content = _SLOT + ("\n" + _SLOT2 if pairs else "")
    try:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                 tokenize=False)
    except Exception:  # a template that needs other roles or tools: no wrapping  # noqa: BLE001
        return None
    if rendered.count(_SLOT) != 1:
        return None
    bos = tokenizer.bos_token
    if bos and rendered.startswith(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        rendered = rendered[len(bos):]  # the tokenizer adds BOS itself: do not double it
    escaped = rendered.replace("{", "{{").replace("}", "}}")
    return escaped.replace(_SLOT, "{text}").replace(_SLOT2, "{pair}")


def encode_texts(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int,
                 append_eos: bool = False, template: str | None = None) -> tuple[list[list[int]], int]:
    """Tokenise; truncate to ``max_length`` (EOS kept last when appended). Returns (id lists, number truncated).

    With a ``template`` ('Review: {text}\\nSentiment:', ``{pair}`` for the second text), each example
    is formatted into it first; a long example loses the end of its text, never the template's
    tokens, so the token that last-pooling reads is the same for every example.
    """
    kwargs = dict(add_special_tokens=True, return_attention_mask=False)
    eos = [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else []
    limit = max_length - len(eos)
    if template == "auto":
        raise ValueError("template='auto' must be resolved for a tokenizer first (resolve_template)")
    if template is not None:
        full, n_cut = _encode_templated(tokenizer, template, texts, pairs, limit)
    else:
        full = tokenizer(list(texts), list(pairs) if pairs else None, **kwargs)["input_ids"]
        long = [i for i, ids in enumerate(full) if len(ids) > limit]
        if long:
            cut = tokenizer([texts[i] for i in long], [pairs[i] for i in long] if pairs else None,
                            truncation=True, max_length=limit, **kwargs)["input_ids"]
            for i, ids in zip(long, cut):
                full[i] = ids
        n_cut = len(long)
    if eos:
        full = [ids if ids[-1:] == eos else ids + eos for ids in full]
    return full, n_cut


def _encode_templated(tokenizer, template: str, texts, pairs, limit: int) -> tuple[list[list[int]], int]:
    fields = [{"text": t, "pair": pairs[i] if pairs else ""} for i, t in enumerate(texts)]
    full = tokenizer([template.format(**f) for f in fields], return_attention_mask=False)["input_ids"]
    n_cut = 0
    for i, ids in enumerate(full):
        if len(ids) <= limit:
            continue
        n_cut += 1
        f = dict(fields[i])
        while len(ids) > limit:  # shorten the longer field by the excess, re-format, re-check
            key = max(("text", "pair"), key=lambda k: len(f[k]))
            sub = tokenizer(f[key], add_special_tokens=False)["input_ids"]
            if not sub:
                break
            f[key] = tokenizer.decode(sub[: max(0, len(sub) - (len(ids) - limit))])
            ids = tokenizer(template.format(**f), return_attention_mask=False)["input_ids"]
        full[i] = ids[:limit]
    return full, n_cut


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """Ids the tokenizer adds before / after a text (e.g. BOS), found by difference."""
    with_special = tokenizer("x")["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    for i in range(len(with_special) - len(plain) + 1):
        if with_special[i : i + len(plain)] == plain:
            return with_special[:i], with_special[i + len(plain):]
    return [], []


class Template:
    """A resolved template for one tokenizer: ``format`` (None: raw text), ``prefix_ids`` (the
    tokens before {text}, at least two, or none) and ``suffix_ids`` (the closing tokens after the
    last field, EOS included when appended)."""

    def __init__(self, tokenizer, format: str | None, append_eos: bool = False):
        self.tokenizer, self.format, self.append_eos = tokenizer, format, append_eos
        self.prefix_ids = self._prefix_ids() if format else []
        self.suffix_ids = self._suffix_ids() if format else []

    def __bool__(self) -> bool:
        return self.format is not None

    def _prefix_ids(self) -> list[int]:
        """Same for every example, so it is context, never pooled, and computed once per batch."""
        head = self.format[: self.format.index("{text}")]
        if "{pair}" in head:
            return []
        ids = self.tokenizer(head.format(), return_attention_mask=False)["input_ids"]  # format(): {{ }} -> braces
        return ids if len(ids) >= 2 else []

    def _suffix_ids(self) -> list[int]:
        """The closing tokens, which max pooling skips (chat markers' outlier activations win every max)."""
        t = self.format
        field = "{pair}" if "{pair}" in t and t.index("{pair}") > t.index("{text}") else "{text}"
        tail = t[t.index(field) + len(field):]  # after the last field: fixed text only
        ids = self.tokenizer(tail.format(), add_special_tokens=False, return_attention_mask=False)["input_ids"]
        if self.append_eos and self.tokenizer.eos_token_id is not None:
            ids = ids + [self.tokenizer.eos_token_id]  # encode_texts ends every example with it
        return ids

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> tuple[list[list[int]], int]:
        return encode_texts(self.tokenizer, texts, pairs, max_length, self.append_eos, self.format)

    def encode_windows(self, texts: Sequence[str], max_length: int, stride: int = 0,
                       recurrent: bool = False) -> list[list[list[int]]]:
        """Each text as overlapping windows of at most ``max_length`` tokens, each wrapped in the
        template (its opening and closing tokens in every window); a text that fits is one window, the
        same ids ``encode`` gives. ``stride``: text tokens between window starts (0: half a window).
        ``recurrent`` (windows that read their predecessor's memory, window_memory.py): 0 means a
        whole window, and the last window is what is left of the text (not one ending with it)."""
        whole, _ = self.encode(texts, None, 10**9)
        tok = self.tokenizer
        head, tail = special_tokens(tok)
        if self.format:  # the template's text around {text}, between the tokenizer's own special tokens
            head_text = self.format[: self.format.index("{text}")].format()
            tail_text = self.format[self.format.index("{text}") + len("{text}"):].format(pair="")
            head = head + (tok(head_text, add_special_tokens=False)["input_ids"] if head_text else [])
            tail = (tok(tail_text, add_special_tokens=False)["input_ids"] if tail_text else []) + tail
        if self.append_eos and tok.eos_token_id is not None:
            tail = tail + [tok.eos_token_id]
        room = max_length - len(head) - len(tail)
        if room < 4:
            from .errors import ConfigError

            raise ConfigError(f"max_length={max_length} leaves {room} tokens of text beside the template's "
                              f"{len(head) + len(tail)}; raise --max-length to read in windows")
        step = stride or (room if recurrent else max(1, room // 2))
        out = []
        for text, ids in zip(texts, whole):
            if len(ids) <= max_length:
                out.append([ids])
                continue
            body = tok(text, add_special_tokens=False)["input_ids"]
            starts = list(range(0, len(body), step) if recurrent else range(0, max(len(body) - room, 0) + 1, step))
            if not recurrent and starts[-1] + room < len(body):
                starts.append(len(body) - room)  # the last window ends with the text
            out.append([head + body[s : s + room] + tail for s in starts])
        return out

    def encode_stream(self, texts: Sequence[str], max_length: int) -> list[list[list[int]]]:
        """Each text as ONE templated sequence (what ``encode`` gives with no limit) cut into consecutive
        chunks of ``max_length`` tokens, the last holding what is left (``long_documents=stream``): the
        template's turn opens the first chunk only and its closing tokens end the last."""
        whole, _ = self.encode(texts, None, 10**9)
        return [[ids[s : s + max_length] for s in range(0, len(ids), max_length)] for ids in whole]

    def unpool(self, ids, pos, example_ids, num_examples: int, closing: bool):
        """(B, T) example_ids with template tokens set to -1, so pooling skips them: the prefix
        (position p < P holding prefix[p]) always; with ``closing``, also the suffix (an example's last
        S positions holding the suffix's tokens; one merged with the text by the tokenizer stays).

        Measured on SST-2 / TREC-6 (docs/RESULTS.md): mean pooling is best with the closing tokens,
        which have read the whole text (82.1 / 87.4 vs 78.6 / 84.4 without); max pooling needs them
        out, as their outlier activations win every max (50.9 / 13.0 with, 71.6 / 69.2 without). An
        example left with no token keeps all of its own.
        """
        import torch

        real = example_ids >= 0
        out = example_ids
        if self.prefix_ids:
            prefix = torch.tensor(self.prefix_ids, device=ids.device)
            out = out.masked_fill((pos < len(prefix)) & (ids == prefix[pos.clamp(max=len(prefix) - 1)]), -1)
        if closing and self.suffix_ids:
            suffix, S = torch.tensor(self.suffix_ids, device=ids.device), len(self.suffix_ids)
            last = torch.full((num_examples,), -1, device=ids.device).scatter_reduce(0, example_ids[real], pos[real], "amax")
            k = pos - (last[example_ids.clamp(min=0)] - S + 1)  # index into the suffix inside its window
            out = out.masked_fill(real & (k >= 0) & (ids == suffix[k.clamp(0, S - 1)]), -1)
        kept = torch.bincount(out[out >= 0], minlength=num_examples)
        return torch.where(real & (kept[example_ids.clamp(min=0)] == 0), example_ids, out)
