"""Tests for snippets/block.py and docs/block.md: transformer blocks around this
site's MultiHeadAttention.

The references are torch.nn.TransformerEncoderLayer and TransformerDecoderLayer
(dropout=0.0, batch_first=True), with every weight copied by ``from_torch``, and
torch.nn.MultiheadAttention for cross-attention. Tolerance: float32, atol 1e-5,
rtol 0 (the largest difference seen over these cases is a few times 1e-6). Both
activations torch offers by name are matched: ReLU (its default, and the 2017
paper's) and the exact GELU of F.gelu.

Mask polarity: our masks are True = "may attend"; torch's src_mask, tgt_mask,
memory_mask and key padding masks are True = "blocked", so every comparison passes
torch the negation, and test_mask_polarity_* check that the plain mask would differ.
"""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from snippets import block as block_module
from snippets.block import (
    ACTIVATIONS,
    CrossAttention,
    DecoderBlock,
    FeedForward,
    TransformerBlock,
    residual,
    rms_norm,
    swiglu,
)
from snippets.efficient import grouped_query_attention
from snippets.multi_head import MultiHeadAttention
from snippets.position import apply_rope
from tests import harness
from tests.pages import numbers, prose, read_page, section
from tests.test_efficient import one_thread  # noqa: F401 (autouse: tiny tensors)

ATOL = 1e-5  # float32, rtol 0

# (B, T, S, D, H, F): one token and one head, odd head counts (torch's encoder layer
# then never takes its fused path), S shorter and longer than T.
SHAPES = [
    (1, 1, 1, 4, 1, 8),
    (2, 5, 7, 8, 2, 32),
    (3, 6, 4, 12, 3, 24),
    (2, 9, 3, 16, 4, 64),
    (2, 17, 11, 32, 8, 48),
]
SHAPE_IDS = [f"B{b}-T{t}-S{s}-D{d}-H{h}-F{f}" for b, t, s, d, h, f in SHAPES]
LAYOUTS = pytest.mark.parametrize("norm_first", [False, True], ids=["post", "pre"])
ACTS = pytest.mark.parametrize("activation", ["relu", "gelu"])


def assert_near(actual, expected, atol=ATOL):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def randomized(layer, seed):
    """``layer`` in eval mode with every parameter moved off torch's initial values
    (zero biases, unit norm weights), so that a tensor copied to the wrong place or
    not at all would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer.eval()


def torch_layer(kind, shape, norm_first=False, activation="relu", bias=True, seed=0,
                **kwargs):
    _, _, _, d, h, f = shape
    options = {"dropout": 0.0, "batch_first": True, **kwargs}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = kind(d, h, f, norm_first=norm_first, activation=activation, bias=bias,
                     **options)
    return randomized(layer, seed)


def encoder_pair(shape, **kwargs):
    ref = torch_layer(nn.TransformerEncoderLayer, shape, **kwargs)
    return TransformerBlock.from_torch(ref), ref


def decoder_pair(shape, **kwargs):
    ref = torch_layer(nn.TransformerDecoderLayer, shape, **kwargs)
    return DecoderBlock.from_torch(ref), ref


def causal(t):
    return torch.ones(t, t, dtype=torch.bool).tril()  # True = may attend


def keep_mask(batch, length, seed):
    """(B, L) padding, True = real token; every sequence keeps its first token."""
    lengths = torch.randint(1, length + 1, (batch,),
                            generator=torch.Generator().manual_seed(seed))
    return torch.arange(length) < lengths[:, None]


def random_mask(*shape, seed):
    """A boolean mask (..., T, L) in which every row allows key 0 and some others."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(*shape, generator=g) < 0.5
    mask[..., 0] = True
    return mask


def self_masks(kind, batch, heads, t, seed):
    """(our mask, torch kwargs with the same meaning in torch's polarity); torch's
    key names are those of TransformerEncoderLayer (src_*)."""
    if kind == "none":
        return None, {}
    if kind == "causal":
        return causal(t), {"src_mask": ~causal(t)}
    keep = keep_mask(batch, t, seed)
    if kind == "padding":
        return keep[:, None, None, :], {"src_key_padding_mask": ~keep}
    if kind == "padding-and-causal":
        return (keep[:, None, None, :] & causal(t),
                {"src_mask": ~causal(t), "src_key_padding_mask": ~keep})
    if kind == "random-(T,T)":
        mask = random_mask(t, t, seed=seed)
        return mask, {"src_mask": ~mask}
    mask = random_mask(batch, heads, t, t, seed=seed)  # per head: torch's (B*H, T, T)
    return mask, {"src_mask": ~mask.reshape(batch * heads, t, t)}


SELF_MASKS = ["none", "causal", "padding", "padding-and-causal", "random-(T,T)",
              "random-(B,H,T,T)"]


def run(model, *args, grad=True, **kwargs):
    """Call with gradients on, or off under inference_mode, where torch's encoder
    layer takes its fused path (torch._transformer_encoder_layer_fwd)."""
    if grad:
        return model(*args, **kwargs)
    with torch.inference_mode():
        return model(*args, **kwargs)


# ---------------------------------------------------------------------------
# TransformerBlock == torch.nn.TransformerEncoderLayer
# ---------------------------------------------------------------------------


def check_encoder(shape, seed, norm_first, activation, mask_kind, grad):
    batch, t, _, d, h, _ = shape
    ours, ref = encoder_pair(shape, norm_first=norm_first, activation=activation,
                             seed=seed)
    x = randn(batch, t, d, seed=seed)
    mask, torch_kwargs = self_masks(mask_kind, batch, h, t, seed)
    out = run(ours, x, mask=mask, grad=grad)
    expected = run(ref, x, grad=grad, **torch_kwargs)
    assert out.shape == (batch, t, d)
    assert_near(out, expected)


GRAD = pytest.mark.parametrize("grad", [True, False], ids=["grad", "inference"])


@GRAD
@pytest.mark.parametrize("mask_kind", SELF_MASKS)
@LAYOUTS
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_block_matches_torch_encoder_layer(shape, seed, norm_first, mask_kind, grad):
    check_encoder(shape, seed, norm_first, "relu", mask_kind, grad)


@GRAD
@pytest.mark.parametrize("mask_kind", ["none", "padding-and-causal"])
@LAYOUTS
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_block_with_gelu_matches_torch_encoder_layer(shape, norm_first, mask_kind,
                                                     grad):
    check_encoder(shape, 2, norm_first, "gelu", mask_kind, grad)


