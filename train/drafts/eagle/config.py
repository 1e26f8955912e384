"""`draft=eagle`: the EAGLE-1/2 head's settings. These defaults are the only defaults (Hydra's draft/eagle
option is registered from this class; there is no conf/draft yaml). None = take the value from the target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EagleConfig:
    name: str = "eagle"
    num_layers: int = 1  # decoder layers
    intermediate_size: int | None = None  # MLP width; None = the target's
    num_heads: int | None = None  # attention heads; None = the target's
    num_kv_heads: int | None = None  # key/value heads; None = the target's
    feature_noise: float = 0.0  # half-width of uniform noise added to input features in training (EAGLE: 0.1)
    # False = the original EAGLE-1/2 layout (vLLM, EAGLE load it); true = ours, not exportable
    first_layer_input_norm: bool = False
    fc_bias: bool = (
        False  # fc has a bias; False = what vLLM/SGLang load (true: our earlier head, not servable)
    )
