"""Last-layer gradient embeddings (BADGE): exact ``vmap(grad)`` and the factorised closed form."""

from jaxal._src.distances import GradEmbedding
from jaxal._src.embeddings import closed_form_gradient_embedding
from jaxal._src.embeddings import gradient_embedding
from jaxal._src.embeddings import resolve_head

__all__ = (
    "GradEmbedding",
    "closed_form_gradient_embedding",
    "gradient_embedding",
    "resolve_head",
)
