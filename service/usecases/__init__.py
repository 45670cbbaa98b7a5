"""The use cases: plan, draft exactly once, run a sheet. They take ports, never adapters."""
