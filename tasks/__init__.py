"""Prefect tasks and plain functions, one module per external system.

Every call out of the process goes through the resilient call layer (`nura.get_call_layer`).
"""
