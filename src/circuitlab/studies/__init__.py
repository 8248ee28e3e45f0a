"""One-command studies: claims about transformers checked against thresholds fixed in advance."""

from .base import STUDIES, Check, Study, StudyResult, Verdict, get_study, register, run_study

__all__ = ["STUDIES", "Check", "Study", "StudyResult", "Verdict", "get_study", "register", "run_study"]

# Each study registers itself on import (one module per study).
from . import (
    attention_scaling,  # noqa: F401
    board_state,  # noqa: F401
    fine_tune_circuits,  # noqa: F401
    induction_circuit,  # noqa: F401
    induction_circuit_discovery,  # noqa: F401
    induction_layers,  # noqa: F401
    name_copy_patching,  # noqa: F401
    natural_induction,  # noqa: F401
    no_causal_mask,  # noqa: F401
    no_positional_embedding,  # noqa: F401
    periodic_sequences,  # noqa: F401
    phase_change,  # noqa: F401
)
