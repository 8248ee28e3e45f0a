"""One-command studies: claims about transformers checked against thresholds fixed in advance."""

from .base import STUDIES, Check, Study, StudyResult, Verdict, get_study, register, run_study

__all__ = ["STUDIES", "Check", "Study", "StudyResult", "Verdict", "get_study", "register", "run_study"]
from . import fine_tune_circuits as _fine_tune_circuits  # noqa: F401  (registers fine-tune-circuits)
from . import natural_induction as _natural_induction  # noqa: F401  (registers natural-induction)