@LAYOUTS
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_block_is_causal_flag_matches_torch(shape, norm_first):
    batch, t, _, d, _, _ = shape
    ours, ref = encoder_pair(shape, norm_first=norm_first, seed=2)
    x = randn(batch, t, d, seed=2)
    expected = ref(x, src_mask=~causal(t), is_causal=True)
    assert_near(ours(x, is_causal=True), expected)
    assert_near(ours(x, mask=causal(t)), expected)


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding"])
@LAYOUTS
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_block_without_bias_matches_torch(shape, norm_first, mask_kind):
    batch, t, _, d, h, _ = shape
    ours, ref = encoder_pair(shape, norm_first=norm_first, bias=False, seed=3)
    assert ours.norm1.bias is None and ours.ff.linear1.bias is None
    assert ours.self_attn.qkv_proj.bias is None
    x = randn(batch, t, d, seed=3)
    mask, torch_kwargs = self_masks(mask_kind, batch, h, t, 3)
    assert_near(ours(x, mask=mask), ref(x, **torch_kwargs))


@LAYOUTS
def test_mask_polarity_encoder(norm_first):
    """A mask whose every row, and its negation's, allows some keys: ours with it
    equals torch with its negation, and differs from torch with it unchanged."""
    shape = SHAPES[1]
    batch, t, _, d, _, _ = shape
    ours, ref = encoder_pair(shape, norm_first=norm_first, seed=4)
    x = randn(batch, t, d, seed=4)
    i, j = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
    mask = (i + j) % 2 == 0  # True = may attend: a checkerboard
    out = ours(x, mask=mask)
    assert_near(out, ref(x, src_mask=~mask))
    assert (out - ref(x, src_mask=mask)).abs().max() > 0.01


def test_torch_layers_start_as_the_page_says():
    """Post-norm and ReLU are torch's defaults. The attention's biases and the layer
    norms' biases start at 0, the layer norms' weights at 1 (so one of them copied
    to the wrong place would not show); only the feed-forward biases are random."""
    for kind in (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer):
        layer = kind(8, 2, 16)
        assert layer.norm_first is False and layer.activation is F.relu
        for name, p in layer.named_parameters():
            start = {"weight": 1.0, "bias": 0.0}.get(name.rpartition(".")[2])
            if name.startswith("norm"):
                assert torch.equal(p, torch.full_like(p, start)), name
            elif "attn" in name and name.endswith("bias"):
                assert torch.equal(p, torch.zeros_like(p)), name
            else:  # linear1, linear2 and every weight: drawn at random
                assert p.std() > 0, name


@LAYOUTS
def test_torch_with_our_causal_mask_is_silently_wrong(norm_first):
    """The page's warning: passed unchanged, our causal mask gives no error and, with
    gradients on, no NaN; just another output."""
    shape = SHAPES[1]
    batch, t, _, d, _, _ = shape
    _, ref = encoder_pair(shape, norm_first=norm_first, seed=5)
    x = randn(batch, t, d, seed=5)
    wrong, right = ref(x, src_mask=causal(t)), ref(x, src_mask=~causal(t))
    assert not wrong.isnan().any()
    assert (wrong - right).abs().max() > 0.01


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "inference"])
def test_encoder_layer_fused_path_is_taken_only_when_grad_is_off(grad, monkeypatch):
    """So that test_block_matches_torch_encoder_layer[inference] checks torch's fused
    kernel (for an even number of heads), not the Python path again."""
    calls = []
    fused = torch._transformer_encoder_layer_fwd

    def spy(*args):
        calls.append(1)
        return fused(*args)

    monkeypatch.setattr(torch, "_transformer_encoder_layer_fwd", spy)
    ours, ref = encoder_pair(SHAPES[1], seed=6)  # H = 2
    x = randn(2, 5, 8, seed=6)
    assert_near(run(ours, x, grad=grad), run(ref, x, grad=grad))
    assert len(calls) == (0 if grad else 1)


# ---------------------------------------------------------------------------
# CrossAttention == torch.nn.MultiheadAttention(query=x, key=value=memory)
# ---------------------------------------------------------------------------


def cross_masks(kind, batch, heads, t, s, seed):
    """(our memory_mask, torch.nn.MultiheadAttention kwargs) in the two polarities."""
    if kind == "none":
        return None, {}
    if kind == "padding":
        keep = keep_mask(batch, s, seed)
        return keep[:, None, None, :], {"key_padding_mask": ~keep}
    if kind == "random-(T,S)":
        mask = random_mask(t, s, seed=seed)
        return mask, {"attn_mask": ~mask}
    mask = random_mask(batch, heads, t, s, seed=seed)
    return mask, {"attn_mask": ~mask.reshape(batch * heads, t, s)}


CROSS_MASKS = ["none", "padding", "random-(T,S)", "random-(B,H,T,S)"]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mask_kind", CROSS_MASKS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_cross_attention_matches_torch(shape, mask_kind, bias):
    batch, t, s, d, h, _ = shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        ref = randomized(nn.MultiheadAttention(d, h, bias=bias, batch_first=True), 7)
    ours = CrossAttention.from_torch(ref)
    assert isinstance(ours, CrossAttention)
    x, memory = randn(batch, t, d, seed=7), randn(batch, s, d, seed=8)
    mask, torch_kwargs = cross_masks(mask_kind, batch, h, t, s, 7)
    expected, expected_weights = ref(x, memory, memory, average_attn_weights=False,
                                     **torch_kwargs)
    fast, none = ours(x, memory, memory_mask=mask)
    slow, weights = ours(x, memory, memory_mask=mask, need_weights=True)
    assert none is None and weights.shape == (batch, h, t, s)
    assert_near(fast, expected)
    assert_near(slow, expected)
    assert_near(weights, expected_weights)


@pytest.mark.parametrize("norm_first", [False, True])
def test_empty_memory_gives_what_torch_gives(norm_first):
    """S = 0: no memory token to read, so cross-attention adds out_proj's bias only,
    as a query whose every key is masked; torch's layers agree."""
    ours, ref = decoder_pair(SHAPES[1], norm_first=norm_first, seed=32)
    x, memory = randn(2, 5, 8, seed=32), torch.zeros(2, 0, 8)
    assert_near(ours(x, memory, is_causal=True),
                ref(x, memory, tgt_mask=~causal(5), tgt_is_causal=True))
    cross = ours.cross_attn
    for need_weights in (False, True):
        out, weights = cross(x, memory, need_weights=need_weights)
        assert_near(out, cross.out_proj.bias.detach().expand(2, 5, 8))
        assert weights is None or weights.shape == (2, 2, 5, 0)


