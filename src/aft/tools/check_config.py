"""Check a config and its overlays the way the workflow will, without Snakemake.

Snakemake reads `--configfile` files before the workflow's code runs, and for a YAML error its message
is "Config file is not valid JSON or YAML", without the file or line. This names them (file, line,
column), then runs every check `snakemake -n` runs on the stacked config (keys, types, ranges, settings
that conflict, the prompt and template files).

Usage:
    python -m aft.tools.check_config config/config.yaml [config/experiments/<overlay>.yaml ...]
"""

from __future__ import annotations

import argparse

from aft.pipeline.config import load_config
from aft.pipeline.configfile import read_config_files


def check(files: list[str]) -> str:
    """'ok: ...' for a config that passes; raises ValueError (ConfigFileError for a file that cannot be
    read) with the problems."""
    cfg = load_config(read_config_files(files))
    return f"ok: {' + '.join(files)} (data.kind={cfg.data.kind}, bases {sorted(cfg.bases)})"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="a whole config, then overlays, as for --configfile")
    args = p.parse_args(argv)
    try:
        print(check(args.files))
    except ValueError as err:  # ConfigFileError is one
        raise SystemExit(str(err)) from None


if __name__ == "__main__":
    main()
