"""Fuzz test (issue 9): hundreds of malformed configs and damaged checkpoints, generated from fixed seeds
(hypothesis with derandomize=True: the same cases on every run). Each one must get exit status non-zero
(or, for mutations that may happen to stay valid, a clean success), no traceback, one paragraph naming
the file (and the key), nothing written, and every earlier checkpoint byte-identical.

Most cases run in this process (`dtrun check` through click's CliRunner, which runs every check
`dtrun run` runs before launching; checkpoints through `check_job(..., resume=True)`), a handful
end to end through `dtrun -n 2`. `test_fuzz_case_counts` asserts how many cases each category ran.
"""
import collections
import json
import math
import os
try:
    import tomllib
except ModuleNotFoundError:     # Python 3.10
    import tomli as tomllib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from disttrain.training.config import SCHEMA, ConfigError, _toml_value
from disttrain.training.job import check_job
from dtrun_helpers import dtrun, write
from harden_helpers import cli, load_checkpoint_raw, make_base_run, snapshot, write_checkpoint_raw

COUNTS = collections.Counter()      # (kind, category) -> cases run
# DISTTRAIN_FUZZ_EXPLORE=N (not in CI): random seeds and N times the cases, to hunt for new failures.
EXPLORE = int(os.environ.get("DISTTRAIN_FUZZ_EXPLORE", "0") or 0)
FUZZ = settings(derandomize=not EXPLORE, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.filter_too_much])


def examples(n):
    return n * max(1, EXPLORE)

BASE = {
    "job": {"name": "fuzz"},
    "model": {"name": "mlp", "hidden": [8], "activation": "relu", "dropout": 0.0},
    "data": {"source": "digits", "val_fraction": 0.2, "max_train_samples": 256, "num_classes": 0},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "schedule": {"name": "cosine", "warmup_steps": 2, "t_max": 0, "min_lr": 0.0},
    "train": {"epochs": 1, "batch_size": 32, "seed": 0, "max_steps": 0, "grad_accum_steps": 1},
    "distributed": {"bucket_cap_mb": 25.0, "comm_hook": "none", "stall_timeout": 60.0, "stall_abort": True},
    "checkpoint": {"interval": 0, "keep_last": 2, "enabled": True},
    "logging": {"log_interval": 10, "progress": "plain"},
}
EXTRA_KEYS = {("model", "hidden"): "list[int]", ("model", "activation"): "str", ("model", "dropout"): "float",
              ("optimizer", "lr"): "float", ("optimizer", "momentum"): "float"}


def _key_types():
    types = dict(EXTRA_KEYS)
    for section, keys in SCHEMA.items():
        for k in keys:
            if k.name in BASE.get(section, {}):
                types[(section, k.name)] = k
    return types


KEYS = _key_types()
KEY_LIST = sorted(KEYS)


def _type_of(section, key):
    k = KEYS[(section, key)]
    return k if isinstance(k, str) else k.type


