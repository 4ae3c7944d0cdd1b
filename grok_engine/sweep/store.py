"""Sweeps on disk: ``<runs_dir>/<sweep_id>/sweep.json`` and one ordinary run per member.

    runs/<sweep id>/sweep.json          {"id", "kind": "sweep", "created", "base", "axes",
                                         "members": [{"run_id", "values"}], "executor"}
    runs/<sweep id>-000/ ...            member 0: an ordinary run (config.json has
                                         "source": "sweep", "sweep": {"id", "values"})

The sweep folder has no config.json, so the run listing passes it over; sweep ids and run
ids share one namespace (a folder name in the runs folder). sweep.json is written
atomically and first, before any member: a SIGKILL while the members are being created
leaves a sweep whose missing members are created by :meth:`SweepStore.ensure_members`
(``--resume``), never a member without its sweep. A member's status is read from its run
(:func:`member_status`), never stored.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grok_engine.config import RunConfig, short_repr
from grok_engine.errors import GrokError, describe_os_error
from grok_engine.store import RunStore, atomic_write_bytes, check_run_id, is_child_name
from grok_engine.sweep.grid import Axis, Member

SWEEP_FILE = "sweep.json"
EXECUTORS = ("local", "ray")
# what member_status reads from a member's run
NOT_STARTED, PARTIAL, DONE, DIVERGED, UNREADABLE = "not started", "partial", "done", "diverged", "unreadable"


def member_run_id(sweep_id: str, index: int) -> str:
    return f"{sweep_id}-{index:03d}"


def field_of(flag: str) -> str:
    """A train flag's RunConfig field: ``weight-decay`` -> ``weight_decay``."""
    return flag.replace("-", "_")


