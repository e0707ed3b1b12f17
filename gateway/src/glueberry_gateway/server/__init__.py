"""The gateway server: a Starlette app around one :class:`Gateway` per process.

Each browser socket is a sans-I/O :class:`~.core.ServerProtocol` driven by :mod:`.socket`; its
sessions (:mod:`.session`) relay to backends; :mod:`.admission` and :mod:`.resume` hold what
outlives a socket. ``glueberry-gateway`` is :mod:`.cli`.
"""

from __future__ import annotations

from .app import create_app
from .gateway import Gateway
from .settings import Backend, Limits, Settings, TokenSettings, load_settings

__all__ = ["Backend", "Gateway", "Limits", "Settings", "TokenSettings", "create_app", "load_settings"]
