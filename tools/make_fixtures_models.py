#!/usr/bin/python3
"""ResNet-18 and optimizer reference values from PyTorch, for spec/resnet_spec.lua and
spec/optim_spec.lua. Run: /usr/bin/python3 tools/make_fixtures_models.py (Debian's
python3-torch and python3-numpy; torchvision is not needed: its ResNet-18 is restated below
with the same module names, so the state_dict keys are torchvision's).

The 11.7M weights are too big to commit, so both sides compute them from a formula.
For the j-th entry of the state_dict (0-based, torchvision's order) and its i-th element
(0-based, C order), with exact integer arithmetic and then double precision:

    u(j, i) = ((i * 2654435761 + j * 97) mod 2^32) / 2^32 - 0.5          in [-0.5, 0.5)
    weight with >= 2 dims (conv, fc):   u * sqrt(24 / fan_in),  fan_in = numel / size[0]
    1-d "...weight" (BatchNorm):        1 + 0.2 * u
    "...running_var":                   1 + 0.5 * u
    other 1-d (bias, running_mean):     0.2 * u
    num_batches_tracked:                0
and the result is rounded to float32. spec/resnet_spec.lua implements the same formula.

Files (all .npy float32, small):
  resnet_x.npy            input (2, 3, 40, 40)
  resnet_r.npy            loss weights R (2, 5): loss = sum(model(x) * R) in train mode
  resnet_eval_out.npy     eval-mode output (2, 5)
  resnet_train_out.npy    train-mode output (2, 5)
  resnet_grad_<name>.npy  d loss / d param for a few parameters (see GRADS)
  resnet_after_<name>.npy BatchNorm running stats after that one train-mode forward
  resnet1_x.npy, resnet1_emb.npy   in_channels=1, no fc: conv1.weight = the 3-channel
                          formula weight summed over input channels (adapt_conv1="sum"),
                          eval-mode 512-d embedding of a (2, 1, 40, 40) input
  optim_init.npy (23,), optim_target.npy (23,): three parameters of shapes (4, 3), (3,),
                          (2, 2, 2) concatenated; each step sets grad = (p - target) * 2
  optim_<case>.npy (STEPS, 23): the parameters after each step, for the cases in CASES.
"""
import os

import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec", "fixtures", "models")
os.makedirs(OUT, exist_ok=True)


def save(name, a):
    a = np.asarray(a, dtype=np.float32)
    np.save(os.path.join(OUT, name + ".npy"), a if a.ndim == 0 else np.ascontiguousarray(a))


# ---- torchvision's ResNet-18, restated (torchvision/models/resnet.py) ----
def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, in_channels=3, num_classes=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for li, planes in enumerate([64, 128, 256, 512]):
            stride = 1 if li == 0 else 2
            ds = None
            if stride != 1 or inplanes != planes:
                ds = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes))
            layer = nn.Sequential(BasicBlock(inplanes, planes, stride, ds),
                                  BasicBlock(planes, planes))
            setattr(self, "layer%d" % (li + 1), layer)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes) if num_classes else None

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x) if self.fc is not None else x


def u(j, n):
    i = np.arange(n, dtype=np.int64)
    return ((i * 2654435761 + j * 97) % 4294967296).astype(np.float64) / 4294967296.0 - 0.5


