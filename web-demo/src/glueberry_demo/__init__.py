"""Glueberry Bridge demo launcher (``python -m glueberry_demo``)."""
