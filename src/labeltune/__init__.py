"""labeltune: label-supervised fine-tuning of decoder-only LLMs (LS-LLaMA, LS-unLLaMA)."""

__version__ = "0.2.0"

from .config import DataSettings, LoraSettings, ModelSettings, RunConfig, TrainSettings  # noqa: E402
from .errors import ConfigError, DataError, LabeltuneError  # noqa: E402
from .modeling import LabelModel  # noqa: E402

__all__ = [
    "LabelModel",
    "RunConfig",
    "ModelSettings",
    "LoraSettings",
    "DataSettings",
    "TrainSettings",
    "LabeltuneError",
    "DataError",
    "ConfigError",
    "__version__",
]
