import data  # noqa: F401  (checks the transformers version before anything uses it)
