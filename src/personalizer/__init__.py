"""Edge personalization core: sans-IO, runtime-agnostic (CPython and Pyodide), never imports adapters."""

from .cache import SharedCache
from .codec import decode, encode
from .config import Config, parse_config
from .errors import BadRequest, DecodeError, LimitError, PersonalizerError
from .identity import sign, verify
from .miss import Breaker, MissPath, OriginGate
from .ports import InMemoryKV, Reply
from .service import Personalizer, Records

__all__ = [
    "BadRequest",
    "Breaker",
    "Config",
    "DecodeError",
    "InMemoryKV",
    "LimitError",
    "MissPath",
    "OriginGate",
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