def test_cross_attention_with_memory_equal_to_x_is_self_attention():
    batch, t, _, d, h, _ = SHAPES[2]
    self_attn = seeded(MultiHeadAttention, d, h, seed=9)
    cross = CrossAttention(d, h)
    cross.load_state_dict(self_attn.state_dict())  # the same parameters
    x = randn(batch, t, d, seed=9)
    assert_near(cross(x, x)[0], self_attn(x)[0])


# ---------------------------------------------------------------------------
# DecoderBlock == torch.nn.TransformerDecoderLayer
# ---------------------------------------------------------------------------


def decoder_masks(kind, batch, heads, t, s, seed):
    """(our kwargs, torch kwargs) for the self- and cross-attention masks."""
    if kind == "none":
        return {}, {}
    if kind == "causal-and-memory-padding":
        keep = keep_mask(batch, s, seed)
        return ({"is_causal": True, "memory_mask": keep[:, None, None, :]},
                {"tgt_mask": ~causal(t), "tgt_is_causal": True,
                 "memory_key_padding_mask": ~keep})
    if kind == "random-both":
        mask, memory_mask = random_mask(t, t, seed=seed), random_mask(t, s, seed=seed)
        return ({"mask": mask, "memory_mask": memory_mask},
                {"tgt_mask": ~mask, "memory_mask": ~memory_mask})
    keep = keep_mask(batch, t, seed)  # target padding, per-head memory mask
    memory_mask = random_mask(batch, heads, t, s, seed=seed)
    return ({"mask": keep[:, None, None, :], "memory_mask": memory_mask},
            {"tgt_key_padding_mask": ~keep,
             "memory_mask": ~memory_mask.reshape(batch * heads, t, s)})


DECODER_MASKS = ["none", "causal-and-memory-padding", "random-both",
                 "padding-and-per-head"]


@GRAD
@pytest.mark.parametrize("mask_kind", DECODER_MASKS)
@LAYOUTS
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_decoder_block_matches_torch_decoder_layer(shape, seed, norm_first, mask_kind,
                                                   grad):
    check_decoder(shape, seed, norm_first, "relu", mask_kind, grad)


@pytest.mark.parametrize("mask_kind", ["none", "causal-and-memory-padding"])
@LAYOUTS
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_decoder_block_with_gelu_matches_torch_decoder_layer(shape, norm_first,
                                                             mask_kind):
    check_decoder(shape, 2, norm_first, "gelu", mask_kind, True)


def check_decoder(shape, seed, norm_first, activation, mask_kind, grad):
    batch, t, s, d, h, _ = shape
    ours, ref = decoder_pair(shape, norm_first=norm_first, activation=activation,
                             seed=seed)
    x, memory = randn(batch, t, d, seed=seed), randn(batch, s, d, seed=seed + 10)
    our_kwargs, torch_kwargs = decoder_masks(mask_kind, batch, h, t, s, seed)
    out = run(ours, x, memory, grad=grad, **our_kwargs)
    assert out.shape == (batch, t, d)
    assert_near(out, run(ref, x, memory, grad=grad, **torch_kwargs))


@LAYOUTS
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_decoder_block_without_bias_matches_torch(shape, norm_first):
    batch, t, s, d, _, _ = shape
    ours, ref = decoder_pair(shape, norm_first=norm_first, bias=False, seed=11)
    assert ours.cross_attn.qkv_proj.bias is None and ours.norm3.bias is None
    x, memory = randn(batch, t, d, seed=11), randn(batch, s, d, seed=12)
    assert_near(ours(x, memory, is_causal=True),
                ref(x, memory, tgt_mask=~causal(t), tgt_is_causal=True))


@LAYOUTS
def test_mask_polarity_decoder(norm_first):
    shape = SHAPES[1]
    batch, t, s, d, _, _ = shape
    ours, ref = decoder_pair(shape, norm_first=norm_first, seed=13)
    x, memory = randn(batch, t, d, seed=13), randn(batch, s, d, seed=14)
    i, j = torch.meshgrid(torch.arange(t), torch.arange(s), indexing="ij")
    memory_mask = (i + j) % 2 == 0  # (T, S) checkerboard, True = may attend
    mask = memory_mask[:, :t]  # (T, T)
    out = ours(x, memory, mask=mask, memory_mask=memory_mask)
    assert_near(out, ref(x, memory, tgt_mask=~mask, memory_mask=~memory_mask))
    for wrong in ({"tgt_mask": mask, "memory_mask": ~memory_mask},
                  {"tgt_mask": ~mask, "memory_mask": memory_mask}):
        assert (out - ref(x, memory, **wrong)).abs().max() > 0.01


def test_decoder_pre_norm_leaves_memory_unnormalised():
    """Scaling memory changes a pre-norm decoder's output (memory enters cross-
    attention as it is); it would not if the block normalised it."""
    shape = SHAPES[1]
    ours, _ = decoder_pair(shape, norm_first=True, seed=15)
    x, memory = randn(2, 5, 8, seed=15), randn(2, 7, 8, seed=16)
    assert (ours(x, memory) - ours(x, 3 * memory)).abs().max() > 0.01


# ---------------------------------------------------------------------------
# residual, FeedForward
# ---------------------------------------------------------------------------


def test_residual_is_the_two_layouts():
    x = randn(2, 3, 4, seed=16)
    double, shift = (lambda h: 2 * h), (lambda h: h + 1)  # sublayer, "norm"
    assert torch.equal(residual(x, double, shift, norm_first=True), x + 2 * (x + 1))
    assert torch.equal(residual(x, double, shift, norm_first=False), (x + 2 * x) + 1)


def test_decoder_block_is_a_transformer_block_with_cross_attention():
    decoder = DecoderBlock(8, 2, 16)
    assert isinstance(decoder, TransformerBlock)
    assert isinstance(decoder.cross_attn, CrossAttention)
    assert (TransformerBlock.torch_layer, DecoderBlock.torch_layer) == (
        nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


@ACTS
def test_feed_forward_is_the_formula(activation):
    ff = FeedForward(8, 32, activation=activation)
    x = randn(3, 4, 8, seed=17)
    w1, b1 = ff.linear1.weight, ff.linear1.bias
    w2, b2 = ff.linear2.weight, ff.linear2.bias
    hidden = x @ w1.T + b1  # (B, T, F)
    hidden = hidden.clamp(min=0) if activation == "relu" else (
        0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2))))  # exact GELU
    assert_near(ff(x), hidden @ w2.T + b2, atol=1e-6)
    assert ff(x[0, 0]).shape == (8,)  # any leading dimensions


