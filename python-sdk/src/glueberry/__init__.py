"""Glueberry for Python: a peer-to-peer node wire-compatible with github.com/blockberries/glueberry."""

from __future__ import annotations

__version__ = "0.1.0"
