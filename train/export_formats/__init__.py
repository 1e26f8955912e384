"""Draft exports in the layouts serving engines load (EAGLE, SGLang EAGLE-3, vLLM speculators, HF, Medusa),
and imports of published checkpoints into our own export layout. Entry point: `python -m train.export`."""
