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


def compiled_or_eager(eager: Callable, what: str, freezing: bool = False, cpp_wrapper: bool = False,
                      **options) -> Callable:
    """`torch.compile(eager, **options)`, falling back to `eager` for good at the first failure.

    freezing: inductor's weight freezing for the graphs compiled while the callable runs without
    gradients: the weights become constants (oneDNN packs the linear layers' once and fuses their
    activations), so the module must not change after its first call. `options={"freezing": True}`
    does not reach the inference compiler in torch 2.13 (the graph kept its weights as inputs), so the
    global flag is set around each call instead (~15 us). Dynamo's guards on the modules must stay:
    they are what gives a second model its own graph rather than the first one's frozen weights
    (`torch.compiler.skip_guard_on_all_nn_modules_unsafe` would save ~0.3 ms a call and break that;
    tests/test_generator.py, two models).

    cpp_wrapper: the graph's code that calls its kernels is C++ rather than Python (inductor's
    `cpp_wrapper`), set the same way. A call of a small graph of many kernels costs less (live play's
    pass: +19% frames/s on one thread, docs/benchmarks.md); compiling costs more, and with frozen
    weights the wrapper is compiled again on every start (its source names the weights' addresses)."""
    run = torch.compile(eager, **options)
    flags = {name: True for name, on in (("freezing", freezing), ("cpp_wrapper", cpp_wrapper)) if on}

    def call(*args, **kwargs):
        nonlocal run
        try:
            if not flags or run is eager:
                return run(*args, **kwargs)
            before = {name: getattr(inductor, name) for name in flags}
            try:
                for name, value in flags.items():
                    setattr(inductor, name, value)
                return run(*args, **kwargs)
            finally:
                for name, value in before.items():
                    setattr(inductor, name, value)
        except Exception as error:  # e.g. no C++ compiler for inductor
            if run is eager:
                raise
            warnings.warn(f"torch.compile of {what} failed ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); running it eagerly")
            run = eager
            return eager(*args, **kwargs)

    return call
