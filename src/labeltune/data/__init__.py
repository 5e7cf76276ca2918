"""Readers, label maps, tokenisation and batching."""

from .batching import Encoded, collate, encode_texts, inference_batches, plan_batches, resolve_template
from .labels import LabelMap
from .readers import TextExample, read_text_examples

__all__ = ["Encoded", "collate", "encode_texts", "inference_batches", "plan_batches", "resolve_template", "LabelMap", "TextExample",
           "read_text_examples"]
