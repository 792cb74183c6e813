"""`torch.compile` with a way back: a compiled callable that runs eagerly if compiling fails.

inductor needs a working C++ compiler on CPU (Triton on CUDA); a machine without one must still
play and train, only slower. The first call that fails to compile warns once and from then on runs
the eager callable (which raises again if the fault was in the inputs, not in compiling).
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
import torch._inductor.config as inductor


# Dynamo traces through functools.lru_cache and warns that it might be unsafe; ours (kernels/layout.py's
# masks and intervals) are pure functions of a hashable layout key, so the warning is noise
warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")


def compiled_or_eager(eager: Callable, what: str, freezing: bool = False, **options) -> Callable:
    """`torch.compile(eager, **options)`, falling back to `eager` for good at the first failure.

    freezing: inductor's weight freezing for the graphs compiled while the callable runs without
    gradients: the weights become constants (oneDNN packs the linear layers' once and fuses their
    activations), so the module must not change after its first call. `options={"freezing": True}`
    does not reach the inference compiler in torch 2.13 (the graph kept its weights as inputs), so the
    global flag is set around each call instead (~15 us). Dynamo's guards on the modules must stay:
    they are what gives a second model its own graph rather than the first one's frozen weights
    (`torch.compiler.skip_guard_on_all_nn_modules_unsafe` would save ~0.3 ms a call and break that;
    tests/test_generator.py, two models)."""
    run = torch.compile(eager, **options)

    def call(*args, **kwargs):
        nonlocal run
        try:
            if not freezing or run is eager:
                return run(*args, **kwargs)
            before, inductor.freezing = inductor.freezing, True
            try:
                return run(*args, **kwargs)
            finally:
                inductor.freezing = before
        except Exception as error:  # e.g. no C++ compiler for inductor
            if run is eager:
                raise
            warnings.warn(f"torch.compile of {what} failed ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); running it eagerly")
            run = eager
            return eager(*args, **kwargs)

    return call
