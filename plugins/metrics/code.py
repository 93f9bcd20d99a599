"""`pass_at_k`: functional correctness of generated Python, each program sandboxed in a subprocess.

Isolation (never in the trainer's process):
- a fresh `python -I` (isolated mode: no user site, no PYTHON* variables) in a new session, in a
  temporary working directory, killed with its whole process group after `timeout` seconds;
- no network: when `unshare -rn` works (an unprivileged user + network namespace, Linux), the
  program runs in a namespace without any interface but loopback; otherwise a preamble replaces
  `socket.socket` and `socket.create_connection` with functions that raise before the program runs;
- an address-space limit (`memory_mb`) and no core files via `resource.setrlimit`.
This stops accidents (endless loops, memory blow-ups, network calls), not a determined attacker:
enable it only for code from models you run yourself.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mtkit import Metric, MtkitError, Resampler, mean_resampler

from .config import PassAtKMetricConfig

_LIMITS = """\
import resource as _r
_r.setrlimit(_r.RLIMIT_AS, ({memory}, {memory}))
_r.setrlimit(_r.RLIMIT_CORE, (0, 0))
del _r
"""

_NO_SOCKETS = """\
import socket as _s
def _blocked(*args, **kwargs):
    raise OSError("network access is disabled in the pass_at_k sandbox")
_s.socket = _blocked
_s.create_connection = _blocked
_s.socketpair = _blocked
del _s
"""


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator (Chen et al., 2021): 1 - C(n-c, k) / C(n, k), computed stably."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@functools.cache
def network_isolation() -> str:
    """'namespace' when `unshare -rn` can run programs here, else 'socket-block'."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return "socket-block"
    try:
        done = subprocess.run([unshare, "-rn", sys.executable, "-c", "pass"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "socket-block"
    return "namespace" if done.returncode == 0 else "socket-block"


@dataclass(frozen=True)
class Outcome:
    passed: bool
    reason: str  # 'passed', 'failed', 'timeout'
    output: str  # the program's last output lines (stderr, then stdout)


def build_program(completion: str, reference: dict[str, Any]) -> str:
    """HumanEval's check program: prompt + completion, the tests, then check(entry_point)."""
    for key in ("prompt", "test", "entry_point"):
        if key not in reference:
            raise MtkitError(
                f"pass_at_k: a reference has no {key!r} (it has {', '.join(sorted(reference))}); "
                "set head.reference_fields = ['prompt', 'test', 'entry_point']"
            )
    return f"{reference['prompt']}{completion}\n\n{reference['test']}\n\ncheck({reference['entry_point']})\n"


def run_program(program: str, *, timeout: float, memory_mb: int, isolation: str | None = None) -> Outcome:
    """Run one program in a sandboxed subprocess; passed means exit status 0 within the timeout."""
    isolation = isolation or network_isolation()
    preamble = _LIMITS.format(memory=memory_mb * 1024 * 1024)
    if isolation != "namespace":
        preamble += _NO_SOCKETS
    with tempfile.TemporaryDirectory(prefix="mtkit-pass-at-k-") as folder:
        path = os.path.join(folder, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(preamble + program)
        command = [sys.executable, "-I", path]
        if isolation == "namespace":
            command = [shutil.which("unshare") or "unshare", "-rn", *command]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}  # nothing else leaks in
        proc = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Outcome(False, "timeout", "")
    text = (err or out).decode("utf-8", errors="replace").strip().splitlines()
    return Outcome(proc.returncode == 0, "passed" if proc.returncode == 0 else "failed", "\n".join(text[-5:]))


class PassAtKMetric(Metric):
    """pass@k of generated code against each problem's tests (opt-in: runs model-written code)."""

    name = "pass_at_k"
    config_class = PassAtKMetricConfig
    config: PassAtKMetricConfig

    def __init__(self, config: PassAtKMetricConfig) -> None:
        super().__init__(config)
        if not config.allow_code_execution:
            raise MtkitError(
                "metric pass_at_k runs model-generated code; opt in with "
                '{type = "pass_at_k", allow_code_execution = true} in the task\'s metrics'
            )
        self.isolation = network_isolation()

    def outcomes(self, predictions: Sequence[Any], references: Sequence[Any]) -> list[list[Outcome]]:
        """Every sample's outcome, per problem."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        jobs: list[tuple[int, str]] = []
        for i, (samples, reference) in enumerate(zip(predictions, references, strict=True)):
            if not isinstance(reference, dict):
                raise MtkitError(
                    "pass_at_k: references must carry the tests; set head.reference_fields = ['prompt', 'test', 'entry_point']"
                )
            for completion in [samples] if isinstance(samples, str) else samples:
                jobs.append((i, build_program(completion, reference)))
        run = functools.partial(
            run_program, timeout=self.config.timeout, memory_mb=self.config.memory_mb, isolation=self.isolation
        )
        with ThreadPoolExecutor(self.config.workers) as pool:
            results = list(pool.map(run, [program for _, program in jobs]))
        grouped: list[list[Outcome]] = [[] for _ in predictions]
        for (i, _), outcome in zip(jobs, results, strict=True):
            grouped[i].append(outcome)
        return grouped

    def compute(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
        return self.resampler(predictions, references)(range(len(predictions)))

    def resampler(self, predictions: Sequence[Any], references: Sequence[Any]) -> Resampler:
        """Means of each problem's pass@k estimate (the programs run once; intervals resample the estimates)."""
        grouped = self.outcomes(predictions, references)
        scores: dict[str, list[float]] = {}
        for k in self.config.k:
            values = []
            for outcomes in grouped:
                n = len(outcomes)
                if k > n:
                    raise MtkitError(
                        f"pass_at_k: k={k} needs at least {k} samples per problem, got {n}; set head.num_samples >= {k}"
                    )
                values.append(pass_at_k(n, sum(o.passed for o in outcomes), k))
            scores[f"pass_at_{k}"] = values
        return mean_resampler(scores)
