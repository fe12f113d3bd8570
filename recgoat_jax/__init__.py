"""recgoat-jax: RecGOAT (LLM-enhanced multimodal recommendation) in JAX/Flax."""

__version__ = "0.1.0"
