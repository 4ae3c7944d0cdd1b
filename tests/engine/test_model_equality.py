"""Our forward passes equal TransformerLens 4's own model for the same weights.

The reference is ``TransformerBridge.boot_native(cfg)`` (TransformerLens 4's TL-native
transformer) loaded with ``convert_tl_checkpoint``, TransformerLens's own converter from
HookedTransformer-format state dicts, so the key/shape mapping is theirs, not ours.
Biases and LayerNorm parameters are made non-zero so that every term is exercised.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformer_lens")

from transformer_lens.config import TransformerBridgeConfig  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402
from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint  # noqa: E402

from grok_engine.config import ModelConfig, TaskConfig  # noqa: E402
from grok_engine.fast import last_logits  # noqa: E402
from grok_engine.model import HookedGrokTransformer  # noqa: E402
from grok_engine.tasks import make_dataset  # noqa: E402
from grok_engine.weights import init_weights  # noqa: E402

TOL = 1e-5

VARIANTS = [  # (task, p, n_layers, act_fn, normalization)
    ("mod_add", 7, 1, "relu", "none"),
    ("add", 6, 1, "relu", "none"),
    ("mod_mul", 7, 1, "gelu", "LN"),
    ("mod_sub", 5, 2, "relu", "none"),
    ("poly", 7, 2, "gelu", "LN"),
]


def perturbed_weights(task: TaskConfig, model: ModelConfig, seed: int = 1) -> dict[str, torch.Tensor]:
    """init_weights, with every bias and LayerNorm parameter set to random non-trivial values."""
    weights = init_weights(task, model)
    gen = torch.Generator().manual_seed(seed)
    for name, value in weights.items():
        leaf = name.rsplit(".", 1)[1]
        if leaf.startswith("b_") or leaf == "b":
            weights[name] = 0.3 * torch.randn(value.shape, generator=gen)
        elif leaf == "w":
            weights[name] = 1.0 + 0.3 * torch.randn(value.shape, generator=gen)
    return weights


def bridge_for(task: TaskConfig, model: ModelConfig, weights: dict[str, torch.Tensor]):
    cfg = TransformerBridgeConfig(
        d_model=model.d_model, d_head=model.d_head, n_layers=model.n_layers, n_ctx=3,
        n_heads=model.n_heads, d_mlp=model.d_mlp, d_vocab=task.d_vocab,
        d_vocab_out=task.d_vocab_out, act_fn=model.act_fn,
        normalization_type=None if model.normalization == "none" else "LN",
        positional_embedding_type="standard", attn_only=False, seed=0)
    bridge = TransformerBridge.boot_native(cfg)
    result = bridge.load_state_dict(convert_tl_checkpoint(weights, cfg), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    bridge.eval()
    return bridge


@pytest.mark.parametrize("task_name, p, n_layers, act_fn, normalization", VARIANTS)
def test_logits_equal_transformer_lens_native(task_name, p, n_layers, act_fn, normalization):
    task = TaskConfig(task=task_name, p=p, frac_train=0.5)
    model = ModelConfig(n_layers=n_layers, n_heads=2, d_model=32, d_head=16, d_mlp=64,
                        act_fn=act_fn, normalization=normalization, seed=3)
    weights = perturbed_weights(task, model)
    ds = make_dataset(task)
    with torch.no_grad():
        reference = bridge_for(task, model, weights)(ds.tokens)
        ours = HookedGrokTransformer(task, model, weights)(ds.tokens)
        fast = last_logits(weights, ds.a, ds.b, model)
    assert reference.shape == ours.shape == (len(ds.labels), 3, task.d_vocab_out)
    assert fast.shape == (len(ds.labels), task.d_vocab_out)
    assert (ours - reference).abs().max().item() < TOL
    assert (fast - reference[:, -1]).abs().max().item() < TOL
    # the comparison is not vacuous: logits vary across rows and the biases matter
    assert reference[:, -1].std().item() > 0.1
    no_bias = {k: (torch.zeros_like(v) if ".b_" in k else v) for k, v in weights.items()}
    assert (last_logits(no_bias, ds.a, ds.b, model) - fast).abs().max().item() > 1e-3


def test_notebook_shape_model_equal():
    """The notebook's own shapes (d_model 128, 4 heads, d_mlp 512) on p=10 addition."""
    task, model = TaskConfig(), ModelConfig()
    weights = perturbed_weights(task, model, seed=2)
    ds = make_dataset(task)
    with torch.no_grad():
        reference = bridge_for(task, model, weights)(ds.tokens)
        fast = last_logits(weights, ds.a, ds.b, model)
        ours = HookedGrokTransformer(task, model, weights)(ds.tokens)
    assert (fast - reference[:, -1]).abs().max().item() < TOL
    assert (ours - reference).abs().max().item() < TOL


def tiny():
    task = TaskConfig(task="mod_add", p=7, frac_train=0.5)
    model = ModelConfig(n_heads=2, d_model=32, d_head=16, d_mlp=64)
    return task, model


