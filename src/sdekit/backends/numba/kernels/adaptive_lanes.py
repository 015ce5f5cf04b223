"""The phases of the fused adaptive kernels (:mod:`sdekit.backends.numba.kernels.adaptive`): lane-wise SDE
coefficients, tree-node snapping, the PI controller, lane refills, the noise of a step, and the stages, error norms
and accept/reject of the Heun (``adaptive``) and Dormand--Prince (``dopri5``) attempts.

Every function works on ``block`` lanes stored last (``(d, block)``), one sample per lane, each lane with its own
time and step size; all are compiled once and cached on disk (the task skeletons that call the score are compiled
per score). Per-lane scalars live in the rows of ``lf`` (float) and ``li`` (int), named by the constants below.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ....controllers import ERR_FLOOR
from ....sdes import EDMSDE, VESDE, VPSDE, SubVPSDE
from ....tree_law import SNAP_MAX_LEVEL, SNAP_WINDOW, TREE_STEP
from ..noise import fill_components, sample_key, stream_key
from ..tree import chain_advance, chain_copy, chain_heap, chain_reset, chain_split
from ..vecmath import exp_nonpos, exp_vec, expm1_nonpos, log_pos
from .bridge_lanes import bridge_increments

__all__ = [
    "SDE_KINDS",
    "NLF",
    "NLI",
    "T",
    "NOISE_NONE",
    "NOISE_COUNTER",
    "NOISE_TREE",
    "NOISE_BRIDGE",
    "sde_params",
    "sde_coef",
    "lane_coef",
    "snap_one",
    "control",
    "gather",
    "scatter_drift",
    "refill",
    "step_ends",
    "step_noise",
    "heun_predict",
    "heun_correct",
    "finish_err",
    "finish_lane",
    "move_scalars",
    "heun_accept",
    "rk_stage_point",
    "rk_stage_coef",
    "rk_stage_drift",
    "rk_error",
    "rk_accept",
]

SDE_KINDS = {VPSDE: 0, SubVPSDE: 1, VESDE: 2, EDMSDE: 3}
_TREE_STEP = np.uint64(TREE_STEP)
_ONE_M_WINDOW = 1.0 - SNAP_WINDOW

# float parameters (fp) and integer parameters (ip) of a solve, by index
F_RTOL, F_ATOL, F_SAFETY, F_BETA1, F_BETA2, F_MINF, F_MAXF, F_H0, F_LO, F_L, F_TOL, F_W, F_DIR, F_MINSTEP = range(14)
I_KIND, I_NOISE, I_DEPTH, I_MAXSTEPS, I_CHECK, I_KLOG, I_NTASKS = range(7)
NOISE_NONE, NOISE_COUNTER, NOISE_TREE, NOISE_BRIDGE = 0, 1, 2, 3


def sde_params(sde) -> np.ndarray:
    """The parameters the kernels read for ``sde`` (see :func:`sde_coef`)."""
    kind = SDE_KINDS[type(sde)]
    if kind in (0, 1):
        return np.array([sde.beta_min, sde.beta_max], dtype=np.float64)
    if kind == 2:
        return np.array([sde.sigma_min, math.log(sde.sigma_max / sde.sigma_min), sde.T], dtype=np.float64)
    return np.zeros(1)


@njit(cache=True, inline="always", error_model="numpy")
def sde_coef(kind, sp, t):
    """``(a(t), g(t)^2, alpha(t), sigma(t))`` of a linear SDE of ``kind`` (0 VP, 1 sub-VP, 2 VE, 3 EDM), written
    as :mod:`sdekit.sdes` writes them."""
    if kind <= 1:
        bmin = sp[0]
        db = sp[1] - sp[0]
        beta = bmin + t * db
        B = bmin * t + 0.5 * db * t * t
        alpha = exp_nonpos(-0.5 * B)
        if kind == 0:
            sigma = math.sqrt(-expm1_nonpos(-B))
            g2 = beta
        else:
            sigma = -expm1_nonpos(-B)
            g2 = beta * (-expm1_nonpos(-2.0 * B))
        return -0.5 * beta, g2, alpha, sigma
    if kind == 2:
        s = sp[0] * exp_vec(sp[1] * t / sp[2])
        return 0.0 * t, 2.0 * sp[1] / sp[2] * s * s, 1.0 + 0.0 * s, s
    return 0.0 * t, 2.0 * t, 1.0 + 0.0 * t, 1.0 * t


@njit(cache=True, inline="always", error_model="numpy")
def lane_coef(kind, sp, t, w, klog, ulam, ucnt, cl, l):
    """The drift coefficients ``(a, g, w g^2)`` at ``t`` and the score's constants ``cl[:, l]`` (``alpha,
    sigma^2`` and, for mixtures, ``sum_j log(alpha^2 lam_kj + sigma^2)`` from the distinct eigenvalues)."""
    a, g2, alpha, sigma = sde_coef(kind, sp, t)
    s2 = sigma * sigma
    cl[0, l] = alpha
    cl[1, l] = s2
    aa = alpha * alpha
    for k in range(klog):
        acc = 0.0
        for u in range(ulam.shape[1]):
            c = ucnt[k, u]
            if c > 0.0:
                acc += c * log_pos(aa * ulam[k, u] + s2)
        cl[2 + k, l] = acc
    g = math.sqrt(g2)
    return a, g, w * g * g


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


# lane scalars: rows of lf (float) and li (int)
T, H, EP, TN, HS, HH, ACUR, GCUR, G2CCUR, AN, GN, G2CN, ERR, FIN, BS = range(15)
NLF = 15
# BK, BC, BU, BP: bridge noise (pieces on the stack, fresh draws so far, pieces the attempt used, piece to split)
ROW, NX, ATT, NA, NR, NFE_, NEED, LAST, BK, BC, BU, BP = range(12)
NLI = 12


@njit(cache=True, error_model="numpy")
def refill(L, nextrow, s1, B, x, ids, skey, stops, fp, ip, sp, lcoef, lf, li, key, xb, xpb, ccur, lev, pos, mk, ib,
           wa, ya, ndw, nin, whi, yhi, wp, yp, zz, sc):  # fmt: skip
    """Load the task's next samples into the free lanes ``L, L + 1, ...``; returns ``(L, nextrow)``."""
    d = xb.shape[0]
    t0 = stops[0]
    ulam, ucnt = lcoef
    tree = ip[I_NOISE] == NOISE_TREE
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
            chain_reset(l, key[l], fp[F_L], zz, lev, pos, mk, ib, wa, ya, ndw, nin, whi, yhi)
            chain_advance(l, t0, key[l], fp[F_LO], fp[F_L], fp[F_TOL], ip[I_DEPTH], lev, pos, mk, ib, wa, ya, ndw, nin,
                          ndw, nin, whi, yhi, wp, yp, l, zz, sc)  # fmt: skip
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
def step_noise(L, fp, ip, lf, li, key, z, lev, pos, mk, ib, wa, ya, ndw, nin, dwl, inl, whi, yhi, wp, yp, qw, qy,
               zs, zz, sc, slist, pend, sks, bt, bw, zb):  # fmt: skip
    """``z[:, l]`` = the Brownian increment of lane ``l``'s step: from its chain of tree nodes (splits of all
    lanes drawn in vectorised batches), from its bridge-noise stack (``bt``, ``bw``:
    :func:`~sdekit.backends.numba.kernels.bridge_lanes.bridge_increments`), or ``sqrt|h|`` times counter-based
    normals at its attempt index.
    Returns the number of tree splits drawn (bridge noise: of stack merges)."""
    d = z.shape[0]
    nsplit = 0
    if ip[I_NOISE] == NOISE_BRIDGE:
        return bridge_increments(L, lf[HH], lf[BS], li[BK], li[BC], li[BU], li[BP], key, z, bt, bw, zb, slist, sks)
    elif ip[I_NOISE] == NOISE_TREE:
        lo, Lsp, tol, depth = fp[F_LO], fp[F_L], fp[F_TOL], ip[I_DEPTH]
        npend = L
        for l in range(L):
            pend[l] = l
        while npend > 0:
            ns = 0
            for q in range(npend):
                l = pend[q]
                done = chain_advance(l, lf[TN, l], key[l], lo, Lsp, tol, depth, lev, pos, mk, ib, wa, ya, ndw, nin,
                                     dwl, inl, whi, yhi, qw, qy, l, zz, sc)  # fmt: skip
                if done == 0:
                    slist[ns] = l
                    sks[ns] = stream_key(key[l], _TREE_STEP + np.uint64(chain_heap(l, lev, pos)))
                    ns += 1
            if ns == 0:
                break
            fill_components(sks, ns, 0, zs)
            for q in range(ns):
                chain_split(slist[q], zs[:, q], Lsp, lev, mk, ndw, nin, dwl, inl)
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
        fill_components(sks, L, 0, z)
        for j in range(d):
            zj = z[j]
            for l in range(L):
                zj[l] = math.sqrt(lf[HH, l]) * zj[l]
    return nsplit


