"""`torch.compile` with a way back: a compiled callable that runs eagerly if compiling fails.

inductor needs a working C++ compiler on CPU (Triton on CUDA); a machine without one must still
play and train, only slower. The first call that fails to compile warns once and from then on runs
the eager callable (which raises again if the fault was in the inputs, not in compiling).

`packaged_or_compiled` compiles ahead of time instead (AOTInductor): the first call on a machine
exports the callable and builds a package kept on disk, and later processes load it in milliseconds
rather than tracing and compiling again at every start.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import sys
import time
import warnings
from functools import cache
from pathlib import Path
from typing import Any, Callable

import torch
import torch._inductor.config as inductor


# Dynamo traces through functools.lru_cache and warns that it might be unsafe; ours (kernels/layout.py's
# masks and intervals) are pure functions of a hashable layout key, so the warning is noise
warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else ""


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
                          f"{_first_line(error)}); running it eagerly")
            run = eager
            return eager(*args, **kwargs)

    return call


PACKAGE_DIR_ENV = "PATCHWORLD_COMPILE_CACHE"


def package_dir() -> Path:
    """Where ahead-of-time packages are kept: $PATCHWORLD_COMPILE_CACHE, else a folder in inductor's own
    cache (TORCHINDUCTOR_CACHE_DIR, by default under the system's temporary folder)."""
    if os.environ.get(PACKAGE_DIR_ENV):
        return Path(os.environ[PACKAGE_DIR_ENV])
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    return Path(cache_dir()) / "patchworld-packages"


@cache
def _source_files(module: str) -> tuple[Path, ...]:
    """The project's source files (simulator/, kernels/) that `module` imports, directly or through
    others, itself and this file included: a static walk of their import statements, wherever they
    stand in the file. A packaged graph's code can only come from these."""
    import ast
    import importlib.util
    roots = ("simulator", "kernels")

    def origin(name: str) -> Path | None:
        if name.split(".")[0] not in roots:
            return None
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None

    seen: dict[Path, None] = {}
    todo = [module, __name__]
    while todo:
        name = todo.pop()
        path = origin(name)
        if path is None or path in seen:
            continue
        seen[path] = None
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importing module's package
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                todo += [base] + [f"{base}.{alias.name}" for alias in node.names]  # names may be submodules
        todo += [name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)]  # parents run their __init__
    return tuple(sorted(seen))


@cache
def _source_digest(module: str) -> str:
    """Of the source files that `module`'s code can reach (`_source_files`), by their place under the project
    and their bytes: a package built by other code is never loaded, and an edit elsewhere (a command-line tool,
    the server) does not rebuild it."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[2]  # the folder holding simulator/ and kernels/
    for path in _source_files(module):
        digest.update(path.resolve().relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _module_digest(module: torch.nn.Module) -> str:
    """Of a module's weights, buffers and config (`cfg`, where it has one): what a frozen graph bakes in."""
    digest = hashlib.sha256(repr(getattr(module, "cfg", None)).encode())
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


PACKAGE_KEEP_DAYS = 14


def _prune(folder: Path) -> None:
    """Drop the packages no process has loaded or built for PACKAGE_KEEP_DAYS (those of older code,
    checkpoints or thread counts: 6-12 MB each), and builds interrupted a day ago or more."""
    now = time.time()
    for path in folder.glob("*.pt2"):
        age = now - path.stat().st_mtime
        if age > PACKAGE_KEEP_DAYS * 86400 or (path.name.endswith(".partial.pt2") and age > 86400):
            path.unlink(missing_ok=True)


def _signature(args: tuple) -> tuple:
    """What a package is built for: each tensor's shape, dtype and device, every other argument's value."""
    return tuple(("tensor", tuple(a.shape), str(a.dtype), str(a.device)) if torch.is_tensor(a) else repr(a)
                 for a in args)