def test_feed_forward_acts_on_each_token_alone():
    ff = FeedForward(8, 32)
    x = randn(2, 6, 8, seed=18)
    whole = ff(x)
    for t in range(6):
        torch.testing.assert_close(ff(x[:, t:t + 1]), whole[:, t:t + 1], atol=1e-6,
                                   rtol=0)


def test_sizes_and_parameters():
    block = TransformerBlock(12, 3, 40)
    d, f = 12, 40
    assert block.ff.linear1.weight.shape == (f, d)
    assert block.ff.linear2.weight.shape == (d, f)
    count = sum(p.numel() for p in block.parameters())
    attention = 4 * d * d + 4 * d  # q, k, v, out weights and biases
    assert count == attention + (2 * d * f + f + d) + 2 * 2 * d
    torch_count = sum(p.numel() for p in nn.TransformerEncoderLayer(d, 3, f).parameters())
    assert count == torch_count
    decoder = DecoderBlock(12, 3, 40)
    assert sum(p.numel() for p in decoder.parameters()) == count + attention + 2 * d
    assert ACTIVATIONS == {"relu": F.relu, "gelu": F.gelu}
    assert set(block_module.__all__) <= set(dir(block_module))


# ---------------------------------------------------------------------------
# from_torch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind, cls", [(nn.TransformerEncoderLayer, TransformerBlock),
                                       (nn.TransformerDecoderLayer, DecoderBlock)])
def test_from_torch_copies_dtype_mode_and_leaves_the_rng(kind, cls):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(19)
        ref = kind(8, 2, 16, dropout=0.0, batch_first=True, dtype=torch.float64,
                   layer_norm_eps=1e-6, activation="gelu", norm_first=True)
    state = torch.random.get_rng_state()
    ours = cls.from_torch(ref.train())
    assert torch.equal(torch.random.get_rng_state(), state)  # nothing drawn
    assert ours.training and ours.norm_first and ours.ff.activation == "gelu"
    assert ours.norm1.eps == 1e-6 and ours.norm1.weight.dtype == torch.float64
    assert not cls.from_torch(ref.eval()).training
    theirs = ref.state_dict()
    for name, p in ours.state_dict().items():
        q = theirs[block_module._torch_name(name)]
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()  # copied, not shared


def torch_encoder(**kwargs):
    options = {"dropout": 0.0, "batch_first": True, **kwargs}
    return nn.TransformerEncoderLayer(8, 2, 16, **options)


def swap_attention_with_bias_kv(layer):
    layer.self_attn = nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True)
    return layer


def other_eps(layer):
    layer.norm2.eps = 1e-6
    return layer


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nn.Linear(8, 8),
         "layer must be a torch.nn.TransformerEncoderLayer, got Linear"),
        (lambda: nn.TransformerDecoderLayer(8, 2, dropout=0.0, batch_first=True),
         "layer must be a torch.nn.TransformerEncoderLayer, got "
         "TransformerDecoderLayer"),
        (lambda: torch_encoder(batch_first=False),
         "layer.self_attn.batch_first must be True (this block takes (B, T, D) "
         "inputs), got False; build layer with batch_first=True"),
        (lambda: torch_encoder(dropout=0.1),
         "layer's dropout must be 0.0 (this block has none), got {'dropout': 0.1, "
         "'dropout1': 0.1, 'dropout2': 0.1, 'self_attn.dropout': 0.1}; build layer "
         "with dropout=0.0"),
        (lambda: torch_encoder(activation=torch.tanh),
         "layer.activation must be F.relu or F.gelu ('relu' or 'gelu'), got "
         "<built-in method tanh"),
        (lambda: other_eps(torch_encoder()),
         "layer's LayerNorms must share one eps, got [1e-06, 1e-05]"),
        (lambda: swap_attention_with_bias_kv(torch_encoder()),
         "layer's parameters must all have a counterpart here, got "
         "['self_attn.bias_k', 'self_attn.bias_v'] too"),
    ],
)
def test_from_torch_rejects_what_has_no_counterpart(make, message):
    layer = make()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    state = torch.random.get_rng_state()
    with pytest.raises(ValueError, match=re.escape(message)):
        TransformerBlock.from_torch(layer)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


def test_decoder_from_torch_names_the_decoder_layer():
    with pytest.raises(ValueError, match="layer must be a torch.nn."
                       "TransformerDecoderLayer, got TransformerEncoderLayer"):
        DecoderBlock.from_torch(torch_encoder())


# ---------------------------------------------------------------------------
# Bad input: a clear ValueError, and nothing changed
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [TransformerBlock, DecoderBlock])
@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((10, 3, 40), {}, "embed_dim must be divisible by num_heads"),
        ((0, 1, 4), {}, "embed_dim must be a positive int, got 0"),
        ((8, 2, 0), {}, "ff_dim must be a positive int, got 0"),
        ((8, 2, 32.0), {}, "ff_dim must be a positive int, got 32.0"),
        ((8, 2, True), {}, "ff_dim must be a positive int, got True"),
        ((8, 2, 32), {"norm_first": 1}, "norm_first must be True or False, got 1"),
        ((8, 2, 32), {"activation": "swish"},
         "activation must be one of relu, gelu, got 'swish'"),
        ((8, 2, 32), {"eps": 0}, "eps must be a number in (0, inf), got 0"),
        ((8, 2, 32), {"eps": "1e-5"}, "eps must be a number in (0, inf), got '1e-5'"),
        ((8, 2, 32), {"eps": True}, "eps must be a number in (0, inf), got True"),
        ((8, 2, 32), {"eps": math.nan}, "eps must be a number in (0, inf), got nan"),
        ((8, 2, 32), {"bias": None}, "bias must be True or False, got None"),
    ],
)
def test_constructors_reject_bad_arguments(cls, args, kwargs, message):
    state = torch.random.get_rng_state()
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(*args, **kwargs)
    assert torch.equal(torch.random.get_rng_state(), state)  # nothing was built


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 32), "embed_dim must be a positive int, got 0"),
        ((8, -1), "ff_dim must be a positive int, got -1"),
        ((8, 32, None), "activation must be one of relu, gelu, got None"),
        ((8, 32, "relu", 1), "bias must be True or False, got 1"),
    ],
)
def test_feed_forward_rejects_bad_arguments(args, message):
    state = torch.random.get_rng_state()
    with pytest.raises(ValueError, match=re.escape(message)):
        FeedForward(*args)
    assert torch.equal(torch.random.get_rng_state(), state)  # nothing was built


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.zeros(2, 5, 6), "x must have shape (..., D) with D = 8 as in the "
         "layer's weights of shape (32, 8), got shape (2, 5, 6)"),
        (torch.tensor(1.0), "x must have shape (..., D), got shape ()"),
        ([0.0] * 8, "x must be a torch.Tensor of shape (..., D), got list"),
        (torch.zeros(2, 8, dtype=torch.float64),
         "x must have the dtype of the layer's weights, float32, got float64"),
        (torch.zeros(2, 8, dtype=torch.int64),
         "x must have dtype float16, bfloat16, float32 or float64, got int64"),
        (torch.zeros(2, 8, device="meta"),
         "x must be on the device of the layer's weights, cpu, got meta"),
    ],
)
def test_feed_forward_rejects_bad_x(x, message):
    assert_raises_and_changes_nothing(FeedForward(8, 32), message, x)


