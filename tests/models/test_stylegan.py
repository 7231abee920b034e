"""StyleGAN2: latent spaces, truncation, modulation, w_avg, equalised lr, discriminator, W+, checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_latent.errors import MismatchError, UserInputError
from napari_latent.models.base import build_model, model_names
from napari_latent.models.checkpoint import load_model, save_checkpoint
from napari_latent.models.stylegan import (
    EqualizedConv2d,
    EqualizedLinear,
    ModulatedConv2d,
    StyleGAN,
    StyleGANConfig,
    SynthesisLayer,
    minibatch_std,
)

TINY = {"image_size": 32, "base_channels": 16, "max_channels": 32, "latent_dim": 16, "w_dim": 16,
        "mapping_layers": 2}


def tiny(**settings) -> StyleGAN:
    torch.manual_seed(settings.pop("seed", 0))
    model = build_model("stylegan", **{**TINY, **settings})
    assert isinstance(model, StyleGAN)
    return model.eval()


def set_noise_strength(model: StyleGAN, value: float) -> None:
    """Give the per-layer noise an effect (its strength starts at 0, as in StyleGAN2)."""
    with torch.no_grad():
        for module in model.generator.modules():
            if isinstance(module, SynthesisLayer):
                module.noise_strength.fill_(value)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_spaces_and_latent_sizes():
    assert "stylegan" in model_names()
    model = tiny()
    assert model.name == "stylegan"
    assert model.family == "gan"
    assert model.objective == "gan"
    assert model.spaces == ("z", "w", "w+")
    assert model.default_space == "z"
    # 32 px: resolutions 4, 8, 16, 32 -> 1 + 2 + 2 + 2 = 7 convolutions, + 1 for the last toGray
    assert model.num_ws == 8
    assert model.latent_shape("z") == (16,)
    assert model.latent_shape("w") == (16,)
    assert model.latent_shape("w+") == (8, 16)
    assert [model.latent_dim(s) for s in model.spaces] == [16, 16, 128]
    assert model.describe()["latent_dims"] == {"z": 16, "w": 16, "w+": 128}
    assert [StyleGANConfig(image_size=s).num_ws for s in (32, 64, 128, 256)] == [8, 10, 12, 14]
    # one generator module holding mapping, synthesis, w_avg and the fixed noise
    names = set(model.generator.state_dict())
    assert "mapping.w_avg" in names
    assert sum(name.endswith("noise_const") for name in names) == 7
    assert set(model.state_dict()) == {f"generator.{n}" for n in names} | {
        f"discriminator.{n}" for n in model.discriminator.state_dict()}


def test_default_sizes_and_parameter_counts():
    counts = {}
    for size in (64, 128):
        torch.manual_seed(0)
        info = build_model("stylegan", image_size=size).describe()
        counts[size] = (info["num_ws"], info["generator_parameters"], info["discriminator_parameters"])
    assert counts[64] == (10, 2_702_894, 3_511_521)
    assert counts[128] == (12, 3_982_385, 4_757_217)


def test_config_validation():
    for bad in ({"image_size": 48}, {"style_mixing_prob": 1.5}, {"w_avg_beta": -0.1}, {"mapping_layers": 0},
                {"r1_gamma": -1.0}, {"w_dim": 0}, {"mapping_lr_multiplier": 0.0},
                {"truncation_psi": float("nan")}, {"max_channels": 8}):
        with pytest.raises(UserInputError):
            build_model("stylegan", **{**TINY, **bad})
    config = StyleGANConfig(**TINY, truncation_psi=0.7)
    assert StyleGANConfig.from_json(config.to_json()) == config
    assert StyleGANConfig().r1_gamma == 1.0


def test_decode_shapes_and_ranges_in_every_space():
    model = tiny()
    with torch.no_grad():
        for space in model.spaces:
            codes = model.sample_latent(5, seeded(1), space)
            assert codes.shape == (5, model.latent_dim(space))
            images = model.decode(codes, space)
            assert images.shape == (5, 1, 32, 32)
            assert images.dtype == torch.float32
            assert torch.isfinite(images).all()
            assert images.min() >= -1 and images.max() <= 1
            assert images.std(dim=0).mean() > 1e-3  # different codes, different images
        raw = model.synthesize(model.to_space(model.sample_latent(5, seeded(1)), "z", "w+").view(5, 8, 16))
        assert torch.equal(model.decode(model.sample_latent(5, seeded(1))), raw.clamp(-1, 1))
    with pytest.raises(MismatchError):
        model.decode(torch.zeros(2, 16), "w+")
    with pytest.raises(MismatchError):
        model.decode(torch.zeros(2, 16), "u")
    with pytest.raises(MismatchError):
        model.synthesize(torch.zeros(2, 7, 16))
    with pytest.raises(UserInputError):
        model.synthesize(torch.zeros(2, 8, 16), noise_mode="fresh")


def test_decode_clamp_passes_gradients_straight_through():
    model = tiny()
    with torch.no_grad():  # make every pixel overshoot [-1, 1]
        model.generator.synthesis.blocks[-1].to_gray.bias.fill_(100.0)
    codes = model.sample_latent(2, seeded(0), "w").requires_grad_()
    images = model.decode(codes, "w")
    assert torch.equal(images, torch.ones(2, 1, 32, 32))
    images.sum().backward()
    assert codes.grad.abs().sum() > 0


def test_decode_is_deterministic_training_is_random():
    model = tiny()
    set_noise_strength(model, 0.5)
    z = model.sample_latent(4, seeded(0))
    with torch.no_grad():
        assert torch.equal(model.decode(z), model.decode(z))
        a = model.generate_for_training(z, seeded(1))
        b = model.generate_for_training(z, seeded(1))
        c = model.generate_for_training(z, seeded(2))
        assert a.shape == (4, 1, 32, 32)
        assert torch.equal(a, b)
        assert (a - c).abs().mean() > 1e-3
        # without mixing the only randomness left is the noise; without noise the training images are decode's
        model.config.style_mixing_prob = 0.0
        a = model.generate_for_training(z, seeded(1))
        c = model.generate_for_training(z, seeded(2))
        assert (a - c).abs().mean() > 1e-3
        set_noise_strength(model, 0.0)
        a = model.generate_for_training(z, seeded(1))
        c = model.generate_for_training(z, seeded(2))
        assert torch.equal(a, c)
        torch.testing.assert_close(a.clamp(-1, 1), model.decode(z))
        ws = model.to_space(z, "z", "w+").view(4, 8, 16)
        torch.testing.assert_close(model.synthesize(ws, "none"), a)


def test_style_mixing_takes_late_styles_from_other_codes():
    model = tiny(style_mixing_prob=1.0)
    z = model.sample_latent(3, seeded(0))
    seen = []
    original = model.synthesize

    def spy(ws, noise_mode="const", generator=None):
        seen.append((ws.detach().clone(), noise_mode))
        return original(ws, noise_mode, generator)

    model.synthesize = spy
    cutoffs = set()
    with torch.no_grad():
        w = model.to_space(z, "z", "w")
        for seed in range(6):
            model.generate_for_training(z, seeded(seed))
            ws, noise_mode = seen[-1]
            assert noise_mode == "random"
            same = (ws == w[:, None]).all(dim=2).all(dim=0)  # which style rows are still the w of z
            cutoff = int(same.long().sum())
            assert 1 <= cutoff < model.num_ws
            assert same[:cutoff].all() and not same[cutoff:].any()
            assert (ws[:, cutoff:] == ws[:, cutoff:cutoff + 1]).all()  # one other w for the late styles
            cutoffs.add(cutoff)
    assert len(cutoffs) > 1


def test_spaces_agree_and_conversions():
    model = tiny(truncation_psi=0.7)
    z = model.sample_latent(3, seeded(0))
    with torch.no_grad():
        w = model.to_space(z, "z", "w")
        w_plus = model.to_space(z, "z", "w+")
        assert w.shape == (3, 16) and w_plus.shape == (3, 128)
        torch.testing.assert_close(w_plus.view(3, 8, 16), w[:, None].expand(3, 8, 16))
        torch.testing.assert_close(model.to_space(w, "w", "w+"), w_plus)
        torch.testing.assert_close(w, model.truncate(model.generator.mapping(z), 0.7))
        from_z = model.decode(z)
        torch.testing.assert_close(model.decode(w, "w"), from_z)
        torch.testing.assert_close(model.decode(w_plus, "w+"), from_z)
        assert torch.equal(model.to_space(w, "w", "w"), w)
        # sampling in w and w+ maps (and truncates) the same z
        torch.testing.assert_close(model.sample_latent(3, seeded(0), "w"), w)
        torch.testing.assert_close(model.sample_latent(3, seeded(0), "w+"), w_plus)
    for source, target, codes in (("w+", "w", w_plus), ("w", "z", w), ("w+", "z", w_plus)):
        with pytest.raises(MismatchError, match="cannot be converted"):
            model.to_space(codes, source, target)
    with pytest.raises(MismatchError):
        model.to_space(z, "z", "s")
    with pytest.raises(MismatchError):
        model.to_space(w_plus, "z", "w")


def test_mean_latent_is_w_avg():
    model = tiny()
    assert torch.equal(model.mean_latent("z"), torch.zeros(1, 16))
    assert torch.equal(model.mean_latent("w"), model.w_avg[None])
    assert torch.equal(model.mean_latent("w+"), model.w_avg.repeat(8)[None])
    # w_avg starts as the mean w of 1024 prior samples (seed 0)
    with torch.no_grad():
        prior = torch.randn(1024, 16, generator=seeded(0))
        torch.testing.assert_close(model.w_avg, model.generator.mapping(prior).mean(dim=0))
        w = model.generator.mapping(torch.randn(4096, 16, generator=seeded(5)))
    spread = w.std(dim=0).mean()
    assert (w.mean(dim=0) - model.w_avg).abs().max() < 0.2 * spread


def test_truncation():
    model = tiny(truncation_psi=0.0)
    z = model.sample_latent(4, seeded(0))
    with torch.no_grad():
        w = model.to_space(z, "z", "w")
        assert torch.equal(w, model.w_avg.expand(4, -1))
        images = model.decode(z)
        assert torch.equal(images, images[:1].expand(4, -1, -1, -1))
        assert torch.equal(model.sample_latent(4, seeded(1), "w"), w)
        torch.testing.assert_close(images[:1], model.decode(model.mean_latent("w"), "w"))
    model.config.truncation_psi = 1.0
    with torch.no_grad():
        w = model.to_space(z, "z", "w")
        assert torch.equal(w, model.generator.mapping(z))
        assert torch.equal(model.truncate(w, 1.0), w)
        half = model.truncate(w, 0.5)
        torch.testing.assert_close(half, (w + model.w_avg) / 2)
        w_plus = model.to_space(z, "z", "w+")
        torch.testing.assert_close(model.truncate(w_plus, 0.5), half.repeat(1, 8))
        torch.testing.assert_close(model.truncate(w_plus.view(4, 8, 16), 0.5), half[:, None].expand(4, 8, 16))


def test_modulation_and_demodulation():
    torch.manual_seed(0)
    x = torch.randn(4, 48, 32, 32)
    styles = torch.rand(4, 48) * 2 + 0.2
    conv = ModulatedConv2d(48, 24, 3, demodulate=True)
    with torch.no_grad():
        out = conv(x, styles)
        interior_std = out[:, :, 1:-1, 1:-1].std(dim=(2, 3))  # (sample, output channel)
        assert out.shape == (4, 24, 32, 32)
        assert 0.97 < interior_std.mean() < 1.03
        assert interior_std.min() > 0.85 and interior_std.max() < 1.15
        # the scale of the style does not matter after demodulation ...
        torch.testing.assert_close(conv(x, 10 * styles), out, rtol=1e-4, atol=1e-4)
        # ... but each sample gets its own weights
        swapped = conv(x[[1, 0, 2, 3]], styles)
        assert not torch.allclose(swapped[0], out[1], atol=1e-3)
        plain = ModulatedConv2d(48, 24, 3, demodulate=False)
        plain.weight.copy_(conv.weight)
        raw = plain(x, styles)
        torch.testing.assert_close(plain(x, 10 * styles), 10 * raw, rtol=1e-4, atol=1e-4)
        # modulation is scaling the input channels
        torch.testing.assert_close(raw[:1], plain(x[:1] * styles[:1, :, None, None], torch.ones(1, 48)))


def test_equalized_learning_rate():
    torch.manual_seed(0)
    linear = EqualizedLinear(512, 256)
    assert 0.97 < linear.weight.std() < 1.03
    assert abs(float(linear.weight.detach().mean())) < 0.01
    x = torch.randn(2048, 512)
    with torch.no_grad():
        assert 0.95 < linear(x).std() < 1.05
        # a learning-rate multiplier changes the stored scale, not the output scale
        slow = EqualizedLinear(512, 256, lr_multiplier=0.01)
        assert 90 < slow.weight.std() < 110
        assert 0.95 < slow(x).std() < 1.05
        # with the sqrt(2) gain the leaky ReLU keeps the second moment near 1 (2 * (0.5 + 0.5 * 0.04) = 1.04)
        active = EqualizedLinear(512, 256, activation=True)
        assert 0.95 < active(x).square().mean() < 1.13
        assert torch.equal(EqualizedLinear(8, 4, bias_init=1.0)(torch.zeros(1, 8)), torch.ones(1, 4))
    conv = EqualizedConv2d(64, 96, 3, activation=False)
    assert 0.97 < conv.weight.std() < 1.03
    with torch.no_grad():
        assert 0.95 < conv(torch.randn(8, 64, 16, 16))[:, :, 1:-1, 1:-1].std() < 1.05
    # the model's synthesis weights are N(0, 1) too
    model = tiny()
    weight = model.generator.synthesis.blocks[-1].convs[0].conv.weight
    assert weight.numel() > 4000
    assert 0.9 < weight.std() < 1.1


def test_w_avg_moves_toward_training_ws():
    model = tiny(w_avg_beta=0.5).train()
    with torch.no_grad():
        model.w_avg.fill_(3.0)
        before = model.w_avg.clone()
        z = model.sample_latent(8, seeded(0))
        batch_mean = model.generator.mapping(z).mean(dim=0)
        model.generate_for_training(z, seeded(1))
    model.after_generator_step()
    torch.testing.assert_close(model.w_avg, 0.5 * before + 0.5 * batch_mean)
    assert (model.w_avg - batch_mean).norm() < (before - batch_mean).norm()
    after = model.w_avg.clone()
    model.after_generator_step()  # no new batch: no change
    assert torch.equal(model.w_avg, after)
    with torch.no_grad():
        for _ in range(25):  # 0.5 ** 25 < 3e-8
            model.generate_for_training(z, seeded(1))
            model.after_generator_step()
    torch.testing.assert_close(model.w_avg, batch_mean, atol=1e-4, rtol=1e-4)


def reference_minibatch_std(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """StyleGAN2's reshape formulation, for batch sizes divisible by the group size."""
    n, c, h, w = x.shape
    y = x.reshape(group_size, -1, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    return torch.cat([x, y.repeat(group_size).view(n, 1, 1, 1).expand(n, 1, h, w)], dim=1)


def test_minibatch_std():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    torch.testing.assert_close(minibatch_std(x, 4), reference_minibatch_std(x, 4))
    # 5 images: groups {0, 2, 4} and {1, 3}
    x = torch.randn(5, 3, 4, 4)
    feature = minibatch_std(x, 4)[:, 3, 0, 0]
    for members in ([0, 2, 4], [1, 3]):
        group = x[members]
        expected = (group - group.mean(0)).square().mean(0).add(1e-8).sqrt().mean()
        torch.testing.assert_close(feature[members], expected.expand(len(members)))
    assert float(minibatch_std(x[:1], 4)[0, 3].max()) == pytest.approx(1e-4)
    same = minibatch_std(x[:1].expand(4, -1, -1, -1), 4)
    assert float(same[:, 3].max()) == pytest.approx(1e-4)


def test_discriminator_batch_sizes_and_groups():
    model = tiny()
    images = torch.rand(8, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        for n in (1, 3, 5, 8):
            logits = model.discriminate(images[:n])
            assert logits.shape == (n,)
            assert torch.isfinite(logits).all()
        # the minibatch-std feature couples images of one group only
        logits = model.discriminate(images[:5])
        changed = images[:5].clone()
        changed[1] = -changed[1]
        other = model.discriminate(changed)
        torch.testing.assert_close(other[[0, 2, 4]], logits[[0, 2, 4]])
        assert not torch.allclose(other[[1, 3]], logits[[1, 3]])
    with pytest.raises(MismatchError):
        model.discriminate(torch.zeros(2, 1, 16, 16))


def test_gradients_flow_through_generator_and_r1():
    model = tiny().train()
    set_noise_strength(model, 0.1)
    z = model.sample_latent(4, seeded(0))
    model.discriminate(model.decode(z)).mean().backward()
    for name, parameter in model.generator.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    model.zero_grad()
    fake = model.generate_for_training(z, seeded(1))
    model.discriminate(fake).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.synthesis.parameters())
    # R1 needs the gradient of the discriminator with respect to real images, differentiated again
    model.zero_grad()
    real = (torch.rand(4, 1, 32, 32) * 2 - 1).requires_grad_()
    (grad,) = torch.autograd.grad(model.discriminate(real).sum(), real, create_graph=True)
    grad.square().sum(dim=(1, 2, 3)).mean().backward()
    first = model.discriminator.from_gray.weight.grad
    assert first is not None and first.abs().sum() > 0
    assert all(p.grad is None for p in model.generator.parameters())


def fit(model: StyleGAN, target: torch.Tensor, space: str, steps: int) -> float:
    code = model.mean_latent(space).clone().requires_grad_()
    optimizer = torch.optim.Adam([code], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (model.decode(code, space) - target).square().mean()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((model.decode(code, space) - target).square().mean())


def test_w_plus_fits_better_than_w():
    model = tiny()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    # The target mixes two w (coarse styles from one, fine from the other), so it is in the image of W+
    # but not of W. (For targets made from one w, W can be the better search space: it is exact and smaller.)
    with torch.no_grad():
        w = model.sample_latent(2, seeded(7), "w")
        target = model.decode(torch.cat([w[:1].expand(4, -1), w[1:].expand(4, -1)]).reshape(1, -1), "w+")
        start = float((model.decode(model.mean_latent("w"), "w") - target).square().mean())
    error_w = fit(model, target, "w", 60)
    error_w_plus = fit(model, target, "w+", 60)
    assert error_w < 0.5 * start
    assert error_w_plus < 0.6 * error_w


def test_checkpoint_round_trip(tmp_path):
    model = tiny(truncation_psi=0.8)
    set_noise_strength(model, 0.3)
    with torch.no_grad():
        for name, buffer in model.generator.named_buffers():
            if name.endswith("noise_const"):
                buffer.normal_(generator=seeded(len(name)))
        model.generate_for_training(model.sample_latent(8, seeded(3)), seeded(4))
        model.w_avg.add_(0.5)
    path = save_checkpoint(tmp_path / "stylegan.safetensors", model)
    loaded = load_model(path, device="cpu")
    assert isinstance(loaded, StyleGAN)
    assert loaded.config == model.config
    assert torch.equal(loaded.w_avg, model.w_avg)
    with torch.no_grad():
        for space in model.spaces:
            codes = model.sample_latent(3, seeded(5), space)
            assert torch.equal(loaded.decode(codes, space), model.decode(codes, space))
        images = torch.rand(3, 1, 32, 32) * 2 - 1
        assert torch.equal(loaded.discriminate(images), model.discriminate(images))
    # a moving-average copy of the generator (as the GAN objective keeps) is what load_model uses
    ema = copy.deepcopy(model.generator)
    with torch.no_grad():
        for parameter in ema.parameters():
            parameter.mul_(0.9)
    path = save_checkpoint(tmp_path / "with_ema.safetensors", model, extras={"ema": ema})
    loaded = load_model(path, device="cpu")
    expected = copy.deepcopy(model)
    expected.generator.load_state_dict(ema.state_dict())
    z = model.sample_latent(3, seeded(6))
    with torch.no_grad():
        assert torch.equal(loaded.decode(z), expected.decode(z))
        assert not torch.equal(loaded.decode(z), model.decode(z))
