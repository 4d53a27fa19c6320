"""A GPT built from scratch, as in Karpathy's lecture: model, tokenizer, data, trainer, sampling, weights."""

from gpt.errors import (BusyError, ConfigError, DataError, DeviceError, GPTError, HubError, SamplingError,
                        UnknownCharactersError, WeightsError)
from gpt.config import GPTConfig
from gpt.sharing.pretrained import GPT
from gpt.tokenizer import CharTokenizer

__all__ = ["GPT", "GPTConfig", "CharTokenizer", "GPTError", "BusyError", "ConfigError", "DataError", "DeviceError",
           "HubError", "SamplingError", "UnknownCharactersError", "WeightsError"]
