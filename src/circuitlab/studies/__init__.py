"""One-command studies: claims about transformers checked against thresholds fixed in advance."""

from .base import STUDIES, Check, Study, StudyResult, Verdict, get_study, register, run_study

__all__ = ["STUDIES", "Check", "Study", "StudyResult", "Verdict", "get_study", "register", "run_study"]
from . import board_state  # noqa: F401  (registers the board-state study)
