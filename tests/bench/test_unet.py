"""Tests of the benchmark's 2D U-Net (seglosses.bench.unet)."""
import pytest
import torch

from seglosses.bench.unet import UNet


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("size", [(13, 17), (1, 1), (31, 64), (16, 16)])
def test_output_has_input_size_for_any_size_and_norm(norm, size):
    torch.manual_seed(0)
    net = UNet(2, 3, depth=3, width=4, norm=norm, groups=2)
    out = net(torch.rand(2, 2, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_gradient_reaches_every_parameter(norm, upsampling):
    torch.manual_seed(0)
    net = UNet(1, 1, depth=2, width=4, norm=norm, groups=4, upsampling=upsampling)
    x = torch.rand(3, 1, 21, 19, requires_grad=True)
    net(x).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_init_is_deterministic_given_manual_seed():
    torch.manual_seed(7)
    a = UNet(1, 2, depth=2, width=4)
    torch.manual_seed(7)
    b = UNet(1, 2, depth=2, width=4)
    torch.manual_seed(8)
    c = UNet(1, 2, depth=2, width=4)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_channel_widths_double_per_level():
    net = UNet(3, 1, depth=3, width=5, norm="none")
    convs = [m for m in net.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs[::2]] == [5, 10, 20, 40]
    assert net.head.out_channels == 1 and net.head.in_channels == 5
    assert all(c.bias is not None for c in convs)  # no norm: convolutions keep their bias
    assert all(m.bias is None for m in UNet(1, 1, depth=1, width=4).encoder.modules() if isinstance(m, torch.nn.Conv2d))


def test_group_norm_uses_a_divisor_of_the_channels():
    net = UNet(1, 1, depth=1, width=12, norm="group", groups=8)
    groups = {m.num_channels: m.num_groups for m in net.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert groups == {12: 4, 24: 8}


def test_group_norm_output_independent_of_batch_companions():
    torch.manual_seed(0)
    net = UNet(1, 1, depth=2, width=4, norm="group", groups=2).train()
    x = torch.rand(4, 1, 16, 16)
    assert torch.allclose(net(x)[:1], net(x[:1]), atol=1e-5)


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    net = UNet(1, 1, depth=2, width=4, norm="none", dropout=0.5)
    x = torch.rand(2, 1, 16, 16)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    torch.manual_seed(1)
    first = net(x)
    torch.manual_seed(2)
    assert not torch.equal(first, net(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(norm="batchnorm"), r"`norm` must be one of 'batch', 'group', 'none'; got 'batchnorm' \(did you mean 'batch'\?\)"),
        (dict(upsampling="nearest"), r"`upsampling` must be one of 'transpose', 'bilinear'; got 'nearest'"),
        (dict(depth=0), r"`depth` must be an int >= 1; got 0"),
        (dict(width=2.5), r"`width` must be an int >= 1; got 2.5"),
        (dict(dropout=1.0), r"`dropout` must be in \[0, 1\); got 1.0"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet(1, 1, **kwargs)


def test_input_with_wrong_channel_count_is_rejected():
    net = UNet(3, 1, depth=1, width=2)
    with pytest.raises(ValueError, match=r"`x` must have shape \[B, 3, H, W\]; got \[2, 1, 8, 8\]"):
        net(torch.rand(2, 1, 8, 8))
