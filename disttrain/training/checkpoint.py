"""Checkpoints: one `.npz` per save (no pickles), written atomically, newest K kept.

Layout of `<run_dir>/checkpoints/step-00000120.npz`:
  model/<name>                  the model's state dict, parameters and buffers (dotted names as in PyTorch)
  optim/<path>                  every array of the optimizer's state dict
  meta                          a JSON string: format, model signature, step/epoch/position,
                                scheduler state, the optimizer state's non-array skeleton, ...
Saving refuses non-finite state (nothing is written, no older checkpoint is deleted), writes
`.step-...tmp-PID` beside the target, fsyncs it and renames it over, so a kill during a save
leaves every earlier checkpoint intact; temporary files left by a killed save are removed by the
next save or resume. `validate` checks a checkpoint against the job completely (every array's
name, shape, dtype and finiteness, every scalar) before a resumed run changes anything.
"""
import io
import json
import logging
import math
import os
import re

import numpy as np

from .._files import savez_atomic

FORMAT = "disttrain-checkpoint-1"
_NAME = re.compile(r"^step-(\d{8,})\.npz$")
_TEMP = re.compile(r"^\.step-\d{8,}\.npz\.tmp-\d+$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (corrupt, truncated, another model, another world size)."""


def path_for(directory, step):
    return os.path.join(directory, f"step-{step:08d}.npz")


def _listdir(directory):
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise CheckpointError(f"{directory} is not a directory (the run's checkpoints/ was replaced by a file); "
                              "move it away") from None
    except OSError as exc:
        raise CheckpointError(f"{directory}: cannot list it ({exc.strerror or exc})") from None


def list_checkpoints(directory):
    """[(step, path)] sorted by step."""
    found = [(int(m.group(1)), os.path.join(directory, n)) for n in _listdir(directory) if (m := _NAME.match(n))]
    return sorted(found)


def latest(directory):
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def remove_stale_temps(directory):
    """Delete `.step-*.npz.tmp-PID` files that a save killed mid-write left behind (only rank 0 of
    one job writes a run's checkpoints, so any such file found before a save is stale)."""
    removed = []
    for n in _listdir(directory):
        if _TEMP.match(n):
            try:
                os.unlink(os.path.join(directory, n))
                removed.append(n)
            except OSError:
                pass
    if removed:
        logging.getLogger("disttrain").warning(f"disttrain: removed {len(removed)} temporary checkpoint file(s) that "
                                               f"an interrupted save left in {directory}: {', '.join(removed[:3])}")
    return removed


# -- nested state <-> (arrays, JSON skeleton) -------------------------------------------------
def _flatten(obj, prefix, arrays):
    """Replace arrays (and numpy scalars, to keep their dtype) by {"__array__": key}."""
    if isinstance(obj, (np.ndarray, np.generic)):
        key = f"{prefix}"
        arrays[key] = np.asarray(obj)
        return {"__array__": key, "scalar": isinstance(obj, np.generic)}
    if hasattr(obj, "data") and isinstance(getattr(obj, "data"), np.ndarray):   # a Tensor
        return _flatten(obj.data, prefix, arrays)
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, f"{prefix}/k{i}", arrays), _flatten(v, f"{prefix}/{_safe(k)}", arrays)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {prefix}")


def _safe(k):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(k))


