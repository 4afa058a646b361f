import math

import pytest
import torch
import torchvision
from torch import nn

from nbkit import VARIANTS, create_model, variant_table
from nbkit.design.models import Classifier
from nbkit.design.models.layers import MixStyle, Normalizer, sinusoid
from nbkit.design.models.vitn import Attention
from nbkit.design.settings import Settings


def tv_count(builder, **kw):
    return sum(p.numel() for p in builder(**kw).parameters())


def vit_count(d, layers, pre_norm=False, extra_per_layer=0, head=1000):
    stem = 3 * 64 * d + d + d  # 1x1 conv over 8x8x3 patch channels, its bias, the class token
    if pre_norm:  # qkv without bias, out proj, two LayerNorms, MLP
        layer = 3 * d * d + (d * d + d) + 4 * d + (8 * d * d + 5 * d)
    else:  # PyTorch's TransformerEncoderLayer: in_proj with bias, out proj, two norms, FF
        layer = (3 * d * d + 3 * d) + (d * d + d) + 4 * d + (8 * d * d + 5 * d)
    return stem + layers * (layer + extra_per_layer) + (d * 4 * d + 4 * d) + (4 * d * head + head)


# a variant that changes only the data order (the epochs comparison's) builds a model tested here already
@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if not {"sampling", "train_fraction"} & set(v.options)])
def test_every_variant_trains_one_step(name):
    model = create_model(name, num_classes=100)
    model.train()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 100, (4,))
    logits, extras = model(x, y)
    head = 100 if name.endswith("-tnc") else 1000
    assert logits.shape == (4, head)
    loss = nn.functional.cross_entropy(logits, y) + sum(v for k, v in extras.items() if k.startswith("aux/"))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(x)[0].shape == (4, head)


def test_parameter_counts_match_references():
    counts = {r["variant"]: r["parameters"] for r in variant_table(num_classes=100)}
    assert counts["resnet18"] == tv_count(torchvision.models.resnet18)
    assert counts["resnet34"] == tv_count(torchvision.models.resnet34)
    assert counts["resnet50"] == tv_count(torchvision.models.resnet50)
    assert counts["resnet18-tnc"] == tv_count(torchvision.models.resnet18, num_classes=100)
    for option in ("gn", "ms1", "pcnorm", "wonorm", "aug"):  # GroupNorm has as many affine params
        assert counts[f"resnet18-{option}"] == counts["resnet18"]
    conv = lambda cin, cout: 9 * cin * cout + cout
    assert counts["toy-dilated"] == conv(3, 32) + 3 * conv(32, 32) + 4 * 64 + 32 * 1000 + 1000
    assert counts["vit-12x256-8x8"] == vit_count(256, 12)
    assert counts["vit-24x256-8x8"] == vit_count(256, 24)
    assert counts["vit-b-8x8"] == vit_count(768, 12)
    three_heads = 2 * ((256 * 1024 + 1024) + (1024 * 1000 + 1000))
    assert counts["vit-aux-3x4x256-8x8"] == vit_count(256, 12) + three_heads
    assert counts["vitn-12x256-8x8"] == vit_count(256, 12, pre_norm=True)
    assert counts["vitn-12x256-8x8-dm"] == vit_count(256, 12, pre_norm=True)
    assert counts["vitn-12x256-8x8-ra"] == vit_count(256, 12, pre_norm=True, extra_per_layer=256 * 256 + 2 * 256)
    for t in ("lt", "ltv", "dm-lt"):
        assert counts[f"vitn-12x256-8x8-{t}"] == vit_count(256, 12, pre_norm=True, extra_per_layer=1)


def test_meta_counts_equal_real_counts():
    real = sum(p.numel() for p in create_model("vitn-12x256-8x8-ra", 100).parameters())
    assert real == {r["variant"]: r["parameters"] for r in variant_table()}["vitn-12x256-8x8-ra"]


