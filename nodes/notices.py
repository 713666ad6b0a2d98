"""Correction notices: the partners whose releases an agency's correction affected."""

from __future__ import annotations
