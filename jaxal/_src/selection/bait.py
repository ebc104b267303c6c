r"""BAIT: greedy selection on the Fisher trace objective, with rank-K Woodbury updates.

For softmax cross-entropy and a Dense head on features ``h`` (with a trailing 1 when the bias
is included), the Fisher information of example ``i`` about the last layer's weights is

.. math::
  F_i = \sum_k p_{ik}\, g_{ik} g_{ik}^\top = (\mathrm{diag}(p_i) - p_i p_i^\top) \otimes h_i h_i^\top,
  \qquad g_{ik} = (e_k - p_i) \otimes h_i,

a ``D × D`` matrix, ``D = K · d``, in the class-major layout of
:mod:`jaxal._src.embeddings.gradients`. ``F_i = V_iᵀ V_i`` with the ``K`` rows
``v_ik = √p_ik (e_k − p_i) ⊗ h_i``: rank ``K``. Nothing of size ``N × D`` is ever built:
every per-point quantity is computed from ``p [N, K]`` and ``h [N, d]``.

**The objective** (weights as in the authors' code, ``query_strategies/bait_sampling.py`` of
github.com/JordanAsh/badge). With ``n_L`` labeled points, budget ``B`` and a set ``S`` of
selected points,

.. math::
  f(S) = \mathrm{tr}\big((M_L + M_S + \lambda I)^{-1} F_U\big), \quad
  M_L = \tfrac{1}{n_L + B} \sum_{i \in L} F_i, \quad
  M_S = \tfrac{B}{n_L + B} \sum_{i \in S} F_i, \quad
  F_U = \tfrac{1}{N} \sum_{i=1}^{N} F_i,

``F_U`` the mean Fisher over the whole pool (labeled points included).

**The algorithm.** Forward: ``2B`` greedy picks (fewer when fewer points are unlabeled), each
the unlabeled point that lowers ``f`` most. Backward: while more than ``B`` remain, drop the
pick whose removal raises ``f`` least. With ``A = (M_L + M_S + λI)^{-1}`` and ``V`` a point's
scaled ``[K, D]`` rows, Woodbury gives both changes from ``K × K`` matrices,

.. math::
  f(S \pm \{i\}) = \mathrm{tr}(A F_U) \mp
  \mathrm{tr}\big(V A F_U A V^\top (I \pm V A V^\top)^{-1}\big),

and each step updates ``A`` by a rank-``K`` correction: ``O(D² K)`` work.

**Scoring every point.** The set-up reads ``h_iᵀ G_{ab} h_i`` for each ``d × d`` block of
``G ∈ {A, A F_U A}`` (``O(N D²)`` work, in chunks of pool rows) to form every point's ``V A Vᵀ``
and ``V A F_U A Vᵀ`` (``[N, K, K]`` each). A pick changes ``A`` by ``−P Uᵀ`` and ``A F_U A`` by
``−P Rᵀ − R Pᵀ`` (``P, U, R`` of shape ``[D, K]``), so each point's two matrices are downdated
from its projections ``V U`` and ``V R``: ``O(N K² d)`` work per pick, ``D / K`` = ``d`` times less
than rescoring from the blocks, and no dense ``A F_U A`` is kept past the set-up. These
per-point arrays take ``O(N K²)`` memory; when they do not fit in ``memory_limit`` beside the
dense matrices, every pick rescores from the blocks instead (``O(N D²)`` per pick, memory
``O(N (K + d))``; the same greedy, float rounding aside). The pruning downdates the ``2B``
picks' matrices the same way.

At most six dense ``D × D`` float32 matrices are live at once (``F_U``, ``A``, ``A F_U A``
and the temporaries of the set-up and of one update; XLA's memory analysis of the compiled
selection measures about 5.5), so their size is checked against ``memory_limit`` first;
besides them, a scoring chunk of at most 16 MiB, the per-point arrays and ``O(N (K + d))``
for the pool.

Ties go to the lower pool index (forward) and to the earlier pick (backward). The features are
scaled by a power of two to a largest row norm of at most 1 (``λ`` scaled to match, so the
objective's minimisers do not change), so no finite input overflows.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import sharding

# Dense [D, D] float32 matrices live at once: F_U, A, A F_U A and the temporaries of the set-up
# and of one rank-K update (tests/test_bait.py checks the compiled program against it).
DENSE_MATRICES = 6
DEFAULT_MEMORY_LIMIT = 2 * 1024**3  # bytes
# Per-point [N, K, K] float32 arrays of the incremental scoring: V A Vᵀ and V AFA Vᵀ, their
# downdates' temporaries ([N, K, 2K] projections and the products) and the solve's.
POINT_ARRAYS = 10
# Elements of the per-chunk scoring intermediate [chunk, K, K, d].
_CHUNK_ELEMENTS = 1 << 22
_HI = jax.lax.Precision.HIGHEST


def dense_bytes(num_classes: int, feat_dim: int) -> int:
  """Bytes of the dense ``[K·d, K·d]`` float32 matrices BAIT holds."""
  dim = num_classes * feat_dim
  return DENSE_MATRICES * dim * dim * 4


def check_memory(num_classes: int, feat_dim: int, memory_limit: int, bias: bool) -> None:
  """Raises a ``ValueError`` when the dense matrices would exceed ``memory_limit`` bytes."""
  d = feat_dim + int(bias)
  need = dense_bytes(num_classes, d)
  if need > memory_limit:
    dim = num_classes * d
    raise ValueError(
      f"BAIT holds {DENSE_MATRICES} dense [{dim}, {dim}] float32 matrices (D = num_classes * "
      f"feat_dim = {num_classes} * {d}{' with the bias' if bias else ''}): {need} bytes, over "
      f"memory_limit={memory_limit} bytes; reduce the feature dimension (a smaller "
      f"penultimate layer or a projection of the features), the number of classes, or raise "
      f"memory_limit"
    )


def _chunk(n: int, num_classes: int, d: int) -> int:
  return max(1, min(n, _CHUNK_ELEMENTS // (num_classes * num_classes * d)))


def _factor(p: jax.Array, c_s: jax.Array) -> jax.Array:
  """``[m, K, K]``: the class factors ``√(c_s p_k) (e_k − p)`` of each point's Fisher rows."""
  k = p.shape[-1]
  rows = jnp.eye(k, dtype=p.dtype)[None] - p[:, None, :]
  return jnp.sqrt(c_s * p)[:, :, None] * rows


