"""`python -m eval`: lossless chain speculative decoding of a draft against its target, acceptance and speed."""

import data  # noqa: F401  (checks the transformers version before anything uses it)
