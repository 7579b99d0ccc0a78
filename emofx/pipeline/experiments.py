"""Experiments as data: sweeps of one notebook over parameter values, their YAML files, run names and hashes.

An *experiment* is a named list of sweeps run in order (later notebooks read the runs of earlier ones);
a *sweep* runs one notebook over the product of parameter values. Run folders are named from the values
(:func:`parameter_set_name`) and recognised by their hash (:func:`parameter_hash`)."""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import yaml

OUTPUT_PARAMETER = "output_dir"
EXPERIMENT_PARAMETER = "experiment_dir"
DEFAULT_KERNEL = "python3"
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_NAME_LENGTH = 120


class BatchError(ValueError):
    """An experiment, notebook or parameter that cannot be run as given."""


@dataclass(frozen=True)
class Sweep:
    """One notebook run for every combination of ``grid`` values, each with ``fixed`` added.

    ``grid`` keys name the parameter-set directories (in the given order); ``fixed`` values
    are passed unchanged (a list in ``fixed`` is one value, not a sweep).
    """

    notebook: Path
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "notebook", Path(self.notebook))
        grid = {str(k): tuple(v) for k, v in dict(self.grid).items()}
        empty = [k for k, v in grid.items() if not v]
        if empty:
            raise BatchError(f"parameter {empty[0]!r} of {self.notebook.name} has no values to sweep")
        for key, values in grid.items():
            texts = [_same_run_key(value) for value in values]
            repeat = next((i for i, text in enumerate(texts) if text in texts[:i]), None)
            if repeat is not None:
                raise BatchError(f"parameter {key!r} of {self.notebook.name} repeats the value {values[repeat]!r}; "
                                 "each run is done once, so give every value once")
        both = sorted(set(grid) & set(self.fixed))
        if both:
            raise BatchError(f"parameter {both[0]!r} of {self.notebook.name} is both swept and fixed")
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "fixed", dict(self.fixed))

    @property
    def stem(self) -> str:
        """The notebook's name without its folder and suffix."""
        return self.notebook.stem

    def parameter_sets(self) -> list[dict[str, Any]]:
        """The swept values of every run, in a stable order (the product of the grid)."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]


@dataclass(frozen=True)
class Experiment:
    """A named list of sweeps whose runs live under ``runs_dir / name``."""

    name: str
    sweeps: tuple[Sweep, ...]
    runs_dir: Path = Path("papermill_runs")
    source: Path | None = None  # the experiment file, which then defines every run of the experiment

    def __post_init__(self) -> None:
        if not self.name or _SAFE_CHARS.search(self.name):
            raise BatchError(
                f"experiment name {self.name!r} must be non-empty and use only letters, digits and ._+-"
            )
        object.__setattr__(self, "sweeps", tuple(self.sweeps))
        object.__setattr__(self, "runs_dir", Path(self.runs_dir))
        writer: dict[tuple[str, str], int] = {}
        made: dict[tuple[str, str], str] = {}  # the same parameters, whatever their order, make the same model
        for number, sweep in enumerate(self.sweeps, start=1):
            for values in sweep.parameter_sets():
                run = (sweep.stem, parameter_set_name(values))
                if writer.setdefault(run, number) != number:
                    raise BatchError(f"sweeps {writer[run]} and {number} of {self.name} both write the run "
                                     f"{run[0]}/{run[1]}; sweep a parameter that tells them apart")
                same = (sweep.stem, _same_run_key({**sweep.fixed, **values}))
                if made.setdefault(same, run[1]) != run[1]:
                    raise BatchError(f"{self.name} makes the runs {run[0]}/{made[same]} and {run[0]}/{run[1]} with "
                                     "the same parameters (in another order); give each combination once")

    @property
    def directory(self) -> Path:
        """The folder of the experiment's runs: ``runs_dir/name``."""
        return self.runs_dir / self.name



# ----------------------------------------------------------------------------- naming