def render(cfg):
    lines = []
    for section, table in cfg.items():
        if not isinstance(table, dict):
            lines.insert(0, f"{section} = {table}")      # pre-rendered scalars go to the top level
            continue
        lines.append(f"[{section}]")
        for key, value in table.items():
            lines.append(f"{key} = {value if isinstance(value, Raw) else _toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


class Raw(str):
    """A value already in TOML syntax."""


def base_cfg():
    return json.loads(json.dumps(BASE))


# -- the harness --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    cwd = root / "cwd"
    cwd.mkdir()
    return root, cwd


def check_config(work, category, data, *extra, must_fail=True, key=None):
    """Run `dtrun check` on config bytes `data` (plus CLI args) in an empty directory; assert the contract."""
    root, cwd = work
    path = root / "fuzz.toml"
    path.write_bytes(data)
    rc, out, exc = cli("check", str(path), *extra, cwd=cwd)
    COUNTS[("config", category)] += 1
    shown = data[:300]
    assert exc is None or isinstance(exc, SystemExit), f"{category}: {exc!r} for {shown!r} {extra}"
    assert "Traceback" not in out, f"{category}: {out} for {shown!r}"
    assert os.listdir(cwd) == [], f"{category}: wrote {os.listdir(cwd)} for {shown!r}"
    if must_fail:
        assert rc != 0, f"{category}: accepted {shown!r} {extra}"
    if rc != 0:
        assert out.startswith("Error: ") and out.count("\n") == 1, f"{category}: not one paragraph: {out!r}"
        assert "fuzz.toml" in out or "--set" in out or "--unset" in out, f"{category}: names no file: {out}"
        if key is not None:
            assert key in out, f"{category}: does not name {key}: {out}"
    return rc, out


# -- configs ---------------------------------------------------------------------------------------
WRONG = {
    "int": st.one_of(st.text(max_size=5).map(lambda s: _toml_value(s)), st.booleans().map(_toml_value),
                     st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
                     .map(repr), st.just("[1]"), st.just("{a = 1}")),
    "float": st.one_of(st.text(max_size=5).map(lambda s: _toml_value(s)), st.booleans().map(_toml_value),
                       st.just("[1.0]"), st.just("{a = 1}")),
    "bool": st.one_of(st.integers(-3, 3).map(str), st.text(max_size=5).map(lambda s: _toml_value(s)),
                      st.just("[true]"), st.just("1.5")),
    "str": st.one_of(st.integers().map(str), st.booleans().map(_toml_value), st.just("['a']"), st.just("{a = 1}"),
                     st.just("2.5")),
    "list[int]": st.one_of(st.text(max_size=5).map(lambda s: _toml_value(s)), st.integers(1, 9).map(str),
                           st.just("[1.5]"), st.just("['a']"), st.just("[true]"), st.just("{a = 1}")),
}


@settings(FUZZ, max_examples=examples(70))
@given(st.data())
def test_fuzz_config_wrong_types(work, data):
    section, key = data.draw(st.sampled_from(KEY_LIST))
    value = data.draw(WRONG[_type_of(section, key)])
    cfg = base_cfg()
    cfg[section][key] = Raw(value)
    check_config(work, "wrong type", render(cfg).encode(), key=f"[{section}] {key}")


def _out_of_range(section, key):
    k = KEYS[(section, key)]
    if isinstance(k, str):       # model/optimizer keys of the base config
        return {"hidden": st.lists(st.integers(-10, 0), min_size=1, max_size=3).map(_toml_value),
                "activation": st.text(max_size=8).filter(lambda s: s not in ("relu", "tanh", "gelu", "sigmoid"))
                .map(_toml_value),
                "dropout": st.one_of(st.floats(1.0, 1e6), st.floats(-1e6, -1e-9)).map(repr),
                "lr": st.floats(-1e6, -1e-9).map(repr),
                "momentum": st.floats(-1e6, -1e-9).map(repr)}[key]
    if k.choices:
        return st.text(max_size=10).filter(lambda s: s not in k.choices).map(_toml_value)
    options = []
    if k.low is not None:
        below = st.integers(-10 ** 6, int(math.ceil(k.low)) - (0 if k.low_open else 1)) if k.type == "int" else \
            st.floats(-1e9, k.low, exclude_max=not k.low_open)
        options.append(below.map(repr))
    if k.high is not None:
        options.append(st.floats(k.high, 1e9, exclude_min=not k.high_open).map(repr))
    return st.one_of(options) if options else None


RANGED = [sk for sk in KEY_LIST if _out_of_range(*sk) is not None]


@settings(FUZZ, max_examples=examples(60))
@given(st.data())
def test_fuzz_config_out_of_range(work, data):
    section, key = data.draw(st.sampled_from(RANGED))
    cfg = base_cfg()
    cfg[section][key] = Raw(data.draw(_out_of_range(section, key)))
    check_config(work, "out of range", render(cfg).encode(), key=f"[{section}] {key}")


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True)


