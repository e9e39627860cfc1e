"""The input checks that every snippets module calls: one rule per question.

Each check raises ``ValueError("<argument> must <what it needs>, got <what it got>")``
for input that would otherwise fail deep inside torch or, worse, turn into a wrong
answer. The rules, the same everywhere on the site:

- **Sizes** are Python ints, never bools or floats: ``check_size`` (positive by
  default, non-negative with ``minimum=0``).
- **Ranks** come from a shape written as in the docstrings: "(B, T, D)" needs exactly
  three dimensions, "(..., T, d)" at least two, any number more in front.
- **Sizes that must match** share a letter: in ``check_shapes``, a letter that appears
  in two shapes must be the same size in both.
- **Leading (batch) dimensions**, the "..." of a shape, broadcast against each other
  as in ``torch.matmul``. A tensor laid over another one (a mask over the scores, new
  keys into a cache) broadcasts to that shape without changing it.
- **Dtypes**: the floating types ``FLOATS`` for anything computed with, ``torch.bool``
  for masks. Tensors that meet in one computation have one dtype: nothing is promoted
  behind the caller's back. The half types ``HALF`` are computed in float32 and
  rounded to their own type once, at the end.
- **Indices** (token ids, rows of a table) are integer tensors, never bools or
  floats, each from 0 to the number of rows less one: ``check_indices``.
- **Devices**: tensors that meet are on one device. ``meta`` tensors (shapes, no
  values) pass wherever no value is read; ``check_values`` refuses them where one is.
"""

# --8<-- [start:imports]
import torch
# --8<-- [end:imports]

__all__ = [
    "FLOATS",
    "HALF",
    "check_size",
    "check_seed",
    "check_flag",
    "check_number",
    "check_type",
    "check_callable",
    "check_choice",
    "check_keys",
    "check_words",
    "check_device",
    "check_tensor",
    "check_same",
    "check_shapes",
    "check_broadcast",
    "check_values",
    "check_dim",
    "check_indices",
    "as_numbers",
    "check_mask",
    "check_attention_inputs",
]


# --8<-- [start:input-checks]
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
HALF = (torch.float16, torch.bfloat16)  # computed in float32, rounded once at the end
INF = float("inf")


def _got(value):
    """How a message shows a value it refuses: short reprs whole, else the type."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 60 else type(value).__name__


def check_size(name, value, minimum=1, maximum=None, even=False):
    """value, if it is an int (not a bool) from minimum to maximum, and even if asked:
    by default a positive size; ``minimum=0`` for a non-negative one."""
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum) or (even and value % 2)):
        sign = {0: "non-negative ", 1: "positive "}.get(minimum, "")
        need = f"{'' if maximum is not None else sign}{'even ' if even else ''}int"
        need = ("an " if need[0] in "aeiou" else "a ") + need
        if maximum is not None:
            need += f" from {minimum} to {maximum}"
        elif not sign:
            need += f" >= {minimum}"
        raise ValueError(f"{name} must be {need}, got {_got(value)}")
    return value


def check_seed(name, value):
    """value, if it can seed a torch.Generator: an int from 0 to 2**63 - 1."""
    return check_size(name, value, minimum=0, maximum=2**63 - 1)


def check_flag(name, value):
    """value, if it is True or False (not 0, 1, "no" or None)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {_got(value)}")
    return value


