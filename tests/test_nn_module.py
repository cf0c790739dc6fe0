"""Module mechanics: registration, naming, state dicts, modes, initialisation."""
import math

import numpy as np
import pytest

import disttrain as dt
from disttrain import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.register_buffer("count", np.zeros(2, np.int64))
        self.register_buffer("scratch", np.ones(3), persistent=False)

    def forward(self, x):
        return self.norm(self.fc(x)).relu()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, idx):
        h = self.embed(idx)
        for b in self.blocks:
            h = b(h)
        return self.head(h)


def test_named_parameters_are_dotted_and_in_registration_order():
    names = [n for n, _ in Net().named_parameters()]
    assert names == ["embed.weight",
                     "blocks.0.fc.weight", "blocks.0.fc.bias", "blocks.0.norm.weight", "blocks.0.norm.bias",
                     "blocks.1.fc.weight", "blocks.1.fc.bias", "blocks.1.norm.weight", "blocks.1.norm.bias",
                     "head.weight"]
    net = Net()
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert [n for n, _ in net.named_buffers()] == ["blocks.0.count", "blocks.0.scratch",
                                                    "blocks.1.count", "blocks.1.scratch"]
    assert [n for n, _ in net.named_children()] == ["embed", "blocks", "head"]
    assert [n for n, _ in net.named_modules()][:4] == ["", "embed", "blocks", "blocks.0"]
    assert len(list(net.modules())) == 1 + 1 + 1 + 2 * 3 + 1


def test_state_dict_keys_order_and_copies_match_pytorch_layout():
    net = Net()
    sd = net.state_dict()
    # PyTorch's order: each module's parameters, then its persistent buffers, then children.
    assert list(sd) == ["embed.weight",
                        "blocks.0.count", "blocks.0.fc.weight", "blocks.0.fc.bias",
                        "blocks.0.norm.weight", "blocks.0.norm.bias",
                        "blocks.1.count", "blocks.1.fc.weight", "blocks.1.fc.bias",
                        "blocks.1.norm.weight", "blocks.1.norm.bias", "head.weight"]
    assert sd["blocks.0.fc.weight"].shape == (4, 4) and sd["head.weight"].shape == (2, 4)
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    sd["head.weight"][...] = 123.0          # a copy: the model is untouched
    assert not np.any(net.head.weight.data == 123.0)


def test_sequential_names_children_by_position_like_pytorch():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 2 * 2, 10))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "4.weight", "4.bias"]
    assert model.state_dict()["0.weight"].shape == (4, 1, 3, 3)
    assert len(model) == 5 and isinstance(model[1], nn.ReLU) and model[-1] is model[4]
    assert list(model[3:].state_dict()) == ["4.weight", "4.bias"]    # slices keep the names
    with pytest.raises(IndexError, match="out of range"):
        model[5]
    out = model(dt.tensor(np.zeros((2, 1, 4, 4), np.float32)))
    assert out.shape == (2, 10)


def test_state_dict_round_trip_and_tensors_accepted():
    dt.manual_seed(0)
    a = Net()
    dt.manual_seed(1)
    b = Net()
    idx = np.array([[0, 3], [4, 1]])
    assert not np.allclose(a(idx).numpy(), b(idx).numpy())
    weight_array = b.head.weight.data
    sd = a.state_dict()
    sd["head.weight"] = dt.tensor(sd["head.weight"])     # Tensors are accepted too
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(a(idx).numpy(), b(idx).numpy())
    assert b.head.weight.data is weight_array        # loaded in place


