"""Glueberry gateway: browsers reach Glueberry peers through an authenticated, blind relay."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
