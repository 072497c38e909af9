"""Fidelity metrics: Jensen-Shannon divergence between real and synthetic flows.

All the metrics are the Jensen-Shannon **divergence** (not the JS distance, its square root)
with base-2 logarithms, so they lie in [0, 1]: 0 for identical distributions, 1 for disjoint
supports. Histograms are built over the **union** of both supports: synthetic mass outside
the real range counts against the generator (a peer tool binned synthetic values on the real
range only and silently dropped it). Everything is vectorised with ``np.unique`` on packed
integer keys (10k flows x 32 packets take milliseconds).

Per-class values and macro averages come from :class:`trafficgen.evaluation.metric.Metric`.
"""
from __future__ import annotations

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.evaluation.metric import Metric

_OFFSET = np.int64(2**31)


def jsd(p, q) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two non-negative weight vectors on the
    same support (normalised here). An empty side (total 0) against a non-empty one gives 1;
    two empty sides give 0."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    sp, sq = p.sum(), q.sum()
    if sp == 0 or sq == 0:
        return 0.0 if sp == sq else 1.0
    pn, qn = p / sp, q / sq
    m = 0.5 * (pn + qn)
    with np.errstate(divide="ignore", invalid="ignore"):
        # weights stay un-normalised until the end: disjoint supports give exactly sp / sp = 1
        kp = np.where(p > 0, p * np.log2(pn / m), 0.0).sum() / sp
        kq = np.where(q > 0, q * np.log2(qn / m), 0.0).sum() / sq
    return float(np.clip(0.5 * (kp + kq), 0.0, 1.0))


