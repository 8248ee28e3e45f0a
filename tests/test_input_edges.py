"""Edge-case inputs of the library get a clear ValueError, not a reshape error deep inside or a NaN."""

from __future__ import annotations

import math

import pytest
import torch

from circuitlab.tasks import make_task
from circuitlab.training import TrainingConfig

from .conftest import small_model


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.mark.parametrize("shape", [(0,), (1, 0), (0, 5), (0, 0)])
@pytest.mark.parametrize("call", ["forward", "run_with_cache"])
def test_empty_tokens_get_a_clear_error(model, shape: tuple[int, ...], call: str) -> None:
    tokens = torch.zeros(shape, dtype=torch.long)
    with pytest.raises(ValueError, match=r"tokens are empty \(shape .*\): give at least one sequence of one token"):
        model(tokens) if call == "forward" else model.run_with_cache(tokens)


@pytest.mark.parametrize("return_type", ["loss", "both"])
def test_the_loss_of_a_one_token_sequence_raises_instead_of_nan(model, return_type: str) -> None:
    with pytest.raises(ValueError, match="the next-token loss needs sequences of at least 2 tokens, got 1"):
        model(torch.tensor([[3]]), return_type=return_type)
    assert math.isfinite(float(model(torch.tensor([[3, 4]]), return_type="loss").detach()))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1e-3, 0.0])
def test_training_config_refuses_bad_learning_rates(value: float) -> None:
    with pytest.raises(ValueError, match=r"TrainingConfig\.lr=.* is invalid: expected a positive, finite"):
        TrainingConfig(lr=value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.1])
def test_training_config_refuses_bad_weight_decays(value: float) -> None:
    with pytest.raises(ValueError, match=r"TrainingConfig\.weight_decay=.* is invalid: expected a finite number >= 0"):
        TrainingConfig(weight_decay=value)
    assert TrainingConfig(weight_decay=0.0).weight_decay == 0.0


def test_task_parameters_of_the_wrong_type_say_which_type(tmp_path, capsys) -> None:
    with pytest.raises(ValueError, match="task parameter length='abc' is invalid: repeated_tokens wants an integer"):
        make_task("repeated_tokens", length="abc")
    with pytest.raises(ValueError, match="modular_addition wants a number for train_fraction"):
        make_task("modular_addition", train_fraction="half")
    with pytest.raises(ValueError, match="has no parameter 'lenght'; did you mean 'length'"):
        make_task("repeated_tokens", lenght=8)
    from circuitlab.cli import main

    assert main(["train", "induction", "--task-param", "length=abc", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "task parameter length='abc' is invalid: repeated_tokens wants an integer for length" in err
    assert not (tmp_path / "r").exists()
