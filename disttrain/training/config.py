"""Job configs: TOML (stdlib `tomllib`; `tomli` on Python 3.10) validated into typed sections
before any rank starts.

Every key has a type, a default and a check. A mistake raises `ConfigError`: one paragraph
naming the file (or the --set option), the key and the problem, with a did-you-mean
suggestion for a misspelt name. Config text is only parsed as TOML, never evaluated.
"""
import difflib
import math
import os
try:
    import tomllib
except ModuleNotFoundError:     # Python 3.10: the same parser, as the `tomli` package
    import tomli as tomllib
from dataclasses import dataclass


class ConfigError(ValueError):
    """A user mistake in a config; its message is the whole explanation (no traceback needed)."""


MAX_INFERRED_CLASSES = 100_000     # more classes than this must be asked for ([data] num_classes)
_INT64 = 2 ** 63                   # integer settings must fit numpy's int64


REQUIRED = object()


@dataclass(frozen=True)
class Key:
    name: str
    type: str            # int, float, bool, str, list[int], list[str], list[float], number-or-list, table
    default: object
    doc: str
    low: float = None    # inclusive unless low_open
    low_open: bool = False
    high: float = None
    high_open: bool = False
    choices: tuple = None


def _key(name, type, default, doc, **kw):
    return Key(name, type, default, doc, **kw)


