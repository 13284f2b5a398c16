"""Configuration sections, one module per area of `integrations.yaml`."""
