"""Classic traffic-matrix estimators from link loads: pseudo-inverse, simple gravity, tomogravity.

Convention (as everywhere in trafficgen): a routing matrix ``A`` is (n_od, L) and link loads are
``Y = X_flat @ A`` with ``X_flat`` (T, n_od), ``Y`` (T, L).

* :func:`pinv_estimate`: minimum-norm least squares ``x = Y @ pinv(A)``, clipped at 0.
* :func:`gravity_estimate`: ``x(i, j) = out_i * in_j / total`` from the node totals.
* :func:`tomogravity_estimate` (Zhang, Roughan, Duffield, Greenberg, SIGMETRICS 2003): gravity
  prior, then the weighted least-squares projection onto the link constraints
  ``x = x_g + W A (A^T W A)^+ (y - A^T x_g)`` with ``W = diag(x_g)`` (here written for the
  (n_od, L) convention), clipped at 0, then optional iterative proportional fitting (IPF) to the
  node totals.

Node totals (egress ``out_i = sum_j x_ij`` and ingress ``in_j = sum_i x_ij``) come from
``ingress``/``egress`` when given, otherwise from *access-link* columns of ``A`` (a column that
sums exactly the OD pairs leaving or entering one node, as columns 30-53 of the shipped Abilene
routing matrix; :func:`add_access_links` adds such columns to a backbone-only routing matrix).
"""
from __future__ import annotations

import numpy as np

from trafficgen.errors import ConfigError

__all__ = ["pinv_estimate", "gravity_estimate", "tomogravity_estimate", "node_totals",
           "find_access_links", "add_access_links", "weighted_projection", "kl_projection"]


