"""TransformerLens-style helpers under their familiar names (`circuitlab.utils.get_act_name`)."""

from .model.masks import get_attention_mask
from .model.names import get_act_name
from .model.transformer import lm_cross_entropy_loss

__all__ = ["get_act_name", "get_attention_mask", "lm_cross_entropy_loss"]