@njit(cache=True, error_model="numpy")
def heun_predict(L, fp, ip, sp, lcoef, lf, cn, xb, fb, z, x1b):
    """The coefficients at each lane's step end and the Euler--Maruyama point ``x1 = x + h f + g0 dW``."""
    d = xb.shape[0]
    ulam, ucnt = lcoef
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
def finish_lane(l, finished, hn, x, xb, li, lf, fp, ip, nfe, nacc, nrej, status, tfail):
    """Write lane ``l``'s sample out when it finished or failed; returns True when it leaves its lane."""
    st = 0
    if hn < fp[F_MINSTEP]:
        st = 1
    elif not finished and li[ATT, l] >= ip[I_MAXSTEPS]:
        st = 2
    if not (finished or st != 0):
        return False
    r = li[ROW, l]
    for j in range(xb.shape[0]):
        x[r, j] = xb[j, l]
    nfe[r] = li[NFE_, l]
    nacc[r] = li[NA, l]
    nrej[r] = li[NR, l]
    status[r] = st
    tfail[r] = lf[T, l]
    return True


@njit(cache=True, inline="always", error_model="numpy")
def move_scalars(src, dst, lf, li, key, ccur):
    for k in range(lf.shape[0]):
        lf[k, dst] = lf[k, src]
    for k in range(li.shape[0]):
        li[k, dst] = li[k, src]
    key[dst] = key[src]
    for c in range(ccur.shape[0]):
        ccur[c, dst] = ccur[c, src]