@settings(FUZZ, max_examples=examples(40))
@given(st.data())
def test_fuzz_config_unknown_keys(work, data):
    cfg = base_cfg()
    if data.draw(st.booleans()):
        section = data.draw(st.sampled_from(sorted(BASE)))
        known = {k.name for k in SCHEMA[section]} | {k for s, k in KEYS if s == section} | set(BASE[section])
        key = data.draw(NAMES.filter(lambda n: n not in known and n not in ("lr", "momentum", "dampening",
                                                                            "nesterov", "weight_decay")))
        cfg[section][key] = 1
        expect = f"[{section}] {key}"
    else:
        section = data.draw(NAMES.filter(lambda n: n not in SCHEMA))
        cfg[section] = {"x": 1}
        expect = f"[{section}]"
    check_config(work, "unknown key", render(cfg).encode(), key=expect)


def _not_utf8(b):
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


@settings(FUZZ, max_examples=examples(40))
@given(st.data())
def test_fuzz_config_encodings(work, data):
    kind = data.draw(st.sampled_from(["latin-1", "utf-16", "binary", "spliced"]))
    cfg = base_cfg()
    # Latin-1 letters >= 0xC0: never UTF-8 continuation bytes, so their Latin-1 encoding is never UTF-8
    text = data.draw(st.text(alphabet="éüßçñøåÀ", min_size=1, max_size=5))
    cfg["job"]["name"] = "job" + text
    body = render(cfg)
    if kind == "latin-1":
        raw = body.encode("latin-1")
    elif kind == "utf-16":
        raw = body.encode("utf-16")
    elif kind == "binary":
        raw = data.draw(st.binary(min_size=1, max_size=400).filter(_not_utf8))
    else:
        raw = body.encode()
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + data.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80\x80", b"\xed\xa0\x80"])) \
            + raw[at:]
    assert _not_utf8(raw)
    check_config(work, "encoding", raw, key="not UTF-8 text")


def _invalid_toml(text):
    try:
        tomllib.loads(text)
        return False
    except (tomllib.TOMLDecodeError, RecursionError):
        return True


@settings(FUZZ, max_examples=examples(60))
@given(st.data())
def test_fuzz_config_toml_syntax(work, data):
    body = render(base_cfg())
    lines = body.splitlines()
    kind = data.draw(st.sampled_from(["duplicate table", "duplicate key", "unterminated string", "no value",
                                      "open bracket", "garbage line", "random insert", "truncate", "deep nesting"]))
    i = data.draw(st.integers(0, len(lines) - 1))
    must_fail = True
    if kind == "duplicate table":
        section = data.draw(st.sampled_from(sorted(BASE)))
        body += f"\n[{section}]\n"
    elif kind == "duplicate key":
        j = next(n for n in range(i, len(lines) + i) if "=" in lines[n % len(lines)]) % len(lines)
        lines.insert(j, lines[j])
        body = "\n".join(lines)
    elif kind == "unterminated string":
        body = body.replace('name = "fuzz"', 'name = "fuz' + data.draw(st.text(alphabet="abc ", max_size=4)))
    elif kind == "no value":
        body += "\nbroken =\n"
    elif kind == "open bracket":
        body += "\n[" + data.draw(NAMES) + "\n"
    elif kind == "garbage line":
        garbage = data.draw(st.text(alphabet="[]{}=\"',.#\\ abc\t", min_size=1, max_size=12).filter(
            lambda g: _invalid_toml(body + "\n" + g + "\n")))
        body += "\n" + garbage + "\n"
    elif kind == "deep nesting":
        depth = data.draw(st.integers(200, 3000))
        body = body.replace("hidden = [8]", "hidden = " + "[" * depth + "]" * depth)
    else:                          # may stay valid TOML (and even a valid config): either outcome is fine
        must_fail = False
        raw = body
        if kind == "random insert":
            at = data.draw(st.integers(0, len(raw)))
            body = raw[:at] + data.draw(st.sampled_from(list("[]{}=\"',.#\\\n"))) + raw[at:]
        else:
            body = raw[:data.draw(st.integers(0, len(raw)))]
    if must_fail and kind != "deep nesting":
        assert _invalid_toml(body), kind
    check_config(work, "TOML syntax", body.encode(), must_fail=must_fail)