def test_state_dict_has_hooked_transformer_keys():
    task, model = tiny()
    net = HookedGrokTransformer(task, model, perturbed_weights(task, model))
    keys = set(net.weights())
    assert {"embed.W_E", "pos_embed.W_pos", "blocks.0.attn.W_Q", "blocks.0.attn.W_O",
            "blocks.0.mlp.W_in", "blocks.0.mlp.W_out", "unembed.W_U", "unembed.b_U"} <= keys
    assert tuple(net.weights()["blocks.0.attn.W_Q"].shape) == (2, 32, 16)
    assert tuple(net.weights()["embed.W_E"].shape) == (8, 32)


def test_hook_names_exist_and_cache_shapes():
    task, model = tiny()
    net = HookedGrokTransformer(task, model, perturbed_weights(task, model))
    for name in ("hook_embed", "hook_pos_embed", "blocks.0.attn.hook_pattern", "blocks.0.mlp.hook_pre",
                 "blocks.0.mlp.hook_post", "blocks.0.hook_resid_mid", "blocks.0.hook_resid_post"):
        assert name in net.hook_dict, name
    ds = make_dataset(task)
    logits, cache = net.run_with_cache(ds.tokens)
    n = len(ds.labels)
    assert tuple(cache["pattern", 0, "attn"].shape) == (n, 2, 3, 3)
    assert tuple(cache["post", 0, "mlp"].shape) == (n, 3, 64)
    assert tuple(cache["blocks.0.hook_resid_mid"].shape) == (n, 3, 32)
    assert torch.equal(cache["post", 0, "mlp"], torch.relu(cache["pre", 0, "mlp"]))
    # causal: position 0 attends only to itself
    assert torch.allclose(cache["pattern", 0, "attn"][:, :, 0, 0], torch.ones(n, 2))
    assert torch.allclose(logits, net(ds.tokens))


def test_run_with_hooks_on_hook_embed_changes_logits():
    task, model = tiny()
    net = HookedGrokTransformer(task, model, perturbed_weights(task, model))
    tokens = make_dataset(task).tokens
    with torch.no_grad():
        clean = net(tokens)
        zeroed = net.run_with_hooks(tokens, fwd_hooks=[("hook_embed", lambda x, hook: x * 0.0)])
        identity = net.run_with_hooks(tokens, fwd_hooks=[("hook_embed", lambda x, hook: x)])
    assert (zeroed - clean).abs().max().item() > 1e-3
    assert torch.equal(identity, clean)
    # hooks are removed afterwards
    assert torch.equal(net(tokens), clean)


@pytest.mark.parametrize("task_name, p, n_layers, act_fn, normalization", VARIANTS)
def test_last_mlp_post_is_last_positions_post(task_name, p, n_layers, act_fn, normalization):
    """The probe's float64 pass stops at hook_post: the same values as the full pass."""
    from grok_engine.fast import last_mlp_post, last_position

    task = TaskConfig(task=task_name, p=p)
    model = ModelConfig(n_layers=n_layers, d_model=32, n_heads=2, d_head=16, d_mlp=48,
                        act_fn=act_fn, normalization=normalization)
    w = {k: v.double() for k, v in perturbed_weights(task, model).items()}
    ds = make_dataset(task)
    a, b = ds.tokens[:, 0], ds.tokens[:, 1]
    torch.testing.assert_close(last_mlp_post(w, a, b, model), last_position(w, a, b, model).post,
                               rtol=0, atol=1e-12)


ONE_LAYER_VARIANTS = [  # (task, p, act_fn, normalization): eval_logits' table path and its fallback
    ("mod_add", 7, "relu", "none"),
    ("add", 6, "relu", "none"),
    ("mod_mul", 7, "gelu", "none"),
    ("mod_sub", 5, "relu", "LN"),
]


@pytest.mark.parametrize("task_name, p, act_fn, normalization", ONE_LAYER_VARIANTS)
def test_eval_logits_are_last_logits(task_name, p, act_fn, normalization):
    """The test rows' forward (projected token tables summed by embedding_bag) is the same
    function as last_logits, every bias non-zero; in float64 the two agree to round-off."""
    from grok_engine.fast import eval_logits, through_tables

    task = TaskConfig(task=task_name, p=p)
    model = ModelConfig(n_layers=1, d_model=32, n_heads=4, d_head=8, d_mlp=48,
                        act_fn=act_fn, normalization=normalization)
    assert through_tables(model) == (normalization == "none")
    w = {k: v.double() for k, v in perturbed_weights(task, model).items()}
    ds = make_dataset(task)
    a, b = ds.tokens[:, 0], ds.tokens[:, 1]
    with torch.inference_mode():
        got = eval_logits(w, a, b, model)
    ref = last_logits(w, a, b, model)
    assert ref.abs().max().item() > 1.0
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    # the biases matter: without them the logits move
    no_bias = {k: v for k, v in w.items() if not k.rsplit(".", 1)[1].startswith("b_")}
    with torch.inference_mode():
        assert (eval_logits(no_bias, a, b, model) - got).abs().max().item() > 1e-3
