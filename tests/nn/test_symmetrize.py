"""Angular basis, symmetrised invariants and polynomial cutoff of cace_calc.nn."""

import math

import numpy as np
import pytest
import torch
from conftest import random_rotation

from cace_calc.nn.angular import CartesianAngular, angular_exponents, multinomial
from cace_calc.nn.radial import PolynomialCutoff
from cace_calc.nn.symmetrize import Symmetrizer, invariant_terms

# number of invariants n_sym for nu <= 1..4, from the CACE spec
N_SYM = {
    2: (1, 3, 4, 4),
    3: (1, 4, 6, 7),
    4: (1, 5, 9, 13),
    5: (1, 6, 12, 22),
}


def random_units(rng, n):
    u = rng.normal(size=(n, 3))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def monomials(u: np.ndarray, l_max: int) -> np.ndarray:
    """ux^lx uy^ly uz^lz computed directly, columns in angular_exponents order [E, V]."""
    exps = np.array(angular_exponents(l_max))
    return np.prod(u[:, None, :] ** exps[None, :, :], axis=-1)


def density(units: np.ndarray, radial: np.ndarray, l_max: int) -> torch.Tensor:
    """A[i, m, v, c] = sum_k L_v(u_k) R[i, k, m, c] for unit vectors [K, 3], weights [N, K, m, C]."""
    lv = monomials(units, l_max)  # [K, V]
    return torch.from_numpy(np.einsum("kv,ikmc->imvc", lv, radial))


# --- counts and ordering -------------------------------------------------------------------

@pytest.mark.parametrize("l_max", sorted(N_SYM))
@pytest.mark.parametrize("nu_max", [1, 2, 3, 4])
def test_number_of_invariants(l_max, nu_max):
    expected = N_SYM[l_max][nu_max - 1]
    assert Symmetrizer(l_max, nu_max).n_sym == expected
    assert len(invariant_terms(l_max, nu_max)) == expected


@pytest.mark.parametrize("nu_max", [0, 5])
def test_invariant_terms_rejects_bad_nu_max(nu_max):
    with pytest.raises(ValueError, match="nu_max"):
        invariant_terms(3, nu_max)


def test_angular_exponents_order():
    expected = [
        (0, 0, 0),
        (1, 0, 0), (0, 1, 0), (0, 0, 1),
        (2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0), (0, 1, 1), (0, 0, 2),
        (3, 0, 0), (2, 1, 0), (2, 0, 1), (1, 2, 0), (1, 1, 1),
    ]
    exps = angular_exponents(3)
    assert exps[: len(expected)] == expected
    assert exps[len(expected):] == [(1, 0, 2), (0, 3, 0), (0, 2, 1), (0, 1, 2), (0, 0, 3)]


@pytest.mark.parametrize("l_max", range(7))
def test_angular_exponents_complete_and_sorted(l_max):
    exps = angular_exponents(l_max)
    assert len(exps) == (l_max + 1) * (l_max + 2) * (l_max + 3) // 6
    assert len(set(exps)) == len(exps)
    assert all(min(v) >= 0 and sum(v) <= l_max for v in exps)
    ls = [sum(v) for v in exps]
    assert ls == sorted(ls)
    for l in range(l_max + 1):
        block = [v for v in exps if sum(v) == l]
        assert len(block) == (l + 1) * (l + 2) // 2
        assert block == sorted(block, reverse=True)


def test_angular_exponents_rejects_negative():
    with pytest.raises(ValueError, match="l_max"):
        angular_exponents(-1)


@pytest.mark.parametrize("l", range(6))
def test_multinomial_sums_to_power_of_three(l):
    block = [v for v in angular_exponents(l) if sum(v) == l]
    assert sum(multinomial(v) for v in block) == 3**l
    for v in block:
        assert multinomial(v) == math.factorial(l) // math.prod(math.factorial(k) for k in v)


# --- angular basis -------------------------------------------------------------------------

@pytest.mark.parametrize("l_max", range(6))
def test_cartesian_angular_equals_monomials(l_max):
    rng = np.random.default_rng(l_max)
    u = np.concatenate([random_units(rng, 17), np.eye(3), -np.eye(3), [[0.6, 0.0, -0.8]]])
    out = CartesianAngular(l_max)(torch.from_numpy(u))
    assert out.shape == (len(u), (l_max + 1) * (l_max + 2) * (l_max + 3) // 6)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), monomials(u, l_max), rtol=1e-13, atol=1e-15)


def test_cartesian_angular_float32_and_l_of_v():
    module = CartesianAngular(3)
    assert module.n_components == 20
    assert module.l_of_v.tolist() == [sum(v) for v in angular_exponents(3)]
    u = random_units(np.random.default_rng(7), 5)
    out = module(torch.from_numpy(u).float())
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), monomials(u, 3), rtol=1e-5, atol=1e-6)


