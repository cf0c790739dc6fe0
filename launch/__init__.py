"""dtrun: the launcher that starts disttrain jobs on N MPI ranks.

`dtrun -n 4 configs/digits_mlp.toml` runs a config job, `dtrun -n 4 train.py ARGS` a user
script; `python -m launch` is the same command. See `launch.cli` for the options.
"""
