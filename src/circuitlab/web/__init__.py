"""The web lab (`circuitlab serve`): type a prompt, see the tokens with their top predictions, any head's
attention pattern, the head census and a residual-stream patching heatmap.

`Lab` holds the computations (plain dicts out), `create_app` wraps them in a FastAPI app with bounded
request size and computation time, `load_served` resolves MODEL_OR_RUN. FastAPI is imported only here
(`circuitlab.web.app`), so the rest of circuitlab never needs it.
"""

from typing import Any

from .lab import InputError, Lab
from .limits import Limits
from .source import Served, load_served

__all__ = ["InputError", "Lab", "Limits", "Served", "create_app", "load_served"]


def create_app(lab: Lab, limits: Limits | None = None, allowed_hosts: list[str] | None = None) -> Any:
    """The FastAPI app serving `lab` (see `circuitlab.web.app.create_app`); FastAPI is imported on first use."""
    from .app import create_app as _create_app

    return _create_app(lab, limits, allowed_hosts)
