"""Why the stylizer starts at the identity: 1000 Adam steps (lr 1e-3, batches of 32 Fashion-MNIST training images,
beta 1, the shirt as style) of the network with and without the skip, scored on the first 10 test images against
returning the content unchanged (docs/methods.md, "Fast style transfer").

    OMP_NUM_THREADS=2 python scripts/fast_style_skip_ablation.py
"""

from __future__ import annotations

import torch

from dgn_am.data import load_fashion_mnist
from dgn_am.fast_style import Stylizer, StylizerConfig, TransferLoss, TransferLossConfig
from dgn_am.imageio import load_image
from dgn_am.models.loading import load_model

class NoSkip(Stylizer):
    """Johnson et al.'s output: a sigmoid of the last convolution, default initialization, no skip."""
    def __init__(self):
        super().__init__(StylizerConfig())
        last = self.net[-1]
        last.reset_parameters()
    def forward(self, x):
        return torch.sigmoid(self.net(x))

torch.manual_seed(0)
model = load_model("fmnist-caffenet")
loss = TransferLoss(model, load_image("docs/img/methods/fmnist-test-4.png", model.input_spec), TransferLossConfig())
x_train = load_fashion_mnist("train")[0][:-5000]
test = load_fashion_mnist("test")[0][:10]
for name, net in (("no skip", NoSkip()), ("skip", Stylizer())):
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(1000):
        x = x_train[torch.randint(len(x_train), (32,), generator=g)]
        opt.zero_grad(); loss(net(x), x)["total"].mean().backward(); opt.step()
    with torch.no_grad():
        print(name, "test total %.3g" % float(loss(net(test), test)["total"].mean()),
              "identity %.3g" % float(loss(test, test)["total"].mean()), flush=True)
