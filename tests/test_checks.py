"""snippets/checks.py: one rule per question, and the exact words of each refusal."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from snippets.checks import (
    FLOATS,
    HALF,
    as_numbers,
    check_attention_inputs,
    check_broadcast,
    check_callable,
    check_choice,
    check_device,
    check_dim,
    check_flag,
    check_indices,
    check_keys,
    check_mask,
    check_number,
    check_same,
    check_seed,
    check_shapes,
    check_size,
    check_tensor,
    check_type,
    check_values,
    check_words,
)


def refused(call, message):
    """call() raises a ValueError with exactly ``message``."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


def test_the_float_dtypes():
    assert FLOATS == (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    assert HALF == (torch.float16, torch.bfloat16)


# Sizes: ints only, never bools or floats -------------------------------------------


@pytest.mark.parametrize("value", [1, 7, 2**70])
def test_a_positive_size_is_returned(value):
    assert check_size("n", value) == value


@pytest.mark.parametrize(
    "value, got", [(0, "0"), (-3, "-3"), (True, "True"), (2.0, "2.0"), ("4", "'4'"),
                   (None, "None"), (torch.tensor(3), "a torch.int64 tensor of shape ()")],
)
def test_a_positive_size_refuses_zero_bools_floats_and_the_rest(value, got):
    refused(lambda: check_size("n", value), f"n must be a positive int, got {got}")


def test_size_bounds_and_parity():
    assert check_size("t", 0, minimum=0) == 0
    refused(lambda: check_size("t", -1, minimum=0), "t must be a non-negative int, got -1")
    refused(lambda: check_size("k", 1, minimum=2), "k must be an int >= 2, got 1")
    refused(lambda: check_size("s", 9, minimum=0, maximum=8),
            "s must be an int from 0 to 8, got 9")
    assert check_size("d", 4, even=True) == 4
    refused(lambda: check_size("d", 5, even=True), "d must be a positive even int, got 5")


def test_a_seed_is_what_a_generator_takes():
    assert check_seed("seed", 2**63 - 1) == 2**63 - 1
    torch.Generator().manual_seed(2**63 - 1)
    refused(lambda: check_seed("seed", -1), "seed must be an int from 0 to "
            "9223372036854775807, got -1")


def test_a_long_value_is_named_by_its_type():
    refused(lambda: check_size("n", list(range(100))), "n must be a positive int, got list")


# Flags, numbers, types, choices, keys, words, devices --------------------------------


@pytest.mark.parametrize("value", [0, 1, "no", None, np.bool_(True)])
def test_a_flag_is_true_or_false_and_nothing_else(value):
    refused(lambda: check_flag("is_causal", value),
            f"is_causal must be True or False, got {value!r}")
    assert check_flag("is_causal", True) is True


def test_numbers_are_finite_unless_an_end_is_closed():
    assert check_number("base", 10000.0, 0) == 10000.0
    for bad, got in ((0, "0"), (float("inf"), "inf"), (float("nan"), "nan"),
                     (True, "True"), ("1", "'1'")):
        refused(lambda: check_number("base", bad, 0),
                f"base must be a number in (0, inf), got {got}")
    assert check_number("p", 0, 0, 1, open_low=False) == 0
    refused(lambda: check_number("p", 1, 0, 1, open_low=False),
            "p must be a number in [0, 1), got 1")
    inf = float("inf")
    assert check_number("fill", -inf, -inf, inf, False, False) == -inf


def test_types_callables_choices_and_keys():
    assert check_type("s", "x", str) == "x"
    refused(lambda: check_type("s", 3, str), "s must be a str, got int")
    refused(lambda: check_type("g", 3, (torch.Generator, type(None)), "None or a Generator"),
            "g must be None or a Generator, got int")
    refused(lambda: check_callable("f", 3), "f must be a function, got int")
    assert check_choice("dtype", torch.float16, FLOATS) is torch.float16
    refused(lambda: check_choice("dtype", torch.int8, HALF),
            "dtype must be one of torch.float16, torch.bfloat16, got torch.int8")
    refused(lambda: check_choice("n", True, (1, 2)), "n must be one of 1, 2, got True")
    assert check_keys("d", {"a": 1, "b": 2}, ["a"]) == {"a": 1, "b": 2}
    refused(lambda: check_keys("d", {"a": 1}, ["a", "b"]),
            "d must be a dict with the keys a, b, got {'a': 1}")


def test_words():
    assert check_words("tokens", ["a", "b"], {"a", "b"}) == ["a", "b"]
    refused(lambda: check_words("tokens", [], ("a",)),
            "tokens must be a non-empty list of words from (a), got []")
    refused(lambda: check_words("tokens", ["c"], ("a", "b")),
            "tokens must be a non-empty list of words from (a, b), got ['c']")
    refused(lambda: check_words("tokens", "ab"), "tokens must be a non-empty list of "
            "words, got 'ab'")
    refused(lambda: check_words("row", ["1"], minimum=2),
            "row must be a list of at least 2 words, got ['1']")
    assert check_words("lines", (), minimum=0) == ()


def test_devices():
    assert check_device("device", None) is None
    assert check_device("device", "meta") == torch.device("meta")
    for bad in ("nope", 3, "cuda:0" if not torch.cuda.is_available() else "nope"):
        refused(lambda: check_device("device", bad), "device must be None or a device "
                f"torch can use here, such as 'cpu' or 'meta', got {bad!r}")


# Tensors: kind, rank, dtype ----------------------------------------------------------


def test_rank_comes_from_the_shape():
    x = torch.zeros(2, 3, 4)
    assert check_tensor("x", x, "(..., T, d)") is x
    assert check_tensor("x", x, "(B, T, D)") is x
    assert check_tensor("x", torch.zeros(()), "(...)") is not None
    refused(lambda: check_tensor("x", x, "(T, d)"), "x must have shape (T, d), got shape "
            "(2, 3, 4)")
    refused(lambda: check_tensor("x", torch.zeros(3), "(..., T, d)"),
            "x must have shape (..., T, d), got shape (3,)")
    refused(lambda: check_tensor("x", [1.0], "(..., T, d)"),
            "x must be a torch.Tensor of shape (..., T, d), got list")


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_only_float_dtypes_by_default(dtype):
    name = str(dtype).removeprefix("torch.")
    refused(lambda: check_tensor("q", torch.zeros(2, 2, dtype=dtype), "(T, d)"),
            f"q must have dtype float16, bfloat16, float32 or float64, got {name}")


def test_numpy_arrays_by_the_same_rules():
    a = np.zeros((2, 3))
    assert check_tensor("a", a, "(T, d)", kind=np.ndarray) is a
    refused(lambda: check_tensor("a", torch.zeros(2, 3), "(T, d)", kind=np.ndarray),
            "a must be a numpy.ndarray of shape (T, d), got Tensor")
    refused(lambda: check_tensor("a", np.zeros((2, 3), dtype=int), "(T, d)",
                                 kind=np.ndarray),
            "a must have dtype float16, bfloat16, float32 or float64, got int64")


# Dtype and device agreement ----------------------------------------------------------


def test_tensors_that_meet_share_dtype_and_device():
    q = torch.zeros(2, 3)
    check_same(q=q, k=torch.ones(4, 3))
    refused(lambda: check_same(q=q, k=q.double()),
            "k must have the dtype of q, float32, got float64")
    refused(lambda: check_same(q=q, k=q.half(), v=q),
            "k must have the dtype of q, float32, got float16")
    refused(lambda: check_same(q=q, v=torch.zeros(2, 3, device="meta")),
            "v must be on the device of q, cpu, got meta")


# Shapes: letters, and leading dimensions that broadcast -------------------------------


def test_a_letter_is_one_size_everywhere():
    q, k = torch.zeros(2, 5, 4), torch.zeros(2, 6, 3)
    refused(lambda: check_shapes(q=(q, "(..., T_q, d)"), k=(k, "(..., T_k, d)")),
            "k must have shape (..., T_k, d) with d = 4 as in q of shape (2, 5, 4), "
            "got shape (2, 6, 3)")
    refused(lambda: check_shapes(w=(torch.zeros(3, 4), "(d, d)")),
            "w must have shape (d, d) with d = 3 as in w of shape (3, 4), got shape (3, 4)")


def test_leading_dimensions_broadcast_as_in_matmul():
    batch = check_shapes(q=(torch.zeros(2, 1, 5, 4), "(..., T_q, d)"),
                         k=(torch.zeros(3, 6, 4), "(..., T_k, d)"))
    assert batch == (2, 3)
    assert torch.zeros(2, 1, 5, 4).matmul(torch.zeros(3, 4, 6)).shape[:-2] == batch
    refused(lambda: check_shapes(q=(torch.zeros(2, 5, 4), "(..., T_q, d)"),
                                 k=(torch.zeros(3, 6, 4), "(..., T_k, d)")),
            "q and k must have leading (batch) dimensions that broadcast together, got "
            "(2,) and (3,)")
    assert check_broadcast(a=(2, 1), b=(4,)) == (2, 4)
    refused(lambda: check_broadcast(a=(2,), b=(3,), c=()),
            "a, b and c must have leading (batch) dimensions that broadcast together, got "
            "(2,), (3,) and ()")


def test_shapes_without_leading_dimensions_give_an_empty_batch():
    assert check_shapes(w=(torch.zeros(3, 4), "(d_model, d_k)")) == ()


# Values, dims, numbers ---------------------------------------------------------------


def test_meta_tensors_pass_until_a_value_is_needed():
    x = torch.zeros(2, 3, device="meta")
    assert check_tensor("x", x, "(T, d)") is x
    refused(lambda: check_values("x", x),
            "x must hold values (this reads them), got a meta tensor of shape (2, 3)")
    y = torch.zeros(2)
    assert check_values("y", y) is y


def test_dim_must_pick_a_dimension_with_entries():
    x = torch.zeros(2, 3)
    assert check_dim("x", x, -1) == -1 and check_dim("x", x, 0) == 0
    for bad in (2, -3, 1.0, True, None):
        refused(lambda: check_dim("x", x, bad),
                f"dim must be an int from -2 to 1 (x has shape (2, 3)), got {bad!r}")
    refused(lambda: check_dim("x", torch.zeros(2, 0), -1),
            "x must have at least one entry along dim=-1, got shape (2, 0)")


def test_indices_are_integers_within_the_rows():
    ids = torch.tensor([0, 4, 2])
    assert check_indices("idx", ids, 5) is ids
    assert check_indices("idx", torch.zeros(0, dtype=torch.int32), 5).numel() == 0
    refused(lambda: check_indices("idx", ids, 4),
            "idx must hold indices from 0 to 3, got indices from 0 to 4")
    refused(lambda: check_indices("idx", torch.tensor([-1]), 4),
            "idx must hold indices from 0 to 3, got indices from -1 to -1")
    refused(lambda: check_indices("idx", ids.float(), 5), "idx must be an integer tensor "
            "of indices from 0 to 4, got a torch.float32 tensor of shape (3,)")
    refused(lambda: check_indices("idx", ids > 0, 5), "idx must be an integer tensor of "
            "indices from 0 to 4, got a torch.bool tensor of shape (3,)")
    refused(lambda: check_indices("idx", [0, 1], 5),
            "idx must be an integer tensor of indices from 0 to 4, got [0, 1]")
    refused(lambda: check_indices("idx", ids.to("meta"), 5),
            "idx must hold values (this reads them), got a meta tensor of shape (3,)")


def test_numbers_from_lists_tensors_and_scalars():
    assert as_numbers("p", [1, 2], torch.float64).dtype == torch.float64
    assert as_numbers("p", 3, None).dtype == torch.int64
    t = torch.arange(3)
    assert as_numbers("p", t, None) is t
    for bad, got in (("ab", "'ab'"), ([1, [2]], "[1, [2]]"), (None, "None"),
                     ([True], "[True]"), (1j, "1j"), (object, "<class 'object'>")):
        refused(lambda: as_numbers("p", bad, None), "p must be real numbers (a number, a "
                f"list of numbers or a tensor), got {got}")


# Masks and the attention rules ---------------------------------------------------------


def test_a_mask_stretches_to_the_scores_never_the_other_way():
    ok = torch.ones(2, 1, 4, dtype=torch.bool)
    assert check_mask(ok, (2, 3, 4)) is ok
    assert check_mask(None, (2, 3, 4)) is None
    assert check_mask(torch.ones(4, dtype=torch.bool), (4,)) is not None  # one row
    refused(lambda: check_mask(torch.ones(3, 3, 4, dtype=torch.bool), (2, 3, 4)),
            "mask must broadcast to the scores' shape (..., T_q, T_k) = (2, 3, 4) with at "
            "least 2 dimensions, got shape (3, 3, 4)")
    refused(lambda: check_mask(torch.ones(4, dtype=torch.bool), (2, 3, 4)),
            "mask must broadcast to the scores' shape (..., T_q, T_k) = (2, 3, 4) with at "
            "least 2 dimensions, got shape (4,)")
    refused(lambda: check_mask(ok, (2, 3, 4), is_causal=True),
            "mask must be None when is_causal=True, got a torch.bool tensor of shape "
            "(2, 1, 4); give one of them, or fold the causal pattern into the mask "
            "(mask & torch.ones(T, T, dtype=torch.bool).tril())")
    refused(lambda: check_mask(ok, (2, 3, 4), device=torch.device("meta")),
            "mask must be on the device of q, meta, got cpu")
    refused(lambda: check_mask(None, (2, 3, 4), is_causal="yes"),
            "is_causal must be True or False, got 'yes'")


@pytest.mark.parametrize("mask", [torch.zeros(3, 4), [[True]], 1])
def test_a_mask_is_boolean(mask):
    got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
    refused(lambda: check_mask(mask, (3, 4)), f"mask must be a boolean tensor (True = may "
            f"attend), got {got}; convert a 0/1 mask with mask.bool() and an additive "
            "float mask (0 / -inf) with mask == 0")


def test_attention_inputs():
    q, k, v = torch.zeros(2, 1, 5, 4), torch.zeros(3, 6, 4), torch.zeros(3, 6, 7)
    assert check_attention_inputs(q, k, v) == (2, 3)
    assert check_attention_inputs(q, k, v, torch.ones(5, 6, dtype=torch.bool)) == (2, 3)
    refused(lambda: check_attention_inputs(q, k, torch.zeros(3, 5, 7)),
            "v must have shape (..., T_k, d_v) with T_k = 6 as in k of shape (3, 6, 4), "
            "got shape (3, 5, 7)")
    empty = torch.zeros(2, 0)
    refused(lambda: check_attention_inputs(empty, empty, torch.zeros(2, 3)),
            "q must have d_k >= 1 features (the scores are divided by sqrt(d_k)), got "
            "shape (2, 0)")