def test_load_state_dict_reports_every_problem_by_name():
    net = Net()
    sd = net.state_dict()
    del sd["head.weight"]
    sd["blocks.1.fc.weight"] = np.zeros((5, 4))
    sd["extra.bias"] = np.zeros(3)
    before = net.embed.weight.data.copy()
    sd["embed.weight"] = before + 1
    with pytest.raises(nn.StateDictError) as err:
        net.load_state_dict(sd)
    msg = str(err.value)
    assert "missing keys: head.weight" in msg
    assert "unexpected keys: extra.bias" in msg
    assert "blocks.1.fc.weight: checkpoint shape (5, 4), model shape (4, 4)" in msg
    np.testing.assert_array_equal(net.embed.weight.data, before)   # nothing written on error

    # strict=False tolerates missing/unexpected keys, never a shape mismatch
    sd["blocks.1.fc.weight"] = np.zeros((4, 4))
    res = net.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["head.weight"] and res.unexpected_keys == ["extra.bias"]
    np.testing.assert_array_equal(net.embed.weight.data, before + 1)


def test_load_state_dict_casts_to_parameter_dtype():
    lin = nn.Linear(2, 2)
    lin.load_state_dict({"weight": np.eye(2), "bias": np.array([1, 2])})
    assert lin.weight.dtype == np.float32 and lin.bias.dtype == np.float32
    np.testing.assert_array_equal(lin.bias.data, [1.0, 2.0])


def test_train_eval_flags_and_dropout():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    assert model.training and model[1].training
    x = dt.tensor(np.ones((64, 8), np.float32))
    dt.manual_seed(0)
    out_train = model[1](x).numpy()
    assert set(np.unique(out_train)) <= {0.0, 2.0} and 0.3 < (out_train == 0).mean() < 0.7
    model.eval()
    assert not model.training and not model[1].training
    np.testing.assert_array_equal(model[1](x).numpy(), x.numpy())
    model.train()
    assert model[1].training


def test_zero_grad_apply_repr_and_attribute_rules():
    lin = nn.Linear(3, 2)
    lin(dt.tensor(np.ones((1, 3), np.float32))).sum().backward()
    g = lin.weight._grad
    lin.zero_grad(set_to_none=False)
    assert lin.weight._grad is g and not g.any()
    lin.zero_grad()
    assert lin.weight._grad is None and lin.bias.grad is None

    seen = []
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Tanh()))
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Tanh", "Sequential", "Sequential"]
    assert repr(model) == ("Sequential(\n  (0): Linear(in_features=2, out_features=2, bias=True)\n"
                           "  (1): Sequential(\n    (0): Tanh()\n  )\n)")
    with pytest.raises(TypeError, match="parameter 'weight'"):
        lin.weight = np.zeros((2, 3))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lin.nope

    class Early(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Early()


def test_shared_parameter_listed_once():
    a = nn.Linear(3, 3)
    model = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(model.parameters())) == 2
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_default_init_follows_pytorch_bounds_and_seed():
    dt.manual_seed(7)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w = lin.weight.data
    assert w.dtype == np.float32 and lin.bias.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound       # uniform(-b, b) std = b / sqrt(3)
    assert abs(w.mean()) < 0.01 * bound
    assert np.abs(lin.bias.data).max() <= bound

    conv = nn.Conv2d(3, 64, 5)
    cb = 1 / math.sqrt(3 * 5 * 5)
    assert np.abs(conv.weight.data).max() <= cb and np.abs(conv.weight.data).max() > 0.98 * cb
    assert np.abs(conv.bias.data).max() <= cb

    emb = nn.Embedding(1000, 50).weight.data
    assert abs(emb.mean()) < 0.02 and abs(emb.std() - 1) < 0.02
    ln = nn.LayerNorm((2, 3))
    assert np.all(ln.weight.data == 1) and np.all(ln.bias.data == 0) and ln.weight.shape == (2, 3)

    dt.manual_seed(7)
    np.testing.assert_array_equal(nn.Linear(400, 300).weight.data, w)    # same seed, same weights


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(1, 2, kernel_size=(3,))
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(1.5)
    with pytest.raises(TypeError, match="argument 1"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_double_casts_parameters_for_float64_work():
    model = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3)).double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    out = model(dt.tensor(np.ones((1, 2))))
    assert out.dtype == np.float64
