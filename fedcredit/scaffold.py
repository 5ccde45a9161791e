"""``fedcredit init``: a commented party config for an operator, or a whole local federation for a trial.

:func:`init_party` checks the party's table before writing anything (the file
exists and is readable, the id column and the label column are there, ids are
not empty, the label has two values and ``pos_label`` is one of them), writes
``NAME.toml`` with a comment on every key, and returns the next steps
(certificates, peers, serve, health). :func:`init_federation` writes a CA,
one certificate and one config per party and a starter job, over the data
sets shipped with fedcredit unless tables are given, for a trial on one
machine (``fedcredit party serve DIR/bank.toml`` accepts each config).

Both only write files; neither contacts a peer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, DataError

__all__ = ["TableInfo", "inspect_table", "init_party", "init_federation", "party_config_text"]

#: Rows read to check a table's types (the header is always read in full).
SAMPLE_ROWS = 5000
_MISSING = frozenset({"", "na", "nan", "null", "none", "n/a"})


@dataclass(frozen=True)
class TableInfo:
    """What :func:`inspect_table` found in a table.

    Attributes
    ----------
    path : Path
    columns : tuple of str
        Every column, in file order.
    numeric, text : tuple of str
        Feature columns (not id, not label) whose sampled values are all numbers (or missing) / not.
    label_values : tuple of str
        Distinct label values in the sample (empty without a label column).
    rows_sampled : int
    """

    path: Path
    columns: tuple[str, ...]
    numeric: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    label_values: tuple[str, ...] = ()
    rows_sampled: int = 0
    warnings: tuple[str, ...] = field(default=())


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _sample(path: Path, n: int) -> tuple[list[str], list[list[str]]]:
    """The header and the first ``n`` rows as text (the table reader's own batches: CSV, CSV.gz, Parquet)."""
    from ._tablefiles import _table_batches

    batches = _table_batches(path, n)
    try:
        header = next(batches)
        rows = next(batches, [])
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or exc})") from None
    finally:
        batches.close()
    return header, [["" if v is None else str(v) for v in r] for r in rows]


def inspect_table(path: str | os.PathLike, *, id_column: str = "id", label_column: str | None = None,
                  pos_label: str | None = None, sample_rows: int = SAMPLE_ROWS) -> TableInfo:
    """Check a table's header and (on the first ``sample_rows`` rows) its types.

    Parameters
    ----------
    path : path
        CSV, CSV.gz or Parquet file.
    id_column : str, default="id"
    label_column : str, optional
        Must exist and hold exactly two values (in the sample).
    pos_label : str, optional
        The event value of the label; must be one of its values. Without it the label must be 0/1.

    Returns
    -------
    TableInfo

    Raises
    ------
    DataError
        Naming the file and, where one is at fault, the column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    header, rows = _sample(path, sample_rows)
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise DataError(f"{path}: duplicate column name(s) {', '.join(map(repr, dup))}")
    for col, what in ((id_column, "the id column"), (label_column, "the label column")):
        if col is not None and col not in header:
            raise DataError(f"{path}: no column {col!r} ({what}); the file has {', '.join(header)}")
    if not rows:
        raise DataError(f"{path}: the table is empty (no data rows)")
    width = len(header)
    bad = next((i for i, r in enumerate(rows) if len(r) != width), None)
    if bad is not None:
        raise DataError(f"{path}, line {bad + 2}: {len(rows[bad])} fields, the header has {width}")
    idx = {c: i for i, c in enumerate(header)}
    ids = [r[idx[id_column]].strip() for r in rows]
    if "" in ids:
        raise DataError(f"{path}, column {id_column!r}: empty id at line {ids.index('') + 2}")
    label_values: tuple[str, ...] = ()
    warnings = []
    if label_column is not None:
        vals = [r[idx[label_column]].strip() for r in rows]
        if any(v.lower() in _MISSING for v in vals):
            raise DataError(f"{path}, column {label_column!r}: missing label in the first {len(rows)} rows")
        label_values = tuple(sorted(set(vals)))
        if len(label_values) > 2:
            raise DataError(f"{path}, column {label_column!r}: the label must have two values, found "
                            f"{len(label_values)} ({', '.join(label_values[:6])})")
        if len(label_values) < 2:
            warnings.append(f"column {label_column!r}: one label value ({label_values[0]}) in the first "
                            f"{len(rows)} rows")
        if pos_label is not None:
            if str(pos_label) not in label_values and len(label_values) == 2:
                raise DataError(f"{path}, column {label_column!r}: pos_label {pos_label!r} is not one of the "
                                f"label's values ({', '.join(label_values)})")
        elif not set(label_values) <= {"0", "1", "0.0", "1.0"}:
            raise DataError(f"{path}, column {label_column!r}: the label is not 0/1 (values: "
                            f"{', '.join(label_values)}); pass --pos-label VALUE to name the event value")
    numeric, text = [], []
    for c in header:
        if c in (id_column, label_column):
            continue
        cells = (r[idx[c]].strip() for r in rows)
        (numeric if all(v.lower() in _MISSING or _is_number(v) for v in cells) else text).append(c)
    if text:
        warnings.append(f"text (non-numeric) column(s) {', '.join(text)}: categorical columns need a fedcredit "
                        "version that reads them; otherwise encode them as numbers or list the numeric ones "
                        "under [tables.<t>] columns")
    if not numeric and not text:
        warnings.append("no feature columns besides the id and the label")
    return TableInfo(path, tuple(header), tuple(numeric), tuple(text), label_values, len(rows), tuple(warnings))


def _q(v) -> str:
    return json.dumps(str(v))


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when that is short and clean, else absolute (POSIX separators)."""
    path, base = Path(os.path.abspath(path)), Path(os.path.abspath(base))
    try:
        rel = Path(os.path.relpath(path, base))
    except ValueError:  # another drive (Windows)
        return path.as_posix()
    return rel.as_posix() if not rel.as_posix().startswith("../../..") else path.as_posix()