def assert_raises_and_changes_nothing(model, message, *args, **kwargs):
    """The call raises ValueError(message) and leaves the model and the tensors it
    was given as they were."""
    params = {k: v.clone() for k, v in model.state_dict().items()}
    tensors = [(a, a.clone()) for a in (*args, *kwargs.values())
               if isinstance(a, torch.Tensor) and a.device.type != "meta"]
    with pytest.raises(ValueError, match=re.escape(message)):
        model(*args, **kwargs)
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(a, copy) for a, copy in tensors)


X = torch.zeros(2, 5, 8)
MEMORY = torch.zeros(2, 7, 8)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize(
    "x, kwargs, message",
    [
        (torch.zeros(5, 8), {}, "x must have shape (B, T, D), got shape (5, 8)"),
        (torch.zeros(2, 5, 6), {}, "x must have shape (B, T, D) with D = 8 as in the "
         "block's weights of shape (8,), got shape (2, 5, 6)"),
        ("x", {}, "x must be a torch.Tensor of shape (B, T, D), got str"),
        (X.double(), {}, "x must have the dtype of the block's weights, float32, got "
         "float64"),
        (X.long(), {}, "x must have dtype float16, bfloat16, float32 or float64, got "
         "int64"),
        (X.to("meta"), {}, "x must be on the device of the block's weights, cpu, got "
         "meta"),
        (X, {"mask": torch.zeros(5, 5)}, "mask must be a boolean tensor (True = may "
         "attend), got torch.float32"),
        (X, {"mask": torch.ones(4, 4, dtype=torch.bool)}, "mask must broadcast to the "
         "scores' shape (..., T_q, T_k) = (2, 2, 5, 5) with at least 2 dimensions, "
         "got shape (4, 4)"),
        (X, {"mask": causal(5), "is_causal": True}, "mask must be None when "
         "is_causal=True, got a torch.bool tensor of shape (5, 5)"),
        (X, {"is_causal": "no"}, "is_causal must be True or False, got 'no'"),
    ],
)
def test_block_forward_rejects_bad_input(x, kwargs, message, norm_first):
    block = TransformerBlock(8, 2, 32, norm_first=norm_first)
    assert_raises_and_changes_nothing(block, message, x, **kwargs)


def cross_bad(weights):
    """Bad (x, memory, kwargs) for CrossAttention and DecoderBlock, with the message;
    ``weights`` is how the messages name the module's weights, and their shape."""
    return [
        (X, [[0.0] * 8], {}, "memory must be a torch.Tensor of shape (B, S, D), got "
         "list"),
        (X, torch.zeros(7, 8), {},
         "memory must have shape (B, S, D), got shape (7, 8)"),
        (X, torch.zeros(3, 7, 8), {}, "memory must have shape (B, S, D) with B = 2 as "
         "in x of shape (2, 5, 8), got shape (3, 7, 8)"),
        (X, torch.zeros(2, 7, 6), {}, f"memory must have shape (B, S, D) with D = 8 as "
         f"in {weights}, got shape (2, 7, 6)"),
        (X, MEMORY.double(), {}, f"memory must have the dtype of "
         f"{weights.split(' of')[0]}, float32, got float64"),
        (X, MEMORY.to("meta"), {}, "memory must be on the device of"),
        (X, MEMORY, {"memory_mask": torch.zeros(5, 7)}, "memory_mask must be a boolean "
         "tensor (True = may attend), got torch.float32"),
        (X, MEMORY, {"memory_mask": [[True] * 7] * 5}, "memory_mask must be a boolean "
         "tensor (True = may attend), got list"),
        (X, MEMORY, {"memory_mask": torch.ones(5, 5, dtype=torch.bool)},
         "memory_mask must broadcast to the scores' shape (..., T_q, T_k) = "
         "(2, 2, 5, 7) with at least 2 dimensions, got shape (5, 5)"),
        (X, MEMORY, {"memory_mask": torch.ones(7, dtype=torch.bool)},
         "memory_mask must broadcast to the scores' shape (..., T_q, T_k) = "
         "(2, 2, 5, 7) with at least 2 dimensions, got shape (7,)"),
        (X, MEMORY, {"memory_mask": torch.ones(3, 1, 1, 7, dtype=torch.bool)},
         "memory_mask must broadcast to the scores' shape (..., T_q, T_k) = "
         "(2, 2, 5, 7) with at least 2 dimensions, got shape (3, 1, 1, 7)"),
        (X, MEMORY, {"memory_mask": torch.ones(5, 7, dtype=torch.bool, device="meta")},
         "memory_mask must be on the device of q, cpu, got meta"),
        (torch.zeros(2, 5, 6), MEMORY, {}, f"x must have shape (B, T, D) with D = 8 as "
         f"in {weights}, got shape (2, 5, 6)"),
        (X.double(), MEMORY.double(), {}, f"x must have the dtype of "
         f"{weights.split(' of')[0]}, float32, got float64"),
    ]


@pytest.mark.parametrize("x, memory, kwargs, message", cross_bad(
    "the layer's weights of shape (8, 8)") + [
    (X, MEMORY, {"need_weights": "yes"}, "need_weights must be True or False, got "
     "'yes'"),
])
def test_cross_attention_rejects_bad_input(x, memory, kwargs, message):
    cross = CrossAttention(8, 2)
    assert_raises_and_changes_nothing(cross, message, x, memory, **kwargs)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("x, memory, kwargs, message", cross_bad(
    "the block's weights of shape (8,)") + [
    (X, MEMORY, {"mask": torch.ones(5, 7, dtype=torch.bool)}, "mask must broadcast "
     "to the scores' shape (..., T_q, T_k) = (2, 2, 5, 5) with at least 2 "
     "dimensions, got shape (5, 7)"),
    (X, MEMORY, {"mask": causal(5), "is_causal": True}, "mask must be None when "
     "is_causal=True"),
])
def test_decoder_block_rejects_bad_input(x, memory, kwargs, message, norm_first):
    block = DecoderBlock(8, 2, 32, norm_first=norm_first)
    assert_raises_and_changes_nothing(block, message, x, memory, **kwargs)


