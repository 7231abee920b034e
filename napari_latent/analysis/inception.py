"""InceptionV3 features for FID, from a local safetensors weights file (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..device import get_device
from ..errors import UserInputError
from ..metrics import check_images

__all__ = ["InceptionFeatures"]


class _Conv(nn.Module):
    """Convolution without bias, batch norm (eps 0.001) and ReLU: torchvision's BasicConv2d."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _add(module: nn.Module, **specs: tuple) -> None:
    for name, spec in specs.items():
        setattr(module, name, _Conv(*spec))


_ROW7, _COL7 = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
_ROW3, _COL3 = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))


def _avg3(x: Tensor) -> Tensor:
    # TensorFlow's average pooling ignores the zero padding (pytorch-fid's FID patch)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        _add(self, branch1x1=(cin, 64, 1), branch5x5_1=(cin, 48, 1), branch5x5_2=(48, 64, 5, 1, 2),
             branch3x3dbl_1=(cin, 64, 1), branch3x3dbl_2=(64, 96, 3, 1, 1), branch3x3dbl_3=(96, 96, 3, 1, 1),
             branch_pool=(cin, pool_features, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg3(x)),
        ], 1)


class _InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        _add(self, branch3x3=(cin, 384, 3, 2), branch3x3dbl_1=(cin, 64, 1), branch3x3dbl_2=(64, 96, 3, 1, 1),
             branch3x3dbl_3=(96, 96, 3, 2))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class _InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        _add(self, branch1x1=(cin, 192, 1), branch7x7_1=(cin, c7, 1), branch7x7_2=(c7, c7, *_ROW7),
             branch7x7_3=(c7, 192, *_COL7), branch7x7dbl_1=(cin, c7, 1), branch7x7dbl_2=(c7, c7, *_COL7),
             branch7x7dbl_3=(c7, c7, *_ROW7), branch7x7dbl_4=(c7, c7, *_COL7), branch7x7dbl_5=(c7, 192, *_ROW7),
             branch_pool=(cin, 192, 1))

    def forward(self, x: Tensor) -> Tensor:
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            dbl,
            self.branch_pool(_avg3(x)),
        ], 1)


class _InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        _add(self, branch3x3_1=(cin, 192, 1), branch3x3_2=(192, 320, 3, 2), branch7x7x3_1=(cin, 192, 1),
             branch7x7x3_2=(192, 192, *_ROW7), branch7x7x3_3=(192, 192, *_COL7), branch7x7x3_4=(192, 192, 3, 2))

    def forward(self, x: Tensor) -> Tensor:
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _InceptionE(nn.Module):
    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool  # pytorch-fid: the last block max-pools (a quirk of the TF graph)
        _add(self, branch1x1=(cin, 320, 1), branch3x3_1=(cin, 384, 1), branch3x3_2a=(384, 384, *_ROW3),
             branch3x3_2b=(384, 384, *_COL3), branch3x3dbl_1=(cin, 448, 1), branch3x3dbl_2=(448, 384, 3, 1, 1),
             branch3x3dbl_3a=(384, 384, *_ROW3), branch3x3dbl_3b=(384, 384, *_COL3), branch_pool=(cin, 192, 1))

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], 1)


