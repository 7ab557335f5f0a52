"""What each operation is, once: export, backup, inspect and restore, their runs, locks and audit.

Routes, jobs, the CLI (and the scheduler) call these procedures; this package imports the engine,
the models and the queue, never a blueprint.
"""
from app.operations.procedures import COMMAND_LINE, Caller, run_backup, run_export, run_inspect, run_restore
from app.operations.runs import RunRefused

__all__ = ["COMMAND_LINE", "Caller", "RunRefused", "run_backup", "run_export", "run_inspect", "run_restore"]