# The fixed sections. [model], [optimizer] and [schedule] add keys that depend on their `name`.
SCHEMA = {
    "job": [
        _key("name", "str", "", "Run name; the run directory is <output_dir>/<name>-<timestamp>. "
             "Default: the config file's name without .toml."),
        _key("output_dir", "str", "runs", "Where run directories are created (relative to the current directory)."),
        _key("imports", "list[str]", [], "Python modules imported on every rank before the model and optimizer are "
             "built, so models and update rules they register can be named here."),
    ],
    "model": [
        _key("name", "str", REQUIRED, "A registered model: 'mlp', 'lenet', 'gpt' (or one registered by "
             "job.imports)."),
    ],
    "data": [
        # plus the keys of the chosen source (training/data.py: register_data_source)
        _key("source", "str", "digits", "A registered data source: digits (8x8 handwritten digits, shipped), "
             "fashion_mnist, idx, npz, synthetic, text (characters; Tiny Shakespeare shipped), or one registered "
             "by job.imports."),
        _key("val_fraction", "float", 0.2, "Fraction of the training samples held out for validation (sources "
             "without a test split, or use_test_split = false).", low=0.0, high=1.0, high_open=True),
        _key("max_train_samples", "int", 0, "Use only the first N training samples (0: all).", low=0),
        _key("max_val_samples", "int", 0, "Use only the first N validation samples (0: all).", low=0),
        _key("num_classes", "int", 0, "Number of classes: the model's output width; labels must lie in "
             "0..num_classes-1 (0: synthetic data makes 10, other sources take the largest label + 1, at most "
             f"{MAX_INFERRED_CLASSES:,}).", low=0),
    ],
    "task": [
        # plus the keys of the chosen task (training/tasks.py: register_task)
        _key("name", "str", "auto", "What is learnt, i.e. the loss and the metrics: classification, "
             "language_model, regression, or one registered by job.imports (auto: the data source's task)."),
    ],
    "optimizer": [
        _key("name", "str", "sgd", "A registered update rule: sgd, adam, adamw, or one registered by job.imports."),
        _key("weight_decay_1d", "bool", True, "Apply weight_decay to 1-d parameters too (biases, norm weights); "
             "false: only to parameters of 2 or more dimensions (weight matrices, embeddings), as nanoGPT does."),
        # plus the rule's hyperparameters (lr, momentum, betas, ...), checked against the rule
    ],
    "schedule": [
        # plus the keys of the chosen schedule (training/schedules.py: register_schedule)
        _key("name", "str", "constant", "Learning-rate schedule, advanced once per optimizer step: constant, "
             "step, cosine, or one registered by job.imports."),
        _key("warmup_steps", "int", 0, "Linear warm-up over this many steps before the schedule (0: none).", low=0),
        _key("warmup_start_factor", "float", 0.1, "Warm-up starts at this fraction of the learning rate.",
             low=0.0, high=1.0),
    ],
    "train": [
        _key("epochs", "int", 10, "Passes over the training set.", low=1),
        _key("max_steps", "int", 0, "Stop after this many optimizer steps (0: no limit; epochs decides).", low=0),
        _key("batch_size", "int", 32, "Samples per rank per micro-batch (global batch = batch_size x ranks x "
             "grad_accum_steps).", low=1),
        _key("grad_accum_steps", "int", 1, "Micro-batches accumulated (without gradient sync) per optimizer step.",
             low=1),
        _key("seed", "int", 0, "Seed of initialisation, data split, shuffling and dropout.", low=0),
        _key("eval_interval", "int", 0, "Validate every N optimizer steps (0: at the end of every epoch).", low=0),
        _key("dtype", "str", "float32", "Parameter and data dtype.", choices=("float32", "float64")),
        _key("grad_clip", "float", 0.0, "Clip the global 2-norm of the (averaged) gradients to this before each "
             "optimizer step (0: no clipping).", low=0.0),
        _key("skip_nonfinite_steps", "int", 0, "Skip (and count) up to N optimizer steps whose gradients are NaN/inf "
             "instead of stopping at the first (0: stop).", low=0),
    ],
    "distributed": [
        _key("bucket_cap_mb", "float", 25.0, "Gradient bucket size in MiB for the overlapped allreduce.",
             low=0.0, low_open=True),
        _key("comm_hook", "str", "none", "How gradient buckets are reduced: none (plain allreduce), fp16, bf16, "
             "powersgd, or a hook registered with dist.register_comm_hook (by job.imports)."),
        _key("comm_hook_args", "table", {}, "The comm hook's parameters, a [distributed.comm_hook_args] table "
             "(powersgd: matrix_approximation_rank, start_powerSGD_iter, min_compression_rate, use_error_feedback, "
             "warm_start, orthogonalization_epsilon, random_seed)."),
        _key("timeline", "bool", False, "Write a Chrome-trace timeline per rank to <run_dir>/timeline/."),
        _key("stall_timeout", "float", 60.0, "Seconds a collective may wait before the stall detector reports "
             "(and, with stall_abort, aborts the job).", low=0.0, low_open=True),
        _key("stall_abort", "bool", True, "Abort the job when a collective stalls past stall_timeout."),
        _key("check_collectives", "str", "auto", "Verify before each collective that every rank calls the same one "
             "(op, dtype, element count): on, off, or auto (the first 64 collectives of the job).",
             choices=("auto", "on", "off")),
        _key("find_unused_parameters", "bool", False, "Reduce parameters that got no gradient as zeros."),
        _key("sync_batch_norm", "bool", False, "Replace the model's BatchNorm layers by SyncBatchNorm (batch "
             "statistics over all ranks)."),
        _key("shard_optimizer", "bool", False, "Shard the optimizer update and state across ranks (ZeRO-1, "
             "dist.ShardedOptimizer): gradients are reduce-scattered, each rank updates its slice."),
        _key("shared_memory", "bool", True, "With shard_optimizer: keep one copy of the parameters and gradient "
             "buckets per node in MPI shared memory when ranks share a node (false: reduce-scatter + all-gather)."),
    ],
    "checkpoint": [
        _key("enabled", "bool", True, "Write checkpoints."),
        _key("interval", "int", 0, "Checkpoint every N optimizer steps (0: at the end of every epoch). The "
             "final step is always checkpointed.", low=0),
        _key("keep_last", "int", 3, "Keep only the newest K checkpoints.", low=1),
    ],
    "logging": [
        _key("log_interval", "int", 10, "Log training loss/accuracy/throughput every N optimizer steps.", low=1),
        _key("progress", "str", "auto", "auto (a bar on a terminal, plain lines otherwise), bar, plain or none.",
             choices=("auto", "bar", "plain", "none")),
    ],
}

