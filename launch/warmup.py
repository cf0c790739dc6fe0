"""Compile disttrain's common Numba kernels into the shared cache once, before ranks start.

Config jobs warm exactly their own kernels (a tiny step in `disttrain.training.job.preflight`);
a user script gets this generic warm-up: a small MLP and CNN step with SGD and Adam. A stamp
file per disttrain source state makes later launches skip it.
"""
import hashlib
import os


def _stamp_path():
    import disttrain
    root = os.path.dirname(disttrain.__file__)
    h = hashlib.sha256()
    for sub in ("kernels", "ops", "nn", "optim"):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, sub))):
            for name in sorted(files):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(dirpath, name))
                    h.update(f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return os.path.join(os.environ["NUMBA_CACHE_DIR"], f"dtrun-warm-{h.hexdigest()[:16]}")


def warm():
    try:
        stamp = _stamp_path()
        if os.path.exists(stamp):
            return
        import numpy as np
        import disttrain as dt
        from disttrain import nn, optim
        from disttrain.training import tasks
        rng = np.random.default_rng(0)
        for dtype in (np.float32,):
            mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 8, dtype=dtype), nn.ReLU(), nn.Linear(8, 3, dtype=dtype))
            cnn = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                nn.Linear(8, 3, dtype=dtype))
            x = dt.tensor(rng.standard_normal((4, 1, 4, 4)).astype(dtype))
            labels = dt.tensor(np.array([0, 1, 2, 0]))
            targets = dt.tensor(rng.standard_normal((4, 3)).astype(dtype))
            # the built-in tasks' losses: classification (cross-entropy) and regression (MSE)
            for model, name, task, y in ((mlp, "sgd", tasks.Classification(), labels),
                                         (cnn, "adam", tasks.Classification(), labels),
                                         (mlp, "adamw", tasks.Regression(), targets)):
                opt = optim.create(name, model.parameters(), lr=0.01)
                task.loss(model(x), y).backward()
                opt.step()
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        open(stamp, "w").close()
    except Exception:   # a warm-up problem must never stop a job; the ranks compile instead
        pass
