import torch

from fusevis.models import WeightedAverage


def test_output_and_weights_match_the_formula() -> None:
    x1 = torch.tensor([[[[0.2, 0.0, 0.5, 0.0]]]], dtype=torch.float64)
    x2 = torch.tensor([[[[0.6, 0.4, 0.5, 0.0]]]], dtype=torch.float64)
    model = WeightedAverage()
    w1, w2 = model.weights(x1, x2)
    torch.testing.assert_close(w1, torch.tensor([[[[0.25, 0.0, 0.5, 0.5]]]], dtype=torch.float64))
    torch.testing.assert_close(w2, 1 - w1)
    expected = torch.tensor([[[[0.25 * 0.2 + 0.75 * 0.6, 0.4, 0.5, 0.0]]]], dtype=torch.float64)
    torch.testing.assert_close(model(x1, x2), expected)


def test_equal_inputs_weigh_one_over_n() -> None:
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    weights = WeightedAverage().weights(x, x.clone(), x.clone())
    for w in weights:
        torch.testing.assert_close(w, torch.full_like(x, 1 / 3))


def test_gradient_is_the_weight() -> None:
    x1 = torch.rand(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    x2 = torch.rand(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    model = WeightedAverage()
    model(x1, x2).sum().backward()
    w1, w2 = model.weights(x1, x2)
    torch.testing.assert_close(x1.grad, w1)
    torch.testing.assert_close(x2.grad, w2)