OPTIMIZER_FIXED = ("name", "weight_decay_1d")     # [optimizer] keys that are not the rule's hyperparameters
SCHEMA_DEFAULT = {"data": "digits", "schedule": "constant", "task": "auto"}
# Keys a resumed run may change: they do not change what is computed.
RESUMABLE_CHANGES = {("train", "epochs"), ("train", "max_steps"), ("distributed", "timeline"),
                     ("distributed", "stall_timeout"), ("distributed", "stall_abort"),
                     ("distributed", "check_collectives"),
                     ("checkpoint", "interval"), ("checkpoint", "keep_last"), ("checkpoint", "enabled"),
                     ("logging", "log_interval"), ("logging", "progress"), ("job", "output_dir")}


class Section:
    """One validated section: attribute access to typed values, `as_dict()` for output."""

    def __init__(self, name, values, shown=None):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values))
        # keys that apply (e.g. [data] path does not apply to source "digits"): what as_dict shows
        object.__setattr__(self, "_shown", set(values) if shown is None else set(shown))

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"[{self._name}] has no key {key!r}") from None

    def __setattr__(self, key, value):
        raise AttributeError("config sections are read-only")

    def get(self, key, default=None):
        return self._values.get(key, default)

    def as_dict(self):
        return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                for k, v in self._values.items() if k in self._shown}

    def __repr__(self):
        return f"[{self._name}] {self._values}"


@dataclass(frozen=True)
class Config:
    source: str               # file it came from (for messages)
    job: Section
    model: Section
    data: Section
    task: Section
    optimizer: Section
    schedule: Section
    train: Section
    distributed: Section
    checkpoint: Section
    logging: Section

    def as_dict(self):
        return {name: getattr(self, name).as_dict() for name in SECTION_ORDER}


SECTION_ORDER = ("job", "model", "data", "task", "optimizer", "schedule", "train", "distributed", "checkpoint",
                 "logging")


# ---------------------------------------------------------------------------------------------
def _fail(where, section, key, problem, suggestion=None):
    loc = f"[{section}] {key}" if key else f"[{section}]"
    msg = f"{where}: {loc}: {problem}"
    if suggestion:
        msg += f" Did you mean {suggestion}?"
    raise ConfigError(msg + " Nothing was started.")


def _suggest(word, candidates):
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"'{match[0]}'" if match else None


def _type_name(v):
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def _show(v):
    text = f'"{v}"' if isinstance(v, str) else repr(v).replace("True", "true").replace("False", "false")
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= 80 else text[:77] + "..."