def test_cartesian_angular_derivatives_finite_at_zero_components():
    u = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.3, -0.4, 0.0]], dtype=torch.float64,
                     requires_grad=True)
    module = CartesianAngular(4)
    assert torch.autograd.gradcheck(module, (u,))
    assert torch.autograd.gradgradcheck(module, (u,))
    hess = torch.autograd.functional.hessian(lambda x: module(x).sum(), u)
    assert torch.isfinite(hess).all()


# --- symmetrised invariants ----------------------------------------------------------------

def spec_keys(l_max: int, nu_max: int) -> list[tuple[int, tuple[int, ...]]]:
    """(nu, key) of every feature, in the spec's order: by nu, then by sorted key."""
    keys = [(1, ())]
    if nu_max >= 2:
        keys += [(2, (L,)) for L in range(1, l_max + 1)]
    if nu_max >= 3:
        keys += [(3, k) for k in sorted(
            (l1, l2) for l1 in range(1, l_max + 1) for l2 in range(l1, l_max + 1) if l1 + l2 <= l_max)]
    if nu_max >= 4:
        keys += [(4, k) for k in sorted(
            (l1, l2, dl) for l1 in range(1, l_max + 1) for l2 in range(l1 + 1, l_max + 1)
            for dl in range(1, l_max + 1) if l2 + dl <= l_max)]
    return keys


def features_from_dot_products(units: np.ndarray, radial: np.ndarray, l_max: int, nu_max: int) -> np.ndarray:
    """The invariants written with dot products of the edge vectors, [N, m, S, C].

    With A_v = sum_k R_k u_k^v and sum_{|a|=l} M(a) x^a y^a = (x.y)^l:
    nu=2, L:          sum R1 R2 (u1.u2)^L
    nu=3, (l1, l2):   sum R1 R2 R3 (u1.u3)^l1 (u2.u3)^l2
    nu=4, (l1,l2,dl): sum R1 R2 R3 R4 (u1.u3)^l1 (u2.u4)^l2 (u3.u4)^dl
    """
    g = units @ units.T
    r = radial  # [N, K, m, C]
    out = []
    for nu, key in spec_keys(l_max, nu_max):
        if nu == 1:
            out.append(r.sum(axis=1))
        elif nu == 2:
            out.append(np.einsum("iamc,ibmc,ab->imc", r, r, g ** key[0]))
        elif nu == 3:
            l1, l2 = key
            out.append(np.einsum("iamc,ibmc,idmc,ad,bd->imc", r, r, r, g**l1, g**l2))
        else:
            l1, l2, dl = key
            out.append(np.einsum("iamc,ibmc,idmc,iemc,ad,be,de->imc", r, r, r, r, g**l1, g**l2, g**dl,
                                 optimize=True))
    return np.stack(out, axis=2)


def symmetrize(sym: Symmetrizer, a: torch.Tensor) -> torch.Tensor:
    """Apply the symmetriser (angular axis first) to a density laid out [N, m, V, C]."""
    return sym(a.movedim(2, 0)).movedim(0, 2)


