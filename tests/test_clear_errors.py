"""Clear errors and small things (issue 24, item 4): each mistake a new user made gets an error naming the argument."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import sdekit
from sdekit import VPSDE, Gaussian, sample, solve
from sdekit.cli import main
from sdekit.solvers.afs import AnalyticFirstStep

SDE = VPSDE()
SCORE = Gaussian([0.3, -0.4], [0.5, 0.2]).score(SDE)


def test_duplicate_sample_ids_are_refused():
    # a repeated id draws the same prior and noise: the "two" samples would be one sample twice
    with pytest.raises(ValueError, match=r"sample_ids must be distinct.*id 3 appears 2 times"):
        sample(SDE, SCORE, n=4, steps=3, sample_ids=[0, 3, 3, 7])
    x0 = SDE.prior_sample((3, 2), seed=0)
    with pytest.raises(ValueError, match="sample_ids must be distinct"):
        solve(SDE.reverse(SCORE), x0, 1.0, 1e-3, "euler_maruyama", steps=3, sample_ids=np.array([5, 5, 1]))
    with pytest.raises(ValueError, match="sample_ids must be distinct"):
        SDE.prior_sample((2, 2), sample_ids=[1, 1])
    # distinct ids in any order are fine, and give each sample its own draw
    out = sample(SDE, SCORE, n=3, steps=3, sample_ids=[9, 2, 5]).x
    assert np.unique(out, axis=0).shape[0] == 3


@pytest.mark.parametrize("noise", ["tree", "bridge"])
@pytest.mark.parametrize("solver, process", [("dopri5", "auto"), ("heun", "ode"), ("dpmpp_2m", "auto")])
def test_noise_of_an_sde_is_refused_for_an_ode(solver, process, noise):
    with pytest.raises(ValueError, match=rf"noise='{noise}' applies to SDEs.*probability-flow ODE"):
        sample(SDE, SCORE, n=3, solver=solver, process=process, noise=noise)
    # the default (None) and "counter" (nothing to draw) still run
    for ok in (None, "counter"):
        assert np.isfinite(sample(SDE, SCORE, n=3, solver=solver, process=process, noise=ok).x).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(steps=2.5), "steps"), (dict(n=2.0), "n"), (dict(steps="10"), "steps"), (dict(seed=1.5), "seed")],
)
def test_wrong_kind_of_number_is_a_plain_type_error(kwargs, name):
    args = {**dict(n=3, steps=4), **kwargs}
    with pytest.raises(TypeError) as info:
        sample(SDE, SCORE, **args)
    assert type(info.value) is TypeError  # not a subclass named like argparse's ArgumentTypeError
    assert str(info.value).startswith(f"{name} must be") and repr(kwargs[name]) in str(info.value)
    # a value of the right kind out of range is a ValueError
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        sample(SDE, SCORE, n=3, steps=0)


@pytest.mark.parametrize(
    "solver, why",
    [("euler_maruyama", "does not integrate ODEs"), ("heun", "takes 2 NFE per step"), ("rk4", "takes 4 NFE per step"),
     ("dopri5", "chooses its own steps")],
)  # fmt: skip
def test_analytic_first_step_says_why_a_solver_cannot_be_wrapped(solver, why):
    with pytest.raises(ValueError) as info:
        AnalyticFirstStep(solver)
    message = str(info.value)
    assert "1 NFE per step" in message and f"solver {solver!r} cannot be wrapped: " in message and why in message
    assert "got nfe_per_step=1" not in message
    assert AnalyticFirstStep("dpmpp_2m").nfe_per_step == 1


def test_cli_help_states_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    help_text = capsys.readouterr().out
    flat = " ".join(help_text.split())
    assert "default: None" not in flat and ") (default" not in flat  # argparse's suffix after the help's own
    assert "built-in analytic density (default ring8)" in flat and "forward SDE (default vp)" in flat
    assert "random seed (default 0)" in flat and "default sdekit_compare.csv" in flat


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sdekit {sdekit.__version__}"
    res = subprocess.run([sys.executable, "-m", "sdekit", "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"sdekit {sdekit.__version__}"