@njit(cache=True, error_model="numpy")
def heun_accept(L, stops, save_slot, saved, x, fp, ip, lf, li, key, xb, fb, xpb, x1b, x2b, ccur, cn, lev, pos, mk,
                ib, wa, ya, ndw, nin, dwl, inl, whi, yhi, wp, yp, qw, qy, nfe, nacc, nrej, status, tfail, bt,
                bw):  # fmt: skip
    """Accept or reject each lane's attempt (the controller's rule), save at stops, and let finished samples leave
    (the last live lane moves into the freed one). Returns the new number of live lanes."""
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
        if finish_lane(l, finished, hn, x, xb, li, lf, fp, ip, nfe, nacc, nrej, status, tfail):
            L -= 1
            if l != L:  # pack: the last live lane (visited already, the loop runs down) moves here
                src = L
                move_scalars(src, l, lf, li, key, ccur)
                for j in range(d):
                    xb[j, l] = xb[j, src]
                    fb[j, l] = fb[j, src]
                    xpb[j, l] = xpb[j, src]
                if tree:
                    chain_copy(src, l, lev, pos, mk, ib, wa, ya, ndw, nin, dwl, inl, whi, yhi)
                    for j in range(d):
                        wp[l, j] = wp[src, j]
                        yp[l, j] = yp[src, j]
                if bridge:  # the stack moves with the sample (its scalars moved with move_scalars)
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
def rk_stage_coef(ci, L, fp, ip, sp, lcoef, lf, ts, cs, asg, g2s):
    """Stage times ``t + c_i h`` and the coefficients there, per lane."""
    ulam, ucnt = lcoef
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
def rk_accept(L, NS, stops, save_slot, saved, x, fp, ip, lf, li, key, xb, xi, ks, ccur, nfe, nacc, nrej, status,
              tfail):  # fmt: skip
    """Accept or reject each lane's Dormand--Prince attempt (FSAL: the last stage becomes ``k1``), save at stops,
    pack the live lanes. Returns the new number of live lanes."""
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
        if finish_lane(l, finished, hn, x, xb, li, lf, fp, ip, nfe, nacc, nrej, status, tfail):
            L -= 1
            if l != L:
                src = L
                move_scalars(src, l, lf, li, key, ccur)
                for j in range(d):
                    xb[j, l] = xb[j, src]
                    ks[0, j, l] = ks[0, j, src]
        l -= 1
    return L