@pytest.mark.parametrize("l_max", sorted(N_SYM))
@pytest.mark.parametrize("nu_max", [1, 2, 3, 4])
def test_symmetrizer_equals_dot_product_form(l_max, nu_max):
    rng = np.random.default_rng(100 + 10 * l_max + nu_max)
    units = random_units(rng, 4)
    radial = rng.normal(size=(2, 4, 3, 2))  # N=2 atoms, K=4 edges, m=3, C=2
    b = symmetrize(Symmetrizer(l_max, nu_max), density(units, radial, l_max))
    expected = features_from_dot_products(units, radial, l_max, nu_max)
    assert b.shape == expected.shape
    np.testing.assert_allclose(b.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("l_max", sorted(N_SYM))
def test_lower_body_orders_are_a_prefix(l_max):
    a = density(random_units(np.random.default_rng(l_max), 5), np.random.default_rng(1).normal(size=(1, 5, 2, 3)),
                l_max)
    full = symmetrize(Symmetrizer(l_max, 4), a)
    for nu_max in (1, 2, 3):
        part = symmetrize(Symmetrizer(l_max, nu_max), a)
        torch.testing.assert_close(part, full[:, :, : part.shape[2]], rtol=0, atol=0)


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
@pytest.mark.parametrize("l_max", sorted(N_SYM))
def test_symmetrizer_is_rotation_invariant(l_max, proper):
    rng = np.random.default_rng(l_max + 10 * proper)
    units = random_units(rng, 5)
    radial = rng.normal(size=(3, 5, 2, 4))
    sym = Symmetrizer(l_max, 4)
    b = symmetrize(sym, density(units, radial, l_max))
    rot = random_rotation(rng, proper=proper)
    b_rot = symmetrize(sym, density(units @ rot.T, radial, l_max))
    scale = b.abs().max()
    torch.testing.assert_close(b_rot, b, rtol=1e-10, atol=1e-12 * scale)

    # and the check has teeth: a non-rigid change of the edges changes every nu >= 2 feature
    bent = units.copy()
    bent[0] = random_units(rng, 1)[0]
    b_bent = symmetrize(sym, density(bent, radial, l_max))
    changed = (b_bent - b).abs().amax(dim=(0, 1, 3))
    assert (changed[1:] > 1e-6 * scale).all()


def test_symmetrizer_float32_matches_float64():
    rng = np.random.default_rng(9)
    a = density(random_units(rng, 4), rng.normal(size=(2, 4, 3, 2)), 3)
    sym = Symmetrizer(3, 4)
    b64 = symmetrize(sym, a)
    b32 = symmetrize(sym.to(torch.float32), a.float())
    assert b32.dtype == torch.float32
    np.testing.assert_allclose(b32.double().numpy(), b64.numpy(), rtol=1e-4, atol=1e-5 * b64.abs().max().item())


# --- polynomial cutoff ---------------------------------------------------------------------

@pytest.mark.parametrize("cutoff", [3.0, 5.5])
@pytest.mark.parametrize("p", [5.0, 6.0, 8.0])
def test_polynomial_cutoff(cutoff, p):
    fc = PolynomialCutoff(cutoff, p)
    d = torch.tensor([0.0, cutoff, cutoff * (1 + 1e-12), cutoff + 0.5, 3 * cutoff], dtype=torch.float64)
    f = fc(d)
    assert f[0].item() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(f[1:].numpy(), 0.0)

    inside = torch.linspace(0.0, cutoff, 201, dtype=torch.float64)[1:-1]
    fi = fc(inside)
    assert ((fi > 0) & (fi <= 1)).all()  # (x^p rounds to 0 next to d = 0)
    assert (torch.diff(fi) <= 0).all()  # decreases monotonically
    assert fi[100].item() < 1 - 1e-3

    # continuous at the cutoff from below
    x = torch.tensor([cutoff * (1 - 1e-4)], dtype=torch.float64)
    assert fc(x).item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("p", [5.0, 6.0, 8.0])
def test_polynomial_cutoff_derivative_vanishes_at_cutoff(p):
    cutoff = 4.0
    fc = PolynomialCutoff(cutoff, p)
    d = torch.tensor([cutoff * (1 - 1e-3), cutoff * (1 - 1e-6), cutoff, cutoff + 1.0], dtype=torch.float64,
                     requires_grad=True)
    (grad,) = torch.autograd.grad(fc(d).sum(), d)
    assert grad[0].abs().item() < 1e-4  # ~ (1 - x)^2 close to the cutoff
    assert grad[1].abs().item() < 1e-10
    assert grad[2].item() == 0.0 and grad[3].item() == 0.0

    # the derivative inside is that of the formula, and it is not trivially zero
    x = torch.tensor([0.5 * cutoff], dtype=torch.float64, requires_grad=True)
    (g_mid,) = torch.autograd.grad(fc(x).sum(), x)
    t = 0.5
    expected = (-0.5 * (p + 1) * (p + 2) * p * t ** (p - 1) + p * (p + 2) * (p + 1) * t**p
                - 0.5 * p * (p + 1) * (p + 2) * t ** (p + 1)) / cutoff
    assert g_mid.item() == pytest.approx(expected, rel=1e-12)
    assert abs(expected) > 1e-3


def test_polynomial_cutoff_value_matches_formula():
    cutoff, p = 5.5, 6.0
    d = np.linspace(0.1, 5.4, 12)
    x = d / cutoff
    expected = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    f = PolynomialCutoff(cutoff, p)(torch.from_numpy(d))
    np.testing.assert_allclose(f.numpy(), expected, rtol=1e-13, atol=1e-15)