def formula_value(j, name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    if name.endswith("num_batches_tracked"):
        return None
    x = u(j, n)
    if len(shape) >= 2:
        x = x * np.sqrt(24.0 / (n // shape[0]))
    elif name.endswith("running_var"):
        x = 1.0 + 0.5 * x
    elif name.endswith("weight"):
        x = 1.0 + 0.2 * x
    else:
        x = 0.2 * x
    return x.astype(np.float32).reshape(shape)


def formula_state_dict(model):
    sd = model.state_dict()
    out = {}
    for j, (name, t) in enumerate(sd.items()):
        v = formula_value(j, name, tuple(t.shape))
        out[name] = t.clone() if v is None else torch.from_numpy(v)
    return out


GRADS = ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
         "layer2.0.downsample.0.weight", "layer4.1.bn2.weight", "fc.weight", "fc.bias"]
AFTER = ["bn1.running_mean", "bn1.running_var", "layer4.1.bn2.running_var",
         "layer2.0.downsample.1.running_mean", "bn1.num_batches_tracked"]


def resnet_fixtures():
    model = ResNet18(3, 5)
    model.load_state_dict(formula_state_dict(model))
    x = torch.from_numpy(u(1000, 2 * 3 * 40 * 40).astype(np.float32).reshape(2, 3, 40, 40) * 4)
    r = torch.from_numpy(u(1001, 10).astype(np.float32).reshape(2, 5))
    save("resnet_x", x.numpy())
    save("resnet_r", r.numpy())
    model.eval()
    with torch.no_grad():
        save("resnet_eval_out", model(x).numpy())
    model.train()
    out = model(x)
    save("resnet_train_out", out.detach().numpy())
    (out * r).sum().backward()
    params = dict(model.named_parameters())
    for name in GRADS:
        save("resnet_grad_" + name, params[name].grad.numpy())
    sd = model.state_dict()
    for name in AFTER:
        save("resnet_after_" + name, sd[name].float().numpy())

    # in_channels=1, embedding only, conv1 summed over the 3 input channels
    m1 = ResNet18(1, None)
    sd3 = formula_state_dict(ResNet18(3, 5))
    sd1 = {k: v for k, v in sd3.items() if not k.startswith("fc.")}
    sd1["conv1.weight"] = sd3["conv1.weight"].sum(dim=1, keepdim=True)
    m1.load_state_dict(sd1)
    m1.eval()
    x1 = torch.from_numpy(u(1002, 2 * 40 * 40).astype(np.float32).reshape(2, 1, 40, 40) * 4)
    save("resnet1_x", x1.numpy())
    with torch.no_grad():
        save("resnet1_emb", m1(x1).numpy())


STEPS = 6
SHAPES = [(4, 3), (3,), (2, 2, 2)]
CASES = {
    "adam": ("adam", dict(lr=0.1)),
    "adam_wd_amsgrad": ("adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1,
                                     amsgrad=True)),
    "adamw": ("adamw", dict(lr=0.1)),
    "adamw_wd": ("adamw", dict(lr=0.05, weight_decay=0.3, amsgrad=True)),
    "sgd": ("sgd", dict(lr=0.1)),
    "sgd_momentum": ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd_nesterov": ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05)),
    "adam_steplr": ("adam", dict(lr=0.1)),   # with StepLR(step_size=2, gamma=0.5)
}


def optim_fixtures():
    init = (u(2000, 23) * 4).astype(np.float32)
    target = (u(2001, 23) * 2).astype(np.float32)
    save("optim_init", init)
    save("optim_target", target)
    for case, (kind, kw) in CASES.items():
        ps, off = [], 0
        for s in SHAPES:
            n = int(np.prod(s))
            ps.append(torch.tensor(init[off:off + n].reshape(s), requires_grad=True))
            off += n
        ts, off = [], 0
        for s in SHAPES:
            n = int(np.prod(s))
            ts.append(torch.tensor(target[off:off + n].reshape(s)))
            off += n
        opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "sgd": torch.optim.SGD}[kind](ps, foreach=False, **kw)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5) \
            if case.endswith("steplr") else None
        traj = []
        for _ in range(STEPS):
            for p, t in zip(ps, ts):
                p.grad = ((p.detach() - t) * 2)
            opt.step()
            if sched:
                sched.step()
            traj.append(np.concatenate([p.detach().numpy().ravel() for p in ps]))
        save("optim_" + case, np.stack(traj))


if __name__ == "__main__":
    resnet_fixtures()
    optim_fixtures()
    print("wrote", len(os.listdir(OUT)), "files to", os.path.normpath(OUT))