NUMBERS = ["nan", "+nan", "-nan", "inf", "+inf", "-inf", "1e400", "-1e400", str(2 ** 63), str(-2 ** 63 - 1),
           str(10 ** 30), "1e308", str(2 ** 62), "0", "-0.0", "1e-320"]


@settings(FUZZ, max_examples=examples(60))
@given(st.data())
def test_fuzz_config_numbers(work, data):
    numeric = [sk for sk in KEY_LIST if _type_of(*sk) in ("int", "float", "list[int]")]
    section, key = data.draw(st.sampled_from(numeric))
    text = data.draw(st.sampled_from(NUMBERS))
    t = _type_of(section, key)
    value = float(text) if any(c in text for c in "e.n") else int(text)
    must_fail = (not math.isfinite(value)) or (t != "float" and (isinstance(value, float) or abs(value) >= 2 ** 63))
    cfg = base_cfg()
    cfg[section][key] = Raw(f"[{text}]" if t == "list[int]" else text)
    check_config(work, "huge/NaN/inf numbers", render(cfg).encode(), must_fail=must_fail,
                 key=f"[{section}] {key}" if must_fail else None)


@settings(FUZZ, max_examples=examples(25))
@given(st.data())
def test_fuzz_config_structure(work, data):
    cfg = base_cfg()
    kind = data.draw(st.sampled_from(["section is a value", "array of tables", "nested table", "top-level key"]))
    section = data.draw(st.sampled_from(sorted(BASE)))
    body = render(cfg)
    if kind == "section is a value":
        del cfg[section]
        cfg[section] = data.draw(st.sampled_from(["3", "'x'", "[1, 2]", "true"]))
        body = render(cfg)
    elif kind == "array of tables":
        body += f"\n[[{section}]]\nx = 1\n" if section not in BASE else f"\n[[extra_{section}]]\nx = 1\n"
    elif kind == "nested table":
        body += f"\n[{section}.{data.draw(NAMES)}]\nx = 1\n"
    else:
        body = f"{data.draw(NAMES)} = 1\n" + body
    check_config(work, "structure", body.encode())


@settings(FUZZ, max_examples=examples(60))
@given(st.data())
def test_fuzz_set_and_unset(work, data):
    body = render(base_cfg()).encode()
    kind = data.draw(st.sampled_from(["set value", "set malformed", "unset missing", "unset present"]))
    section, key = data.draw(st.sampled_from(KEY_LIST))
    must_fail = kind in ("set malformed", "unset missing")
    if kind == "set value":
        value = data.draw(st.one_of(st.text(max_size=12), st.sampled_from(NUMBERS), st.integers().map(str)))
        extra = ("--set", f"{section}.{key}={value}")
    elif kind == "set malformed":
        extra = ("--set", data.draw(st.sampled_from([f"{section}{key}=1", f"{section}.{key}.x=1", f"={key}",
                                                    f"{section}.{key}", ".=1", f"{section}.=2"])))
    elif kind == "unset missing":
        missing = data.draw(NAMES.filter(lambda n: n not in BASE[section]))
        extra = ("--unset", f"{section}.{missing}")
    else:
        extra = ("--unset", f"{section}.{key}")
    rc, out = check_config(work, "--set/--unset", body, *extra, must_fail=must_fail)
    if rc != 0 and kind != "set malformed":
        assert f"[{section}]" in out or "is not a TOML value" in out, out


# -- checkpoints --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    cfg, run = make_base_run(tmp_path_factory.mktemp("fuzz-run"))
    from disttrain.training import checkpoint as ckpt
    latest = ckpt.latest(os.path.join(run, "checkpoints"))
    with open(latest, "rb") as f:
        original = f.read()
    return _Run((cfg, run, latest, original))


class _Run(tuple):
    """(config, run dir, newest checkpoint, its bytes), shown briefly in hypothesis' reports."""

    def __repr__(self):
        return f"<run {self[1]}>"


