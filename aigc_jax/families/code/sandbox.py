"""The sandbox lives at aigc_jax/sandbox.py (its workers must not import this package, which imports JAX)."""
from aigc_jax.sandbox import Limits, Sandbox, Verdict  # noqa: F401
