"""Why self-attention matters: the article's three claims, measured.

The page ``docs/why-it-matters.md`` shows this file. It sets a small recurrent network
(RNN) beside one self-attention layer and measures, instead of asserting:

- how many steps information needs to get from token 1 to token n
  (``rnn_step``, ``dependency_graph``, ``hops``, ``influence``);
- how many matmuls must run one after another (``MatmulDepth``);
- how big the price is: the (n, n) score matrix (``score_matrix_size``).
"""

# --8<-- [start:imports]
import torch
from torch.overrides import TorchFunctionMode
# --8<-- [end:imports]

# Outside any section, so that a page can include attention.py's sections instead.
from snippets.attention import project, scaled_dot_product_attention
from snippets.checks import (
    check_callable,
    check_shapes,
    check_size,
    check_tensor,
    check_type,
    check_values,
)

__all__ = [
    "rnn_cell",
    "rnn",
    "attention_layer",
    "rnn_step",
    "dependency_graph",
    "hops",
    "influence",
    "MATMULS",
    "MatmulDepth",
    "score_matrix_size",
]


# --8<-- [start:rnn]
def rnn_cell(h_prev, x_t, w_x, w_h):
    """One recurrent step, h_t = tanh(x_t W_x + h_{t-1} W_h).

    x_t: (..., d_in), h_prev: (..., d_h), w_x: (d_in, d_h), w_h: (d_h, d_h)
    -> h_t: (..., d_h).
    Dtypes: float16, bfloat16, float32, float64, all four alike; the numbers of
    torch's matmul and tanh in that dtype.
    """
    check_shapes(h_prev=(h_prev, "(..., d_h)"), x_t=(x_t, "(..., d_in)"),
                 w_x=(w_x, "(d_in, d_h)"), w_h=(w_h, "(d_h, d_h)"))
    # (..., d_in) @ (d_in, d_h) + (..., d_h) @ (d_h, d_h) -> (..., d_h)
    return torch.tanh(x_t @ w_x + h_prev @ w_h)


def rnn(x, w_x, w_h):
    """Run the cell along the sequence: x (T, d_in) -> states (T, d_h), row t = h_t.

    A loop, because step t needs h_{t-1}: the T steps run one after another.
    Dtypes: those of ``rnn_cell``.
    """
    check_shapes(x=(x, "(T, d_in)"), w_x=(w_x, "(d_in, d_h)"), w_h=(w_h, "(d_h, d_h)"))
    h = x.new_zeros(w_h.shape[0])  # h_0 = 0: (d_h,)
    states = []
    for x_t in x:  # T iterations, each waiting for the one before
        h = rnn_cell(h, x_t, w_x, w_h)  # (d_h,)
        states.append(h)
    return torch.stack(states) if states else x.new_zeros(0, len(h))  # (T, d_h)
# --8<-- [end:rnn]


# --8<-- [start:attention-layer]
def attention_layer(x, w_q, w_k, w_v, is_causal=False):
    """One self-attention layer over all tokens at once.

    x: (T, d_model) -> (output (T, d_v), weights (T, T)). No loop over the tokens.
    Dtypes: those of ``project`` and ``scaled_dot_product_attention``.
    """
    check_tensor("x", x, "(T, d_model)")
    q, k, v = project(x, w_q, w_k, w_v)  # (T, d_k), (T, d_k), (T, d_v)
    return scaled_dot_product_attention(q, k, v, is_causal=is_causal)
# --8<-- [end:attention-layer]


# --8<-- [start:rnn-step]
def rnn_step(states, x, w_x, w_h):
    """One RNN step taken at every position at once: the new state at position t
    reads x_t and the old state at position t - 1 (zeros before the first token).

    states: (T, d_h), x: (T, d_in) -> (T, d_h). Taken T times from all-zero states,
    it gives exactly ``rnn(x, w_x, w_h)``: after s steps, positions 1..s are final.
    Dtypes: those of ``rnn_cell``.
    """
    check_shapes(states=(states, "(T, d_h)"), x=(x, "(T, d_in)"),
                 w_x=(w_x, "(d_in, d_h)"), w_h=(w_h, "(d_h, d_h)"))
    zeros = states.new_zeros(1, states.shape[1])  # (1, d_h): the state before token 1
    before = torch.cat([zeros, states[:-1]])  # (T, d_h): row t holds state t - 1
    return rnn_cell(before, x, w_x, w_h)  # (T, d_h)
# --8<-- [end:rnn-step]