def check_checkpoint(resumable, category, raw, must_fail=True, same_if_accepted=True):
    """Put `raw` in place of the newest checkpoint, ask `check_job(resume=True)`, assert the contract:
    refused cleanly, or (where the damage may be harmless) accepted only if its content is unchanged
    (`same_if_accepted`) or still a consistent checkpoint (a metadata field set to another valid value)."""
    cfg, run, latest, original = resumable
    with open(latest, "wb") as f:
        f.write(raw)
    before = snapshot(run)
    COUNTS[("checkpoint", category)] += 1
    try:
        try:
            check_job(cfg, run_dir=run, resume=True)
            accepted = True
        except ConfigError as exc:
            accepted, msg = False, str(exc)
        assert snapshot(run) == before, f"{category}: the run directory changed"
        if accepted:
            assert not must_fail, f"{category}: a damaged checkpoint was accepted"
            if same_if_accepted:
                assert _same_content(raw, original), f"{category}: accepted a checkpoint whose content changed"
        else:
            assert os.path.basename(latest) in msg and "\n" not in msg and msg.endswith("Nothing was started."), msg
    finally:
        with open(latest, "wb") as f:
            f.write(original)


def _same_content(a, b):
    import io
    za, zb = np.load(io.BytesIO(a)), np.load(io.BytesIO(b))
    return za.files == zb.files and all(za[k].dtype == zb[k].dtype and np.array_equal(za[k], zb[k]) for k in za.files)


def _mutated(resumable, mutate):
    import io
    cfg, run, latest, original = resumable
    arrays, meta = load_checkpoint_raw(io.BytesIO(original))
    out = mutate(arrays, meta)
    arrays, meta = out if out is not None else (arrays, meta)
    buf = io.BytesIO()
    if isinstance(meta, (bytes, str)):
        write_checkpoint_raw(buf, arrays, None, meta_text=meta)
    else:
        write_checkpoint_raw(buf, arrays, meta)
    return buf.getvalue()


@settings(FUZZ, max_examples=examples(40))
@given(st.data())
def test_fuzz_checkpoint_truncated(resumable, data):
    original = resumable[3]
    cut = data.draw(st.integers(0, len(original) - 1))
    check_checkpoint(resumable, "truncated", original[:cut])


@settings(FUZZ, max_examples=examples(40))
@given(st.data())
def test_fuzz_checkpoint_flipped_bytes(resumable, data):
    raw = bytearray(resumable[3])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    check_checkpoint(resumable, "flipped bytes", bytes(raw), must_fail=False)    # a flip may hit unused bytes


ARRAY_KINDS = ["remove", "rename", "reshape", "retype", "non-finite", "pickled object array"]