def _unflatten(obj, arrays):
    if isinstance(obj, dict):
        if "__array__" in obj:
            a = arrays[obj["__array__"]]
            return a[()] if obj.get("scalar") else a
        if "__dict__" in obj:
            return {_unflatten(k, arrays): _unflatten(v, arrays) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, arrays) for v in obj["__tuple__"])
        return {k: _unflatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def _np(value):
    return value if isinstance(value, np.ndarray) else np.asarray(value.data)   # a Tensor's array


def model_signature(module):
    return {name: [list(_np(v).shape), _np(v).dtype.str] for name, v in module.state_dict().items()}


# -- save / load ------------------------------------------------------------------------------
HOOK_PREFIX = "comm_hook/"      # arrays of the comm hook's state: comm_hook/rank<r>/<name>


def save(directory, step, module, optimizer, meta, keep_last=None, hook_arrays=None):
    """Write the checkpoint for `step` atomically; drop all but the newest `keep_last`.

    `hook_arrays`: the comm hook's state, {"rank<r>/<name>": array} of every rank, stored under
    ``comm_hook/`` (`read` hands them back as ``meta["comm_hook_arrays"]``).

    Refuses (NonFiniteError, nothing written, nothing deleted) when a parameter, buffer or optimizer
    state holds NaN/inf; an OS error (disk full, read-only, checkpoints/ not a directory) becomes a
    CheckpointError naming the file, with the earlier checkpoints left as they were."""
    from .nonfinite import check_state_finite
    arrays = {}
    for name, value in module.state_dict().items():
        arrays[f"model/{name}"] = _np(value)
    skeleton = _flatten(optimizer.state_dict(), "optim", arrays)
    for name, value in (hook_arrays or {}).items():
        arrays[HOOK_PREFIX + name] = np.asarray(value)
    check_state_finite(arrays, step)
    meta = dict(meta, format=FORMAT, step=int(step), optimizer=skeleton, model_signature=model_signature(module))
    arrays["meta"] = np.array(json.dumps(meta, allow_nan=False))
    target = path_for(directory, step)
    try:
        os.makedirs(directory, exist_ok=True)
        remove_stale_temps(directory)
        savez_atomic(target, arrays)      # a temporary file, fsynced and renamed
    except OSError as exc:
        raise CheckpointError(f"could not write checkpoint {target} ({exc.strerror or exc}); nothing was "
                              "written and the earlier checkpoints are intact") from None
    try:   # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    if keep_last:      # only now that the new (finite) checkpoint is on disk
        for _, old in list_checkpoints(directory)[:-keep_last]:
            if old == target:
                continue
            try:
                os.unlink(old)
            except OSError:
                pass
    return target


def read_bytes(path):
    """The file's bytes, or CheckpointError naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: no such file") from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: cannot read it ({exc.strerror or exc})") from None


def read(path, data=None):
    """(model arrays, optimizer state dict, meta) from a checkpoint, or CheckpointError.

    `data`: the file's bytes when they were read elsewhere (rank 0 reads, the others get them by
    broadcast); `path` then only names the file in messages."""
    if data is None:
        data = read_bytes(path)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:     # numpy/zipfile raise many types for damaged archives
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}); "
                              "delete it to resume from the one before") from None
    try:
        if "meta" not in arrays:
            raise ValueError("it has no 'meta' entry")
        raw = arrays.pop("meta")
        if raw.shape != () or raw.dtype.kind != "U":
            raise ValueError(f"its 'meta' entry is a {raw.dtype} array of shape {raw.shape}, not a JSON string")
        meta = json.loads(str(raw[()]), parse_constant=_no_constant)
        if not isinstance(meta, dict):
            raise ValueError(f"its metadata is a JSON {type(meta).__name__}, not an object")
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        optim_state = _unflatten(meta.pop("optimizer"), arrays)
        if not isinstance(optim_state, dict):
            raise ValueError("its optimizer state is not a table")
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        detail = f"missing array {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointError(f"checkpoint {path} is not a disttrain checkpoint or is damaged ({detail})") from None
    model = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    # in memory only (never written as meta): the comm hook's arrays, "rank<r>/<name>" -> array
    meta["comm_hook_arrays"] = {k[len(HOOK_PREFIX):]: v for k, v in arrays.items() if k.startswith(HOOK_PREFIX)}
    return model, optim_state, meta


def _no_constant(name):
    raise ValueError(f"its metadata holds a bare {name}")


def check_compatible(path, meta, module, world_size):
    """CheckpointError naming the first difference between the checkpoint and this job."""
    saved = meta.get("model_signature", {})
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint {path}: its model_signature is not a table")
    here = model_signature(module)
    missing = [n for n in here if n not in saved]
    unexpected = [n for n in saved if n not in here]
    shapes = [f"{n}: checkpoint {saved[n][0]} {saved[n][1]}, model {here[n][0]} {here[n][1]}"
              for n in here if n in saved and saved[n] != here[n]]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}")
        if shapes:
            parts.append("different shapes: " + "; ".join(shapes[:3]))
        raise CheckpointError(f"checkpoint {path} was written for a different model "
                              f"({meta.get('model_name', '?')}): " + ", ".join(parts))
    if meta.get("world_size") != world_size:
        raise CheckpointError(f"checkpoint {path} was written by a {meta.get('world_size')}-rank job; this job has "
                              f"{world_size} ranks (resume with -n {meta.get('world_size')}: the data order and "
                              "sampler position depend on the number of ranks)")


# -- complete validation against the job that wants to resume ---------------------------------
def _referenced(skeleton, out):
    """The array keys an optimizer skeleton points at."""
    if isinstance(skeleton, dict):
        if "__array__" in skeleton:
            out.add(skeleton["__array__"])
        for v in skeleton.values():
            _referenced(v, out)
    elif isinstance(skeleton, list):
        for v in skeleton:
            _referenced(v, out)
    return out


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v):
    return (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            and math.isfinite(float(v)))


def validate(path, loaded, module, optimizer, schedule, world_size, *, total_steps, steps_per_epoch,
             grad_accum_steps=1, seed=None, model_name=None, reference_optim_state=None, interval_len=4):
    """CheckpointError naming the first thing in checkpoint `path` that this job cannot resume from.

    `loaded` is `read(path)`'s result. Checked: the model's arrays (exact names, shapes, dtypes, finite
    values), the optimizer state (groups, parameter indices, state names, shapes, dtypes, finite values;
    the exact state layout when `reference_optim_state`, a stepped optimizer's state_dict, is given), the
    scalars (step within 0..total_steps, epoch and position consistent with it, every rank's interval
    sums, seed, world size), and the schedule (same configuration: a resumed run may not move its horizon).
    Nothing is loaded here."""
    arrays, optim_state, meta = loaded

    def fail(problem):
        raise CheckpointError(f"checkpoint {path}: {problem}")

    # the model: signature first (names the model), then the arrays themselves
    check_compatible(path, meta, module, world_size)
    here = {k: _np(v) for k, v in module.state_dict().items()}
    for name, want in here.items():
        if name not in arrays:
            fail(f"array model/{name} is missing (the model has {name} {want.shape} {want.dtype})")
        got = arrays[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            fail(f"array model/{name} is {got.dtype} {got.shape}; the model needs {want.dtype} {want.shape}")
        if got.dtype.kind in "fc" and not np.isfinite(got).all():
            fail(f"array model/{name} holds non-finite values (NaN/inf); delete this checkpoint to resume "
                 "from the one before")
    extra = sorted(set(arrays) - set(here))
    if extra:
        fail(f"unexpected model array(s) {', '.join('model/' + n for n in extra[:5])}")

    # scalars
    step = meta.get("step")
    if not _is_int(step) or step < 0:
        fail(f"step {step!r} is not a step count (an integer >= 0)")
    if step > total_steps:
        fail(f"it is at step {step} but this job has only {total_steps} steps (train.epochs/max_steps); "
             "nothing is left to resume")
    named = _NAME.match(os.path.basename(os.fspath(path)))
    if named and int(named.group(1)) != step:
        fail(f"its file name says step {int(named.group(1))} but it holds step {step}")
    spe = max(1, int(steps_per_epoch))
    for key, want in (("epoch", step // spe), ("position_in_epoch", (step % spe) * grad_accum_steps)):
        if key in meta and meta[key] != want:
            fail(f"{key} {meta[key]!r} does not match step {step} ({want} expected with {spe} steps per epoch)")
    if seed is not None and "seed" in meta and meta["seed"] != seed:
        fail(f"it was written with [train] seed {meta['seed']!r}; this job has seed {seed}")
    if model_name is not None and "model_name" in meta and meta["model_name"] != model_name:
        fail(f"it was written for model {meta['model_name']!r}; this job trains {model_name!r}")
    interval = meta.get("interval")
    if not isinstance(interval, list) or len(interval) != world_size:
        fail(f"'interval' must hold the logging sums of each of the {world_size} ranks, got {interval!r:.80}")
    for r, row in enumerate(interval):
        # [loss_sum, batches, the task's stats...] (classification: correct, samples)
        if (not isinstance(row, list) or len(row) != interval_len or not all(_is_num(v) for v in row)
                or not (float(row[1]).is_integer() and row[1] >= 0)):
            fail(f"'interval' of rank {r} must be [loss_sum, batches, {interval_len - 2} task sums] (finite "
                 f"numbers, counts >= 0), got {row!r:.80}")
    for key in (k for k in meta if k.startswith("best_val_")):
        v = meta.get(key)
        if v is not None and not _is_num(v):
            fail(f"{key} {v!r} is not a number")
        if key == "best_val_accuracy" and v is not None and not 0 <= v <= 1:
            fail(f"{key} {v!r} is not an accuracy in [0, 1]")
    last_eval = meta.get("last_eval")
    if last_eval is not None and not (isinstance(last_eval, dict) and _is_int(last_eval.get("step"))
                                      and all(_is_num(v) or v is None
                                              for k, v in last_eval.items() if k.startswith("val_"))):
        fail(f"last_eval {last_eval!r:.80} is not an evaluation record")
    wall = meta.get("wall_time_s", 0.0)
    if not (_is_num(wall) and wall >= 0):
        fail(f"wall_time_s {wall!r} is not a duration")
    skipped = meta.get("skipped_steps", 0)
    if not (_is_int(skipped) and 0 <= skipped <= step):
        fail(f"skipped_steps {skipped!r} is not a count of steps <= {step}")

    _validate_optimizer(path, optim_state, optimizer, reference_optim_state, fail)
    _validate_schedule(path, meta.get("schedule"), schedule, step, optim_state, fail)


def _validate_optimizer(path, state, optimizer, reference, fail):
    groups, saved_state = state.get("param_groups"), state.get("state")
    if not isinstance(groups, list) or not isinstance(saved_state, dict):
        fail("the optimizer state needs 'param_groups' (a list) and 'state' (a table)")
    if len(groups) != len(optimizer.param_groups):
        fail(f"the optimizer state has {len(groups)} parameter group(s); this optimizer has "
             f"{len(optimizer.param_groups)}")
    params, next_index = {}, 0
    for gi, (saved, group) in enumerate(zip(groups, optimizer.param_groups)):
        if not isinstance(saved, dict) or "params" not in saved:
            fail(f"optimizer parameter group {gi} is not a group")
        want = list(range(next_index, next_index + len(group["params"])))
        got = saved["params"]
        if not isinstance(got, (list, tuple)) or [int(i) if _is_int(i) else i for i in got] != want:
            fail(f"optimizer parameter group {gi} lists parameters {got!r:.60}; this optimizer has {want!r:.60}")
        params.update(zip(want, group["params"]))
        next_index += len(want)
        hp_here = {k for k in group if k != "params"}
        hp_saved = {k for k in saved if k != "params"}
        if hp_here != hp_saved:
            diff = sorted(hp_here ^ hp_saved)
            fail(f"optimizer parameter group {gi} has hyperparameters {sorted(hp_saved)}; this optimizer "
                 f"({optimizer.rule.name}) has {sorted(hp_here)} (differ in {', '.join(diff)}): it was written "
                 "by another optimizer")
        for k, v in saved.items():
            values = v if isinstance(v, (list, tuple)) and k != "params" else [v]
            if k != "params" and not all(isinstance(x, (bool, str)) or _is_num(x) or x is None for x in values):
                fail(f"optimizer hyperparameter {k} of group {gi} is {v!r:.60} (not a finite number)")
        try:
            optimizer.rule.validate({**{k: v for k, v in group.items() if k != "params"},
                                     **{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in saved.items() if k != "params"}})
        except (ValueError, TypeError, KeyError) as exc:
            fail(f"optimizer parameter group {gi}: {exc}")
    ref_state = reference.get("state") if reference else None
    rule = optimizer.rule
    if ref_state is not None:
        have = {int(k) for k in saved_state if _is_int(k) or (isinstance(k, str) and k.isdigit())}
        lost = sorted(set(ref_state) - have)
        if lost:
            fail(f"the optimizer state of parameter(s) {', '.join(map(str, lost[:5]))} is missing")
    for key, entry in saved_state.items():
        index = int(key) if _is_int(key) or (isinstance(key, str) and key.isdigit()) else None
        if index not in params:
            fail(f"optimizer state for parameter index {key!r}, which this optimizer does not have")
        p = params[index]
        theta = _np(p)
        if not isinstance(entry, dict):
            fail(f"optimizer state of parameter {index} is not a table")
        names = set(entry)
        if ref_state is not None and index in ref_state:      # the exact layout a real step produced
            required = allowed = set(ref_state[index])
        else:                                                  # what the rule creates, plus what it may add
            required = set(_initial_state(rule, theta, _hp_of(optimizer, p)))
            allowed = required | set(rule.state_like_param)
        missing, unexpected = sorted(required - names), sorted(names - allowed)
        if missing or unexpected:
            fail(f"optimizer state of parameter {index} {tuple(theta.shape)}: "
                 + ", ".join(x for x in (missing and f"missing {', '.join(missing)}",
                                         unexpected and f"unexpected {', '.join(unexpected)}") if x)
                 + f" (written by another optimizer than {rule.name}?)")
        for name, value in entry.items():
            ref = ref_state[index].get(name) if ref_state is not None and index in ref_state else None
            if isinstance(value, np.ndarray) and value.ndim > 0:
                if name in rule.state_like_param or (ref is not None and np.ndim(ref) > 0):
                    want_shape = tuple(np.shape(ref)) if ref is not None else theta.shape
                    want_dtype = np.asarray(ref).dtype if ref is not None else theta.dtype
                    if value.shape != want_shape or value.dtype != want_dtype:
                        fail(f"optimizer state {name} of parameter {index} is {value.dtype} {value.shape}; "
                             f"it must be {want_dtype} {want_shape}")
                if value.dtype.kind not in "fiub":
                    fail(f"optimizer state {name} of parameter {index} has dtype {value.dtype}")
                if value.dtype.kind in "fc" and not np.isfinite(value).all():
                    fail(f"optimizer state {name} of parameter {index} holds non-finite values (NaN/inf)")
            else:
                v = value.item() if isinstance(value, np.ndarray) else value
                if not (v is None or isinstance(v, bool) or _is_num(v)):
                    fail(f"optimizer state {name} of parameter {index} is {v!r:.60}, not a finite number")
                if ref is not None and np.ndim(ref) == 0 and _is_int(ref) and not _is_int(v):
                    fail(f"optimizer state {name} of parameter {index} is {v!r}, not an integer")
                if ref is not None and np.ndim(ref) > 0:
                    fail(f"optimizer state {name} of parameter {index} is a scalar; it must be an array "
                         f"{tuple(np.shape(ref))}")
                if _is_int(v) and v < 0:
                    fail(f"optimizer state {name} of parameter {index} is {v} (< 0)")


def _initial_state(rule, theta, hp):
    try:
        return rule.init_state(np.zeros((0,), theta.dtype), hp) or {}
    except Exception:          # a user rule that cannot build state for an empty array: no requirement
        return {}


def _hp_of(optimizer, p):
    for group in optimizer.param_groups:
        if any(q is p for q in group["params"]):
            return {k: v for k, v in group.items() if k != "params"}
    return {}


def _schedule_config(state):
    if not isinstance(state, dict):
        return state
    return {k: (_schedule_config(v) if k == "then" else v) for k, v in state.items()
            if k not in ("last_epoch", "base_lrs")}


def _validate_schedule(path, saved, schedule, step, optim_state, fail):
    if schedule is None:
        if saved is not None:
            fail("it holds a learning-rate schedule; this job has none ([schedule] name = \"constant\", no warm-up)")
        return
    here = schedule.state_dict()
    if not isinstance(saved, dict):
        fail(f"it holds no state for this job's learning-rate schedule ({type(schedule).__name__})")
    want_cfg, got_cfg = _schedule_config(json.loads(json.dumps(here))), _schedule_config(saved)
    if want_cfg != got_cfg:
        old_lr = None
        try:
            old_lr = float(optim_state["param_groups"][0]["lr"])
        except (KeyError, IndexError, TypeError, ValueError):
            pass
        new_lr = schedule.lr_at(step)[0]
        jump = (f"; the learning rate would jump from {old_lr:.4g} to {new_lr:.4g} at step {step}"
                if old_lr is not None and not math.isclose(old_lr, new_lr, rel_tol=1e-9) else "")
        fail(f"its learning-rate schedule was fixed when the run started ({_describe(got_cfg)}); this resume "
             f"would make it {_describe(want_cfg)}{jump}. A cosine schedule with [schedule] t_max = 0 spans all "
             "the run's steps, so changing [train] epochs or max_steps moves its horizon: resume with the "
             "run's own epochs/max_steps (or start a new run with the longer horizon)")
    ok = (_is_int(saved.get("last_epoch")) and saved["last_epoch"] == step
          and isinstance(saved.get("base_lrs"), list) and all(_is_num(v) for v in saved["base_lrs"]))
    if not ok:
        fail(f"its schedule state (last_epoch {saved.get('last_epoch')!r}, base_lrs {saved.get('base_lrs')!r:.40}) "
             f"does not match step {step}")


def _describe(cfg):
    if not isinstance(cfg, dict):
        return repr(cfg)
    parts = [f"{k} {v}" for k, v in cfg.items() if k != "then"]
    if isinstance(cfg.get("then"), dict):
        parts.append("then " + _describe(cfg["then"]))
    return ", ".join(parts)