def _check(Y, A) -> tuple[np.ndarray, np.ndarray]:
    Y = np.asarray(Y, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[None]
    if A.ndim != 2 or Y.ndim != 2 or Y.shape[1] != A.shape[1]:
        raise ConfigError(f"link loads {Y.shape} do not match a routing matrix {A.shape} "
                          "(expected Y (T, L) and A (n_od, L))")
    if not np.all(np.isfinite(Y)):
        raise ConfigError("link loads contain NaN or infinite values")
    return Y, A


def _n_nodes(n_od: int) -> int:
    n = int(round(np.sqrt(n_od)))
    if n * n != n_od:
        raise ConfigError(f"routing matrix has {n_od} rows, not N*N for any N")
    return n


def add_access_links(A: np.ndarray) -> np.ndarray:
    """Append 2N access-link columns to a (N*N, L) routing matrix: for node i, the egress column
    (all OD pairs i -> *) then the ingress column (all * -> i), as in the Abilene matrix.
    Returns (N*N, L + 2N)."""
    A = np.asarray(A, dtype=np.float64)
    n = _n_nodes(A.shape[0])
    extra = np.zeros((n * n, 2 * n))
    for i in range(n):
        extra[i * n:(i + 1) * n, 2 * i] = 1.0  # egress of node i
        extra[i::n, 2 * i + 1] = 1.0  # ingress of node i
    return np.concatenate([A, extra], axis=1)


def find_access_links(A: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Column indices (egress (N,), ingress (N,)) of the access links in ``A``, or None when
    ``A`` lacks one of them."""
    A = np.asarray(A, dtype=np.float64)
    n = _n_nodes(A.shape[0])
    out_cols, in_cols = np.full(n, -1), np.full(n, -1)
    for i in range(n):
        e = np.zeros(n * n)
        e[i * n:(i + 1) * n] = 1.0
        g = np.zeros(n * n)
        g[i::n] = 1.0
        hit_e = np.nonzero(np.all(A == e[:, None], axis=0))[0]
        hit_g = np.nonzero(np.all(A == g[:, None], axis=0))[0]
        if len(hit_e) == 0 or len(hit_g) == 0:
            return None
        out_cols[i], in_cols[i] = hit_e[0], hit_g[0]
    return out_cols, in_cols


def node_totals(Y, A, *, egress=None, ingress=None) -> tuple[np.ndarray, np.ndarray]:
    """(egress (T, N), ingress (T, N)) node totals: given, or read from A's access links."""
    Y, A = _check(Y, A)
    n = _n_nodes(A.shape[0])
    if egress is not None and ingress is not None:
        egress = np.asarray(egress, dtype=np.float64).reshape(len(Y), n)
        ingress = np.asarray(ingress, dtype=np.float64).reshape(len(Y), n)
        return egress, ingress
    cols = find_access_links(A)
    if cols is None:
        raise ConfigError("the routing matrix has no access links (node egress/ingress columns); "
                          "pass egress= and ingress= or use add_access_links()")
    return Y[:, cols[0]], Y[:, cols[1]]


def pinv_estimate(Y, A, *, rcond: float = 1e-10) -> np.ndarray:
    """Minimum-norm least squares ``X = Y @ pinv(A)`` (T, n_od), clipped at 0."""
    Y, A = _check(Y, A)
    return np.clip(Y @ np.linalg.pinv(A, rcond=rcond), 0.0, None)  # (T, n_od)


def gravity_estimate(Y, A, *, egress=None, ingress=None) -> np.ndarray:
    """Simple gravity model ``x(i, j) = out_i * in_j / total`` (T, n_od)."""
    out, inn = node_totals(Y, A, egress=egress, ingress=ingress)  # (T, N), (T, N)
    total = np.maximum(out.sum(1, keepdims=True), 1e-300)  # (T, 1)
    xg = out[:, :, None] * inn[:, None, :] / total[:, :, None]  # (T, N, N)
    return xg.reshape(len(out), -1)


def weighted_projection(prior, Y, A, *, weights=None, rcond: float = 1e-10) -> np.ndarray:
    """Weighted least-squares projection of ``prior`` (T, n_od) onto ``x @ A = y``:
    ``x = p + (y - p A) (A^T W A)^+ A^T W`` with ``W = diag(weights)`` (default: the prior
    itself, so small flows move little). Not clipped. Returns (T, n_od)."""
    Y, A = _check(Y, A)
    P = np.asarray(prior, dtype=np.float64)
    W = np.clip(P if weights is None else np.asarray(weights, dtype=np.float64), 0.0, None)  # (T, n_od)
    AW = A.T[None] * W[:, None, :]  # (T, L, n_od) = A^T W
    G = AW @ A  # (T, L, L)
    r = Y - P @ A  # (T, L)
    lam = np.einsum("tlk,tk->tl", np.linalg.pinv(G, rcond=rcond, hermitian=True), r)  # (T, L)
    return P + np.einsum("tl,tlk->tk", lam, AW)  # (T, n_od)


def _ipf(X, out, inn, iters: int) -> np.ndarray:
    """Iterative proportional fitting of (T, N, N) to row sums ``out`` and column sums ``inn``."""
    for _ in range(iters):
        rs = X.sum(2)  # (T, N)
        X = X * np.where(rs > 0, out / np.maximum(rs, 1e-300), 1.0)[:, :, None]
        cs = X.sum(1)  # (T, N)
        X = X * np.where(cs > 0, inn / np.maximum(cs, 1e-300), 1.0)[:, None, :]
    return X


def tomogravity_estimate(Y, A, *, egress=None, ingress=None, ipf_iters: int = 10,
                         rcond: float = 1e-10) -> np.ndarray:
    """Tomogravity: gravity prior + weighted LS projection onto the link loads, clipped at 0,
    then ``ipf_iters`` rounds of IPF to the node totals (0 = none). Returns (T, n_od)."""
    Y, A = _check(Y, A)
    n = _n_nodes(A.shape[0])
    out, inn = node_totals(Y, A, egress=egress, ingress=ingress)
    xg = gravity_estimate(Y, A, egress=out, ingress=inn)  # (T, n_od)
    x = np.clip(weighted_projection(xg, Y, A, rcond=rcond), 0.0, None)  # (T, n_od)
    if ipf_iters > 0:
        x = _ipf(x.reshape(-1, n, n), out, inn, ipf_iters).reshape(len(Y), -1)
    return x


def kl_projection(prior, Y, A, *, iters: int = 30, floor: float = 1e-3, tol: float = 1e-9,
                  rcond: float = 1e-10) -> np.ndarray:
    """I-projection of ``prior`` (T, n_od) onto ``x @ A = y``: the ``x >= 0`` closest to the prior
    in generalised KL divergence ``sum x log(x / p) - x + p`` (the minimum-information
    regularisation of Zhang, Roughan, Lund and Donoho, SIGCOMM 2003, with the prior as reference).

    The solution is ``x = p * exp(A lam)``; ``lam`` is found by damped Newton steps on the concave
    dual ``lam . y - sum p exp(A lam)`` over the row space of ``A`` (rank r), so each step solves an
    (r, r) positive-definite system per time point. Non-negative by construction; prior entries
    below ``floor`` times the prior's mean are raised to it so every flow can move. Link loads
    outside the range of the routing matrix are fitted in the least-squares sense of that basis.
    Returns (T, n_od).
    """
    Y, A = _check(Y, A)
    P = np.asarray(prior, dtype=np.float64)
    if P.shape != (len(Y), A.shape[0]):
        raise ConfigError(f"prior {P.shape} does not match link loads {Y.shape} and routing {A.shape}")
    _, s, vt = np.linalg.svd(A, full_matrices=False)
    V = vt[s > rcond * s[0]].T  # (L, r) orthonormal basis of the row space of A
    Ar = A @ V  # (n_od, r)
    scale = np.maximum(np.abs(Y).sum(1, keepdims=True), 1e-300)  # (T, 1) per-time normalisation
    yr = (Y @ V) / scale  # (T, r)
    p = np.clip(P, 0.0, None) / scale  # (T, n_od)
    p = np.maximum(p, floor * np.maximum(p.mean(1, keepdims=True), 1e-300))
    lam = np.zeros((len(Y), Ar.shape[1]))  # (T, r)
    r_eye = np.eye(Ar.shape[1])

    def dual(lam_):
        return (lam_ * yr).sum(1) - (p * np.exp(np.clip(lam_ @ Ar.T, -50, 50))).sum(1)  # (T,)

    f = dual(lam)
    for _ in range(iters):
        x = p * np.exp(np.clip(lam @ Ar.T, -50, 50))  # (T, n_od)
        g = yr - x @ Ar  # (T, r) dual gradient
        if np.max(np.abs(g).sum(1)) < tol:
            break
        H = (Ar.T[None] * x[:, None, :]) @ Ar  # (T, r, r) = Ar^T diag(x) Ar
        H += 1e-10 * np.trace(H, axis1=1, axis2=2)[:, None, None] * r_eye
        d = np.linalg.solve(H, g[:, :, None])[:, :, 0]  # (T, r) Newton direction
        step = np.ones(len(Y))
        for _ in range(30):  # backtracking: accept when the dual increases
            f_new = dual(lam + step[:, None] * d)
            bad = f_new < f - 1e-12 * np.abs(f)
            if not bad.any():
                break
            step = np.where(bad, step * 0.5, step)
        lam = lam + step[:, None] * d
        f = dual(lam)
    return p * np.exp(np.clip(lam @ Ar.T, -50, 50)) * scale