@settings(FUZZ, max_examples=examples(110))
@given(st.data())
def test_fuzz_checkpoint_arrays(resumable, data):
    kind = data.draw(st.sampled_from(ARRAY_KINDS))
    names = sorted(load_checkpoint_raw(__import__("io").BytesIO(resumable[3]))[0])
    name = data.draw(st.sampled_from(names))

    def mutate(a, m):
        x = a[name]
        if kind == "remove":
            del a[name]
        elif kind == "rename":
            a[name + data.draw(st.sampled_from(["_", "x", "/0", ".old"]))] = a.pop(name)
        elif kind == "reshape":
            a[name] = x.reshape((1,) + x.shape) if data.draw(st.booleans()) or x.ndim < 2 else x.T.copy()
            if a[name].shape == x.shape:          # a square matrix: transpose keeps the shape
                a[name] = x.reshape(-1)
        elif kind == "retype":
            dtype = data.draw(st.sampled_from(["float64", "float16", "int64", "int32", "bool", "complex64", "uint8"]))
            a[name] = x.astype(dtype)
        elif kind == "non-finite":
            y = x.copy()
            y.flat[data.draw(st.integers(0, y.size - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            a[name] = y
        else:
            a[name] = np.array([{"x": 1}, None], dtype=object)
    if kind == "pickled object array":
        import io
        arrays, meta = load_checkpoint_raw(io.BytesIO(resumable[3]))
        arrays[name] = np.array([{"x": 1}, None], dtype=object)
        arrays["meta"] = np.array(json.dumps(meta))
        buf = io.BytesIO()
        np.savez(buf, **arrays)            # savez pickles object arrays; loading must never unpickle
        raw = buf.getvalue()
    else:
        raw = _mutated(resumable, mutate)
    check_checkpoint(resumable, f"array: {kind}", raw)


JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                 st.text(max_size=8)),
                       lambda inner: st.one_of(st.lists(inner, max_size=4),
                                               st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                       max_leaves=8)
REQUIRED_META = ["step", "world_size", "format", "optimizer", "model_signature", "interval", "schedule"]


@settings(FUZZ, max_examples=examples(90))
@given(st.data())
def test_fuzz_checkpoint_metadata(resumable, data):
    kind = data.draw(st.sampled_from(["field", "step", "remove required", "text", "world size"]))
    must_fail = True

    def mutate(a, m):
        nonlocal must_fail
        if kind == "field":
            key = data.draw(st.sampled_from(sorted(m)))
            m[key] = data.draw(JSONISH)
            must_fail = False             # e.g. a new best_val_accuracy of 0.5 is still a valid checkpoint
        elif kind == "step":
            m["step"] = data.draw(st.one_of(st.integers(-10 ** 15, -1), st.integers(47, 10 ** 15),
                                            st.floats(allow_nan=False), st.text(max_size=4), st.none()))
        elif kind == "remove required":
            del m[data.draw(st.sampled_from(REQUIRED_META))]
        elif kind == "world size":
            m["world_size"] = data.draw(st.integers(-5, 64).filter(lambda w: w != 1))
        else:
            return a, data.draw(st.one_of(st.text(max_size=40), st.sampled_from(
                ["[]", "null", "{", '{"format": "disttrain-checkpoint-1"}', "NaN", '"str"', "1e999"])))
    raw = _mutated(resumable, mutate)
    check_checkpoint(resumable, f"metadata: {kind}", raw, must_fail=must_fail, same_if_accepted=False)


# -- a handful end to end ---------------------------------------------------------------------------
def test_fuzz_end_to_end_through_dtrun(resumable, tmp_path):
    """A few of the generated kinds through the real `dtrun -n 2` command line."""
    cfg, run, latest, original = resumable
    cases = [("truncated", original[: len(original) // 3]),
             ("nan weight", _mutated(resumable, lambda a, m: a["model/1.weight"].__setitem__((0, 0), np.nan))),
             ("negative step", _mutated(resumable, lambda a, m: m.update(step=-5)))]
    for name, raw in cases:
        with open(latest, "wb") as f:
            f.write(raw)
        before = snapshot(run)
        rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", run, "--resume", cwd=os.path.dirname(cfg), timeout=60)
        COUNTS[("end to end", "checkpoint")] += 1
        assert rc != 0 and "Traceback" not in err and os.path.basename(latest) in err, (name, err)
        assert snapshot(run) == before, name
    with open(latest, "wb") as f:
        f.write(original)
    for name, text in [("binary", bytes(range(256))), ("wrong type", b"[model]\nname = 'mlp'\nhidden = 'x'\n"),
                       ("nan", b"[model]\nname = 'mlp'\n[optimizer]\nlr = nan\n")]:
        path = tmp_path / "c.toml"
        path.write_bytes(text)
        rc, out, err, _ = dtrun("-n", "2", path, cwd=tmp_path, timeout=60)
        COUNTS[("end to end", "config")] += 1
        assert rc != 0 and "Traceback" not in err and "c.toml" in err, (name, err)
        assert sorted(os.listdir(tmp_path)) == ["c.toml"], name


def test_fuzz_case_counts():
    """The generators really produced hundreds of cases (run after the fuzz tests above)."""
    if not COUNTS:
        pytest.skip("run together with the fuzz tests of this file")
    configs = sum(v for (kind, _), v in COUNTS.items() if kind == "config")
    checkpoints = sum(v for (kind, _), v in COUNTS.items() if kind == "checkpoint")
    report = "; ".join(f"{kind} / {cat}: {n}" for (kind, cat), n in sorted(COUNTS.items()))
    print(f"\nfuzz cases: {configs} configs, {checkpoints} checkpoints ({report})")
    assert configs >= 300 and checkpoints >= 250, report
