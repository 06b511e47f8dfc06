"""Edge personalization core: sans-IO, runtime-agnostic (CPython and Pyodide), never imports adapters."""

from .cache import SharedCache
from .codec import decode, encode
from .config import Config, parse_config
from .errors import BadRequest, DecodeError, LimitError, PersonalizerError
from .identity import sign, verify
from .ports import InMemoryKV, Reply
from .service import Personalizer, Records

__all__ = [
    "BadRequest",
    "Config",
    "DecodeError",
    "InMemoryKV",
    "LimitError",
    "Personalizer",
    "PersonalizerError",
    "Records",
    "Reply",
    "SharedCache",
    "decode",
    "encode",
    "parse_config",
    "sign",
    "verify",
]