def joint_counts(real_keys: np.ndarray, synth_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of each key of the union support: (keys (K,), real counts (K,), synthetic counts (K,))."""
    keys, inv = np.unique(np.concatenate([real_keys, synth_keys]), return_inverse=True)
    inv = inv.reshape(-1)
    n = real_keys.shape[0]
    cr = np.bincount(inv[:n], minlength=keys.shape[0])
    cs = np.bincount(inv[n:], minlength=keys.shape[0])
    return keys, cr, cs


def histogram_jsd(real_keys, synth_keys) -> float:
    """JSD between the empirical distributions of two 1-D integer key arrays (union support)."""
    _, cr, cs = joint_counts(np.asarray(real_keys).reshape(-1), np.asarray(synth_keys).reshape(-1))
    return jsd(cr, cs)


def pack_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pack two int32 arrays into one uint64 key per pair (order-preserving, collision-free)."""
    ua = (a.astype(np.int64) + _OFFSET).astype(np.uint64)
    ub = (b.astype(np.int64) + _OFFSET).astype(np.uint64)
    return (ua << np.uint64(32)) | ub


def bigrams(flows: FlowSet) -> tuple[np.ndarray, np.ndarray]:
    """(first, second) signed lengths of every pair of consecutive packets inside a flow."""
    L = flows.lengths  # (n, W)
    if L.shape[1] < 2:
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty
    both = flows.valid_mask[:, 1:]  # (n, W-1): packet j+1 exists (so j does too)
    return L[:, :-1][both], L[:, 1:][both]


class PacketCountJSD(Metric):
    """JSD of the packets-per-flow histograms (``n_packets``)."""

    name = "packet_count_jsd"

    def _compute(self, real, synthetic):
        return histogram_jsd(real.n_packets, synthetic.n_packets)


class LengthJSD(Metric):
    """JSD of the 1-gram histograms of signed lengths (all packets of all flows pooled)."""

    name = "length_jsd"

    def _compute(self, real, synthetic):
        return histogram_jsd(real.lengths[real.valid_mask], synthetic.lengths[synthetic.valid_mask])


class BigramJSD(Metric):
    """JSD of the 2-gram histograms: pairs (l_j, l_{j+1}) of consecutive signed lengths in a flow."""

    name = "bigram_jsd"

    def _compute(self, real, synthetic):
        return histogram_jsd(pack_pairs(*bigrams(real)), pack_pairs(*bigrams(synthetic)))


class MarkovJSD(Metric):
    """Weighted row-wise JSD of the first-order Markov transition matrices of signed lengths.

    States are signed lengths; a transition is a pair of consecutive packets of a flow (flow
    starts and ends are not states). For every state ``s`` in the union of both supports, row
    ``s`` of each matrix is the distribution of the next length after ``s``, and
    ``JSD_s = JSD(P_real[s], P_synth[s])`` (union support, base 2). A row present on one side
    only has ``JSD_s = 1`` (nothing of it is reproduced).

    Weighting: ``w_s = (m_real(s) + m_synth(s)) / 2``, where ``m(s)`` is the fraction of that
    side's transitions that leave ``s``. Using the mean of both rows' masses (rather than the
    real mass alone) makes synthetic transitions out of states the real data never visits count
    against the generator; the weights sum to 1, so the result stays in [0, 1]. With no
    transitions on either side it is 0; with transitions on one side only it is 1.
    """

    name = "markov_jsd"

    def _compute(self, real, synthetic):
        ra, rb = bigrams(real)
        sa, sb = bigrams(synthetic)
        nr, ns = ra.shape[0], sa.shape[0]
        if nr == 0 or ns == 0:
            return 0.0 if nr == ns else 1.0
        keys, cr, cs = joint_counts(pack_pairs(ra, rb), pack_pairs(sa, sb))  # (K,)
        rows, row_id = np.unique(keys >> np.uint64(32), return_inverse=True)
        row_id = row_id.reshape(-1)
        R = np.bincount(row_id, weights=cr, minlength=rows.shape[0])  # (S,) real row totals
        S = np.bincount(row_id, weights=cs, minlength=rows.shape[0])  # (S,) synthetic row totals
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(R[row_id] > 0, cr / R[row_id], 0.0)  # (K,)
            q = np.where(S[row_id] > 0, cs / S[row_id], 0.0)  # (K,)
            m = 0.5 * (p + q)
            terms = 0.5 * (np.where(p > 0, p * np.log2(p / m), 0.0) + np.where(q > 0, q * np.log2(q / m), 0.0))
        row_jsd = np.bincount(row_id, weights=terms, minlength=rows.shape[0])  # (S,)
        row_jsd = np.where((R > 0) & (S > 0), row_jsd, 1.0)
        w = 0.5 * (R / nr + S / ns)
        return float(np.clip((w * row_jsd).sum(), 0.0, 1.0))


def iat_events(flows: FlowSet) -> tuple[np.ndarray, np.ndarray]:
    """(IATs (k,) seconds, direction changed (k,) bool) of every packet after the first of a flow."""
    later = flows.valid_mask.copy()
    later[:, :1] = False
    change = np.zeros(later.shape, dtype=bool)
    change[:, 1:] = flows.directions[:, 1:] != flows.directions[:, :-1]
    return flows.iat[later], change[later]


class IATJSD(Metric):
    """Conditional JSD of log-IAT histograms: is the timing between packets reproduced, apart for
    packets that follow one of the same direction (bursts, pacing) and those that answer the other
    side (round trips, think time)?

    Every packet after the first of a flow gives an event (its IAT, whether the direction changed).
    IATs are binned on a fixed log10 grid of ``bins_per_decade`` bins per decade from
    ``min_iat`` (1 us) to ``max_iat`` (1000 s), plus one bin below (0 included: gaps under the
    capture's resolution) and one above, the same bins for every set. For each condition ``c``
    (same direction, direction change) ``JSD_c`` is the JSD of the two sides' histograms of that
    condition (base 2, 1 when only one side has events of it); the value is
    ``sum_c w_c JSD_c`` with ``w_c`` the mean of the two sides' fractions of events under ``c``
    (as :class:`MarkovJSD` weighs its rows), so it lies in [0, 1]. No events on either side: 0;
    on one side only: 1.

    Without timing (``iat is None`` on either side, e.g. CICDOH20 as shipped or a generator that
    does not model time) the metric is undefined and every value is NaN, never 0: a report shows
    it as missing rather than as a perfect score.
    """

    name = "iat_jsd"

    def __init__(self, *, bins_per_decade: int = 5, min_iat: float = 1e-6, max_iat: float = 1e3):
        self.bins_per_decade = int(bins_per_decade)
        self.min_iat = float(min_iat)
        self.max_iat = float(max_iat)

    def bin_index(self, iat: np.ndarray) -> np.ndarray:
        """Bin of each IAT: 0 below ``min_iat``, then the log10 grid, the last bin from ``max_iat`` on."""
        lo, hi = np.log10(self.min_iat), np.log10(self.max_iat)
        n_grid = int(round((hi - lo) * self.bins_per_decade))
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.log10(np.asarray(iat, dtype=np.float64))
        x = np.clip(np.nan_to_num(x, nan=hi, posinf=hi, neginf=lo - 1.0), lo - 1.0, hi + 1.0)
        b = 1 + np.floor((x - lo) * self.bins_per_decade).astype(np.int64).clip(-1, n_grid)
        return np.where(np.asarray(iat) < self.min_iat, 0, b)

    def _compute(self, real, synthetic):
        if real.iat is None or synthetic.iat is None:
            return float("nan")
        r_iat, r_chg = iat_events(real)
        s_iat, s_chg = iat_events(synthetic)
        nr, ns = r_iat.size, s_iat.size
        if nr == 0 or ns == 0:
            return 0.0 if nr == ns else 1.0
        rb, sb = self.bin_index(r_iat), self.bin_index(s_iat)
        total = 0.0
        for c in (False, True):
            kr, ks = rb[r_chg == c], sb[s_chg == c]
            w = 0.5 * (kr.size / nr + ks.size / ns)
            if w > 0:
                total += w * histogram_jsd(kr, ks)
        return float(np.clip(total, 0.0, 1.0))

    def describe(self) -> dict:
        return {**super().describe(), "bins_per_decade": self.bins_per_decade, "min_iat": self.min_iat,
                "max_iat": self.max_iat}


#: The fidelity metrics of a report, in order.
FIDELITY_METRICS: tuple[type[Metric], ...] = (PacketCountJSD, LengthJSD, BigramJSD, MarkovJSD)


def fidelity_metrics() -> list[Metric]:
    """Fresh instances of :data:`FIDELITY_METRICS`."""
    return [cls() for cls in FIDELITY_METRICS]