def _check_type(where, section, k, value):
    """Coerce/verify `value` against key `k`; returns the typed value."""
    t = k.type
    bad = None
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            bad = "an integer"
        elif abs(value) >= _INT64:
            _fail(where, section, k.name, f"{value} is too large (integers must lie within +-2**63).")
    elif t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            bad = "a finite number"
        else:
            value = float(value)
    elif t == "bool":
        if not isinstance(value, bool):
            bad = "true or false"
    elif t == "str":
        if not isinstance(value, str):
            bad = "a string (in quotes)"
    elif t == "table":
        if not isinstance(value, dict):
            bad = f"a table ([{section}.{k.name}])"
        else:
            value = dict(value)
    elif t.startswith("list["):
        inner = t[5:-1]
        ok = isinstance(value, list) and all(
            (isinstance(x, str) if inner == "str" else
             (isinstance(x, int) and not isinstance(x, bool)) if inner == "int" else
             (isinstance(x, (int, float)) and not isinstance(x, bool))) for x in value)
        if not ok:
            bad = f"a list of {'strings' if inner == 'str' else 'integers' if inner == 'int' else 'numbers'}"
        elif inner == "int" and any(abs(x) >= _INT64 for x in value):
            _fail(where, section, k.name, f"{max(value, key=abs)} is too large (integers must lie within +-2**63).")
        elif inner == "float" and not all(math.isfinite(x) for x in value):
            bad = "a list of finite numbers"
        else:
            value = list(value)
    if bad:
        _fail(where, section, k.name, f"must be {bad}, got {_type_name(value)} {_show(value)}.")
    if k.choices is not None and value not in k.choices:
        _fail(where, section, k.name, f"must be one of {', '.join(map(_show, k.choices))}, got {_show(value)}.",
              _suggest(str(value), k.choices))
    if k.low is not None or k.high is not None:
        items = value if isinstance(value, list) else [value]
        for x in items:
            if k.low is not None and (x < k.low or (k.low_open and x == k.low)):
                _fail(where, section, k.name, f"must be {'>' if k.low_open else '>='} {k.low:g}, got {_show(value)}.")
            if k.high is not None and (x > k.high or (k.high_open and x == k.high)):
                _fail(where, section, k.name, f"must be {'<' if k.high_open else '<='} {k.high:g}, got {_show(value)}.")
    return value


def _parse_override(item):
    """'a.b=value' -> ('a', 'b', value); 'a.t.b=value' (a key of table t, e.g.
    distributed.comm_hook_args.matrix_approximation_rank) -> ('a', 't.b', value); value in TOML
    syntax, or a bare word taken as a string."""
    where = f"--set {item}" if item.isprintable() else f"--set {item!r}"
    path, sep, text = item.partition("=")
    parts = path.strip().split(".")
    if not sep or len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(f"{where}: expected SECTION.KEY=VALUE (e.g. --set optimizer.lr=0.05) or "
                          "SECTION.TABLE.KEY=VALUE. Nothing was started.")
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if not text or any(c in text for c in "[]{}\"'=,"):
            raise ConfigError(f"{where}: {text!r} is not a TOML value (strings may be bare words or quoted). "
                              "Nothing was started.") from None
        value = text
    return parts[0], ".".join(parts[1:]), value, where


def read_config_bytes(path):
    """The config file's bytes, or ConfigError naming it."""
    where = os.fspath(path)
    try:
        with open(where, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such config file. Nothing was started.") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not a config file. Nothing was started.") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc}). Nothing was started.") from None