def test_fully_masked_memory_row_gives_zero_cross_attention():
    """As MultiHeadAttention: a query allowed no memory token gets zero weights and
    output out_proj.bias, in both paths (torch.nn.MultiheadAttention gives NaN)."""
    cross = CrossAttention(8, 2)
    x, memory = randn(2, 5, 8, seed=20), randn(2, 7, 8, seed=21)
    mask = torch.ones(2, 1, 5, 7, dtype=torch.bool)
    mask[0, :, 2] = False  # query 2 of sequence 0 may read no memory token
    for need_weights in (False, True):
        out, weights = cross(x, memory, memory_mask=mask, need_weights=need_weights)
        assert not out.isnan().any()
        assert_near(out[0, 2], cross.out_proj.bias.detach())
        if need_weights:
            assert (weights[0, :, 2] == 0).all()


# ---------------------------------------------------------------------------
# Properties (Hypothesis)
# ---------------------------------------------------------------------------

sizes = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 8),  # T
    st.integers(1, 8),  # S
    st.sampled_from([(4, 1), (6, 2), (8, 4), (12, 3)]),  # (D, H)
    st.integers(0, 2**16),  # seed
)


def seeded(cls, *args, seed, **kwargs):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(*args, **kwargs)


@settings(max_examples=25, deadline=None)
@given(sizes=sizes, norm_first=st.booleans())
def test_zeroed_sublayers_leave_only_the_norms(sizes, norm_first):
    """The page's check-yourself answer, on any sizes: with the sublayers' output
    layers zeroed, pre-norm returns x, post-norm returns LN(LN(x))."""
    batch, t, _, (d, h), seed = sizes
    block = seeded(TransformerBlock, d, h, 2 * d, norm_first=norm_first, seed=seed)
    with torch.no_grad():
        for layer in (block.self_attn.out_proj, block.ff.linear2):
            layer.weight.zero_()
            layer.bias.zero_()
    x = randn(batch, t, d, seed=seed)
    y = block(x, is_causal=True)
    if norm_first:
        assert torch.equal(y, x)
    else:
        assert_near(y, F.layer_norm(F.layer_norm(x, (d,)), (d,)), atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(sizes=sizes)
def test_post_norm_output_is_normalised_per_token(sizes):
    batch, t, _, (d, h), seed = sizes
    block = seeded(TransformerBlock, d, h, 2 * d, seed=seed)
    y = block(3 * randn(batch, t, d, seed=seed) + 5)  # far from mean 0, std 1
    assert_near(y.mean(-1), torch.zeros(batch, t), atol=1e-5)
    assert_near(y.var(-1, unbiased=False), torch.ones(batch, t), atol=1e-3)


@settings(max_examples=25, deadline=None)
@given(sizes=sizes, norm_first=st.booleans(), data=st.data())
def test_blocks_without_masks_are_permutation_equivariant(sizes, norm_first, data):
    """Shuffling x's tokens shuffles the output; shuffling memory changes nothing
    (the keys and values of cross-attention are a set)."""
    batch, t, s, (d, h), seed = sizes
    perm = torch.tensor(data.draw(st.permutations(range(t))))
    perm_s = torch.tensor(data.draw(st.permutations(range(s))))
    x, memory = randn(batch, t, d, seed=seed), randn(batch, s, d, seed=seed + 1)
    block = seeded(TransformerBlock, d, h, 2 * d, norm_first=norm_first, seed=seed)
    assert_near(block(x[:, perm]), block(x)[:, perm])
    decoder = seeded(DecoderBlock, d, h, 2 * d, norm_first=norm_first, seed=seed)
    out = decoder(x, memory)
    assert_near(decoder(x[:, perm], memory), out[:, perm])
    assert_near(decoder(x, memory[:, perm_s]), out)


@settings(max_examples=25, deadline=None)
@given(sizes=sizes, norm_first=st.booleans(), data=st.data())
def test_causal_blocks_do_not_look_ahead(sizes, norm_first, data):
    batch, t, s, (d, h), seed = sizes
    cut = data.draw(st.integers(0, t - 1))  # tokens after `cut` change
    x, memory = randn(batch, t, d, seed=seed), randn(batch, s, d, seed=seed + 1)
    changed = x.clone()
    changed[:, cut + 1:] = randn(batch, t - cut - 1, d, seed=seed + 2)
    block = seeded(TransformerBlock, d, h, 2 * d, norm_first=norm_first, seed=seed)
    assert_near(block(changed, is_causal=True)[:, :cut + 1],
                block(x, is_causal=True)[:, :cut + 1])
    decoder = seeded(DecoderBlock, d, h, 2 * d, norm_first=norm_first, seed=seed)
    assert_near(decoder(changed, memory, is_causal=True)[:, :cut + 1],
                decoder(x, memory, is_causal=True)[:, :cut + 1])


# ---------------------------------------------------------------------------
# The Llama-style pieces: rms_norm, swiglu
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-5, 1e-6])
@pytest.mark.parametrize("shape", [(4,), (3, 8), (2, 5, 576), (2, 3, 4, 16)])
def test_rms_norm_matches_torch(shape, eps):
    x, weight = randn(*shape, seed=22), randn(shape[-1], seed=23)
    ref = nn.RMSNorm(shape[-1], eps=eps)
    with torch.no_grad():
        ref.weight.copy_(weight)
        assert_near(rms_norm(x, weight, eps=eps), ref(x), atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(d=st.integers(2, 64), scale=st.floats(0.1, 100), seed=st.integers(0, 2**16))
def test_rms_norm_is_layer_norm_on_zero_mean_vectors(d, scale, seed):
    x = scale * randn(3, d, seed=seed)
    x = x - x.mean(-1, keepdim=True)
    weight = randn(d, seed=seed + 1)
    assert_near(rms_norm(x, weight), F.layer_norm(x, (d,), weight, None, eps=1e-5),
                atol=1e-4)


class LlamaStyleMLP(nn.Module):
    """The module form of SwiGLU in Llama-style code: down(silu(gate(x)) * up(x))."""

    def __init__(self, d, f):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


@pytest.mark.parametrize("d, f", [(4, 8), (16, 40), (576, 1536)])
def test_swiglu_matches_the_module_form(d, f):
    torch.manual_seed(24)
    mlp = LlamaStyleMLP(d, f)
    x = randn(2, 5, d, seed=24)
    out = swiglu(x, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight)
    assert out.shape == (2, 5, d)
    assert_near(out, mlp(x))


def test_half_precision_llama_pieces_do_not_overflow():
    """x^2 and gate * up overflow float16 where the outputs do not: both are computed
    in float32 (as torch's rms_norm is) and rounded once, so no inf or NaN comes
    out where the same steps in float16 overflow."""
    half = torch.float16
    x = 1000 * randn(2, 5, 16, seed=33)  # x^2 ~ 1e6 > 65504, the float16 maximum
    weight = randn(16, seed=34)
    assert x.to(half).pow(2).isinf().any()  # the naive steps overflow
    out = rms_norm(x.to(half), weight.to(half))
    expected = F.rms_norm(x.to(half), (16,), weight.to(half), 1e-5)
    torch.testing.assert_close(out, expected, atol=2e-3, rtol=2e-3)
    x = x / 10  # (B, T, D), entries ~ 100
    w_gate, w_up = randn(32, 16, seed=35), randn(32, 16, seed=36)  # (F, D)
    w_down = randn(16, 32, seed=37) / 1000  # (D, F): brings the sums back down
    naive = (F.silu(x.to(half) @ w_gate.to(half).T) * (x.to(half) @ w_up.to(half).T))
    assert not naive.isfinite().all()  # gate * up ~ 1e5 overflows float16
    exact = swiglu(*(t.double() for t in (x, w_gate, w_up, w_down)))  # float64
    out = swiglu(*(t.to(half) for t in (x, w_gate, w_up, w_down)))
    largest = exact.abs().max().item()
    assert largest < 65504 and out.isfinite().all()
    torch.testing.assert_close(out.double(), exact, atol=2e-3 * largest, rtol=0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda x, w: rms_norm(x, w[None]), "weight must have shape (D,), got shape "
         "(1, 8)"),
        (lambda x, w: rms_norm(x, [1.0] * 8), "weight must be a torch.Tensor of shape "
         "(D,), got list"),
        (lambda x, w: rms_norm(x[..., :6], w), "x must have shape (..., D) with D = 8 "
         "as in weight of shape (8,), got shape (2, 5, 6)"),
        (lambda x, w: rms_norm(x, w.double()), "x must have the dtype of weight, "
         "float64, got float32"),
        (lambda x, w: rms_norm(x, w, eps=0), "eps must be a number in (0, inf), got 0"),
        (lambda x, w: swiglu(x, w, w, w), "w_gate must have shape (F, D), got shape "
         "(8,)"),
        (lambda x, w: swiglu(x, torch.zeros(16, 8), torch.zeros(8, 16),
                             torch.zeros(8, 16)),
         "w_up must have shape (F, D) with F = 16 as in w_gate of shape (16, 8), got "
         "shape (8, 16)"),
        (lambda x, w: swiglu(x, torch.zeros(16, 8), torch.zeros(16, 8),
                             torch.zeros(16, 8)),
         "w_down must have shape (D, F) with D = 8 as in w_gate of shape (16, 8), got "
         "shape (16, 8)"),
        (lambda x, w: swiglu(x, torch.zeros(16, 8), torch.zeros(16, 8), None),
         "w_down must be a torch.Tensor of shape (D, F), got NoneType"),
        (lambda x, w: swiglu(x, torch.zeros(16, 6), torch.zeros(16, 6),
                             torch.zeros(6, 16)),
         "x must have shape (..., D) with D = 6 as in w_gate of shape (16, 6), got "
         "shape (2, 5, 8)"),
        (lambda x, w: residual(x, torch.tanh, torch.tanh, "no"),
         "norm_first must be True or False, got 'no'"),
        (lambda x, w: residual(x, None, torch.tanh, True),
         "sublayer must be a function, got NoneType"),
        (lambda x, w: residual(x.tolist(), torch.tanh, torch.tanh, True),
         "x must be a torch.Tensor of shape (..., D), got list"),
    ],
)
def test_functions_reject_bad_input(make, message):
    x, w = randn(2, 5, 8, seed=25), randn(8, seed=26)
    copy = x.clone()
    with pytest.raises(ValueError, match=re.escape(message)):
        make(x, w)
    assert torch.equal(x, copy)


