"""Last-layer gradient embeddings (BADGE): exact ``vmap(grad)`` and the factorised closed form."""

from jaxal._src.embeddings.grad_embedding import GradEmbedding
from jaxal._src.embeddings.gradients import closed_form_gradient_embedding
from jaxal._src.embeddings.gradients import gradient_embedding
from jaxal._src.embeddings.gradients import resolve_head

__all__ = (
  "GradEmbedding",
  "closed_form_gradient_embedding",
  "gradient_embedding",
  "resolve_head",
)