# --8<-- [start:reach]
def dependency_graph(step, inputs):
    """Which positions one step reads, measured rather than assumed.

    step maps inputs (T, d_in) to (T, d_out). Returns a (T, T) boolean matrix whose
    entry [i, j] is True when row i of the result changes with row j of the input:
    when the (d_out, d_in) block [i, :, j, :] of the Jacobian is not all zero.
    Dtypes: float32, float64 (autograd's Jacobian).
    """
    check_callable("step", step)
    check_tensor("inputs", inputs, "(T, d_in)", dtypes=(torch.float32, torch.float64))
    out = step(check_values("inputs", inputs))  # (T, d_out)
    check_shapes(inputs=(inputs, "(T, d_in)"), **{"step's output": (out, "(T, d_out)")})
    jacobian = torch.autograd.functional.jacobian(step, inputs)
    # jacobian: (T, d_out, T, d_in)
    return jacobian.abs().sum(dim=(1, 3)) > 0  # (T, T)


def hops(graph, source, target):
    """The fewest steps for information at position ``source`` to reach position
    ``target``, when each step lets position i read the positions j with
    graph[i, j] True. None if it never gets there. Positions count from 0.
    """
    check_shapes(graph=(graph, "(T, T)"), dtypes=(torch.bool,))
    n = check_values("graph", graph).shape[0]
    for name, position in (("source", source), ("target", target)):
        check_size(name, position, minimum=0, maximum=n - 1)
    reached = torch.zeros(n, dtype=torch.bool)
    reached[source] = True
    steps = 0
    while not reached[target]:
        grown = reached | (graph & reached).any(dim=1)  # (T,): reads a reached j
        if torch.equal(grown, reached):
            return None  # nothing new: the target is out of reach
        reached, steps = grown, steps + 1
    return steps


def influence(model, x, source=0, target=-1):
    """How strongly token ``source`` of the input moves token ``target`` of the
    output: the size (Frobenius norm) of the Jacobian block
    d model(x)[target] / d x[source], of shape (d_out, d_in).

    Dtypes: float32, float64 (autograd's Jacobian).
    """
    check_callable("model", model)
    check_tensor("x", x, "(T, d_in)", dtypes=(torch.float32, torch.float64))
    out = model(check_values("x", x))  # (T_out, d_out)
    check_shapes(x=(x, "(T, d_in)"), **{"model's output": (out, "(T_out, d_out)")})
    for name, index, size in (("source", source, x.shape[0]),
                              ("target", target, out.shape[0])):
        check_size(name, index, minimum=-size, maximum=size - 1)

    def row(x):
        return model(x)[target]  # (d_out,)

    block = torch.autograd.functional.jacobian(row, x)
    # block: (d_out, T, d_in)
    return block[:, source].norm().item()  # the (d_out, d_in) block of token source
# --8<-- [end:reach]


# --8<-- [start:matmul-depth]
MATMULS = {torch.matmul, torch.mm, torch.bmm, torch.Tensor.matmul,
           torch.Tensor.__matmul__, torch.Tensor.__rmatmul__}


def _tensors(obj):
    """Every tensor in a (nested) list, tuple or dict of arguments."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    return []


class MatmulDepth(TorchFunctionMode):
    """Inside ``with MatmulDepth() as depth:``, every torch call is followed, and each
    tensor made is labelled with the longest chain of matmuls it waited for.

    A matmul that needs another's result cannot start before that one ends, so
    ``depth.longest`` is the number of matmuls that must run one after another,
    however many processors there are; how big each matmul is does not count.
    """

    def __init__(self):
        super().__init__()
        self.longest = 0
        self._depth = {}  # id(tensor) -> (tensor, depth); kept so no id is reused

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = _tensors((args, kwargs))
        waited = max((self._depth.get(id(t), (t, 0))[1] for t in inputs), default=0)
        depth = waited + (func in MATMULS)  # a matmul adds one link to the chain
        for t in _tensors(result):
            self._depth[id(t)] = (t, depth)
        self.longest = max(self.longest, depth)
        return result
# --8<-- [end:matmul-depth]


# --8<-- [start:score-size]
def score_matrix_size(n, dtype=torch.float32):
    """(elements, bytes) of the (n, n) score matrix of one head, for one sequence
    of n tokens, stored in ``dtype``. Both grow as n squared."""
    check_size("n", n)
    check_type("dtype", dtype, torch.dtype)
    elements = n * n
    bytes_per_element = torch.empty((), dtype=dtype).element_size()
    return elements, elements * bytes_per_element
# --8<-- [end:score-size]
