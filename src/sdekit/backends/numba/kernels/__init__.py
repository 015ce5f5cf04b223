"""The fused kernels, one module per family; importing this package registers them all.

* :mod:`~sdekit.backends.numba.kernels.explicit` -- Euler--Maruyama, stochastic Heun, explicit Runge--Kutta;
* :mod:`~sdekit.backends.numba.kernels.multistep` -- the affine multistep kernel: DPM-Solver++ (``dpmpp_2m``,
  ``dpmpp_3m``, ``dpmpp_2m_sde``), the exponential predictor-corrector engine (``dpmpp_pc``, ``dpmpp_sde_pc`` and
  the presets ``dpmpp_3m_pc``, ``dpmpp_3m_sde``), ``ancestral``, ``reverse_diffusion``;
* :mod:`~sdekit.backends.numba.kernels.edm` -- EDM's stochastic sampler (``edm``);
* :mod:`~sdekit.backends.numba.kernels.sra` -- SRA stochastic Runge--Kutta methods (``sra1``, any SRA tableau);
* :mod:`~sdekit.backends.numba.kernels.pc` -- predictor--corrector (``pc``) with the ``"sigma"`` step rule and a
  reverse-diffusion or ancestral predictor;
* :mod:`~sdekit.backends.numba.kernels.annealed` -- annealed Langevin dynamics (``annealed_langevin``).
"""

from .annealed import ANNEALED_LANGEVIN
from .edm import EDM
from .explicit import EULER_MARUYAMA, RUNGE_KUTTA, STOCHASTIC_HEUN
from .multistep import AFFINE_MULTISTEP
from .pc import PC
from .sra import SRA_KERNEL

__all__ = [
    "EULER_MARUYAMA",
    "RUNGE_KUTTA",
    "STOCHASTIC_HEUN",
    "AFFINE_MULTISTEP",
    "EDM",
    "SRA_KERNEL",
    "PC",
    "ANNEALED_LANGEVIN",
]