def parse_toml(data, where):
    """TOML bytes -> dict, or ConfigError (not UTF-8, not TOML, nested too deeply)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}, offset "
                          f"{exc.start}); TOML files must be UTF-8: save it as UTF-8. Nothing was started.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}. Nothing was started.") from None
    except RecursionError:
        raise ConfigError(f"{where}: not usable TOML: values are nested too deeply. Nothing was started.") from None


def load_config(path, overrides=(), check_files=True, unset=(), data=None):
    """Parse, override and validate a config file; returns a `Config` or raises `ConfigError`.

    `unset`: "section.key" names removed before the overrides apply; `data`: the file's bytes when
    they were read elsewhere (rank 0 reads a run's config.toml and shares it), `path` then only names it."""
    where = os.fspath(path)
    raw = parse_toml(read_config_bytes(where) if data is None else data, where)
    for item in unset:
        _unset(raw, item, where)
    origins = {}    # (section, key) -> where the value came from
    for section, table in raw.items():
        if isinstance(table, dict):
            for key in table:
                origins[(section, key)] = where
    for item in overrides:
        section, key, value, w = _parse_override(item)
        if section not in SCHEMA:
            _fail(w, section, None, f"unknown section; sections are {', '.join(SECTION_ORDER)}.",
                  _suggest(section, SCHEMA) and f"[{_suggest(section, SCHEMA)[1:-1]}]")
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            _fail(w, section, None, "is not a table in the config file.")
        sub, dot, leaf = key.partition(".")
        if dot:     # a key of a table inside the section
            inner = table.setdefault(sub, {})
            if not isinstance(inner, dict):
                _fail(w, section, sub, f"is {_type_name(inner)} in the config file, not a table; cannot set "
                      f"{leaf!r} in it.")
            inner[leaf] = value
        else:
            table[key] = value
        origins[(section, key)] = w
    return validate(raw, where, origins, check_files=check_files)


def _unset(raw, item, where):
    w = f"--unset {item}"
    parts = item.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{w}: expected SECTION.KEY (e.g. --unset train.max_steps). Nothing was started.")
    section, key = parts
    table = raw.get(section)
    if not isinstance(table, dict) or key not in table:
        known = sorted(table) if isinstance(table, dict) else []
        sug = _suggest(key, known)
        hint = f"; it sets {', '.join(known)}" if known else f"; it has no [{section}] section"
        _fail(w, section, key, f"{where} does not set this key{hint} (nothing to unset).", sug)
    del table[key]


def validate(raw, where="<config>", origins=None, check_files=True):
    origins = origins or {}

    def src(section, key=None):
        return origins.get((section, key), where)

    for section, table in raw.items():
        if section not in SCHEMA:
            sug = _suggest(section, SCHEMA)
            if not isinstance(table, dict):
                _fail(where, "top level", section, "unknown key; every setting belongs to a section "
                      f"({', '.join(f'[{s}]' for s in SECTION_ORDER)}).")
            _fail(where, section, None, "unknown section.", sug and f"[{sug[1:-1]}]")
        if not isinstance(table, dict):
            _fail(where, "top level", section, f"must be a table ([{section}]), got {_type_name(table)}.")

    sections, shown = {}, {}
    for section in SECTION_ORDER:
        table = dict(raw.get(section, {}))
        schema = {k.name: k for k in SCHEMA[section]}
        extra = _dynamic_keys(section, table, src, where, sections)
        schema.update(extra)
        allowed = _allowed(section, table, schema)
        values = {}
        for key, value in table.items():
            if key not in schema:
                _unknown(src(section, key), section, key, schema)
            if key not in allowed:
                _fail(src(section, key), section, key, _not_applicable(section, key, table))
            values[key] = _check_type(src(section, key), section, schema[key], value)
        for name, k in schema.items():
            if name not in values:
                if k.default is REQUIRED:
                    _fail(where, section, name, "is required.")
                values[name] = list(k.default) if isinstance(k.default, list) else k.default
        sections[section] = values
        shown[section] = allowed
        if section == "job":    # user modules may register the models and rules named below
            import_job_modules(values["imports"], src("job", "imports"))

    cfg_where = where
    _cross_checks(sections, src, cfg_where, check_files)
    if not sections["job"]["name"]:
        sections["job"]["name"] = safe_name(os.path.splitext(os.path.basename(where))[0])
    problem = name_problem(sections["job"]["name"])
    if problem:
        _fail(src("job", "name"), "job", "name", problem)
    if "\x00" in sections["job"]["output_dir"]:
        _fail(src("job", "output_dir"), "job", "output_dir", "must not contain a NUL character.")
    if "\x00" in sections["data"].get("path", ""):
        _fail(src("data", "path"), "data", "path", "must not contain a NUL character.")
    return Config(source=where, **{s: Section(s, sections[s], shown[s]) for s in SECTION_ORDER})


def name_problem(name):
    """Why `name` cannot be a run name (one path component under output_dir), or None."""
    if not name.strip():
        return "must not be empty."
    if name in (".", "..") or "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        return (f"{_show(name)} must be a single directory name (no '/', '\\', '.' or '..'): run directories "
                "are created inside [job] output_dir.")
    if not name.isprintable():
        return f"{_show(name)} must not contain control characters (newlines, tabs, NUL)."
    if len(name.encode("utf-8")) > 200:
        return f"is {len(name.encode('utf-8'))} bytes long; at most 200 (it becomes a directory name)."
    return None