def _commented(code: str, comment: str = "") -> str:
    return f"{code:<40} # {comment}" if comment else code


def _table_keys_supported() -> set:
    from . import config

    return set(getattr(config, "_TABLE_KEYS", set()))


def party_config_text(name: str, *, listen: str, table_path: str, table: str = "credit", id_column: str = "id",
                      label_column: str | None = None, pos_label: str | None = None,
                      peers: dict[str, str] | None = None, columns: tuple[str, ...] | None = None,
                      certs: str = "certs", state_dir: str | None = None) -> str:
    """The text of a commented party config (paths as given: relative ones are relative to the file)."""
    peers = dict(peers or {})
    guest = label_column is not None
    c = _commented
    lines = [
        f"# Party {name!r}: written by `fedcredit init party`. Paths are relative to this file.",
        "# Every key is checked when the party starts; `fedcredit party health CONFIG` checks it without starting.",
        "",
        c("[party]"),
        c(f"name = {_q(name)}", "this party's name: also its certificate's name"),
        c(f"listen = {_q(listen)}", "host:port it serves peers and its own CLI on (mutual TLS)"),
        c(f"state_dir = {_q(state_dir or f'state/{name}')}", "party.sqlite, audit.log, party.log, jobs/<job_id>/"),
        c('log_level = "INFO"'),
        "",
        c("[tls]", "mutual TLS: every peer's certificate is checked against this CA"),
        c(f"ca = {_q(f'{certs}/ca.crt')}", "the federation's CA certificate"),
        c(f"cert = {_q(f'{certs}/{name}.crt')}", "this party's certificate, signed by that CA"),
        c(f"key = {_q(f'{certs}/{name}.key')}", "private: mode 0600, never leaves this machine"),
        "",
        c("[peers]", 'every other party this one talks to: name = "host:port"'),
        *([c(f"{p} = {_q(a)}") for p, a in peers.items()] or [c('# chain = "chain.example.org:7300"')]),
        "",
        c(f"[tables.{table}]", f"a table; jobs pick it by name ({table!r})"),
        c(f"path = {_q(table_path)}", "CSV, CSV.gz or Parquet"),
        c(f"id_column = {_q(id_column)}", "the ids PSI aligns on"),
    ]
    if label_column is not None:
        lines.append(c(f"label_column = {_q(label_column)}", "the label: only the label holder (guest) has one"))
    if pos_label is not None:
        if "pos_label" in _table_keys_supported():
            lines.append(c(f"pos_label = {_q(pos_label)}", "the label's event (default) value"))
        else:
            lines.append(c(f"# pos_label = {_q(pos_label)}", "the event value; this version reads 0/1 labels only"))
    if columns:
        lines.append(c(f"columns = {json.dumps(list(columns))}", "the feature columns jobs may use"))
    else:
        lines.append(c('# columns = ["col_a", "col_b"]', "default: every column but the id and the label"))
    proposers = [name] if guest else []
    lines += [
        "",
        c("[policy]", "what this party accepts"),
        c(f"proposers = {json.dumps(proposers)}",
          "who may propose jobs (the label holder starts them)" if guest else
          "who may propose jobs: add the label holder once it is in [peers]"),
        c('# allowed_steps = ["psi", "binning", "select", "secureboost"]', "default: every known step kind"),
        c("min_intersection = 1000", "PSI refuses smaller intersections"),
        c('# purposes = ["credit-risk-model"]', "if set, a job must declare one of these"),
        c("max_concurrent_jobs = 2"),
        "",
        c("[policy.columns]", "columns of our tables a job from that party may use"),
        c(f'{name} = ["*"]') if guest else c('# bank = ["*"]'),
        "",
        c("[transport]"),
        c("deadline = 30.0", "seconds per RPC; a peer unreachable this long fails the job"),
        c("retries = 5"),
        c("recv_timeout = 600.0", "seconds a step waits for one message"),
        c("max_message_mib = 256"),
        "",
        c("[compute]"),
        c('backend = "local"', 'or "dask" (docs/compute.md)'),
        "",
    ]
    return "\n".join(lines)


