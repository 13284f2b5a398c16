"""Operator actions behind roles: the admin HTTP API on the receiver, its client, and
the shared action functions the local `nura` commands use (docs/admin.md)."""