# ---------------------------------------------------------------------------
# The page: every number in its prose comes from the code
# ---------------------------------------------------------------------------

PAGE = read_page("block.md")


def flat(text):
    return " ".join(prose(text).split())


def page_int(name):
    """The value the page's code gives ``name`` in an assignment like ``name = 24``
    or in a tuple assignment ``B, T, D = 2, 5, 8``."""
    for line in PAGE.splitlines():
        m = re.match(r"\s*([\w, ]+?)\s*=\s*([\d, ]+?)\s*(#|$)", line)
        if m:
            names = [n.strip() for n in m.group(1).split(",")]
            values = [int(v) for v in m.group(2).split(",")]
            if name in names and len(names) == len(values):
                return values[names.index(name)]
    raise KeyError(name)


def test_page_code_fits_88_columns():
    """Every line of code the page shows, as the harness runs it (the included
    lines of snippets/ are held to the same width by tests/test_site.py)."""
    blocks = harness.collect_page(harness.DOCS / "block.md")
    assert blocks
    for piece in (piece for block in blocks for piece in block.pieces):
        for line, origin in zip(piece.code.splitlines(), piece.origins):
            assert len(line) <= 88, str(origin)


def stack_stds():
    """The page's stack of 24 blocks, rebuilt from its seeds and sizes."""
    b, t, d, h, ff_dim = (page_int(n) for n in ("B", "T", "D", "H", "ff_dim"))
    assert "torch.manual_seed(0)\nB, T, D, H, ff_dim" in PAGE
    m = re.search(r"torch\.manual_seed\(2\)\ndepth, report = (\d+), \(([\d, ]+)\)", PAGE)
    depth, report = int(m.group(1)), [int(n) for n in m.group(2).split(",")]
    assert report[0] == 1 and report[-1] == depth  # the first and the last block
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = torch.randn(b, t, d)
        torch.manual_seed(2)
        stds = {}
        for norm_first in (False, True):
            blocks = [TransformerBlock(d, h, ff_dim, norm_first) for _ in range(depth)]
            stream, stds[norm_first] = x, []
            with torch.no_grad():
                for block in blocks:
                    stream = block(stream, is_causal=True)
                    stds[norm_first].append(
                        stream.std(dim=-1, unbiased=False).mean().item())
    return depth, stds


