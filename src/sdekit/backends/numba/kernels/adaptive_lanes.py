"""The phases of the fused adaptive kernels (:mod:`sdekit.backends.numba.kernels.adaptive`): tree-node snapping,
the PI controller, lane refills, the noise of a step, and the stages, error norms and accept/reject of the Heun
(``adaptive``) and Dormand--Prince (``dopri5``) attempts (the SDE coefficients per lane:
:mod:`~sdekit.backends.numba.kernels.lane_coef`).

Every function works on ``block`` lanes stored last (``(d, block)``), one sample per lane, each lane with its own
time and step size; all are compiled once and cached on disk (the task skeletons that call the score are compiled
per score). The records they take (:class:`~.adaptive_state.Solve`, :class:`~.adaptive_state.Samples`,
:class:`~.adaptive_state.Lanes`, :class:`~.adaptive_state.LaneNoise`) and the rows of the per-lane scalar tables
``lf`` (float) and ``li`` (int) are described in :mod:`~sdekit.backends.numba.kernels.adaptive_state`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ....controllers import ERR_FLOOR
from ....tree_law import SNAP_MAX_LEVEL, SNAP_WINDOW, TREE_STEP
from ..noise import fill_components, sample_key, stream_key
from ..tree import chain_advance, chain_copy, chain_heap, chain_reset, chain_split
from ..vecmath import exp_vec, log_pos
from .adaptive_state import (
    ACUR,
    AN,
    ATT,
    BC,
    BK,
    BP,
    BS,
    BU,
    EP,
    ERR,
    F_ATOL,
    F_BETA1,
    F_BETA2,
    F_DIR,
    F_H0,
    F_L,
    F_LO,
    F_MAXF,
    F_MINF,
    F_MINSTEP,
    F_RTOL,
    F_SAFETY,
    F_TOL,
    F_W,
    FIN,
    G2CCUR,
    G2CN,
    GCUR,
    GN,
    HH,
    HS,
    I_CHECK,
    I_DEPTH,
    I_KIND,
    I_KLOG,
    I_MAXSTEPS,
    I_NOISE,
    LAST,
    NA,
    NEED,
    NFE_,
    NOISE_BRIDGE,
    NOISE_TREE,
    NR,
    NX,
    ROW,
    TN,
    H,
    T,
)
from .bridge_lanes import bridge_increments
from .lane_coef import lane_coef

__all__ = [
    "snap_one",
    "control",
    "gather",
    "scatter_drift",
    "refill",
    "step_ends",
    "lane_normals",
    "step_noise",
    "heun_predict",
    "heun_correct",
    "finish_err",
    "finish_lane",
    "move_lane",
    "heun_accept",
    "rk_stage_point",
    "rk_stage_coef",
    "rk_stage_drift",
    "rk_error",
    "rk_accept",
]

_TREE_STEP = np.uint64(TREE_STEP)
_ONE_M_WINDOW = 1.0 - SNAP_WINDOW


@njit(cache=True, inline="always", error_model="numpy")
def snap_one(t, h, direction, lo, L):
    """:func:`sdekit.brownian.snap_step` for one lane (the same operations)."""
    near = t + direction * (_ONE_M_WINDOW * h)
    far = t + direction * h
    ua = (min(near, far) - lo) / L
    ub = (max(near, far) - lo) / L
    w = ub - ua
    e = math.frexp(w)[1]
    level = min(max(1 - e, 0), SNAP_MAX_LEVEL + 1)
    scale = math.ldexp(1.0, level)
    kl = np.ceil(ua * scale)
    kh = np.floor(ub * scale)
    if kh < kl:
        level += 1
        scale = scale * 2.0
        kl = np.ceil(ua * scale)
        kh = np.floor(ub * scale)
    k = kh
    if kh - 2.0 * np.floor(0.5 * kh) != 0.0 and kh - 1.0 >= kl:
        k = kh - 1.0
    if w > 0.0 and level <= SNAP_MAX_LEVEL and k >= kl:
        return lo + (k / scale) * L
    return far


@njit(cache=True, inline="always", error_model="numpy")
def control(err, err_prev, hh, fp):
    """``(accept, h_new)``: :meth:`sdekit.controllers.PIController.propose` for one lane."""
    accept = err <= 1.0
    if err != err:  # NaN: numpy's factor is NaN, replaced by the minimum factor
        factor = fp[F_MINF]
    else:
        e = max(err, ERR_FLOOR)
        pe = exp_vec(-fp[F_BETA1] * log_pos(e)) if e < np.inf else 0.0
        pp = 1.0 if fp[F_BETA2] == 0.0 else exp_vec(fp[F_BETA2] * log_pos(max(err_prev, ERR_FLOOR)))
        factor = fp[F_SAFETY] * pe * pp
        if not (factor < np.inf):
            factor = fp[F_MINF]
        factor = min(max(factor, fp[F_MINF]), fp[F_MAXF])
    if not accept:
        factor = min(factor, 1.0)
    return accept, hh * factor


@njit(cache=True, inline="always", error_model="numpy")
def gather(need, L, xb, tl, ccur, plist, gx, gt, gcl):
    """Gather the lanes ``l < L`` with ``need[l]`` (their state, time, score constants) into a packed batch;
    returns its size. The body calls the score on it (kernel bodies call ``score_lanes`` themselves: a RowScore
    rebinds that name in the body's globals only), then :func:`scatter_drift`."""
    d = xb.shape[0]
    P = 0
    for l in range(L):
        if need[l]:
            plist[P] = l
            P += 1
    for j in range(d):
        xj, gj = xb[j], gx[j]
        for p in range(P):
            gj[p] = xj[plist[p]]
    for c in range(ccur.shape[0]):
        for p in range(P):
            gcl[c, p] = ccur[c, plist[p]]
    for p in range(P):
        gt[p] = tl[plist[p]]
    return P


@njit(cache=True, inline="always", error_model="numpy")
def scatter_drift(P, plist, xb, acur, g2ccur, gs, fb, need):
    """``fb[:, l] = a x - w g^2 score`` for the gathered lanes (``gs``: their scores)."""
    d = xb.shape[0]
    for j in range(d):
        xj, fj, sj = xb[j], fb[j], gs[j]
        for p in range(P):
            l = plist[p]
            fj[l] = acur[l] * xj[l] - g2ccur[l] * sj[p]
    for p in range(P):
        need[plist[p]] = 0


@njit(cache=True, error_model="numpy")
def refill(L, nextrow, s1, samples, skey, solve, lanes, noise):
    """Load the task's next samples (rows ``nextrow .. s1`` of ``samples``, keys from the seed key ``skey``) into
    the free lanes ``L, L + 1, ...``; returns ``(L, nextrow)``."""
    x, ids = samples.x, samples.ids
    stops, fp, ip, sp = solve.stops, solve.fp, solve.ip, solve.sp
    lf, li, key, ccur, xb, _, xpb = lanes
    d, B = xb.shape
    t0 = stops[0]
    ulam, ucnt = solve.ulam, solve.ucnt
    tree = ip[I_NOISE] == NOISE_TREE
    chain = noise.chain
    while L < B and nextrow < s1:
        l = L
        r = nextrow
        nextrow += 1
        L += 1
        li[ROW, l] = r
        key[l] = sample_key(skey, np.uint64(ids[r]))
        for j in range(d):
            xb[j, l] = x[r, j]
            xpb[j, l] = x[r, j]
        lf[T, l] = t0
        lf[H, l] = fp[F_H0]
        lf[EP, l] = 1.0
        li[NX, l] = 1
        li[ATT, l] = 0
        li[NA, l] = 0
        li[NR, l] = 0
        li[NFE_, l] = 1  # the drift at the start
        li[NEED, l] = 1
        li[BK, l] = 0
        li[BC, l] = 0
        li[BU, l] = 0
        lf[ACUR, l], lf[GCUR, l], lf[G2CCUR, l] = lane_coef(
            ip[I_KIND], sp, t0, fp[F_W], ip[I_KLOG], ulam, ucnt, ccur, l
        )
        if tree:
            chain_reset(l, key[l], fp[F_L], noise.zz, chain)
            chain_advance(l, t0, key[l], fp[F_LO], fp[F_L], fp[F_TOL], ip[I_DEPTH], chain, noise.wp, noise.yp, l,
                          noise.zz, noise.sc)  # fmt: skip
    return L, nextrow


@njit(cache=True, error_model="numpy")
def step_ends(L, stops, fp, ip, lf, li):
    """Each lane's step end: its next stop when within reach, else ``t + h`` (on a shallow tree node with tree
    or bridge noise, :func:`snap_one`)."""
    tree = ip[I_NOISE] == NOISE_TREE or ip[I_NOISE] == NOISE_BRIDGE
    direction, lo, Lsp = fp[F_DIR], fp[F_LO], fp[F_L]
    for l in range(L):
        t = lf[T, l]
        target = stops[li[NX, l]]
        rem = abs(target - t)
        hh = min(lf[H, l], rem)
        last = hh >= rem * (1.0 - 1e-12)
        if last:
            tn = target
        elif tree:
            tn = snap_one(t, hh, direction, lo, Lsp)
        else:
            tn = t + direction * hh
        lf[TN, l] = tn
        lf[HS, l] = tn - t
        lf[HH, l] = abs(tn - t)
        li[LAST, l] = last


@njit(cache=True, error_model="numpy")
def lane_normals(sks, L, out):
    """``out[:, l]`` = the first ``out.shape[0]`` normals of stream ``sks[l]``, ``l < L``
    (:func:`~sdekit.backends.numba.noise.fill_components`, compiled once for both of :func:`step_noise`'s uses)."""
    fill_components(sks, L, 0, out)


@njit(cache=True, error_model="numpy")
def step_noise(L, fp, ip, lanes, z, noise):
    """``z[:, l]`` = the Brownian increment of lane ``l``'s step: from its chain of tree nodes (splits of all
    lanes drawn in vectorised batches), from its bridge-noise stack (``noise.bt``, ``noise.bw``:
    :func:`~sdekit.backends.numba.kernels.bridge_lanes.bridge_increments`), or ``sqrt|h|`` times counter-based
    normals at its attempt index.
    Returns the number of tree splits drawn (bridge noise: of stack merges)."""
    lf, li, key = lanes.lf, lanes.li, lanes.key
    chain, wp, qw, qy, zs, zz, sc = noise.chain, noise.wp, noise.qw, noise.qy, noise.zs, noise.zz, noise.sc
    slist, pend, sks = noise.slist, noise.pend, noise.sks
    d = z.shape[0]
    nsplit = 0
    if ip[I_NOISE] == NOISE_BRIDGE:
        return bridge_increments(L, lf[HH], lf[BS], li[BK], li[BC], li[BU], li[BP], key, z, noise.bt, noise.bw,
                                 noise.zb, slist, sks)  # fmt: skip
    elif ip[I_NOISE] == NOISE_TREE:
        lo, Lsp, tol, depth = fp[F_LO], fp[F_L], fp[F_TOL], ip[I_DEPTH]
        npend = L
        for l in range(L):
            pend[l] = l
        while npend > 0:
            ns = 0
            for q in range(npend):
                l = pend[q]
                done = chain_advance(l, lf[TN, l], key[l], lo, Lsp, tol, depth, chain, qw, qy, l, zz, sc)
                if done == 0:
                    slist[ns] = l
                    sks[ns] = stream_key(key[l], _TREE_STEP + np.uint64(chain_heap(l, chain)))
                    ns += 1
            if ns == 0:
                break
            lane_normals(sks, ns, zs)
            for q in range(ns):
                chain_split(slist[q], zs[:, q], Lsp, chain)
                pend[q] = slist[q]
            nsplit += ns
            npend = ns
        for l in range(L):
            sq = math.sqrt(lf[HH, l])
            for j in range(d):
                z[j, l] = sq * ((qw[l, j] - wp[l, j]) / sq)
    else:
        for l in range(L):
            sks[l] = stream_key(key[l], np.uint64(li[ATT, l]))
        lane_normals(sks, L, z)
        for j in range(d):
            zj = z[j]
            for l in range(L):
                zj[l] = math.sqrt(lf[HH, l]) * zj[l]
    return nsplit


@njit(cache=True, error_model="numpy")
def heun_predict(L, solve, lf, cn, xb, fb, z, x1b):
    """The coefficients at each lane's step end and the Euler--Maruyama point ``x1 = x + h f + g0 dW``."""
    fp, ip, sp, ulam, ucnt = solve.fp, solve.ip, solve.sp, solve.ulam, solve.ucnt
    d = xb.shape[0]
    for l in range(L):
        lf[AN, l], lf[GN, l], lf[G2CN, l] = lane_coef(ip[I_KIND], sp, lf[TN, l], fp[F_W], ip[I_KLOG], ulam, ucnt, cn, l)
    hs, g0 = lf[HS], lf[GCUR]
    for j in range(d):
        xj, fj, zj, x1j = xb[j], fb[j], z[j], x1b[j]
        for l in range(L):
            x1j[l] = xj[l] + hs[l] * fj[l] + g0[l] * zj[l]


@njit(cache=True, error_model="numpy")
def heun_correct(L, fp, ip, lf, xb, z, x1b, x2b, sb, xpb):
    """The Heun average ``x2`` from the drift at ``x1`` (``sb``: the score there) and the error norm per lane."""
    d = xb.shape[0]
    rtol, atol = fp[F_RTOL], fp[F_ATOL]
    hs, an, gn, g2cn, err, fin = lf[HS], lf[AN], lf[GN], lf[G2CN], lf[ERR], lf[FIN]
    for l in range(L):
        err[l] = 0.0
        fin[l] = 0.0
    for j in range(d):
        xj, zj, x1j, x2j, sj, pj = xb[j], z[j], x1b[j], x2b[j], sb[j], xpb[j]
        for l in range(L):
            f1 = an[l] * x1j[l] - g2cn[l] * sj[l]
            xt = xj[l] + hs[l] * f1 + gn[l] * zj[l]
            v = 0.5 * (x1j[l] + xt)
            x2j[l] = v
            dl = max(rtol * max(abs(x1j[l]), abs(pj[l])), atol)
            q = (x1j[l] - v) / dl
            err[l] += q * q
            fin[l] += v * 0.0
    finish_err(L, d, ip[I_CHECK], err, fin)


@njit(cache=True, inline="always", error_model="numpy")
def finish_err(L, d, check, err, fin):
    for l in range(L):
        e = math.sqrt(err[l] / d)
        if check and not (fin[l] == 0.0 and e == e and e < np.inf):
            e = np.inf  # a non-finite trial counts as a failed attempt
        err[l] = e


@njit(cache=True, inline="always", error_model="numpy")
def finish_lane(l, finished, hn, samples, lanes, fp, ip):
    """Write lane ``l``'s sample out when it finished or failed; returns True when it leaves its lane."""
    st = 0
    if hn < fp[F_MINSTEP]:
        st = 1
    elif not finished and lanes.li[ATT, l] >= ip[I_MAXSTEPS]:
        st = 2
    if not (finished or st != 0):
        return False
    li = lanes.li
    r = li[ROW, l]
    for j in range(lanes.xb.shape[0]):
        samples.x[r, j] = lanes.xb[j, l]
    samples.nfe[r] = li[NFE_, l]
    samples.nacc[r] = li[NA, l]
    samples.nrej[r] = li[NR, l]
    samples.status[r] = st
    samples.tfail[r] = lanes.lf[T, l]
    return True


@njit(cache=True, inline="always", error_model="numpy")
def move_lane(src, dst, lanes):
    """Lane ``src``'s sample moves to lane ``dst``: its scalars, key, score constants, state, drift and previous
    Euler point (:class:`~.adaptive_state.Lanes`)."""
    lf, li, key, ccur, xb, fb, xpb = lanes
    for k in range(lf.shape[0]):
        lf[k, dst] = lf[k, src]
    for k in range(li.shape[0]):
        li[k, dst] = li[k, src]
    key[dst] = key[src]
    for c in range(ccur.shape[0]):
        ccur[c, dst] = ccur[c, src]
    for j in range(xb.shape[0]):
        xb[j, dst] = xb[j, src]
        fb[j, dst] = fb[j, src]
        xpb[j, dst] = xpb[j, src]


@njit(cache=True, error_model="numpy")
def heun_accept(L, solve, samples, lanes, x1b, x2b, cn, noise):
    """Accept or reject each lane's attempt (the controller's rule; ``x1b`` the Euler point, ``x2b`` the Heun
    point, ``cn`` the score's constants at the step end), save at stops, and let finished samples leave (the last
    live lane moves into the freed one). Returns the new number of live lanes."""
    stops, save_slot, fp, ip = solve.stops, solve.save_slot, solve.fp, solve.ip
    saved = samples.saved
    lf, li, _, ccur, xb, _, xpb = lanes
    wp, yp, qw, qy, bt, bw = noise.wp, noise.yp, noise.qw, noise.qy, noise.bt, noise.bw
    d = xb.shape[0]
    S = stops.shape[0]
    tree = ip[I_NOISE] == NOISE_TREE
    bridge = ip[I_NOISE] == NOISE_BRIDGE
    NCL = ccur.shape[0]
    l = L - 1
    while l >= 0:
        accept, hn = control(lf[ERR, l], lf[EP, l], lf[HH, l], fp)
        li[NFE_, l] += 1
        li[ATT, l] += 1
        lf[H, l] = hn
        finished = False
        if accept:
            li[NA, l] += 1
            li[NFE_, l] += 1  # the drift at the accepted point (evaluated next iteration if the sample goes on)
            for j in range(d):
                xb[j, l] = x2b[j, l]
                xpb[j, l] = x1b[j, l]
            lf[T, l] = lf[TN, l]
            for c in range(NCL):
                ccur[c, l] = cn[c, l]
            lf[ACUR, l], lf[GCUR, l], lf[G2CCUR, l] = lf[AN, l], lf[GN, l], lf[G2CN, l]
            lf[EP, l] = max(lf[ERR, l], ERR_FLOOR)
            li[NEED, l] = 1
            if tree:
                for j in range(d):
                    wp[l, j] = qw[l, j]
                    yp[l, j] = qy[l, j]
            if bridge:  # the pieces the step used leave the stack (a rejection keeps them all)
                li[BK, l] -= li[BU, l]
            if li[LAST, l]:
                slot = save_slot[li[NX, l]]
                if slot >= 0:
                    for j in range(d):
                        saved[slot, li[ROW, l], j] = xb[j, l]
                li[NX, l] += 1
                finished = li[NX, l] == S
        else:
            li[NR, l] += 1
        if finish_lane(l, finished, hn, samples, lanes, fp, ip):
            L -= 1
            if l != L:  # pack: the last live lane (visited already, the loop runs down) moves here
                src = L
                move_lane(src, l, lanes)
                if tree:
                    chain_copy(src, l, noise.chain)
                    for j in range(d):
                        wp[l, j] = wp[src, j]
                        yp[l, j] = yp[src, j]
                if bridge:  # the stack moves with the sample (its scalars moved with move_lane)
                    for q in range(li[BK, l]):
                        bt[l, q] = bt[src, q]
                        for j in range(d):
                            bw[l, q, j] = bw[src, q, j]
        l -= 1
    return L


@njit(cache=True, error_model="numpy")
def rk_stage_point(i, L, A, lf, xb, ks, xi):
    """``xi = x + sum_q (h A[i, q]) k_q`` per lane (the numpy solver's order of operations)."""
    d = xb.shape[0]
    hs = lf[HS]
    for j in range(d):
        xij, xj = xi[j], xb[j]
        for l in range(L):
            xij[l] = xj[l]
        for q in range(i):
            aiq = A[i, q]
            if aiq != 0.0:
                kq = ks[q, j]
                for l in range(L):
                    xij[l] = xij[l] + (hs[l] * aiq) * kq[l]


@njit(cache=True, error_model="numpy")
def rk_stage_coef(ci, L, solve, lf, ts, cs, asg, g2s):
    """Stage times ``t + c_i h`` and the coefficients there, per lane."""
    fp, ip, sp, ulam, ucnt = solve.fp, solve.ip, solve.sp, solve.ulam, solve.ucnt
    for l in range(L):
        ts[l] = lf[T, l] + ci * lf[HS, l]
        asg[l], _, g2s[l] = lane_coef(ip[I_KIND], sp, ts[l], fp[F_W], ip[I_KLOG], ulam, ucnt, cs, l)


@njit(cache=True, error_model="numpy")
def rk_stage_drift(i, L, asg, g2s, xi, sb, ks):
    d = xi.shape[0]
    for j in range(d):
        kij, xij, sj = ks[i, j], xi[j], sb[j]
        for l in range(L):
            kij[l] = asg[l] * xij[l] - g2s[l] * sj[l]


@njit(cache=True, error_model="numpy")
def rk_error(L, fp, ip, lf, be, xb, xi, ks):
    """The embedded pair's error ``h sum (b - b_err) k`` scaled by ``atol + rtol max(|x|, |x_new|)``, RMS."""
    d = xb.shape[0]
    NS = be.shape[0]
    rtol, atol = fp[F_RTOL], fp[F_ATOL]
    hs, err, fin = lf[HS], lf[ERR], lf[FIN]
    for l in range(L):
        err[l] = 0.0
        fin[l] = 0.0
    for j in range(d):
        xj, xij = xb[j], xi[j]
        for l in range(L):
            e = be[0] * ks[0, j, l]
            for i in range(1, NS):
                if be[i] != 0.0:
                    e = e + be[i] * ks[i, j, l]
            scale = atol + rtol * max(abs(xj[l]), abs(xij[l]))
            q = hs[l] * e / scale
            err[l] += q * q
            fin[l] += xij[l] * 0.0
    finish_err(L, d, ip[I_CHECK], err, fin)


@njit(cache=True, error_model="numpy")
def rk_accept(L, solve, samples, lanes, xi, ks):
    """Accept or reject each lane's Dormand--Prince attempt (``xi`` the new point, ``ks (NS, d, B)`` the stages,
    ``lanes.fb`` a view of ``ks[0]``; FSAL: the last stage becomes ``k1``), save at stops, pack the live lanes.
    Returns the new number of live lanes."""
    stops, save_slot, fp, ip = solve.stops, solve.save_slot, solve.fp, solve.ip
    saved = samples.saved
    lf, li, xb = lanes.lf, lanes.li, lanes.xb
    NS = ks.shape[0]
    d = xb.shape[0]
    S = stops.shape[0]
    l = L - 1
    while l >= 0:
        accept, hn = control(lf[ERR, l], lf[EP, l], lf[HH, l], fp)
        li[NFE_, l] += NS - 1
        li[ATT, l] += 1
        lf[H, l] = hn
        finished = False
        if accept:
            li[NA, l] += 1
            for j in range(d):
                xb[j, l] = xi[j, l]
                ks[0, j, l] = ks[NS - 1, j, l]
            lf[T, l] = lf[TN, l]
            lf[EP, l] = max(lf[ERR, l], ERR_FLOOR)
            if li[LAST, l]:
                slot = save_slot[li[NX, l]]
                if slot >= 0:
                    for j in range(d):
                        saved[slot, li[ROW, l], j] = xb[j, l]
                li[NX, l] += 1
                finished = li[NX, l] == S
        else:
            li[NR, l] += 1
        if finish_lane(l, finished, hn, samples, lanes, fp, ip):
            L -= 1
            if l != L:
                move_lane(L, l, lanes)
        l -= 1
    return L
