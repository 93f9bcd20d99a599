"""Loss-weighting balancers against hand-written references."""

from __future__ import annotations

import math

import pytest
import torch

from mtkit import TaskLosses
from mtkit.train.balancing import task_loss
from tests.plugins.balancers.toy import Toy, balanced_step, balancer

TASKS = ["sentiment", "topic"]


def _losses(values: dict[str, float], scales: dict[str, float] | None = None) -> TaskLosses:
    losses = {t: torch.tensor(v, requires_grad=True) for t, v in values.items()}
    return TaskLosses(losses, scales or dict.fromkeys(values, 1.0), dict.fromkeys(values, 1.0))


def test_static_is_the_trainers_batch_share_weighted_sum_bit_for_bit() -> None:
    losses = {"sentiment": torch.tensor(0.6931, requires_grad=True), "topic": torch.tensor(1.3863, requires_grad=True)}
    batches = [("sentiment", {"input_ids": torch.zeros(5, 2)}), ("topic", {"input_ids": torch.zeros(3, 2)})]
    weights = {"sentiment": 1.0, "topic": 0.7}
    reference = task_loss(losses, batches, weights)
    scales = {"sentiment": 1.0 * 5 / 8, "topic": 0.7 * 3 / 8}
    combined = balancer("static", TASKS).combine_losses(TaskLosses(losses, scales, weights))
    assert torch.equal(combined, reference)


def test_uncertainty_learns_each_tasks_weight_as_one_over_twice_its_loss() -> None:
    """exp(-s) L + s/2 is smallest at exp(-s) = 1 / (2 L): a task with loss 2 ends at weight 0.25, one with 0.5 at 1."""
    unit = balancer("uncertainty", TASKS)
    optimizer = torch.optim.Adam(unit.parameters(), lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        unit.combine_losses(_losses({"sentiment": 2.0, "topic": 0.5})).backward()
        optimizer.step()
    logs = unit.logs()
    assert logs["weight/sentiment"] == pytest.approx(0.25, rel=0.02) and logs["weight/topic"] == pytest.approx(1.0, rel=0.02)


def test_uncertainty_at_its_start_weights_every_task_one() -> None:
    combined = balancer("uncertainty", TASKS).combine_losses(_losses({"sentiment": 2.0, "topic": 0.5}, {"sentiment": 0.5, "topic": 0.5}))
    assert float(combined.detach()) == pytest.approx(1.25)


def test_dwa_weights_follow_the_ratio_of_each_tasks_last_two_window_means() -> None:
    unit = balancer("dwa", TASKS, window=2, temperature=2.0)
    steps = [{"sentiment": 1.0, "topic": 2.0}, {"sentiment": 1.0, "topic": 2.0}, {"sentiment": 0.5, "topic": 1.8}, {"sentiment": 0.7, "topic": 1.8}]
    for values in steps:  # two windows of two steps: means (1.0, 2.0) then (0.6, 1.8)
        unit.combine_losses(_losses(values))
        assert unit.logs() == {"weight/sentiment": 1.0, "weight/topic": 1.0}  # weights are 1 until two measurements exist
    combined = unit.combine_losses(_losses({"sentiment": 0.4, "topic": 1.5}))
    ratios = torch.tensor([0.6 / 1.0, 1.8 / 2.0])
    expected = 2 * torch.softmax(ratios / 2.0, dim=0)  # K softmax(r / T)
    logs = unit.logs()
    assert logs["weight/sentiment"] == pytest.approx(float(expected[0])) and logs["weight/topic"] == pytest.approx(float(expected[1]))
    assert float(combined.detach()) == pytest.approx(float(expected[0]) * 0.4 + float(expected[1]) * 1.5, rel=1e-6)
    assert logs["weight/topic"] > logs["weight/sentiment"]  # the topic loss fell slower


def test_dwa_keeps_a_tasks_measurements_through_a_window_without_it() -> None:
    unit = balancer("dwa", TASKS, window=1)
    unit.combine_losses(_losses({"sentiment": 1.0, "topic": 2.0}))
    unit.combine_losses(_losses({"sentiment": 0.5}))  # no topic samples in this window
    assert unit.measurements[:, 1].isnan().tolist() == [True, False]
    unit.combine_losses(_losses({"sentiment": 0.5, "topic": 1.0}))
    torch.testing.assert_close(unit.measurements, torch.tensor([[0.5, 2.0], [0.5, 1.0]]))


def test_gradnorm_gets_the_tasks_gradient_norms_on_the_shared_parameters() -> None:
    """On the toy the shared gradients are known (norms 1 and sqrt(5)): GradNorm's own loss pushes the weight of the
    task with the smaller gradient up and the other's down, each by its norm; the model trains on the weighted losses."""
    gradients = torch.tensor([[1.0, 0.0, 0.0], [-2.0, 1.0, 0.0]])
    toy = Toy(gradients, TASKS)
    outcome, unit = balanced_step(toy, "gradnorm")
    torch.testing.assert_close(unit.task_weights.grad, torch.tensor([-1.0, math.sqrt(5.0)]))  # sign(G_k - mean G) n_k
    torch.testing.assert_close(toy.shared.grad, gradients.mean(0))  # weights 1 at the start: the static update
    assert outcome.logs["balancer/weight/sentiment"] == pytest.approx(1.0)
    outcome, unit = balanced_step(toy, "gradnorm", loss_weights={"sentiment": 2.0, "topic": 1.0})
    torch.testing.assert_close(unit.task_weights.grad, torch.tensor([-2.0, math.sqrt(5.0)]))  # norms of loss_weight x loss: 2 and sqrt(5)


def test_gradnorm_weights_move_towards_equal_weighted_gradient_norms() -> None:
    unit = balancer("gradnorm", TASKS, alpha=0.0)
    norms = {"sentiment": torch.tensor(1.0), "topic": torch.tensor(math.sqrt(5.0))}
    losses = TaskLosses(
        {"sentiment": torch.tensor(0.7, requires_grad=True), "topic": torch.tensor(1.2, requires_grad=True)},
        {"sentiment": 0.5, "topic": 0.5},
        {"sentiment": 1.0, "topic": 1.0},
        norms,
    )
    combined = unit.combine_losses(losses)
    (grad,) = torch.autograd.grad(combined, [unit.task_weights])
    # sum_k |w_k n_k - mean(w n)| with w = 1: d/dw = sign(n_k - mean) n_k.
    torch.testing.assert_close(grad, torch.tensor([-1.0, math.sqrt(5.0)]))
    optimizer = torch.optim.SGD(unit.parameters(), lr=0.01)
    for _ in range(300):
        optimizer.zero_grad()
        unit.combine_losses(losses).backward()
        optimizer.step()
    unit.combine_losses(losses)  # renormalises the weights to sum 2 before use
    w = unit.task_weights.detach()
    assert float(w.sum()) == pytest.approx(2.0)
    assert float(w[0] * 1.0) == pytest.approx(float(w[1] * math.sqrt(5.0)), rel=0.05)  # equal weighted norms (alpha 0)
