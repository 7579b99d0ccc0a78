"""The paper's CNN in PyTorch eager mode: the yardstick emofx's speed is compared against.

The same architecture as :class:`emofx.nets.model.EmotionCNN` (three 5x5 'SAME' convolutions
64/128/256 with ReLU and 2x2 max pooling, a 300-unit dense layer with dropout 0.5, the
output layer; 3,793,255 parameters for 7 classes), the same standardisation of [0, 1]
images, and the same work per step as ``emofx.nets.training``: random flip and rotation,
forward with dropout, cross-entropy, backward, SGD with momentum and L2 on the dense
kernels. Guided backpropagation passes the gradient through each ReLU's backward hook,
keeping only its positive part (Springenberg et al. 2015).

torch is an optional, benchmark-only dependency (the ``bench`` extra); importing this
module without it raises ImportError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class TorchModelConfig:
    """Architecture and standardisation, mirroring :class:`emofx.nets.model.ModelConfig`."""

    num_classes: int = 7
    input_size: int = 48
    widths: tuple[int, ...] = (64, 128, 256)
    kernel_size: int = 5
    dense_units: int = 300
    dropout: float = 0.5
    pixel_mean: float = 0.5
    pixel_std: float = 0.25


class TorchEmotionCNN(nn.Module):
    """The paper's CNN on (B, H, W) images in [0, 1]; returns logits."""

    def __init__(self, config: TorchModelConfig = TorchModelConfig()) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = 1
        for width in config.widths:
            layers += [nn.Conv2d(channels, width, config.kernel_size, padding=config.kernel_size // 2),
                       nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        side = config.input_size // 2 ** len(config.widths)
        self.dense = nn.Linear(channels * side * side, config.dense_units)
        self.dense_activation = nn.ReLU()
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(config.dense_units, config.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images[:, None] - self.config.pixel_mean) / self.config.pixel_std
        x = self.features(x).flatten(1)
        return self.output(self.dropout(self.dense_activation(self.dense(x))))

    def relus(self) -> list[nn.ReLU]:
        return [m for m in self.modules() if isinstance(m, nn.ReLU)]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def augment(images: torch.Tensor, generator: torch.Generator, max_degrees: float = 5.0) -> torch.Tensor:
    """Random horizontal flip and rotation in [-max_degrees, max_degrees] (bilinear, edges replicated)."""
    b, device = images.shape[0], images.device
    flip = (torch.rand(b, generator=generator) < 0.5).to(device)  # random numbers from the (CPU) generator
    images = torch.where(flip[:, None, None], images.flip(-1), images)
    theta = ((torch.rand(b, generator=generator) * 2 - 1) * math.radians(max_degrees)).to(device)
    cos, sin, zero = theta.cos(), theta.sin(), torch.zeros(b, device=device)
    affine = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(affine, (b, 1, *images.shape[1:]), align_corners=True)
    return F.grid_sample(images[:, None], grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]


def make_optimizer(model: TorchEmotionCNN, learning_rate: float = 0.05, momentum: float = 0.9,
                   weight_decay: float = 5e-4) -> torch.optim.Optimizer:
    """SGD with momentum; L2 weight decay on the dense layers' weights only (as emofx.nets.training)."""
    decayed = [model.dense.weight, model.output.weight]
    rest = [p for p in model.parameters() if all(p is not d for d in decayed)]
    return torch.optim.SGD([{"params": decayed, "weight_decay": weight_decay}, {"params": rest}],
                           lr=learning_rate, momentum=momentum)


def train_step(model: TorchEmotionCNN, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               labels: torch.Tensor, generator: torch.Generator) -> float:
    """One SGD step on a batch (augment, forward with dropout, backward, update); returns the loss."""
    model.train()
    loss = F.cross_entropy(model(augment(images, generator)), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def infer(model: TorchEmotionCNN, images: torch.Tensor) -> torch.Tensor:
    """Logits without gradients or dropout."""
    model.eval()
    with torch.inference_mode():
        return model(images)


def guided_backprop(model: TorchEmotionCNN, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of each target class's softmax probability w.r.t. the image, through guided ReLUs."""
    model.eval()
    hooks = [relu.register_full_backward_hook(lambda _m, grad_in, _g: (grad_in[0].clamp(min=0.0),))
             for relu in model.relus()]
    try:
        x = images.detach().clone().requires_grad_(True)
        probability = F.softmax(model(x), dim=1).gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(probability, x)
    finally:
        for hook in hooks:
            hook.remove()
    return grad


def load_emofx_params(model: TorchEmotionCNN, params) -> TorchEmotionCNN:
    """Copy an emofx parameter tree (``init_params`` / ``TrainedModel.params``) into ``model``,
    so both frameworks compute the same function (the parity test checks the architectures).

    Kernels go from HWIO to OIHW; the dense layer's rows are reordered from emofx's NHWC
    flattening to torch's NCHW flattening.
    """
    import numpy as np

    def tensor(array) -> torch.Tensor:
        return torch.from_numpy(np.array(array, dtype=np.float32))

    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for i, conv in enumerate(convs):
            conv.weight.copy_(tensor(params[f"conv{i + 1}"]["kernel"]).permute(3, 2, 0, 1))
            conv.bias.copy_(tensor(params[f"conv{i + 1}"]["bias"]))
        channels = convs[-1].out_channels
        side = model.config.input_size // 2 ** len(convs)
        dense = tensor(params["dense"]["kernel"]).reshape(side, side, channels, -1).permute(2, 0, 1, 3)
        model.dense.weight.copy_(dense.reshape(channels * side * side, -1).T)
        model.dense.bias.copy_(tensor(params["dense"]["bias"]))
        model.output.weight.copy_(tensor(params["output"]["kernel"]).T)
        model.output.bias.copy_(tensor(params["output"]["bias"]))
    return model