def safe_name(name):
    """A file name made usable as a run name (the default job.name comes from the config's file name)."""
    name = "".join(c if c.isprintable() and c not in "/\\" else "_" for c in name)[:200]
    return name if name.strip() and name not in (".", "..") else "job"


# keys of the built-in models and update rules, for "did you mean 'lr' in [optimizer]?"
_ELSEWHERE = {"optimizer": {"lr", "momentum", "dampening", "nesterov", "weight_decay", "betas", "eps"},
              "model": {"hidden", "activation", "dropout", "channels", "kernel_size"}}


def _unknown(where, section, key, schema):
    sug = _suggest(key, schema)
    if not sug:
        for other in SECTION_ORDER:
            names = {k.name for k in SCHEMA[other]} | _ELSEWHERE.get(other, set())
            if other != section and key in names:
                sug = f"'{key}' in [{other}]"
                break
    _fail(where, section, key, f"unknown key in [{section}]; known keys: {', '.join(sorted(schema))}.", sug)


def _users(registry_params, key):
    """Names of the registered entries (sources, schedules, tasks) that take `key`."""
    return sorted(name for name, params in registry_params.items() if key in {k.name for k in params})


def _registry(section):
    """name -> Keys of the registered data sources / schedules / tasks ([data], [schedule], [task])."""
    if section == "data":
        from .data import SOURCES as registry
    elif section == "schedule":
        from .schedules import SCHEDULES as registry
    else:
        from .tasks import TASKS as registry
    return registry.params_by_name()


_CHOOSER = {"data": ("source", "source"), "schedule": ("name", "schedule"), "task": ("name", "task")}


def _not_applicable(section, key, table):
    if section in _CHOOSER:
        field, what = _CHOOSER[section]
        name = table.get(field, SCHEMA_DEFAULT[section])
        return f"does not apply to {what} {_show(name)} (it is used by {', '.join(_users(_registry(section), key))})."
    return "does not apply here."


def _allowed(section, table, schema):
    if section in _CHOOSER:
        field, _ = _CHOOSER[section]
        common = {k.name for k in SCHEMA[section]}
        return common | {k.name for k in _registry(section).get(table.get(field, SCHEMA_DEFAULT[section]), ())}
    return set(schema)


def _chosen(section, table, src, where, default):
    """The registered name chosen in [data] source / [schedule] name / [task] name, checked."""
    field, what = _CHOOSER[section]
    name = table.get(field, default)
    known = sorted(_registry(section))
    if not isinstance(name, str):
        _fail(src(section, field), section, field, f"must be a string, got {_type_name(name)} {_show(name)}.")
    if name not in known:
        _fail(src(section, field), section, field,
              f"must be one of {', '.join(map(_show, known))}, got {_show(name)} ({what}s defined in your own "
              "module are registered when [job] imports names it).", _suggest(name, known))
    return name


def _dynamic_keys(section, table, src, where, sections):
    """Keys of the chosen model / optimizer rule / data source / schedule / task."""
    if section == "model":
        from .models import model_params, registered_models
        name = table.get("name")
        if name is None:
            _fail(where, "model", "name", f"is required; registered models: {', '.join(registered_models())}.")
        if not isinstance(name, str):
            _fail(src("model", "name"), "model", "name", f"must be a string, got {_type_name(name)} {_show(name)}.")
        params = model_params(name)
        if params is None:
            _fail(src("model", "name"), "model", "name",
                  f"unknown model {_show(name)}; registered: {', '.join(registered_models())}.",
                  _suggest(name, registered_models()))
        return {k.name: k for k in params}
    if section == "optimizer":
        return _optimizer_keys(table, src, where)
    if section in _CHOOSER:
        if section == "task" and table.get("name", "auto") == "auto":
            # the data source's own task; the resolved config names it
            from .data import SOURCES
            table["name"] = SOURCES[sections["data"]["source"]].extras["task"]
        _chosen(section, table, src, where, SCHEMA_DEFAULT[section])
        keys = {}
        for params in _registry(section).values():     # all of them: another entry's key "does not apply"
            for k in params:
                keys.setdefault(k.name, k)
        return keys
    return {}


