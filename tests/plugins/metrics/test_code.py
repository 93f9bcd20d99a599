"""pass_at_k: the unbiased estimator, and real sandboxed subprocesses on correct, wrong and endless programs."""

from __future__ import annotations

import math
import os

import pytest
from mtkit_metrics.code import PassAtKMetric, network_isolation, pass_at_k, run_program
from mtkit_metrics.config import PassAtKMetricConfig

from mtkit import MtkitError

PROBLEM = {
    "prompt": 'def add(a, b):\n    """Return a + b."""\n',
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    "entry_point": "add",
}
CORRECT, WRONG, ENDLESS = "    return a + b\n", "    return a - b\n", "    while True:\n        pass\n"


def metric(**options: object) -> PassAtKMetric:
    return PassAtKMetric(PassAtKMetricConfig(allow_code_execution=True, timeout=2.0, **options))


def test_pass_at_k_estimator_matches_binomial_formula() -> None:
    for n, c, k in [(10, 3, 1), (10, 3, 5), (5, 0, 2), (5, 5, 3), (20, 1, 10)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_pass_at_k_correct_wrong_and_timeout_programs() -> None:
    grouped = metric().outcomes([CORRECT, WRONG, ENDLESS], [PROBLEM] * 3)
    assert [o[0].reason for o in grouped] == ["passed", "failed", "timeout"]
    assert "AssertionError" in grouped[1][0].output
    assert metric().compute([CORRECT, WRONG, ENDLESS], [PROBLEM] * 3) == {"pass_at_1": pytest.approx(1 / 3)}


def test_pass_at_k_with_samples_uses_unbiased_estimator() -> None:
    samples = [[CORRECT, WRONG, WRONG, CORRECT]]
    scores = metric(k=[1, 2]).compute(samples, [PROBLEM])
    assert scores == {"pass_at_1": pytest.approx(0.5), "pass_at_2": pytest.approx(pass_at_k(4, 2, 2))}
    with pytest.raises(MtkitError, match="k=5 needs at least 5 samples"):
        metric(k=[5]).compute(samples, [PROBLEM])


@pytest.mark.parametrize("isolation", ["namespace", "socket-block"])
def test_pass_at_k_sandbox_has_no_network(isolation: str) -> None:
    if isolation == "namespace" and network_isolation() != "namespace":
        pytest.skip("unshare -rn is not available here")
    program = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\n"
    outcome = run_program(program, timeout=10, memory_mb=1024, isolation=isolation)
    assert not outcome.passed and "OSError" in outcome.output


def test_pass_at_k_program_does_not_run_in_this_process() -> None:
    outcome = run_program(
        f"import os\nassert os.getpid() != {os.getpid()}\nassert 'HOME' not in os.environ\n", timeout=10, memory_mb=1024
    )
    assert outcome.passed, outcome.output


def test_pass_at_k_is_opt_in_and_needs_test_references() -> None:
    with pytest.raises(MtkitError, match="allow_code_execution = true"):
        PassAtKMetric(PassAtKMetricConfig())
    with pytest.raises(MtkitError, match="reference_fields"):
        metric().compute([CORRECT], ["just a string"])
    with pytest.raises(MtkitError, match="has no 'test'"):
        metric().compute([CORRECT], [{"prompt": "", "entry_point": "f"}])
