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
    """
    # (..., d_in) @ (d_in, d_h) + (..., d_h) @ (d_h, d_h) -> (..., d_h)
    return torch.tanh(x_t @ w_x + h_prev @ w_h)


def rnn(x, w_x, w_h):
    """Run the cell along the sequence: x (T, d_in) -> states (T, d_h), row t = h_t.

    A loop, because step t needs h_{t-1}: the T steps run one after another.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != w_x.shape[0]:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"x must have shape (T, d_in) with d_in = {w_x.shape[0]} (the rows of "
            f"w_x), got {got}"
        )
    if w_h.shape != (w_x.shape[1], w_x.shape[1]):
        raise ValueError(
            f"w_h must have shape (d_h, d_h) = {(w_x.shape[1],) * 2} to match w_x "
            f"{tuple(w_x.shape)}, got {tuple(w_h.shape)}"
        )
    h = x.new_zeros(w_h.shape[0])  # h_0 = 0: (d_h,)
    states = []
    for x_t in x:  # T iterations, each waiting for the one before
        h = rnn_cell(h, x_t, w_x, w_h)  # (d_h,)
        states.append(h)
    return torch.stack(states)  # (T, d_h)
# --8<-- [end:rnn]


# --8<-- [start:attention-layer]
def attention_layer(x, w_q, w_k, w_v, is_causal=False):
    """One self-attention layer over all tokens at once.

    x: (T, d_model) -> (output (T, d_v), weights (T, T)). No loop over the tokens.
    """
    q, k, v = project(x, w_q, w_k, w_v)  # (T, d_k), (T, d_k), (T, d_v)
    return scaled_dot_product_attention(q, k, v, is_causal=is_causal)
# --8<-- [end:attention-layer]


# --8<-- [start:rnn-step]
def rnn_step(states, x, w_x, w_h):
    """One RNN step taken at every position at once: the new state at position t
    reads x_t and the old state at position t - 1 (zeros before the first token).

    states: (T, d_h), x: (T, d_in) -> (T, d_h). Taken T times from all-zero states,
    it gives exactly ``rnn(x, w_x, w_h)``: after s steps, positions 1..s are final.
    """
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
    """
    jacobian = torch.autograd.functional.jacobian(step, inputs)
    # jacobian: (T, d_out, T, d_in)
    return jacobian.abs().sum(dim=(1, 3)) > 0  # (T, T)


def hops(graph, source, target):
    """The fewest steps for information at position ``source`` to reach position
    ``target``, when each step lets position i read the positions j with
    graph[i, j] True. None if it never gets there. Positions count from 0.
    """
    n = graph.shape[0]
    for name, position in (("source", source), ("target", target)):
        if not 0 <= position < n:
            raise ValueError(f"{name} must be a position in 0..{n - 1}, got {position}")
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
    d model(x)[target] / d x[source], of shape (d_out, d_in)."""
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
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of tokens, got {n!r}")
    elements = n * n
    bytes_per_element = torch.empty((), dtype=dtype).element_size()
    return elements, elements * bytes_per_element
# --8<-- [end:score-size]
