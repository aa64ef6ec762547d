"""The table step: move one table from source to target with SQLAlchemy Core, exactly once.

Read `step.py` first: it reflects (`plan.py`), streams (`reader.py`), writes (`writer.py`) and
records state (`state.py`). Nothing here imports Prefect, so the step runs and tests on its own.
"""
