"""Helpers shared by the test suite (servers, databases, configs)."""