def init_party(name: str, *, listen: str, table: str | os.PathLike, out: str | os.PathLike | None = None,
               label_column: str | None = None, pos_label: str | None = None, id_column: str = "id",
               table_name: str = "credit", peers: dict[str, str] | None = None, force: bool = False,
               ) -> tuple[Path, TableInfo, list[str]]:
    """Check ``table``, write a commented party config, return it with what was found and the next steps.

    Parameters
    ----------
    name : str
        The party's name (``[a-z0-9_-]``, also its certificate name).
    listen : str
        ``host:port`` to serve on.
    table : path
        The party's table (CSV, CSV.gz or Parquet).
    out : path, optional
        The config to write (default ``./NAME.toml``); a directory gets ``NAME.toml`` inside.
    label_column, pos_label, id_column
        As in ``[tables.<t>]``.
    peers : dict, optional
        ``{peer: "host:port"}``.
    force : bool, default=False
        Replace an existing config.

    Returns
    -------
    (Path, TableInfo, list of str)
        The config written, the table check, and the next steps (shell commands with a comment each).

    Raises
    ------
    ConfigError
        Bad name, address or peer; the config exists (without ``force``); the written file does not load.
    DataError
        The table is unusable (the message names the file and the column).
    """
    from .certs import check_party_name
    from .config import load_party_config, parse_address

    check_party_name(name)
    parse_address(listen)
    for p, a in (peers or {}).items():
        check_party_name(p)
        parse_address(a, allow_port_zero=False)
    info = inspect_table(table, id_column=id_column, label_column=label_column, pos_label=pos_label)
    path = Path(out) if out is not None else Path(f"{name}.toml")
    if path.is_dir() or (out is not None and str(out).endswith(("/", os.sep))):
        path = path / f"{name}.toml"
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists (pass --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = party_config_text(name, listen=listen, table_path=_rel(Path(table), path.parent), table=table_name,
                             id_column=id_column, label_column=label_column, pos_label=pos_label, peers=peers)
    path.write_text(text, encoding="utf-8")
    try:
        load_party_config(path, check_files=False)  # what `party serve` will read, less the certificates
    except ConfigError:
        path.unlink()
        raise
    cfg = path.as_posix()
    steps = [
        f"# 1. certificates: the federation's CA operator runs (once: fedcredit certs init CA_DIR)\n"
        f"fedcredit certs issue CA_DIR {name} --host <this machine's DNS name or IP>\n"
        f"#    and sends you ca.crt, {name}.crt, {name}.key: put them in {(path.parent / 'certs').as_posix()}/",
        f"# 2. peers: add each party under [peers] in {cfg} (name = \"host:port\")"
        + ("" if label_column else ", and the label holder to [policy] proposers"),
        f"# 3. serve:\nfedcredit party serve {cfg}",
        f"# 4. health (this party and every peer):\nfedcredit party health {cfg} --all",
    ]
    return path, info, steps


def init_federation(directory: str | os.PathLike, parties: list[str], *,
                    tables: dict[str, str | os.PathLike] | None = None, labels: dict[str, str] | None = None,
                    base_port: int = 7301) -> tuple[dict[str, Path], Path | None, list[str]]:
    """Write a CA, certificates, party configs and a starter job for a local trial in ``directory``.

    Parameters
    ----------
    directory : path
        Gets ``certs/``, ``<party>.toml``, ``state/``, ``job.toml`` (and ``data/`` with the shipped data).
    parties : list of str
        Party names; the one with a label (else the first) proposes jobs.
    tables : dict, optional
        ``{party: path}``. Default: when the names are among ``bank``, ``chain``, ``gov``, the shipped
        credit3 tables (written to ``directory/data``); otherwise no tables.
    labels : dict, optional
        ``{party: label column}`` for the given tables.
    base_port : int, default=7301
        Party ``i`` listens on ``127.0.0.1:base_port + i``.

    Returns
    -------
    (dict of str to Path, Path or None, list of str)
        Configs, the starter job (None without a label holder), next steps.
    """
    from .certs import check_party_name
    from .launcher import write_federation, write_job

    if not parties or len(set(parties)) != len(parties):
        raise ConfigError(f"--parties must list distinct party names, got {','.join(parties)!r}")
    for p in parties:
        check_party_name(p)
    if not 1024 <= base_port <= 65535 - len(parties):
        raise ConfigError(f"--base-port must be in 1024..{65535 - len(parties)}, got {base_port}")
    root = Path(directory)
    if (root / "certs" / "ca.crt").exists():
        raise ConfigError(f"{root} already holds a federation (certs/ca.crt); choose an empty directory")
    tables = dict(tables or {})
    labels = dict(labels or {})
    unknown = sorted((set(tables) | set(labels)) - set(parties))
    if unknown:
        raise ConfigError(f"--table/--label name(s) {', '.join(unknown)} not in --parties")
    if not tables and set(parties) <= {"bank", "chain", "gov"}:
        from .datasets import DATASETS, write_csv

        files = write_csv(root / "data", ["credit3"])["credit3"]
        tables = {p: files[p] for p in parties}
        labels = {p: DATASETS["credit3"].label(p) for p in parties if DATASETS["credit3"].label(p)}
    for p, t in tables.items():
        inspect_table(t, label_column=labels.get(p))
    guest = next((p for p in parties if p in labels), parties[0])
    spec = {p: ("guest" if p == guest else "host", None, None) for p in parties}
    ports = {p: base_port + i for i, p in enumerate(parties)}
    extra = {p: {"credit": (Path(t).resolve(), labels.get(p))} for p, t in tables.items()}
    root.mkdir(parents=True, exist_ok=True)
    configs = write_federation(root, root, parties=spec, ports=ports, tables=extra,
                               policy={p: {"min_intersection": 100} for p in parties})
    job = None
    if guest in labels and len(tables) >= 2:
        with_table = {p: spec[p] for p in parties if p in tables}
        job = write_job(root / "job.toml", [("psi", "psi", {}), ("binning", "binning", {"max_bins": 10}),
                                            ("select", "select", {"iv_threshold": 0.02}),
                                            ("secureboost", "secureboost", {"n_trees": 5, "max_depth": 3})],
                        name="trial", parties=with_table)
    r = root.as_posix()
    steps = ["# serve each party (one terminal each, or append &):\n"
             + "\n".join(f"fedcredit party serve {r}/{p}.toml" for p in parties),
             f"# health:\nfedcredit party health {r}/{guest}.toml --all"]
    if job is not None:
        steps.append(f"# a first job (PSI -> binning -> selection -> SecureBoost):\n"
                     f"fedcredit run {job.as_posix()} --party {r}/{guest}.toml")
    return configs, job, steps