def test_stack_sentence():
    depth, stds = stack_stds()
    text = flat(section(PAGE, "The block"))
    assert f"through {depth} untrained blocks of each kind" in text
    assert all(f"{s:.2f}" == "1.00" for s in stds[False])
    assert "The post-norm stream is put back to standard deviation 1" in text
    assert (f"the pre-norm stream grows from {stds[True][0]:.2f} after one block to "
            f"{stds[True][-1]:.2f} after {depth}") in text
    assert stds[True][-1] > stds[True][0]  # "grows"


def test_tolerance_sentence():
    text = flat(section(PAGE, "Checked against PyTorch"))
    assert "at an absolute tolerance of $10^{-5}$ in float32, with torch's default ReLU" in text
    assert "max |ours - torch| < 1e-5" in PAGE and ATOL == 1e-5
    assert nn.TransformerEncoderLayer(8, 2).activation is F.relu  # torch's default


def test_polarity_warning_names_the_torch_version():
    text = flat(section(PAGE, "Checked against PyTorch"))
    m = re.search(r"on this path \(torch (\d+)\.(\d+), CPU, gradients on\)", text)
    assert torch.__version__.startswith(f"{m.group(1)}.{m.group(2)}.")


def test_decoder_comparison_sentence():
    text = flat(section(PAGE, "Cross-attention"))
    assert "the last three memory tokens of the second sequence masked" in text
    m = re.search(r"memory_keep = torch\.tensor\(\[\[True\] \* (\d+), "
                  r"\[True\] \* (\d+) \+ \[False\] \* (\d+)\]\)", PAGE)
    full, real, padded = map(int, m.groups())
    assert full == real + padded == page_int("S") and padded == 3


SMOL = {"D_smol": 576, "F_smol": 1536, "H_q": 9, "H_kv": 3, "Dh": 64, "layers": 30}


def test_smollm2_sizes_are_the_cited_ones_and_used_by_the_code():
    text = flat(section(PAGE, "What a Llama-style block changes"))
    assert ("width $D = 576$, feed-forward width $F = 1536$, 9 query heads of 64 "
            "sharing 3 key/value heads, 30 blocks, and no biases") in text
    assert {name: page_int(name) for name in SMOL} == SMOL
    assert "torch.randn(2, 5, 576), torch.rand(576)  # SmolLM2's width" in PAGE


def test_swiglu_sentence():
    d, f = SMOL["D_smol"], SMOL["F_smol"]
    text = flat(section(PAGE, "SwiGLU instead of ReLU or GELU"))
    assert "$F \\approx 8D/3$, so that the count stays that of a $4D$ network" in text
    assert f == 8 * d / 3 and 3 * d * f == 2 * d * (4 * d)


def test_gqa_sentence():
    text = flat(section(PAGE, "Grouped-query attention"))
    h_q, h_kv = SMOL["H_q"], SMOL["H_kv"]
    g = h_q // h_kv
    assert (f"SmolLM2's {h_q} query heads share {h_kv} key/value heads: every "
            f"key/value head serves a group of {g} query heads") in text
    assert f"Its key and value projections are {g} times narrower" in text
    q = randn(1, h_q, 4, 8, seed=27)
    k, v = randn(1, h_kv, 4, 8, seed=28), randn(1, h_kv, 4, 8, seed=29)
    grouped = grouped_query_attention(q, k, v)
    for head in range(h_q):  # query head i reads key/value head i // G
        alone = grouped_query_attention(q[:, head:head + 1], k[:, head // g:head // g + 1],
                                        v[:, head // g:head // g + 1])
        assert_near(grouped[:, head:head + 1], alone, atol=1e-6)


def test_rope_claims():
    """Scores depend on the offset only; values are not rotated (apply_rope is
    applied to q and k only in the page's code)."""
    text = flat(section(PAGE, "RoPE instead of added positions"))
    assert "A query-key score then depends only on how far apart the two tokens are" in text
    q, k = randn(2, 6, 16, seed=30), randn(2, 6, 16, seed=31)
    pos = torch.arange(6)
    scores = apply_rope(q, pos) @ apply_rope(k, pos).transpose(-2, -1)
    shifted = apply_rope(q, pos + 37) @ apply_rope(k, pos + 37).transpose(-2, -1)
    assert_near(scores, shifted, atol=1e-4)


def test_llama_section_lists_four_changes():
    body = section(PAGE, "What a Llama-style block changes")
    heads = re.findall(r"^### (.*)$", body, re.M)
    assert len(heads) == 4 and "changes four pieces" in flat(body)


def test_check_yourself_sizes():
    start = PAGE.index('??? question "Check yourself')
    code = PAGE[start:PAGE.index('??? example "All the code')]
    assert "TransformerBlock(8, 2, 32, norm_first=norm_first)" in code
    assert "for layer in (block.self_attn.out_proj, block.ff.linear2):" in code


def test_every_number_in_the_prose_is_accounted_for():
    """A new number in the prose needs a check above; this lists the ones there are."""
    text = prose(PAGE.split('??? example "All the code')[0])
    text = re.sub(r"`[^`]*`", "", text)  # code names
    text = text.replace("GPT-2", "GPT")  # a model's name
    depth, stds = stack_stds()
    checked = {
        4,  # F = 4D, and 4D again in the SwiGLU sentence
        depth, round(stds[True][0], 2), round(stds[True][-1], 2),  # the stack
        10, -5,  # the tolerance 10^{-5}
        float(".".join(torch.__version__.split(".")[:2])),  # "torch 2.13"
        *SMOL.values(), 8,  # SmolLM2's sizes; F ≈ 8D/3 (and the 3 of it)
    }
    citations = {2016, 2017, 2018, 2019, 2020}
    by_definition = {0, 1, 2}  # mean 0, std 1; LN_1, LN_2, RMSNorm_1, RMSNorm_2
    allowed = {float(n) for n in checked | citations | by_definition}
    found = set(numbers(text))
    assert found <= allowed, sorted(found - allowed)


def test_the_llama_section_leads_to_the_real_model():
    """The section that shows what SmolLM2's block changes links the page that runs
    it, at its start and at its end."""
    body = section(PAGE, "What a Llama-style block changes")
    links = re.findall(r"\]\((smollm2\.md)\)", body)
    assert len(links) >= 2
    assert "](smollm2.md)" in body.split("###")[0]  # before the four changes
    assert "](smollm2.md)" in body.split("###")[-1]  # and after them