class _Bound(torch.nn.Module):
    """`eager` with its non-tensor arguments fixed, as a module that owns the weights it reads (what
    `torch.export` takes), under the autocast the call came with."""

    def __init__(self, eager: Callable, weights: torch.nn.Module, args: tuple, autocast: tuple | None):
        super().__init__()
        self.weights = weights
        self._eager, self._args, self._autocast = eager, args, autocast

    def forward(self, *tensors: torch.Tensor) -> Any:
        given = iter(tensors)
        args = [next(given) if torch.is_tensor(a) else a for a in self._args]
        precision = torch.autocast(self._autocast[0], dtype=self._autocast[1]) if self._autocast \
            else contextlib.nullcontext()
        with precision:
            return self._eager(*args)


def packaged_or_compiled(eager: Callable, what: str, weights: torch.nn.Module, freezing: bool = False,
                         cpp_wrapper: bool = False, **options) -> Callable:
    """`eager`, compiled ahead of time (AOTInductor) for each signature it is called with (tensor shapes,
    dtypes and devices; the values of its other arguments; the autocast around the call), the package
    kept on disk (`package_dir`) under a key of that signature, the weights and config of `weights` (the
    module `eager` reads), the source files its code can reach (`_source_files`), torch's version, the CPU
    and the thread count. The first call of a signature on a machine exports and builds (tens of seconds for the world model's pass);
    later ones, in any process, load the package in milliseconds. freezing: the weights become constants
    (oneDNN packs them), so `weights` must not change after the first call.

    If exporting or building fails, warns once and falls back to `compiled_or_eager(eager, what,
    freezing, cpp_wrapper, **options)`: compiled at every start, or eager."""
    runners: dict[tuple, Callable] = {}
    fallback: Callable | None = None
    weights_digest: str | None = None

    def build(args: tuple, autocast: tuple | None, path: Path) -> Callable:
        bound = _Bound(eager, weights, args, autocast).eval()
        tensors = tuple(a for a in args if torch.is_tensor(a))
        print(f"compiling {what} for this machine (once; kept in {path.parent})", file=sys.stderr, flush=True)
        began = time.perf_counter()
        with torch.no_grad():
            program = torch.export.export(bound, tensors, strict=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.pt2")
            torch._inductor.aoti_compile_and_package(program, package_path=str(partial),
                                                     inductor_configs={"freezing": freezing})
        os.replace(partial, path)  # whole or not at all: another process may be building the same key
        _prune(path.parent)
        print(f"compiled {what} in {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
        return torch._inductor.aoti_load_package(str(path))

    def runner(args: tuple) -> Callable:
        nonlocal weights_digest
        device = next(a.device for a in args if torch.is_tensor(a))
        autocast = (device.type, torch.get_autocast_dtype(device.type)) \
            if torch.is_autocast_enabled(device.type) else None
        signature = (_signature(args), repr(autocast))
        if signature not in runners:
            weights_digest = weights_digest or _module_digest(weights)
            source = _source_digest(getattr(eager, "__module__", None) or __name__)
            key = hashlib.sha256(repr((what, signature, weights_digest, source, torch.__version__,
                                       platform.machine(), torch.backends.cpu.get_cpu_capability(),
                                       torch.get_num_threads(), freezing)).encode()).hexdigest()[:32]
            path = package_dir() / f"{re.sub(r'[^a-z0-9]+', '-', what.lower()).strip('-')}-{key}.pt2"
            loaded = None
            if path.exists():
                try:
                    loaded = torch._inductor.aoti_load_package(str(path))
                except Exception:  # a package from an interrupted or incompatible build: build it again
                    path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # in use: `_prune` keeps it (a read-only folder: not needed)
                    os.utime(path)
            runners[signature] = loaded or build(args, autocast, path)
        return runners[signature]

    def call(*args):
        nonlocal fallback
        args = tuple(a.contiguous() if torch.is_tensor(a) else a for a in args)  # as the package was built for
        if fallback is None:
            try:
                run = runner(args)
            except Exception as error:  # e.g. no C++ compiler, or a graph torch.export cannot take
                warnings.warn(f"ahead-of-time compile of {what} failed ({type(error).__name__}: "
                              f"{_first_line(error)}); compiling it at every start")
                fallback = compiled_or_eager(eager, what, freezing=freezing, cpp_wrapper=cpp_wrapper, **options)
            else:
                return run(*(a for a in args if torch.is_tensor(a)))
        return fallback(*args)

    return call
