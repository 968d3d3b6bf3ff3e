"""Self-evolution rounds: orchestration, metrics and reports (paper Section 3.4)."""
