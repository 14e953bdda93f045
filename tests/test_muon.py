"""Muon's Newton-Schulz orthogonalisation against the SVD, and the whole update against
optax.contrib.muon's."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aigc_jax.train.muon import newton_schulz, scale_by_muon


@pytest.mark.parametrize("shape", [(16, 48), (48, 16), (24, 24)])
def test_newton_schulz_keeps_singular_vectors_and_flattens_singular_values(shape):
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(shape[0], min(shape))))
    v, _ = np.linalg.qr(rng.normal(size=(shape[1], min(shape))))
    singular = np.geomspace(10.0, 0.1, min(shape))  # condition number 100
    x = (u * singular) @ v.T
    y = np.asarray(newton_schulz(jnp.asarray(x, jnp.float32)))
    core = u.T @ y @ v  # diagonal when y shares x's singular vectors
    off_diagonal = core - np.diag(np.diag(core))
    assert np.abs(off_diagonal).max() < 1e-3
    new_singular = np.diag(core)
    assert new_singular.min() > 0.6 and new_singular.max() < 1.25, new_singular


def test_newton_schulz_rejects_a_vector():
    with pytest.raises(ValueError, match="needs a matrix"):
        newton_schulz(jnp.ones(5))


@pytest.mark.skipif(not hasattr(getattr(optax, "contrib", None), "scale_by_muon"), reason="optax without muon")
def test_update_matches_optax_muon_over_several_steps():
    keys = jax.random.split(jax.random.key(0), 3)
    params = {"wide": jax.random.normal(keys[0], (8, 24)), "tall": jax.random.normal(keys[1], (24, 8))}
    matrix = optax.contrib.MuonDimensionNumbers(0, 1)
    ours = scale_by_muon()
    theirs = optax.contrib.scale_by_muon(weight_dimension_numbers={"wide": matrix, "tall": matrix})
    ours_state, theirs_state = ours.init(params), theirs.init(params)
    for step in range(4):
        grads = jax.tree_util.tree_map(lambda p, k=jax.random.fold_in(keys[2], step): jax.random.normal(k, p.shape),
                                       params)
        mine, ours_state = ours.update(grads, ours_state, params)
        reference, theirs_state = theirs.update(grads, theirs_state, params)
        np.testing.assert_allclose(mine["wide"], reference["wide"] * 3 ** 0.5, rtol=2e-4, atol=2e-5)  # width scale
        np.testing.assert_allclose(mine["tall"], reference["tall"], rtol=2e-4, atol=2e-5)
    assert float(jnp.abs(mine["tall"]).mean()) > 0  # and the updates are not trivial
