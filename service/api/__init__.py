"""The HTTP entry point: JSON in, use case, JSON out."""
