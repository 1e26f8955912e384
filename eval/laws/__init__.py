"""The Scylla laws: sweep points (`eval.laws.point`), their results records (`records`), least-squares fits
of tau against ln(tokens), ln(capacity) and ln(batch size) with bootstrap intervals (`fit`, `forms`), plots
(`plots`), the batch-size analysis (`batch`; as vLLM serves it: `batch_vllm`), the batch law as vLLM's
schedule of k (`schedule`, measured by `schedule_vllm`), cluster sweep costs (`cost`); `python -m eval.laws` fits a
sweep's results table and writes laws.json, which `python -m eval.plan` reads."""
