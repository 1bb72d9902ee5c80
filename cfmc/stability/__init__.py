"""Stability screen: relaxation with a universal potential, an offline reference hull, S.U.N."""

from __future__ import annotations

from cfmc.stability.workflow import screen

__all__ = ["screen"]
