"""`python -m eval`: lossless chain speculative decoding of a draft against its target, acceptance and speed."""
