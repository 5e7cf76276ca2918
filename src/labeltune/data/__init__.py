"""Data I/O (readers, label maps) and batching. Nothing here runs a model."""

from .examples import Encoded, TextExample, TokenExample
from .labels import LabelMap
from .readers import read_records, read_text_examples

__all__ = ["Encoded", "TextExample", "TokenExample", "LabelMap", "read_records", "read_text_examples"]
