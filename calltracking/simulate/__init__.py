"""Simulate traffic through the production engine (see replay.py)."""