class _FIDInceptionV3(nn.Module):
    """pytorch-fid's FID InceptionV3 up to the 2048-d pool3 features, with its state-dict key names."""

    def __init__(self) -> None:
        super().__init__()
        _add(self, Conv2d_1a_3x3=(3, 32, 3, 2), Conv2d_2a_3x3=(32, 32, 3), Conv2d_2b_3x3=(32, 64, 3, 1, 1),
             Conv2d_3b_1x1=(64, 80, 1), Conv2d_4a_3x3=(80, 192, 3))
        self.Mixed_5b = _InceptionA(192, 32)
        self.Mixed_5c = _InceptionA(256, 64)
        self.Mixed_5d = _InceptionA(288, 64)
        self.Mixed_6a = _InceptionB(288)
        self.Mixed_6b = _InceptionC(768, 128)
        self.Mixed_6c = _InceptionC(768, 160)
        self.Mixed_6d = _InceptionC(768, 160)
        self.Mixed_6e = _InceptionC(768, 192)
        self.Mixed_7a = _InceptionD(768)
        self.Mixed_7b = _InceptionE(1280, max_pool=False)
        self.Mixed_7c = _InceptionE(2048, max_pool=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


class InceptionFeatures:
    """InceptionV3 pool3 features (2048-d) of pytorch-fid's FID network, from a local weights file.

    The network is pytorch-fid's ``FIDInceptionV3`` (TensorFlow's 2015-12-05 Inception graph,
    with its average pooling that ignores padding and its max-pooling last block), defined in
    this module. The weights are read from a ``.safetensors`` file holding the state dict of
    pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` with the same keys
    (``Conv2d_1a_3x3.conv.weight``, ``Mixed_7c.branch_pool.bn.running_var``, ...); the
    classifier (``fc.*``), ``AuxLogits.*`` and ``num_batches_tracked`` entries are ignored if
    present. Only safetensors files are accepted, since other formats (``.pth``, TorchScript)
    unpickle data. Nothing is downloaded. A file can be converted once, in a trusted
    environment, with::

        import torch
        from safetensors.torch import save_file
        state = torch.load("pt_inception-2015-12-05-6726825d.pth", weights_only=True)
        save_file({k: v.contiguous() for k, v in state.items()}, "pt_inception-2015-12-05.safetensors")

    Grey images are replicated to three channels and resized bilinearly to 299 x 299 (as
    pytorch-fid does); values in [-1, 1] are what the network expects. Distances computed
    with this extractor are reported as ``"FID"``.

    Parameters
    ----------
    weights : str or Path
        The ``.safetensors`` file.
    device : str or torch.device
        Where to compute.
    batch_size : int
        Images per forward pass (bounds memory: tens of MB per image).

    Raises
    ------
    UserInputError
        If the file is missing, not a safetensors file, or does not hold the expected weights.
    """

    name = "FID"
    dim = 2048

    def __init__(self, weights: str | Path, device: str | torch.device = "cpu", batch_size: int = 32) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(weights).expanduser()
        if path.suffix.lower() != ".safetensors":
            raise UserInputError(
                f"InceptionV3 weights must be a .safetensors file (pickled .pt/.pth files are never loaded), got {path}"
            )
        if not path.is_file():
            raise UserInputError(f"InceptionV3 weights file not found: {path}")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserInputError(f"cannot read InceptionV3 weights from {path}: {exc}") from exc
        network = _FIDInceptionV3()
        expected = network.state_dict()
        ignored = ("fc.", "AuxLogits.")
        state = {k: v for k, v in state.items() if not k.startswith(ignored) and not k.endswith("num_batches_tracked")}
        missing = sorted(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
        unexpected = sorted(k for k in state if k not in expected)
        wrong = sorted(k for k in state if k in expected and state[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            details = "; ".join(
                f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                if keys
            )
            raise UserInputError(f"{path} does not hold pytorch-fid's InceptionV3 (pt_inception-2015-12-05) weights: "
                                 f"{details}")
        network.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        self.device = get_device(device)
        self.network = network.eval().requires_grad_(False).to(self.device)
        self.batch_size = max(1, int(batch_size))
        self.path = path

    def __call__(self, images: Tensor) -> Tensor:
        """Features ``(n, 2048)`` float64 of images ``(n, 1, H, W)`` in [-1, 1]."""
        check_images(images, "images")
        out = []
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                x = images[start : start + self.batch_size].to(self.device, torch.float32)
                x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
                out.append(self.network(x.contiguous()).to("cpu", torch.float64))
        return torch.cat(out)
