"""The floor the algorithm folders and eval share for decoding: the drafter protocol, tree search, kv-cache
bookkeeping and sampling. It imports nothing above train/modeling."""