def _same_run_key(value: Any) -> str:
    """Text that two values share when a notebook would make the same run of them: mappings in any key order,
    and numbers equal as Python compares them (0, 0.0 and False; 1 and True)."""
    def plain(item: Any) -> Any:
        if isinstance(item, Mapping):
            return {str(k): plain(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [plain(v) for v in item]
        if isinstance(item, (bool, int, float)) and float(item).is_integer():
            return int(item)
        return item

    return json.dumps(plain(value), sort_keys=True, default=str)


def parameter_hash(parameters: Mapping[str, Any]) -> str:
    """A stable hash of parameter values (key order does not matter)."""
    text = json.dumps(dict(parameters), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def parameter_set_name(values: Mapping[str, Any]) -> str:
    """A readable, stable, filesystem-safe directory name, e.g. ``culture=eyes__seed=0``.

    Characters outside ``[A-Za-z0-9._+-]`` become ``-``; when that changed anything, when a text
    value reads as another value (the text ``"1"`` beside the number 1, ``"true"`` beside True), or
    when the name would be long, a short hash of the exact values is appended so names never collide.
    """
    if not values:
        return "default"
    raw = "__".join(f"{key}={_value_text(value)}" for key, value in values.items())
    safe = "__".join(
        f"{_SAFE_CHARS.sub('-', str(key))}={_SAFE_CHARS.sub('-', _value_text(value))}"
        for key, value in values.items()
    )
    looks_like_another = any(isinstance(value, str) and parse_value(value) != value for value in values.values())
    if safe != raw or looks_like_another or len(safe) > _MAX_NAME_LENGTH:
        safe = f"{safe[:_MAX_NAME_LENGTH]}__{parameter_hash(values)[:8]}"
    return safe


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def parse_value(text: str) -> Any:
    """A command-line value read as YAML: ``3`` -> 3, ``0.5`` -> 0.5, ``true`` -> True, ``[a, b]`` -> list."""
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


# ----------------------------------------------------------------------------- experiments


def load_experiment(path: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Experiment:
    """Read an experiment YAML file; relative paths in it (notebooks, runs_dir, and parameter values naming files
    or folders beside it, e.g. ``dataset: ../mine.npz``) are relative to the file.

    Format::

        name: synthetic_cultures
        runs_dir: ../papermill_runs            # optional
        sweeps:
          - notebook: ../notebooks/02_train_culture.ipynb
            grid: {culture: [eyes, mouth], seed: [0, 1]}
            fixed: {epochs: 4}
    """
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise FileNotFoundError(f"experiment file {path} " + ("is a folder; give the YAML file (e.g. experiments/"
                                "synthetic_cultures.yaml)" if path.is_dir() else f"not found{where}"))
    try:
        spec = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        raise BatchError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("sweeps"), list) or not spec["sweeps"]:
        raise BatchError(f"{path} must be a mapping with 'name' and a non-empty list 'sweeps'")
    unknown = sorted(set(spec) - {"name", "runs_dir", "sweeps"})
    if unknown:
        raise BatchError(f"{path}: unknown key {unknown[0]!r} (allowed: name, runs_dir, sweeps)")
    base = path.parent
    sweeps = []
    for i, entry in enumerate(spec["sweeps"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("notebook"), str):
            raise BatchError(f"{path}: sweep {i + 1} needs a 'notebook' (the path of an .ipynb file)")
        extra = sorted(set(entry) - {"notebook", "grid", "fixed"})
        if extra:
            raise BatchError(f"{path}: sweep {i + 1} has unknown key {extra[0]!r} (allowed: notebook, grid, fixed)")
        for key in ("grid", "fixed"):
            if not isinstance(entry.get(key) or {}, dict):
                raise BatchError(f"{path}: sweep {i + 1}'s {key!r} must map parameter names to values")
        grid = {k: v if isinstance(v, list) else [v] for k, v in (entry.get("grid") or {}).items()}
        blank = [k for k, v in (entry.get("grid") or {}).items() if v is None]
        if blank:
            raise BatchError(f"{path}: sweep {i + 1}'s grid gives {blank[0]!r} no value (write {blank[0]}: [a, b]; "
                             "null as a value: [null])")
        notebook = Path(os.path.normpath(base / entry["notebook"]))
        sweeps.append(Sweep(notebook, _from_notebook(grid, base, notebook.parent),
                            _from_notebook(entry.get("fixed") or {}, base, notebook.parent)))
    if not isinstance(spec.get("runs_dir", ""), str) or not isinstance(spec.get("name", ""), str):
        raise BatchError(f"{path}: 'name' and 'runs_dir' must be text (a name, a folder path)")
    chosen_runs_dir = Path(runs_dir) if runs_dir is not None else Path(
        os.path.normpath(base / spec.get("runs_dir", "../papermill_runs")))
    return Experiment(str(spec.get("name") or path.stem), tuple(sweeps), chosen_runs_dir, path)


def _from_notebook(value: Any, base: Path, notebook_dir: Path) -> Any:
    """``value`` with every relative path in it that names something beside the experiment file (``base``) made
    relative to the notebook's folder, where its kernel runs (the same text when the two folders are siblings, as
    experiments/ and notebooks/ are), or absolute where it lies outside the notebooks' parent folder (a study kept
    apart from the repository); other text (source names, cultures) stays as written."""
    if isinstance(value, dict):
        return {k: _from_notebook(v, base, notebook_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_from_notebook(v, base, notebook_dir) for v in value)
    if not isinstance(value, str) or not value or os.path.isabs(value) or not (base / value).exists() \
            or ("/" not in value and "." not in value):
        return value
    if (notebook_dir / value).exists() and os.path.samefile(notebook_dir / value, base / value):
        return value  # the same file from either folder (siblings): as written, so run names and hashes stay
    target, kernel_dir = (base / value).resolve(), notebook_dir.resolve()  # the kernel's folder, links followed
    return os.path.relpath(target, kernel_dir) if target.is_relative_to(kernel_dir.parent) else str(target)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives one key twice (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def notebook_tools() -> tuple[ModuleType, ModuleType]:
    """nbformat and papermill, imported without jsonschema's RFC 3987 grammar.

    nbformat validates notebooks with jsonschema, which on import builds an Earley parser of RFC 3987
    (``rfc3987_syntax``, installed with Jupyter's jupyter-events) for its optional ``iri`` format checks:
    1.7 of the 2.3 s that importing papermill took (2-core Zen 3), paid by every `emofx batch` and
    `emofx report` and by every pool or Dask worker. Notebook schemas use no such format, so while these
    import, ``rfc3987_syntax`` reads as absent (jsonschema then leaves out those two checks); it is
    importable again afterwards, and a process that imported jsonschema before keeps it as it was."""
    hide = "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules
    if hide:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  (import raises ImportError)
    try:
        import nbformat
        import papermill
    finally:
        if hide:
            del sys.modules["rfc3987_syntax"]
    return nbformat, papermill


def missing_language(notebook: Path) -> str | None:
    """``python`` for a notebook that names no kernel language (papermill then needs one to write its
    parameters), else None (papermill reads the notebook's own)."""
    nbformat, _ = notebook_tools()

    metadata = nbformat.read(notebook, as_version=4).metadata
    return None if metadata.get("kernelspec", {}).get("language") or metadata.get("language_info") else "python"


def _inspect(notebook: Path, nb: Any) -> dict[str, Any]:
    """papermill's reading of the parameters cell. A notebook that names no kernel (written by a script or
    jupytext rather than saved by Jupyter) is read as a Python notebook, as `emofx batch --kernel` runs it."""
    nbformat, papermill = notebook_tools()
    if nb.metadata.get("kernelspec", {}).get("name"):
        return papermill.inspect_notebook(str(notebook))
    nb.metadata["kernelspec"] = {"name": DEFAULT_KERNEL, "language": "python", "display_name": "Python 3"}
    with tempfile.TemporaryDirectory() as folder:
        named = Path(folder) / notebook.name
        nbformat.write(nb, named)
        return papermill.inspect_notebook(str(named))


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The parameters declared in the notebook's cell tagged ``parameters`` (name -> default text)."""
    nbformat, _ = notebook_tools()
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {notebook} " + ("is a folder; give an .ipynb file" if notebook.is_dir()
                                                            else "not found"))
    try:
        nb = nbformat.read(notebook, as_version=4)
    except (nbformat.ValidationError, ValueError, AttributeError, KeyError) as err:  # ValueError: not JSON
        raise BatchError(f"{notebook} is not a Jupyter notebook ({type(err).__name__}); open and save it in "
                         "JupyterLab, or point the sweep at the right file") from None
    cells = [cell for cell in nb.cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not cells:
        raise BatchError(f"{notebook.name} has no cell tagged 'parameters' (View > Cell Toolbar > Tags in Jupyter)")
    declared = {name: info["default"] for name, info in _inspect(notebook, nb).items()}
    try:
        assigned = {target.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
                    for target in node.targets if isinstance(target, ast.Name)}
    except SyntaxError as err:
        raise BatchError(f"{notebook.name}: its parameters cell is not valid Python ({err})") from None
    unreadable = sorted(assigned - set(declared))
    if unreadable:
        raise BatchError(
            f"{notebook.name}: papermill cannot read the parameter(s) {', '.join(unreadable)} in its parameters "
            "cell; write one `name = value` per line with no '=' inside comments"
        )
    return declared


