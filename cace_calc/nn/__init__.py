"""Building blocks of the CACE model (pure torch)."""
