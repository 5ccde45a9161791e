"""Transport: the Channel interface, serde, in-memory and gRPC backends."""

from .base import Backend, Channel, ChannelStats, tag_kind
from .memory import MemoryHub, run_local

__all__ = ["Backend", "Channel", "ChannelStats", "MemoryHub", "run_local", "tag_kind"]
