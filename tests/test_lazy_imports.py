"""``import sdekit`` loads the core only; the workbench loads on first use with the same public names."""

import subprocess
import sys

import pytest

import sdekit

WORKBENCH = ("bench", "zoo", "distributed", "likelihood", "interop", "grid_search", "metrics")


def _loaded_after(code: str) -> set:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(out.stdout.split())


def test_bare_import_loads_no_workbench_and_no_scipy():
    loaded = _loaded_after("import sdekit")
    workbench = sorted(m for m in loaded if m.split(".")[:2][-1] in WORKBENCH and m.startswith("sdekit."))
    assert workbench == []
    for library in ("scipy", "torch", "numba", "sklearn", "diffusers"):
        assert library not in loaded, library


def test_workbench_loads_on_first_use():
    loaded = _loaded_after("import sdekit\nsdekit.bench.compare")
    assert "sdekit.bench" in loaded and "sdekit.zoo" not in loaded


@pytest.mark.parametrize("name", WORKBENCH)
def test_lazy_names_are_the_modules(name):
    import importlib

    assert getattr(sdekit, name) is importlib.import_module(f"sdekit.{name}")
    assert name in dir(sdekit)


def test_grids_optimize_is_grid_search_optimize():
    from sdekit.grid_search import optimize
    from sdekit.grids import optimize as from_grids

    assert sdekit.grids.optimize is optimize is from_grids


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        sdekit.no_such_name  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_grid"):
        sdekit.grids.no_such_grid  # noqa: B018
