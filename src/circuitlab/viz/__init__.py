"""Figures (Plotly, offline) and self-contained HTML pages."""

from .page import Page

__all__ = ["Page"]
