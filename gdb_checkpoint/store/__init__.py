"""The persistent checkpoint store: deduplicated, compressed, hash-verified memory and state on disk.

Exports the API only; importing it opens nothing and never imports gdb."""

from .compact import CompactResult
from .errors import BadNameError, CorruptCheckpointError, StoreError, UnknownCheckpointError
from .layout import DEFAULT_CHUNK_SIZE, ZERO, chunk_digest
from .paths import default_store_dir
from .store import Checkpoint, Entry, SaveResult, Store, check_name

__all__ = [
    "Store", "Checkpoint", "SaveResult", "Entry", "CompactResult", "check_name", "chunk_digest",
    "ZERO", "DEFAULT_CHUNK_SIZE", "default_store_dir",
    "StoreError", "CorruptCheckpointError", "UnknownCheckpointError", "BadNameError",
]
