"""The run report: one self-contained HTML file (`circuitlab report RUN_DIR`) with the run's config,
training curves, head census with evidence, attention on a sample, circuits and role trajectories."""

from .run_report import ROLE_SCORES, build_report, checkpoint_score_rows

__all__ = ["ROLE_SCORES", "build_report", "checkpoint_score_rows"]
