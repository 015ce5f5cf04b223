"""Image-to-image starts of SdekitScheduler.from_config (a diffusers scheduler's own method) against the real diffusers
scheduler started at the same step: the orders of the last steps (``lower_order_final`` below 15 steps) and the
singlestep order groups are those of the whole schedule (``later_start="schedule"``); with a solver named, a later
start stays a fresh run of the remaining grid (``later_start="fresh"``, equal to ``sdekit.sample`` on it)."""

from __future__ import annotations

import inspect
import logging
import warnings

import diffusers as D
import pytest
import torch

from _diffusers_loop import model, rel, start, swapped
from sdekit.interop.diffusers import SdekitScheduler
from sdekit.solvers import SOLVERS, get_solver

logging.getLogger("diffusers").setLevel(logging.ERROR)

MULTI, SINGLE, SM = D.DPMSolverMultistepScheduler, D.DPMSolverSinglestepScheduler, {"final_sigmas_type": "sigma_min"}
# (class, config, steps, begin, tolerance): 20 steps (diffusers keeps the orders of the last steps at 15 steps and
# more, a fresh run of the remaining 10 or 7 would lower them) and 10 (below 15 either way); singlestep schedules
# entered inside an order group (EDM: sigma_min 0.05, so that its timesteps log(s) / 4 stay above -1, where the
# model x t / (t + 1) has its pole)
CASES = {
    "dpm2-sigma_min-20/10": (MULTI, dict(SM), 20, 10, 3e-6),
    "dpm3-sigma_min-20/10": (MULTI, dict(solver_order=3, **SM), 20, 10, 5e-6),
    "dpm3-zero-20/13": (MULTI, dict(solver_order=3), 20, 13, 5e-6),
    "dpm3-sigma_min-10/4": (MULTI, dict(solver_order=3, **SM), 10, 4, 3e-6),
    "dpm2-noise-20/10": (MULTI, dict(algorithm_type="dpmsolver", **SM), 20, 10, 3e-6),
    "deis2-20/10": (D.DEISMultistepScheduler, dict(solver_order=2), 20, 10, 3e-6),
    "unipc3-20/10": (D.UniPCMultistepScheduler, dict(solver_order=3), 20, 10, 3e-6),
    "unipc2-disable-corrector-20/10": (D.UniPCMultistepScheduler, dict(disable_corrector=[11, 14]), 20, 10, 3e-6),
    "edm-dpm3-20/10": (D.EDMDPMSolverMultistepScheduler, dict(solver_order=3, sigma_min=0.05, **SM), 20, 10, 5e-6),
    "sa-solver-20/10": (D.SASolverScheduler, {}, 20, 10, 5e-6),
    "single2-20/5": (SINGLE, dict(solver_order=2), 20, 5, 3e-6),
    "single3-20/7": (SINGLE, dict(solver_order=3), 20, 7, 3e-6),
    "single3-20/8": (SINGLE, dict(solver_order=3), 20, 8, 3e-6),
    "single3-sigma_min-10/5": (SINGLE, dict(solver_order=3, lower_order_final=False, **SM), 10, 5, 3e-6),
}


def later(sch, n, begin, by_index=True, seed=5):
    """A pipeline's image-to-image loop: the schedule of ``n`` steps entered at evaluation ``begin`` (by
    ``set_begin_index``, or by the first step's timestep)."""
    sch.set_timesteps(n)
    if by_index:
        sch.set_begin_index(begin)
    kw = {"generator": torch.manual_seed(seed)} if "generator" in inspect.signature(sch.step).parameters else {}
    x = start() * sch.init_noise_sigma
    for t in sch.timesteps[begin:]:
        x = sch.step(model(sch.scale_model_input(x, t), t), t, x, **kw).prev_sample
    return x


@pytest.mark.parametrize("by_index", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_a_source_methods_later_start_is_diffusers_own(case, by_index):
    cls, cfg, n, begin, tol = CASES[case]
    sch = swapped(cls(**cfg))
    assert sch.config.later_start == "schedule"
    assert rel(later(sch, n, begin, by_index), later(cls(**cfg), n, begin, by_index)) < tol


@pytest.mark.parametrize("case", ["dpm2-sigma_min-20/10", "dpm3-sigma_min-20/10", "single3-20/7"])
def test_a_fresh_run_of_the_remaining_grid_differs_there(case):
    # the cases above test something: a fresh run of the remaining steps takes other orders for its last steps
    cls, cfg, n, begin, _ = CASES[case]
    sch = SdekitScheduler.from_config(cls(**cfg).config, later_start="fresh")
    assert sch.config.later_start == "fresh"
    assert rel(later(sch, n, begin), later(cls(**cfg), n, begin)) > 1e-2


def test_a_named_solver_starts_later_as_a_fresh_run():
    # naming a solver keeps the fresh-run contract (equal to sdekit.sample on the remaining grid: the contract tests
    # of every registry solver); here the named solver is the source's own method, so it equals that method run with
    # later_start="fresh", and both differ from diffusers' later start
    source = D.DPMSolverMultistepScheduler(solver_order=3, final_sigmas_type="sigma_min")
    named = SdekitScheduler.from_config(source.config, solver="dpmpp_3m", reference_d2=True)
    assert named.config.later_start == "fresh"
    fresh = SdekitScheduler.from_config(source.config, later_start="fresh")
    assert fresh.config.solver == "dpmpp_3m" and fresh.config.solver_options == {"reference_d2": True}
    out = later(named, 20, 10)
    assert rel(out, later(fresh, 20, 10)) < 1e-7
    assert rel(out, later(D.DPMSolverMultistepScheduler(**source.config), 20, 10)) > 1e-2


def test_later_start_is_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match="later_start must be one of"):
        SdekitScheduler(later_start="whole")
    sch = SdekitScheduler.from_config(D.DPMSolverMultistepScheduler().config)
    sch.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert SdekitScheduler.from_pretrained(tmp_path).config.later_start == "schedule"


ACCEPTED = [name for name in SOLVERS if not get_solver(name).adaptive]


@pytest.mark.parametrize("solver", ACCEPTED)
def test_every_solver_runs_either_later_start_and_below_15_steps_both_agree(solver):
    # below 15 steps of the whole schedule its length decides nothing that the remaining steps do not (``n - k``
    # steps remain either way): the two starts are one run, but for the single-step groups (their own places)
    options = {"edm": {"S_tmax": 0.5}, "annealed_langevin": {"n_steps": 3}}.get(solver, {})
    outs = []
    for mode in ("fresh", "schedule"):
        sch = SdekitScheduler(solver, seed=3, later_start=mode, **options)
        sch.set_timesteps(10)
        begin = [i for i, (k, j, _, _) in enumerate(sch._requests) if k == 4 and j == 0][0]  # noqa: SLF001
        outs.append(later(sch, 10, begin))
        assert torch.isfinite(outs[-1]).all()
    if solver != "dpmpp_single":
        assert rel(outs[1], outs[0]) < 1e-12
