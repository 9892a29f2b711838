"""Point groups: closure, distances up to symmetry, asymmetric units."""

import numpy as np
import pytest

from cryoposes import rotations as rt
from cryoposes import symmetry as sym


def test_symmetry_groups():
    for name, order in [("C1", 1), ("C4", 4), ("D2", 4), ("D7", 14)]:
        group = sym.symmetry_group(name)
        assert len(group) == order
        # Closed under multiplication: every product is in the group.
        products = rt.quaternion_multiply(group[:, None], group[None, :]).reshape(-1, 4)
        distances = rt.pairwise_geodesic_distances(products, group)
        assert np.all(distances.min(axis=1) < 1e-5)
    with pytest.raises(ValueError, match="unknown symmetry"):
        sym.symmetry_group("T")


def test_symmetric_distance():
    q = rt.random_quaternions(100, 14)
    group = sym.symmetry_group("D2")
    moved = rt.quaternion_multiply(group[np.arange(100) % 4], q)
    assert np.max(sym.symmetric_geodesic_distance(q, moved, "D2")) < 1e-5
    assert np.max(rt.geodesic_distance(q, moved)[np.arange(100) % 4 != 0]) > 1.0
    other = rt.random_quaternions(100, 15)
    assert np.all(sym.symmetric_geodesic_distance(q, other, "D2") <= rt.geodesic_distance(q, other) + 1e-12)


def test_asymmetric_unit_picks_one_copy_per_orbit():
    q = rt.random_quaternions(200, 16)
    group = sym.symmetry_group("D2")
    reduced = sym.asymmetric_unit(q, "D2")
    assert np.max(sym.symmetric_geodesic_distance(q, reduced, "D2")) < 1e-5
    # Every symmetry copy maps to the same representative.
    for g in group:
        again = sym.asymmetric_unit(rt.quaternion_multiply(g, q), "D2")
        assert np.max(rt.geodesic_distance(again, reduced)) < 1e-5
    assert np.all(rt.quaternion_to_matrix(reduced)[:, 2, 2] >= -1e-12)


def test_asymmetric_unit_of_d2_is_the_quarter_z_and_y_nonnegative_even_near_the_equator():
    rng = np.random.default_rng(3)
    rot, psi = rng.uniform(0, 2 * np.pi, (2, 500))
    tilt = np.pi / 2 + rng.uniform(-1e-3, 1e-3, 500)
    q = np.concatenate([rt.euler_to_quaternion(rot, tilt, psi), rt.random_quaternions(500, 4)])
    view = rt.quaternion_to_matrix(sym.asymmetric_unit(q, "D2"))[:, :, 2]
    assert np.all(view[:, 2] >= -1e-9) and np.all(view[:, 1] >= -1e-9)
