"""Windows over words (token task, long_documents=window): which words each window reads and which
of them it labels.

A sentence is read inside a *stream* of words: its document's other sentences around it (context,
never labelled) or nothing. Word k of the stream has ``lens[k]`` sub-word tokens; the sentence is
words [a, b); a window holds at most ``room`` tokens (max_length minus the tokenizer's special tokens).

    the sentence fits:   one window, the sentence with as much context on each side as fits, balanced
    it does not fit:     windows inside the sentence, a new one every ``step`` tokens, the last ending
                         with the sentence; each word is labelled in exactly one window, the one where
                         it has the most context on both sides (ties: the earlier window)

Windows are (start, end, first labelled, end of labelled) word indices, half-open, in stream order;
labelled ranges are contiguous, ascending and cover [a, b) once.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["word_windows"]


def word_windows(lens: Sequence[int], a: int, b: int, room: int, step: int) -> list[tuple[int, int, int, int]]:
    if any(lens[k] > room for k in range(a, b)):
        raise ValueError("a word is longer than a window; clip its sub-words to the window first")
    if sum(lens[a:b]) <= room:
        return [_with_context(lens, a, b, room)]
    spans = []
    start = a
    while True:
        end, used = start, 0
        while end < b and used + lens[end] <= room:
            used += lens[end]
            end += 1
        if end >= b:  # the last window ends with the sentence: fill it leftwards
            while start > a and used + lens[start - 1] <= room:
                start -= 1
                used += lens[start]
            spans = [s for s in spans if s[0] < start]  # windows it contains add nothing
            spans.append((start, end))
            break
        spans.append((start, end))
        nxt, moved = start, 0
        while nxt < end and moved < step:
            moved += lens[nxt]
            nxt += 1
        start = max(nxt, start + 1)
    # each word to the window where min(tokens before it, tokens after it) inside the window is largest
    offsets = [0]
    for n in lens:
        offsets.append(offsets[-1] + n)
    owner, last = [], 0
    for k in range(a, b):
        best, best_w = -1, last
        for w in range(last, len(spans)):  # windows' starts and ends ascend: never look back
            s, e = spans[w]
            if s > k:
                break
            if k < e:
                ctx = min(offsets[k] - offsets[s], offsets[e] - offsets[k + 1])
                if ctx > best:
                    best, best_w = ctx, w
        owner.append(best_w)
        last = best_w
    labelled: dict[int, list[int]] = {}  # window -> [first, end) of the words it labels (contiguous)
    for i, w in enumerate(owner):
        labelled.setdefault(w, [a + i, a + i + 1])[1] = a + i + 1
    return [(s, e, *labelled[w]) for w, (s, e) in enumerate(spans) if w in labelled]


def _with_context(lens: Sequence[int], a: int, b: int, room: int) -> tuple[int, int, int, int]:
    """[a, b) widened word by word on the side with less context so far, while it fits."""
    s, e, used = a, b, sum(lens[a:b])
    left = right = 0
    while True:
        can_left = s > 0 and used + lens[s - 1] <= room
        can_right = e < len(lens) and used + lens[e] <= room
        if not (can_left or can_right):
            return (s, e, a, b)
        if can_left and (left <= right or not can_right):
            s -= 1
            used += lens[s]
            left += lens[s]
        else:
            used += lens[e]
            right += lens[e]
            e += 1
