"""Runs the Triton kernels under the interpreter when there is no GPU.

TRITON_INTERPRET must be set before triton is first imported, so this happens here, before any
test module imports kernels. Only torch is imported: this must work on a GPU box that lacks the
simulator's other dependencies.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