def _quad(h: jax.Array, c: jax.Array, g: jax.Array) -> jax.Array:
  """``[m, K, K]``: ``V_i G V_iᵀ`` for ``G = g [K, d, K, d]``, ``c`` the class factors."""
  t = jnp.einsum("ne,aebf->nabf", h, g, precision=_HI)
  q = jnp.einsum("nabf,nf->nab", t, h, precision=_HI)
  return jnp.einsum("nka,nab,nlb->nkl", c, q, c, precision=_HI)


def _change(h, p, c_s, a_inv, afa, sign):
  """``[m]``: ``tr(V AFA Vᵀ (I + sign V A Vᵀ)⁻¹)``, the drop (sign +1) or rise (−1) of ``f``."""
  c = _factor(p, c_s)
  return _trace_change(_quad(h, c, a_inv), _quad(h, c, afa), sign)


def _rows(h: jax.Array, p: jax.Array, c_s: jax.Array) -> jax.Array:
  """``[K, D]``: one point's scaled Fisher rows ``V``, class-major."""
  a = _factor(p[None], c_s)[0]
  return (a[:, :, None] * h[None, None, :]).reshape(a.shape[0], -1)


def _fisher_sums(h, p, w, chunk):
  """``[2, K, d, K, d]``: ``Σ_i w[g, i] F_i`` for the two weight rows ``w [2, N]``, chunked."""
  n, d = h.shape
  k = p.shape[-1]
  num = -(-n // chunk)
  pad = num * chunk - n
  hp = jnp.pad(h, ((0, pad), (0, 0))).reshape(num, chunk, d)
  pp = jnp.pad(p, ((0, pad), (0, 0))).reshape(num, chunk, k)
  wp = jnp.pad(w, ((0, 0), (0, pad))).reshape(2, num, chunk).transpose(1, 0, 2)

  def body(c, acc):
    outer, diag = acc
    hc, pc, wc = hp[c], pp[c], wp[c]
    z = pc[:, :, None] * hc[:, None, :]  # [m, K, d]: p ⊗ h
    outer = outer + jnp.einsum("gn,nae,nbf->gaebf", wc, z, z, precision=_HI)
    return outer, diag + jnp.einsum("gn,nae,nf->gaef", wc, z, hc, precision=_HI)

  init = (jnp.zeros((2, k, d, k, d), h.dtype), jnp.zeros((2, k, d, d), h.dtype))
  outer, diag = jax.lax.fori_loop(0, num, body, init)
  eye = jnp.eye(k, dtype=h.dtype)
  return jnp.einsum("gaef,ab->gaebf", diag, eye, precision=_HI) - outer


def point_bytes(num_points: int, num_classes: int) -> int:
  """Bytes of the per-point ``[N, K, K]`` float32 arrays the incremental scoring keeps."""
  return POINT_ARRAYS * num_points * num_classes * num_classes * 4


def incremental_fits(num_points: int, num_classes: int, feat_dim: int, memory_limit: int) -> bool:
  """Whether the dense matrices and the incremental per-point arrays fit in ``memory_limit``."""
  dense = dense_bytes(num_classes, feat_dim)
  return dense + point_bytes(num_points, num_classes) <= memory_limit


def _woodbury(a_inv, f, v, sign):
  """One rank-K step ``M' = M + sign Vᵀ V``: ``(A', U, R, sign S⁻¹)``.

  With ``U = A Vᵀ``, ``S = I + sign V U``, ``P = sign U S⁻¹`` and ``Q = A F U``:
  ``A' = A − P Uᵀ`` and ``A' F A' = A F A − P Rᵀ − R Pᵀ`` with ``R = Q − ½ P (Uᵀ F U)``.
  """
  k = v.shape[0]
  u = jnp.matmul(a_inv, v.T, precision=_HI)  # [D, K]
  s = jnp.eye(k, dtype=u.dtype) + sign * jnp.matmul(v, u, precision=_HI)
  p = sign * jnp.linalg.solve(s, u.T).T  # sign U S⁻¹ (S symmetric)
  s_inv = sign * jnp.linalg.solve(s, jnp.eye(k, dtype=u.dtype))
  fu = jnp.matmul(f, u, precision=_HI)
  q = jnp.matmul(a_inv, fu, precision=_HI)  # A F U
  r = q - 0.5 * jnp.matmul(p, jnp.matmul(u.T, fu, precision=_HI), precision=_HI)
  return a_inv - jnp.matmul(p, u.T, precision=_HI), p, u, r, s_inv


def _update(a_inv, afa, f, v, sign):
  """``(A', A' F A')`` for ``M' = M + sign Vᵀ V``: one rank-K Woodbury step.

  Each of the two corrections is one ``[D, 2K] x [2K, D]`` product (see :func:`_woodbury`),
  so an update needs one ``[D, D]`` temporary.
  """
  a_new, p, _, r, _ = _woodbury(a_inv, f, v, sign)
  lhs = jnp.concatenate([p, r], axis=1)
  rhs = jnp.concatenate([r, p], axis=1)
  return a_new, afa - jnp.matmul(lhs, rhs.T, precision=_HI)


def _project(h, p, c_s, x):
  """``[m, K, J]``: ``V_i X`` for ``X [D, J]`` (class-major), from the factors alone."""
  nk = p.shape[-1]
  t = jnp.einsum("ne,aej->naj", h, x.reshape(nk, h.shape[-1], -1), precision=_HI)
  return jnp.einsum("nka,naj->nkj", _factor(p, c_s), t, precision=_HI)


def _downdate(m1, m2, h, p, c_s, u, r, s_inv):
  """The points' ``(V A' Vᵀ, V A' F A' Vᵀ)`` after one step, from ``V U`` and ``V R``.

  ``V A' Vᵀ = V A Vᵀ − (V U) sign S⁻¹ (V U)ᵀ`` and ``V A'FA' Vᵀ = V AFA Vᵀ − (V P)(V R)ᵀ
  − (V R)(V P)ᵀ`` with ``V P = (V U) sign S⁻¹``: ``O(m K² d)`` work, no ``[D, D]`` read.
  """
  nk = u.shape[-1]
  vx = _project(h, p, c_s, jnp.concatenate([u, r], axis=1))
  vu, vr = vx[..., :nk], vx[..., nk:]
  vp = jnp.einsum("nkj,jl->nkl", vu, s_inv, precision=_HI)
  m1 = m1 - jnp.einsum("nkj,nlj->nkl", vp, vu, precision=_HI)
  cross = jnp.einsum("nkj,nlj->nkl", vp, vr, precision=_HI)
  return m1, m2 - cross - jnp.swapaxes(cross, -1, -2)


def _trace_change(m1, m2, sign):
  """``[m]``: ``tr((I + sign m1)⁻¹ m2)``, the drop (sign +1) or rise (−1) of ``f``."""
  k = m1.shape[-1]
  s = jnp.eye(k, dtype=m1.dtype)[None] + sign * m1
  return jnp.trace(jnp.linalg.solve(s, m2), axis1=-2, axis2=-1)


@executables.jit(
  static_argnames=("k", "bias", "incremental", "flagged"),
  compiler_options=executables.ELEMENTAL_EMITTERS,
)
def bait_core(logits, features, k, labeled_mask, lam, bias, incremental=True, flagged=False):
  """``(indices [k] int32, objective [])`` on validated, finite arrays.

  With ``flagged``, a third output: the finiteness flags ``(logits_ok, features_ok)`` of
  :mod:`jaxal._src.checks`, from the same compiled call.

  ``objective`` is ``f`` of the returned set, from the Woodbury-updated inverse.
  ``incremental`` (static): keep every point's ``V A Vᵀ`` and ``V AFA Vᵀ`` ([N, K, K] each)
  and downdate them after each pick (``O(N K² d)`` per pick after an ``O(N D²)`` set-up);
  otherwise recompute them from the dense blocks at every pick (``O(N D²)`` per pick,
  memory ``O(N (K + d))``). Both run the same greedy; float rounding differs.
  """
  flags = (checks.logits_ok(logits), checks.all_finite(features)[0]) if flagged else None
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  p = jnp.exp(logp)
  h = features.astype(jnp.float32)
  if bias:
    h = jnp.concatenate([h, jnp.ones((h.shape[0], 1), jnp.float32)], axis=-1)
  n, d = h.shape
  nk = p.shape[-1]
  dim = nk * d
  # Power-of-two scale s to a largest row norm <= 1: f(S) of (s h, λ s²) equals f(S) of (h, λ).
  big = jnp.maximum(jnp.max(jnp.abs(h)), jnp.finfo(jnp.float32).tiny)
  norm = big * jnp.sqrt(jnp.max(jnp.sum(jnp.square(h / big), axis=-1)))
  scale = jnp.where(norm > 0, jnp.exp2(-jnp.ceil(jnp.log2(jnp.where(norm > 0, norm, 1.0)))), 1.0)
  h = h * scale
  lam_s = jnp.clip(jnp.asarray(lam, jnp.float32) * jnp.square(scale), 2.0**-100, 2.0**100)

  num_labeled = jnp.sum(labeled_mask, dtype=jnp.int32)
  unlabeled = n - num_labeled
  total = (num_labeled + k).astype(jnp.float32)
  c_l, c_s = 1.0 / total, jnp.float32(k) / total
  w = jnp.stack([jnp.full((n,), 1.0 / n, jnp.float32), jnp.where(labeled_mask, c_l, 0.0)])
  chunk = _chunk(n, nk, d)
  sums = _fisher_sums(h, p, w, chunk)
  f = sums[0].reshape(dim, dim)
  f = 0.5 * (f + f.T)
  m0 = sums[1].reshape(dim, dim)
  m0 = 0.5 * (m0 + m0.T) + lam_s * jnp.eye(dim, dtype=jnp.float32)
  chol = jnp.linalg.cholesky(m0)
  a_inv = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(dim, dtype=jnp.float32))
  a_inv = 0.5 * (a_inv + a_inv.T)
  afa = jnp.matmul(jnp.matmul(a_inv, f, precision=_HI), a_inv, precision=_HI)
  afa = 0.5 * (afa + afa.T)

  num = -(-n // chunk)
  pad = num * chunk - n
  hp = jnp.pad(h, ((0, pad), (0, 0))).reshape(num, chunk, d)
  pp = jnp.pad(p, ((0, pad), (0, 0))).reshape(num, chunk, nk)
  m = jnp.minimum(2 * k, unlabeled)  # forward picks
  slots = 2 * k

  def blocks(x):
    return x.reshape(nk, d, nk, d)

  def quads(a_inv, afa):
    """Every point's ``(V A Vᵀ, V AFA Vᵀ)``, ``[N, K, K]`` each, in chunks of rows."""
    g1, g2 = blocks(a_inv), blocks(afa)

    def one(hc_pc):
      c = _factor(hc_pc[1], c_s)
      return _quad(hc_pc[0], c, g1), _quad(hc_pc[0], c, g2)

    q1, q2 = jax.lax.map(one, (hp, pp))
    return q1.reshape(-1, nk, nk)[:n], q2.reshape(-1, nk, nk)[:n]

  def pick(drop, taken):
    drop = jnp.where(jnp.isnan(drop), -jnp.inf, drop)
    return jnp.argmax(jnp.where(taken, -jnp.inf, drop)).astype(jnp.int32)

  sel = jnp.zeros((slots,), jnp.int32)
  if incremental:

    def forward(t, carry):
      a_inv, m1, m2, taken, sel = carry
      j = pick(_trace_change(m1, m2, 1.0), taken)
      a_inv, _, u, r, s_inv = _woodbury(a_inv, f, _rows(h[j], p[j], c_s), 1.0)
      m1, m2 = _downdate(m1, m2, h, p, c_s, u, r, s_inv)
      return a_inv, m1, m2, taken.at[j].set(True), sel.at[t].set(j)

    m1, m2 = quads(a_inv, afa)
    carry = (a_inv, m1, m2, labeled_mask, sel)
    a_inv, m1, m2, _, sel = jax.lax.fori_loop(0, m, forward, carry)
    m1s, m2s = m1[sel], m2[sel]
  else:

    def forward(t, carry):
      a_inv, afa, taken, sel = carry
      g1, g2 = blocks(a_inv), blocks(afa)
      drop = jax.lax.map(lambda hc_pc: _change(hc_pc[0], hc_pc[1], c_s, g1, g2, 1.0), (hp, pp))
      j = pick(drop.reshape(-1)[:n], taken)
      a_inv, afa = _update(a_inv, afa, f, _rows(h[j], p[j], c_s), 1.0)
      return a_inv, afa, taken.at[j].set(True), sel.at[t].set(j)

    a_inv, afa, _, sel = jax.lax.fori_loop(0, m, forward, (a_inv, afa, labeled_mask, sel))
    c_sel = _factor(p[sel], c_s)
    m1s, m2s = _quad(h[sel], c_sel, blocks(a_inv)), _quad(h[sel], c_sel, blocks(afa))

  # Backward pruning on the 2k picks: the same downdates on their [2k, K, K] arrays.
  alive = jnp.arange(slots) < m
  hs, ps_ = h[sel], p[sel]

  def backward(_, carry):
    a_inv, m1s, m2s, alive = carry
    rise = _trace_change(m1s, m2s, -1.0)
    rise = jnp.where(jnp.isnan(rise), jnp.inf, rise)
    s = jnp.argmin(jnp.where(alive, rise, jnp.inf)).astype(jnp.int32)
    a_inv, _, u, r, s_inv = _woodbury(a_inv, f, _rows(hs[s], ps_[s], c_s), -1.0)
    m1s, m2s = _downdate(m1s, m2s, hs, ps_, c_s, u, r, s_inv)
    return a_inv, m1s, m2s, alive.at[s].set(False)

  a_inv, _, _, alive = jax.lax.fori_loop(0, m - k, backward, (a_inv, m1s, m2s, alive))
  keep = jnp.nonzero(alive, size=k, fill_value=0)[0]
  objective = jnp.sum(a_inv * f)  # tr(A F_U): A and F_U symmetric
  return (sel[keep], objective, flags) if flagged else (sel[keep], objective)


@checks.spelled_as(
  "bait(logits, features, k, *, labeled_mask=None, lam=1.0, bias=False, memory_limit=2**31)"
)
def bait(
  logits: ArrayLike,
  features: ArrayLike,
  k: int,
  *,
  labeled_mask: ArrayLike | None = None,
  lam: float = 1.0,
  bias: bool = False,
  memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> jax.Array:
  r"""BAIT: ``k`` unlabeled points that minimise the Fisher trace objective, greedily.

  Forward greedy selection of ``2k`` points (oversampling), then backward pruning down to
  ``k``, on

  .. math::
    \mathrm{tr}\big((M_L + M_S + \lambda I)^{-1} F_U\big),

  where ``F_i = (diag(p_i) − p_i p_iᵀ) ⊗ h_i h_iᵀ`` is the last layer's Fisher information
  of example ``i`` under softmax cross-entropy (the sum over classes ``k`` of ``p_ik g_ik
  g_ikᵀ`` with ``g_ik = (e_k − p_i) ⊗ h_i``), ``F_U`` its mean over the whole pool, ``M_L =
  Σ_{labeled} F_i / (n_L + k)`` and ``M_S = k Σ_{selected} F_i / (n_L + k)`` (the weights of
  the authors' code). Every step is a rank-``K`` Woodbury update of the inverse inside a
  ``jax.lax`` loop; see :mod:`jaxal._src.selection.bait` for the costs.

  Memory: ``O(N (K + d))`` for the pool plus six dense ``[K·d, K·d]`` float32 matrices,
  refused with a ``ValueError`` when they would exceed ``memory_limit`` bytes. When
  ``[N, K, K]`` per-point arrays also fit in ``memory_limit``, each pick costs ``O(N K² d)``
  (downdates); otherwise ``O(N (K·d)²)`` (rescoring), with the same picks.

  Args:
    logits: ``[num_points, num_classes]`` logits of the model on the pool.
    features: ``[num_points, feat_dim]`` penultimate features (the last layer's input).
    k: how many to pick, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: optional ``[num_points]`` bool, True where already labeled.
    lam: the ridge ``λ > 0`` added to the Fisher of the labeled and selected points.
    bias: include the bias in the last layer (a trailing 1 on the features).
    memory_limit: the most bytes the dense ``[K·d, K·d]`` matrices may take (and, for the
      faster scoring, the per-point arrays beside them).

  Returns:
    ``[k]`` int32 indices: the forward picks that survive pruning, in the order they were
    picked; unique, in range, never labeled.

  Raises:
    ValueError: mismatched numbers of points, non-finite logits or features, ``k`` larger
      than the unlabeled count, ``lam <= 0``, dense matrices larger than ``memory_limit``.
    TypeError: non-float logits or features, a non-bool mask, a non-integer ``k``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import selection
    >>> k1, k2 = jax.random.split(jax.random.key(0))
    >>> logits = jax.random.normal(k1, (40, 3))     # [N, K]
    >>> features = jax.random.normal(k2, (40, 4))   # [N, d]
    >>> labeled = jnp.zeros(40, bool).at[:5].set(True)
    >>> idx = selection.bait(logits, features, 6, labeled_mask=labeled)
    >>> idx.shape, bool(jnp.any(labeled[idx]))
    ((6,), False)

  References:
    Ash, Goel, Krishnamurthy & Kakade, Gone Fishing: Neural Active Learning with Fisher
    Embeddings, NeurIPS 2021.
  """
  logits_in = logits
  logits = checks.check_logits(logits)
  features = checks.check_float_array(features, "features", 2, "[num_points, feat_dim]")
  checks.check_same_n("logits", logits, "features", features)
  n = logits.shape[0]
  if n == 0:
    raise ValueError("logits must hold at least one point, got shape (0, ...)")
  labeled_mask = checks.check_labeled_mask(labeled_mask, n)
  k = checks.check_budget(k, n, labeled_mask)
  lam = checks.check_float(lam, "lam", low=0.0, low_open=True)
  bias = checks.check_bool(bias, "bias")
  memory_limit = checks.check_positive_int(memory_limit, "memory_limit")
  check_memory(logits.shape[1], features.shape[1], memory_limit, bias)
  idx, (logits_ok, features_ok) = select_bait(
    logits, features, k, labeled_mask, lam, bias, memory_limit, flagged=True
  )
  checks.check_finite_logits(logits, original=logits_in, ok=logits_ok)
  checks.check_finite(features, "features", purpose="BAIT needs finite features", ok=features_ok)
  return idx


def select_bait(
  logits: jax.Array,
  features: jax.Array,
  k: int,
  labeled_mask: jax.Array,
  lam: float,
  bias: bool,
  memory_limit: int = DEFAULT_MEMORY_LIMIT,
  *,
  flagged: bool = False,
) -> Any:
  """:func:`bait` on arguments a caller has validated (the memory check included).

  The per-point arrays of the incremental scoring are kept when they fit in
  ``memory_limit`` beside the dense matrices (:func:`incremental_fits`); otherwise every
  pick recomputes them (same greedy, ``O(N D²)`` per pick instead of ``O(N K² d)``).

  Args:
    logits: ``[num_points, num_classes]`` finite logits (``-inf`` allowed).
    features: ``[num_points, feat_dim]`` finite features.
    k: a Python int, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: ``[num_points]`` bool.
    lam: a Python float ``> 0``.
    bias: a Python bool.
    memory_limit: the most bytes BAIT's arrays may take.
    flagged: also return the finiteness flags ``(logits_ok, features_ok)``, from the
      same compiled call (the arrays are then checked after it, not before).

  Returns:
    ``[k]`` int32 indices, as :func:`bait` (and the flags, with ``flagged``).
  """
  logits, features, labeled_mask = sharding.single_device((logits, features, labeled_mask))
  n, nk = logits.shape
  incremental = incremental_fits(n, nk, features.shape[1] + int(bias), memory_limit)
  out = bait_core(logits, features, k, labeled_mask, jnp.float32(lam), bias, incremental, flagged)
  return (out[0], out[2]) if flagged else out[0]