def check_number(name, value, low=-INF, high=INF, open_low=True, open_high=True):
    """value, if it is a real number (int or float, not bool or NaN) in the interval
    from low to high, each end open unless open_low / open_high is False: by
    default, any finite number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and value == value  # NaN is not equal to itself
    ok = ok and (value > low if open_low else value >= low)
    ok = ok and (value < high if open_high else value <= high)
    if not ok:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        interval = f"{left}{low:g}, {high:g}{right}"
        raise ValueError(f"{name} must be a number in {interval}, got {_got(value)}")
    return value


def check_type(name, value, kind, need=None):
    """value, if it is an instance of ``kind``; ``need`` says it in words."""
    if not isinstance(value, kind):
        if need is None:
            where = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
            need = f"a {where}{kind.__name__}"
        raise ValueError(f"{name} must be {need}, got {type(value).__name__}")
    return value


def check_callable(name, value):
    """value, if it can be called like a function."""
    if not callable(value):
        raise ValueError(f"{name} must be a function, got {type(value).__name__}")
    return value


def check_choice(name, value, choices):
    """value, if it is one of ``choices``."""
    if not any(type(value) is type(c) and value == c for c in choices):
        listed = ", ".join(str(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {_got(value)}")
    return value


def check_keys(name, value, keys, exact=False):
    """value, if it is a dict that has every key of ``keys`` (and no other if exact)."""
    if (not isinstance(value, dict) or not all(key in value for key in keys)
            or (exact and len(value) != len(keys))):
        need = "exactly the keys" if exact else "the keys"
        raise ValueError(f"{name} must be a dict with {need} {', '.join(keys)}, "
                         f"got {_got(value)}")
    return value


def check_words(name, words, vocabulary=None, minimum=1):
    """words, if it is a list (or tuple) of at least ``minimum`` strings, all from
    ``vocabulary`` if one is given."""
    if (not isinstance(words, (list, tuple)) or len(words) < minimum
            or not all(isinstance(w, str) for w in words)
            or (vocabulary is not None and not all(w in vocabulary for w in words))):
        known = f" from ({', '.join(vocabulary)})" if vocabulary is not None else ""
        need = {0: "a list of words", 1: "a non-empty list of words"}.get(
            minimum, f"a list of at least {minimum} words")
        raise ValueError(f"{name} must be {need}{known}, got {_got(words)}")
    return words


def check_device(name, device):
    """device, if torch can make tensors on it here (None: torch's default)."""
    if device is None:
        return None
    try:
        torch.empty(0, device=device)
    except (RuntimeError, TypeError, AssertionError):  # unknown, or not built in
        raise ValueError(f"{name} must be None or a device torch can use here, such "
                         f"as 'cpu' or 'meta', got {_got(device)}") from None
    return torch.device(device)


def _dims(shape):
    """"(..., T, d)" -> ["...", "T", "d"]."""
    return [d.strip() for d in shape.strip("()").split(",") if d.strip()]


def _listed(items, last="or"):
    """["a", "b", "c"] -> "a, b or c"; types and dtypes by their names."""
    items = [getattr(item, "__name__", str(item)) for item in items]
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def _dtype(dtype):
    """torch.float32 and NumPy's float32 by one name: "float32"."""
    return str(dtype).removeprefix("torch.")


def check_tensor(name, t, shape, dtypes=FLOATS, kind=torch.Tensor):
    """t, if it is a ``kind`` (a torch.Tensor; a numpy.ndarray for NumPy code) with
    the dimensions ``shape`` names and a dtype in ``dtypes`` (None: any dtype)."""
    named = [d for d in _dims(shape) if d != "..."]
    if not isinstance(t, kind):
        raise ValueError(f"{name} must be a {kind.__module__}.{kind.__name__} of shape "
                         f"{shape}, got {type(t).__name__}")
    if t.ndim < len(named) or (t.ndim > len(named) and "..." not in shape):
        raise ValueError(f"{name} must have shape {shape}, got shape {tuple(t.shape)}")
    if dtypes is not None and _dtype(t.dtype) not in map(_dtype, dtypes):
        raise ValueError(f"{name} must have dtype {_listed(map(_dtype, dtypes))}, "
                         f"got {_dtype(t.dtype)}")
    return t


def check_same(**tensors):
    """The tensors, if all have the dtype and the device of the first one."""
    (first, ref), *rest = tensors.items()
    for name, t in rest:
        if t.dtype != ref.dtype:
            raise ValueError(f"{name} must have the dtype of {first}, "
                             f"{_dtype(ref.dtype)}, got {_dtype(t.dtype)}")
        if getattr(t, "device", None) != getattr(ref, "device", None):
            raise ValueError(f"{name} must be on the device of {first}, {ref.device}, "
                             f"got {t.device}")


def check_shapes(dtypes=FLOATS, kind=torch.Tensor, **inputs):
    """Check each ``name=(tensor, shape)`` with check_tensor, then that a letter in
    two shapes is one size, and that all share a dtype and a device. Returns the
    broadcast shape of their "..." dimensions (empty if none has any)."""
    sizes, leading = {}, {}  # letter -> (size, name, shape); name -> "..." dims
    for name, (t, shape) in inputs.items():
        check_tensor(name, t, shape, dtypes, kind)
        named = [d for d in _dims(shape) if d != "..."]
        leading[name] = tuple(t.shape[: t.ndim - len(named)])
        for letter, size in zip(named, t.shape[t.ndim - len(named):]):
            want, owner, owner_shape = sizes.setdefault(letter, (size, name, t.shape))
            if size != want:
                raise ValueError(
                    f"{name} must have shape {shape} with {letter} = {want} as in "
                    f"{owner} of shape {tuple(owner_shape)}, got shape {tuple(t.shape)}"
                )
    check_same(**{name: t for name, (t, _) in inputs.items()})
    return check_broadcast(**leading)


def check_broadcast(**leading):
    """The broadcast of the leading (batch) shapes given by name, as torch.matmul
    broadcasts them."""
    try:
        return torch.broadcast_shapes(*leading.values())
    except RuntimeError:
        shapes = [tuple(shape) for shape in leading.values()]
        raise ValueError(
            f"{_listed(leading, 'and')} must have leading (batch) dimensions that "
            f"broadcast together, got {_listed(shapes, 'and')}"
        ) from None


def check_values(name, t):
    """t, unless it is a meta tensor: those have shapes but no values to read."""
    if t.device.type == "meta":
        raise ValueError(f"{name} must hold values (this reads them), got a meta "
                         f"tensor of shape {tuple(t.shape)}")
    return t


def check_dim(name, x, dim):
    """dim, if it is an int that picks a dimension of x holding at least one entry."""
    if isinstance(dim, bool) or not isinstance(dim, int) or not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim must be an int from {-x.ndim} to {x.ndim - 1} ({name} "
                         f"has shape {tuple(x.shape)}), got {_got(dim)}")
    if x.shape[dim] == 0:
        raise ValueError(f"{name} must have at least one entry along dim={dim}, got "
                         f"shape {tuple(x.shape)}")
    return dim


def check_indices(name, t, size):
    """t, if it is a tensor of integers (not bools) that index ``size`` things: each
    entry from 0 to size - 1, as an embedding table or a gather reads them."""
    if (not isinstance(t, torch.Tensor) or t.dtype == torch.bool
            or t.is_floating_point() or t.is_complex()):
        raise ValueError(f"{name} must be an integer tensor of indices from 0 to "
                         f"{size - 1}, got {_got(t)}")
    check_values(name, t)
    if t.numel() and (t.min() < 0 or t.max() >= size):
        raise ValueError(f"{name} must hold indices from 0 to {size - 1}, got "
                         f"indices from {t.min().item()} to {t.max().item()}")
    return t


def as_numbers(name, value, dtype):
    """value (a number, a list of numbers or a real tensor) as a tensor of ``dtype``
    (None: as it comes); bools, complex numbers and anything else are refused."""
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):  # strings, ragged lists, objects
        t = None
    if t is None or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must be real numbers (a number, a list of numbers "
                         f"or a tensor), got {_got(value)}")
    return t if dtype is None else torch.as_tensor(value, dtype=dtype)  # exact