def reference_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Explicit loops over query i and key j: the four Transformer-XL terms, mask, temperature."""
    B, T, d = x.shape
    h, hd = attn.heads, attn.head_dim
    q, k, v = attn.qkv(x).split(d, dim=-1)
    q, k, v = (t.view(B, T, h, hd) for t in (q, k, v))
    W_R = attn.pos_proj.weight if attn.relative else None
    inv_tau = attn.inv_tau() if attn.temperature else torch.ones(())
    out = torch.zeros(B, T, h, hd)
    for b in range(B):
        for head in range(h):
            for i in range(T):
                scores = []
                for j in range(T):
                    s = q[b, i, head] @ k[b, j, head]
                    if attn.relative:
                        R = sinusoid(torch.tensor(float(i - j)), d)  # (d,)
                        WR = (W_R @ R).view(h, hd)[head]
                        s = s + q[b, i, head] @ WR + attn.pos_u[head] @ k[b, j, head] + attn.pos_v[head] @ WR
                    s = s * hd**-0.5 * inv_tau
                    if attn.diag_mask and i == j:
                        s = torch.tensor(float("-inf"))
                    scores.append(s.reshape(()))
                a = torch.softmax(torch.stack(scores), dim=0)
                out[b, i, head] = sum(a[j] * v[b, j, head] for j in range(T))
    return attn.out(out.reshape(B, T, d))


@pytest.mark.parametrize("options", [
    dict(relative=True), dict(relative=True, diag_mask=True, temperature="log_inv_tau"),
    dict(diag_mask=True), dict(temperature="tau"), dict(),
])
def test_attention_matches_explicit_loop(options):
    attn = Attention(8, 2, **options)
    with torch.no_grad():  # move temperatures away from 1 so they matter
        for name, p in attn.named_parameters():
            if name in ("log_inv_tau", "tau"):
                p.fill_(0.7)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(attn(x), reference_attention(attn, x), atol=1e-5, rtol=1e-4)


def test_diagonal_mask_gives_zero_attention_to_self():
    T = d = 6
    attn = Attention(d, 1, diag_mask=True)
    with torch.no_grad():  # values = inputs, output projection = identity
        attn.qkv.weight[2 * d:].copy_(torch.eye(d))
        attn.out.weight.copy_(torch.eye(d))
        attn.out.bias.zero_()
    x = torch.eye(T).unsqueeze(0)  # orthonormal tokens: output row i holds attention weights a_i.
    weights = attn(x)[0]
    torch.testing.assert_close(torch.diagonal(weights), torch.zeros(T))
    torch.testing.assert_close(weights.sum(-1), torch.ones(T))


@pytest.mark.parametrize("temperature", ["log_inv_tau", "tau"])
def test_temperature_at_initialisation_equals_none(temperature):
    plain, tempered = Attention(16, 4), Attention(16, 4, temperature=temperature)
    missing = tempered.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == [temperature]
    x = torch.randn(3, 7, 16)
    torch.testing.assert_close(tempered(x), plain(x))


def test_temperature_extras_report_mean_and_spread_across_layers():
    model = create_model("vitn-12x256-8x8-ltv", 100)
    attns = [m for m in model.modules() if isinstance(m, Attention)]
    with torch.no_grad():
        for i, a in enumerate(attns):
            a.tau.fill_(0.5 + 0.1 * i)
    taus = torch.tensor([0.5 + 0.1 * i for i in range(12)])
    extras = model(torch.rand(2, 3, 32, 32))[1]
    torch.testing.assert_close(extras["tau_mean"], taus.mean())
    torch.testing.assert_close(extras["tau_std"], taus.std())


def test_vit_aux_adds_two_auxiliary_losses_in_training_only():
    model = create_model("vit-aux-3x4x256-8x8", 10)
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 10, (2,))
    assert sorted(model.train()(x, y)[1]) == ["aux/0", "aux/1"]
    assert model.eval()(x, y)[1] == {}


def test_mixstyle_is_identity_in_eval():
    ms = MixStyle(p=1.0).eval()
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(ms(x), x)


def test_mixstyle_mixes_detached_statistics_in_training():
    ms = MixStyle(p=1.0).train()
    x = (torch.randn(8, 3, 6, 6) * torch.rand(8, 3, 1, 1) * 3 + torch.randn(8, 3, 1, 1)).requires_grad_()
    out = ms(x)
    assert out.shape == x.shape
    mu, out_mu = x.mean((2, 3)), out.mean((2, 3))  # (B, C) per-sample statistics
    # each new mean is a convex mix of two samples' means: inside the batch's range per channel
    assert (out_mu >= mu.min(0).values - 1e-5).all() and (out_mu <= mu.max(0).values + 1e-5).all()
    assert not torch.allclose(out_mu, mu)
    out.sum().backward()
    # statistics detached: d out / d x = sig_mix / sig, constant over each sample's H x W
    g = x.grad.flatten(2)
    torch.testing.assert_close(g, g[..., :1].expand_as(g))


def test_mixstyle_skips_with_probability_one_minus_p():
    ms = MixStyle(p=0.0).train()
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(ms(x), x)


@pytest.mark.parametrize("channels", [1, 3])
def test_normaliser_running_statistics_are_the_ema_by_hand(channels):
    norm = Normalizer(channels).train()
    a, b = torch.rand(5, 3, 4, 4) * 2 + 1, torch.rand(5, 3, 4, 4) * 0.5
    norm(a)
    out = norm(b)
    dims = (0, 2, 3) if channels == 3 else (0, 1, 2, 3)
    mean = 0.99 * a.mean(dims) + 0.01 * b.mean(dims)
    var = 0.99 * a.var(dims, unbiased=False) + 0.01 * b.var(dims, unbiased=False)
    torch.testing.assert_close(norm.running_mean, mean.reshape(-1))
    torch.testing.assert_close(norm.running_var, var.reshape(-1))
    shape = (1, -1, 1, 1)
    torch.testing.assert_close(out, (b - mean.reshape(shape)) / (var.reshape(shape) + 1e-9).sqrt())
    norm.eval()(torch.rand(5, 3, 4, 4) * 10)  # eval never updates
    torch.testing.assert_close(norm.running_mean, mean.reshape(-1))
    assert {"normalizer.running_mean", "normalizer.running_var"} <= set(create_model("resnet18", 10).state_dict())


def test_normaliser_options():
    assert isinstance(create_model("resnet18-wonorm", 10).normalizer, nn.Identity)
    assert create_model("resnet18-pcnorm", 10).normalizer.running_mean.shape == (3,)
    assert create_model("resnet18", 10).normalizer.running_mean.shape == (1,)


def test_group_norm_variant_has_no_batch_norm_left():
    model = create_model("resnet18-gn", 100)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    gns = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(gns) == 20 and all(m.num_groups == 16 for m in gns)


def test_frozen_stages_have_no_gradients():
    from torchvision.ops import FrozenBatchNorm2d

    # finetune_level 3 trains the last three stages (layer2..4), as the original's option
    model = create_model(Settings(model="resnet18", finetune_level=3), 100).train()
    nn.functional.cross_entropy(model(torch.rand(4, 3, 32, 32))[0], torch.arange(4)).backward()
    for name, p in model.net.named_parameters():
        frozen = name.split(".")[0] in ("conv1", "bn1", "layer1")
        assert (p.grad is None) == frozen and p.requires_grad != frozen, name
    assert isinstance(model.net.bn1, FrozenBatchNorm2d) and isinstance(model.net.layer1[1].bn2, FrozenBatchNorm2d)
    assert isinstance(model.net.layer2[0].bn1, nn.BatchNorm2d)


def test_tailored_head_and_original_head():
    assert create_model("resnet18-tnc", 10).net.fc.out_features == 10
    assert create_model("vit-12x256-8x8", 10).net.head[-1].out_features == 1000
    assert isinstance(create_model("toy-dilated", 10), Classifier)


def test_sinusoid_is_sin_then_cos():
    e = sinusoid(torch.tensor([0.0, 1.0]), 4)
    torch.testing.assert_close(e[1], torch.tensor([math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)]))
