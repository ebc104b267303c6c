"""Embeddings of pool points, one module per public concept of :mod:`jaxal.embeddings`.

``grad_embedding`` holds the factorised :class:`GradEmbedding` ``a ⊗ z`` (jax
only, so lower layers may import it); ``gradients`` computes last-layer gradient
embeddings of a model, exact (``vmap(grad)``) and closed-form.
"""
