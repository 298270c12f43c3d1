"""Monitoring plugins shipped with nuvom (the Prometheus exporter)."""
