"""Local stand-ins for external services: the sandbox of `nura up` and the tests' peers.

Each is a real HTTP server on loopback, runnable with `python -m deployments.sandbox.<name>`.
"""
