"""The fused kernels, one module per family; importing this package registers them all.

* :mod:`~sdekit.backends.numba.kernels.explicit` -- Euler--Maruyama, stochastic Heun, explicit Runge--Kutta;
* :mod:`~sdekit.backends.numba.kernels.multistep` -- the affine multistep kernel: DPM-Solver++ (``dpmpp_2m``,
  ``dpmpp_3m``, ``dpmpp_2m_sde``, the single-step ``dpmpp_single``), the exponential predictor-corrector engine
  (``dpmpp_pc``, ``dpmpp_sde_pc`` and the presets ``dpmpp_3m_pc``, ``dpmpp_3m_sde``), ``ancestral``,
  ``reverse_diffusion``, the few-step solvers ``ipndm``, ``ipndm_v``, ``deis``, ``unipc`` (orders up to 4),
  ``sa_solver`` and :class:`~sdekit.solvers.afs.AnalyticFirstStep` around any of them;
* :mod:`~sdekit.backends.numba.kernels.edm` -- EDM's stochastic sampler (``edm``);
* :mod:`~sdekit.backends.numba.kernels.restart` -- restart sampling (``restart``);
* :mod:`~sdekit.backends.numba.kernels.sra` -- SRA stochastic Runge--Kutta methods (``sra1``, any SRA tableau);
* :mod:`~sdekit.backends.numba.kernels.pc` -- predictor--corrector (``pc``) with the ``"sigma"`` step rule and a
  reverse-diffusion or ancestral predictor;
* :mod:`~sdekit.backends.numba.kernels.annealed` -- annealed Langevin dynamics (``annealed_langevin``);
* :mod:`~sdekit.backends.numba.kernels.adaptive` -- the adaptive solvers ``adaptive`` (reverse SDE) and ``dopri5``.

:data:`NO_FUSED_KERNEL` lists the registered solvers that have none, and why (``backend="numba"`` runs their own
step per step with numba noise; ``backend="auto"`` runs them on numpy, which is as fast).
"""

from .annealed import ANNEALED_LANGEVIN
from .edm import EDM
from .explicit import EULER_MARUYAMA, RUNGE_KUTTA, STOCHASTIC_HEUN
from .multistep import AFFINE_MULTISTEP
from .pc import PC
from .restart import RESTART
from .sra import SRA_KERNEL

#: Registered solvers without a fused kernel, with the reason.
NO_FUSED_KERNEL = {
    "dpm_adaptive": "adaptive steps in the log-SNR (a time-changed process, sdekit.timechange), which the fused "
    "adaptive kernels, written in t, do not run",
    "dpm2": "its midpoint stage is placed in the noise level (a time found by inverting the log-SNR per step), "
    "which the Runge-Kutta kernel's fixed tableau in t cannot express",
    "dpm2_ancestral": "the midpoint stage of dpm2 (placed in the noise level), which no fused kernel expresses",
}

__all__ = [
    "NO_FUSED_KERNEL",
    "EULER_MARUYAMA",
    "RUNGE_KUTTA",
    "STOCHASTIC_HEUN",
    "AFFINE_MULTISTEP",
    "EDM",
    "RESTART",
    "SRA_KERNEL",
    "PC",
    "ANNEALED_LANGEVIN",
]
