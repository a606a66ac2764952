"""Loading the method's parameters from YAML (the shipped corevad/data/eval.yaml by default), naming any bad field."""

from __future__ import annotations

from pathlib import Path

from .files import read_yaml_mapping
from .params import CausalParams, OfflineParams, params_from_mapping
from .paths import data_file


def default_eval_config() -> Path:
    return data_file("corevad", "eval.yaml")


def load_method_params(path: str | Path | None = None) -> tuple[OfflineParams, CausalParams]:
    """Read the `offline:` and `causal:` sections; missing sections keep the dataclass defaults."""
    p = Path(path) if path is not None else default_eval_config()
    if not p.is_file():
        if path is None:
            return OfflineParams(), CausalParams()
        raise FileNotFoundError(f"config file {p} does not exist")
    data = read_yaml_mapping(p, what="config file")
    unknown = sorted(set(data) - {"offline", "causal"})
    if unknown:
        raise ValueError(f"{p}: unknown section(s) {unknown}; expected 'offline' and/or 'causal'")
    out = []
    for section, cls in (("offline", OfflineParams), ("causal", CausalParams)):
        values = data.get(section) or {}
        try:
            out.append(params_from_mapping(cls, values))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{p}: section '{section}': {e}") from e
    return out[0], out[1]
