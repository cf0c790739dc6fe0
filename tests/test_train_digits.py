"""Library mode end to end: an MLP trained on the shipped digits reaches >= 95% test accuracy."""
import numpy as np
import pytest

import disttrain as dt
from disttrain import data, nn, optim


def accuracy(model, X, y):
    model.eval()
    with dt.no_grad():
        return float((model(dt.tensor(X)).argmax(axis=1).numpy() == y).mean())


@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.Adam(ps, lr=3e-3),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
], ids=["adam", "sgd-nesterov"])
def test_mlp_reaches_95_percent_on_digits(make_opt):
    X, y = data.load_digits()
    X_train, y_train, X_test, y_test = data.train_val_split(X, y, val_fraction=0.25, seed=0)
    dt.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    loader = data.DataLoader(data.ArrayDataset(X_train, y_train), batch_size=32, shuffle=True, seed=0)
    opt = make_opt(model.parameters())
    sched = optim.CosineAnnealingLR(opt, T_max=30)
    loss_fn = nn.CrossEntropyLoss()
    first_epoch_loss = None
    for epoch in range(30):
        model.train()
        losses = []
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        first_epoch_loss = first_epoch_loss or np.mean(losses)
    assert np.mean(losses) < 0.1 * first_epoch_loss
    assert accuracy(model, X_train, y_train) > 0.99
    assert accuracy(model, X_test, y_test) >= 0.95