def check_mask(mask, scores_shape, is_causal=False, device=None, name="mask"):
    """A may-attend mask: None, or a boolean tensor that broadcasts to the scores'
    shape (..., T_q, T_k) without changing it and has its (T_q, T_k) dimensions at
    least, on their device. is_causal must be True or False, and not True with a
    mask. ``name`` is the argument's name in the messages."""
    check_flag("is_causal", is_causal)
    if mask is None:
        return None
    if is_causal:
        raise ValueError(
            f"{name} must be None when is_causal=True, got {_got(mask)}; give one of "
            "them, or fold the causal pattern into the mask "
            "(mask & torch.ones(T, T, dtype=torch.bool).tril())"
        )
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(
            f"{name} must be a boolean tensor (True = may attend), got {got}; "
            "convert a 0/1 mask with mask.bool() and an additive float mask "
            "(0 / -inf) with mask == 0"
        )
    try:  # the mask may stretch to the scores' shape, never the other way round
        fits = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        fits = False
    rank = min(2, len(scores_shape))  # the (T_q, T_k) dimensions, at least
    if mask.ndim < rank or not fits:
        raise ValueError(
            f"{name} must broadcast to the scores' shape (..., T_q, T_k) = "
            f"{tuple(scores_shape)} with at least {rank} dimensions, got shape "
            f"{tuple(mask.shape)}"
        )
    if device is not None and mask.device != device:
        raise ValueError(f"{name} must be on the device of q, {device}, "
                         f"got {mask.device}")
    return mask


def check_attention_inputs(q, k, v, mask=None, is_causal=False):
    """The rules of attention softmax(q k^T / sqrt(d_k)) v, for every function built
    on it: q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v), one float dtype,
    one device, d_k >= 1, leading dimensions that broadcast, and a mask as
    check_mask wants it. Returns the broadcast leading (batch) shape."""
    batch = check_shapes(q=(q, "(..., T_q, d_k)"), k=(k, "(..., T_k, d_k)"),
                         v=(v, "(..., T_k, d_v)"))
    if q.shape[-1] == 0:
        raise ValueError(f"q must have d_k >= 1 features (the scores are divided by "
                         f"sqrt(d_k)), got shape {tuple(q.shape)}")
    check_mask(mask, (*batch, q.shape[-2], k.shape[-2]), is_causal, q.device)
    return batch
# --8<-- [end:input-checks]