def _optimizer_keys(table, src, where):
    from .. import optim
    name = table.get("name", "sgd")
    if not isinstance(name, str):
        _fail(src("optimizer", "name"), "optimizer", "name", f"must be a string, got {_type_name(name)}.")
    try:
        rule = optim.get_rule(name)
    except ValueError:
        _fail(src("optimizer", "name"), "optimizer", "name",
              f"unknown update rule {_show(name)}; registered: {', '.join(optim.available_rules())} "
              "(rules defined in your own module are registered when [job] imports names it).",
              _suggest(name.lower(), optim.available_rules()))
    keys = {}
    defaults = dict(rule.defaults or {})
    for hp, default in defaults.items():
        required = default is optim.REQUIRED
        if isinstance(default, bool):
            t = "bool"
        elif isinstance(default, (tuple, list)):
            t = "list[float]"
            default = list(default)
        elif isinstance(default, (int, float)) or required:
            t = "float"
        else:
            t = "str"
        if hp == "lr" and required:
            default = 0.1   # a config always runs; SGD has no default rate of its own
        keys[hp] = Key(hp, t, REQUIRED if (required and hp != "lr") else default,
                       f"{rule.name} hyperparameter.")
    if not defaults:      # a plain function rule: any numeric hyperparameters
        for hp in table:
            if hp not in OPTIMIZER_FIXED:
                keys[hp] = Key(hp, "float", None, "rule hyperparameter")
    if "lr" not in keys:
        keys["lr"] = Key("lr", "float", 0.1, "learning rate")
    return keys


def import_job_modules(modules, where="<config>"):
    import importlib
    import sys
    if modules and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(f"{where}: [job] imports: cannot import {mod!r} ({exc}). Nothing was started.") from None
        except (Exception, SystemExit) as exc:      # the module's own bug: name it and where it happened
            import traceback
            frames = traceback.extract_tb(exc.__traceback__)
            at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            raise ConfigError(f"{where}: [job] imports: importing {mod!r} raised {type(exc).__name__}: "
                              f"{str(exc)[:300]}{at}. Nothing was started.") from None


def _cross_checks(sections, src, where, check_files):
    from .data import SOURCES
    d = sections["data"]
    check = SOURCES[d["source"]].check
    problem = check(d, check_files) if check else None
    if problem:
        key, text = problem
        _fail(src("data", key), "data", key, text)
    if d["num_classes"] == 1:
        _fail(src("data", "num_classes"), "data", "num_classes", "must be 0 (take it from the labels) or >= 2, got 1.")
    task, source_task = sections["task"]["name"], SOURCES[d["source"]].extras.get("task", "classification")
    builtin = ("classification", "language_model", "regression")
    if task in builtin and source_task in builtin and (task == "language_model") != (source_task == "language_model"):
        _fail(src("task", "name"), "task", "name",
              f"{_show(task)} does not fit [data] source {_show(d['source'])}, whose samples are "
              + ("token blocks for a language model" if source_task == "language_model" else
                 "(input, label or target) pairs") + f" (use {_show(source_task)}, or \"auto\").")
    dist = sections["distributed"]
    dist["comm_hook_args"] = _comm_hook_args(dist, src)
    if dist["shard_optimizer"] and dist["comm_hook"] != "none":
        _fail(src("distributed", "comm_hook"), "distributed", "comm_hook",
              f"{_show(dist['comm_hook'])} cannot be combined with shard_optimizer = true (the sharded optimizer "
              "reduces the gradient buckets itself); set one of them off.")
    if dist["shard_optimizer"] and not sections["optimizer"].get("weight_decay_1d", True):
        _fail(src("optimizer", "weight_decay_1d"), "optimizer", "weight_decay_1d",
              "= false (parameter groups) cannot be combined with [distributed] shard_optimizer = true yet; set one "
              "of them off.")
    if dist["shard_optimizer"] and sections["train"]["grad_clip"] > 0:
        _fail(src("train", "grad_clip"), "train", "grad_clip",
              "cannot be combined with [distributed] shard_optimizer = true yet (each rank holds only its slice of "
              "the averaged gradients, so the global norm is not known before the update); set one of them off.")
    from .. import optim
    o = sections["optimizer"]
    rule = optim.get_rule(o["name"])
    hp = {k: (tuple(v) if isinstance(v, list) else v) for k, v in o.items()
          if k not in OPTIMIZER_FIXED and v is not None}
    full = {**{k: v for k, v in (rule.defaults or {}).items() if v is not optim.REQUIRED}, **hp}
    try:
        rule.validate(full)
    except (ValueError, TypeError, KeyError) as exc:
        bad = next((k for k in hp if k in str(exc)), None)
        _fail(src("optimizer", bad) if bad else where, "optimizer", bad, f"{exc}.")
    from .models import check_model_config
    problem = check_model_config(sections["model"])
    if problem:
        key, text = problem
        _fail(src("model", key), "model", key, text)