@dataclass
class Sweep:
    """A sweep as sweep.json holds it (``path``: its folder)."""

    id: str
    created: str
    base: dict[str, Any]
    axes: list[dict[str, Any]]
    members: list[dict[str, Any]]
    executor: str
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)  # keys beyond the contract's

    @property
    def run_ids(self) -> list[str]:
        return [m["run_id"] for m in self.members]

    @property
    def stop_at_test_acc(self) -> float | None:
        """``grok-tui sweep --stop-at-test-acc``: a member whose test accuracy reaches it is
        done there (kept in sweep.json beside the contract's keys)."""
        value = self.extra.get("stop_at_test_acc")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def base_config(self) -> RunConfig:
        return RunConfig.from_dict(self.base)

    def member_config(self, index: int) -> RunConfig:
        """Member ``index``'s config: the base with its grid values."""
        values = self.members[index]["values"]
        return self.base_config().replace(**{field_of(f): v for f, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": "sweep", "created": self.created, "base": self.base,
                "axes": self.axes, "members": self.members, "executor": self.executor,
                **self.extra}


def reached(run, stop_at_test_acc: float | None) -> bool:
    """Whether ``run``'s test accuracy reached ``stop_at_test_acc`` at or before its last
    checkpoint (where a stopped member's files end)."""
    if stop_at_test_acc is None:
        return False
    epochs = run.checkpoint_epochs()
    if not epochs:
        return False
    m = run.metrics()
    acc = m.test_acc[m.epoch <= epochs[-1]]
    return bool(len(acc)) and bool(np.nanmax(acc, initial=-1.0) >= stop_at_test_acc)


def member_status(store: RunStore, run_id: str, stop_at_test_acc: float | None = None) -> str:
    """done | diverged | partial | not started (no run folder or no checkpoint yet) |
    unreadable, read from the member's run; done also when its test accuracy reached
    ``stop_at_test_acc`` (the sweep's)."""
    if not (store.root / run_id / "config.json").exists():
        return NOT_STARTED
    try:
        run = store.open(run_id)
        if run.diverged() is not None:
            return DIVERGED
        done = run.epochs_done()
        stopped_there = reached(run, stop_at_test_acc)
    except GrokError:
        return UNREADABLE
    if done >= run.config.train.epochs or stopped_there:
        return DONE
    return PARTIAL if run.checkpoint_epochs() else NOT_STARTED


class SweepStore:
    """The sweeps of one runs folder (beside its runs, in one namespace)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.runs = RunStore(root)
        self.root = self.runs.root

    # -- ids ---------------------------------------------------------------------------
    def check_new_id(self, sweep_id: str, n_members: int) -> None:
        """Refuse a sweep id that is not a safe name, or whose folder or any member's
        run folder exists already (a run or a sweep has that id)."""
        for name in (sweep_id, member_run_id(sweep_id, max(0, n_members - 1))):  # the longest
            try:
                check_run_id(name)
            except GrokError as exc:  # one namespace: the run id's rule, said of the sweep
                raise GrokError(f"sweep id {short_repr(sweep_id)}: {exc}") from None
        taken = [name for name in [sweep_id] + [member_run_id(sweep_id, i) for i in range(n_members)]
                 if os.path.lexists(self.root / name)]
        if taken:
            what = "a sweep" if (self.root / taken[0] / SWEEP_FILE).exists() else "a run"
            raise GrokError(f"sweep id {sweep_id!r} is taken: {what} {taken[0]!r} exists in {self.root}")

    def new_id(self, base: RunConfig, n_members: int) -> str:
        t = base.task
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        stem = f"sweep-{t.task}-p{t.p}-{stamp}"
        sweep_id, n = stem, 1
        while True:
            try:
                self.check_new_id(sweep_id, n_members)
                return sweep_id
            except GrokError:
                n += 1
                sweep_id = f"{stem}-{n}"

    # -- writing -----------------------------------------------------------------------
    def create(self, base: RunConfig, axes: list[Axis], members: list[Member],
               sweep_id: str | None = None, executor: str = "local",
               extra: dict[str, Any] | None = None) -> Sweep:
        """sweep.json, then every member's run folder. ``members`` in grid order."""
        if executor not in EXECUTORS:
            raise GrokError(f"executor {short_repr(executor)} is not allowed: choose one of "
                            f"{', '.join(EXECUTORS)}")
        if sweep_id is None:
            sweep_id = self.new_id(base, len(members))
        self.check_new_id(sweep_id, len(members))
        sweep = Sweep(
            id=sweep_id, created=_dt.datetime.now().isoformat(timespec="seconds"),
            base=base.to_dict(), axes=[a.to_dict() for a in axes],
            members=[{"run_id": member_run_id(sweep_id, i), "values": m.values}
                     for i, m in enumerate(members)],
            executor=executor, path=self.root / sweep_id, extra=dict(extra or {}))
        try:
            sweep.path.mkdir(parents=True)
        except OSError as exc:
            raise GrokError(f"cannot create the sweep folder {sweep.path}: "
                            f"{describe_os_error(exc)}") from None
        self.write(sweep)
        self.ensure_members(sweep)
        return sweep

    def write(self, sweep: Sweep) -> None:
        atomic_write_bytes(sweep.path / SWEEP_FILE, json.dumps(sweep.to_dict(), indent=2).encode())

    def ensure_members(self, sweep: Sweep) -> list[str]:
        """Create the run of every member that has none yet (all of them for a new sweep;
        those a SIGKILL left out for a resumed one). Returns the ids created."""
        made = []
        for index, member in enumerate(sweep.members):
            run_id = member["run_id"]
            if (self.root / run_id / "config.json").exists():
                continue
            if os.path.lexists(self.root / run_id):  # a folder without config.json: half-made
                _remove_half_made(self.root / run_id)
            info = {"sweep": {"id": sweep.id, "values": member["values"]}}
            self.runs.create(sweep.member_config(index), run_id=run_id, source="sweep",
                             extra_info=info)
            made.append(run_id)
        return made

    # -- reading -----------------------------------------------------------------------
    def sweep_ids(self) -> list[str]:
        """Folders of the runs folder that hold a sweep.json."""
        if not self.root.is_dir():
            return []
        return sorted(name for name in os.listdir(self.root)
                      if not name.startswith(".") and (self.root / name / SWEEP_FILE).is_file())

    def open(self, sweep_id: str) -> Sweep:
        path = self.root / sweep_id / SWEEP_FILE
        if not is_child_name(sweep_id) or not path.is_file():
            have = self.sweep_ids()
            shown = ", ".join(have[:10]) + (" ..." if len(have) > 10 else "")
            raise GrokError(f"sweep {sweep_id!r} does not exist in {self.root}: "
                            f"have {shown or 'no sweeps'}")
        return load_sweep(path)

    def statuses(self, sweep: Sweep) -> list[str]:
        """Each member's status, in members order."""
        return [member_status(self.runs, run_id, sweep.stop_at_test_acc) for run_id in sweep.run_ids]


CONTRACT_KEYS = ("id", "kind", "created", "base", "axes", "members", "executor")


def load_sweep(path: Path) -> Sweep:
    """A sweep.json, refused (GrokError naming the file) unless it is a sweep of the
    contract's layout whose base config and member values make valid configs."""
    try:
        raw = json.loads(path.read_bytes())
    except OSError as exc:
        raise GrokError(f"{path} cannot be read: {describe_os_error(exc)}") from None
    except ValueError as exc:
        raise GrokError(f"{path} is not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(raw, dict) or raw.get("kind") != "sweep":
        raise GrokError(f"{path} is not a sweep (no \"kind\": \"sweep\")")
    missing = [k for k in CONTRACT_KEYS if k not in raw]
    if missing:
        raise GrokError(f"{path} is corrupt: it lacks {', '.join(missing)}")
    members = raw["members"]
    if not isinstance(members, list) or not all(
            isinstance(m, dict) and isinstance(m.get("run_id"), str) and isinstance(m.get("values"), dict)
            for m in members):
        raise GrokError(f"{path} is corrupt: members is not a list of {{run_id, values}}")
    sweep = Sweep(id=str(raw["id"]), created=str(raw["created"]), base=raw["base"], axes=raw["axes"],
                  members=members, executor=str(raw["executor"]), path=path.parent,
                  extra={k: v for k, v in raw.items() if k not in CONTRACT_KEYS})
    try:
        for index in range(len(members)):
            sweep.member_config(index)
    except GrokError as exc:
        raise GrokError(f"{path} is corrupt: {exc}") from None
    return sweep


def _remove_half_made(folder: Path) -> None:
    """A member folder without config.json is what a SIGKILL inside RunStore.create leaves
    (the config is written last): nothing was trained in it."""
    import shutil

    shutil.rmtree(folder)
