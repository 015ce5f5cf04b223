"""The README's "Use your own model" section runs as written: its python blocks, extracted and executed in order."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import sdekit

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

README = Path(__file__).resolve().parents[1] / "README.md"


def section_blocks(title: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end >= 0 else len(text)]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_use_your_own_model_snippets_run():
    from sdekit.interop import load_k_diffusion_sampling

    try:
        load_k_diffusion_sampling()
    except ImportError as exc:  # pragma: no cover - k-diffusion is in CI
        pytest.skip(f"k-diffusion is not installed: {exc}")
    blocks = section_blocks("Use your own model")
    assert len(blocks) == 3  # a k-diffusion denoiser, a diffusers pipeline, a score_sde-style score
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ns: dict = {}
    try:
        # the k-diffusion block: sdekit's sampler, k-diffusion's and the guided sdekit.sample each land on the classes
        exec(compile(blocks[0], str(README), "exec"), ns)  # noqa: S102 - the README's own code
        for x in (ns["out"], ns["ref"], ns["sol"].x):
            assert torch.equal(torch.cdist(x, ns["means"]).argmin(1), ns["labels"])
        # the diffusers block: a pipeline with SdekitScheduler, and the pipeline's network sampled by sdekit
        exec(compile(blocks[1], str(README), "exec"), ns)  # noqa: S102
        assert ns["images"].shape == (2, 8, 8, 3) and np.all(np.isfinite(ns["images"]))
        assert isinstance(ns["sde"], sdekit.DiscreteVPSDE)
        assert ns["sol"].x.shape == (2, 3, 8, 8) and bool(torch.isfinite(ns["sol"].x).all())
        # the score_sde block: N(0, I) data comes back with unit variance
        exec(compile(blocks[2], str(README), "exec"), ns)  # noqa: S102
        assert ns["sol"].x.shape == (1000, 2)
    finally:
        torch.set_num_threads(old)