def _comm_hook_args(dist, src):
    """[distributed] comm_hook checked against the comm-hook registry, and its
    [distributed.comm_hook_args] checked against the hook's parameters (defaults filled in)."""
    from ..distributed import comm_hooks
    name = dist["comm_hook"]
    known = ["none"] + list(comm_hooks.COMM_HOOKS)
    if name not in known:
        _fail(src("distributed", "comm_hook"), "distributed", "comm_hook",
              f"must be one of {', '.join(map(_show, known))}, got {_show(name)} (hooks registered by your own "
              "module with dist.register_comm_hook are known when [job] imports names it).", _suggest(name, known))
    params = comm_hooks.COMM_HOOKS[name].params if name != "none" else ()
    keys = {p.name: Key(p.name, p.type, p.default, p.doc, low=p.low, high=p.high) for p in params}
    section = "distributed.comm_hook_args"
    out = {}
    for key, value in dist["comm_hook_args"].items():
        where = src("distributed", f"comm_hook_args.{key}")     # the --set that gave it, else the file
        if key not in keys:
            takes = f"it takes {', '.join(sorted(keys))}" if keys else "it takes no parameters"
            _fail(where, section, key, f"unknown parameter of comm hook {_show(name)}; {takes}.", _suggest(key, keys))
        out[key] = _check_type(where, section, keys[key], value)
    for k in keys.values():
        out.setdefault(k.name, k.default)
    return out


# ---------------------------------------------------------------------------------------------
# TOML basic strings: backslash, quote and control characters must be escaped.
_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
                 "\r": "\\r"}


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + "".join(_TOML_ESCAPES.get(c) or (c if c.isprintable() or c == " " else f"\\u{ord(c):04x}"
                                                         if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
                             for c in v) + '"'
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):     # an inline table
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _toml_key(key):
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else _toml_value(key)


def dump_toml(cfg):
    """The resolved config (every key, defaults filled in) as TOML text that loads back equal."""
    lines = []
    for section in SECTION_ORDER:
        lines.append(f"[{section}]")
        for key, value in getattr(cfg, section).as_dict().items():
            if value is None:
                continue
            bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
            lines.append(f"{key if bare else _toml_value(key)} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def differences(a, b):
    """(section, key) pairs whose values differ between two configs."""
    out = []
    for section in SECTION_ORDER:
        da, db = getattr(a, section).as_dict(), getattr(b, section).as_dict()
        for key in sorted(set(da) | set(db)):
            if da.get(key) != db.get(key):
                out.append((section, key))
    return out
