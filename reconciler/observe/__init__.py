"""Observe stage: read what is actually on the hosts and in the cluster (read-only)."""
