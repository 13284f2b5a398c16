"""Prefect flows, one module per flow; orchestration only. Run any with `python -m flows.<name>`."""
