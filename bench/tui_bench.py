"""Responsiveness of the TUI (not a test): prints three figures.

1. First paint of ``grok-tui RUN``: the whole process, started in tmux (100x30); the time
   from spawning it to the first ``capture-pane`` that shows the app's loading screen or
   tabs (polled every 5 ms). Includes Python start-up and the imports of app.py.
   Target < 1 s.
2. Checkpoint switch: in-process Pilot (``App.run_test``, 100x30) on a p=10 ``add`` run and a
   p=113 ``mod_add`` run (made under bench/runs if missing: the notebook's model, 300
   epochs, a checkpoint every 25). For each pane, the time from the key press (left) to the
   visible pane showing the new checkpoint's result: Context build (forward pass with
   cache) + the study + rendering, including the pane's plots (built on worker threads).
   Each press lands on a checkpoint not seen before (no
   cache hit). Targets < 150 ms (p=10), < 500 ms (p=113).
3. Key latency while training: each run trains (c: 20000 more epochs, stopped after the
   presses) while the bench presses number keys; the time from press to the pane switch
   being on screen.
   Target < 100 ms.
4. Stepping while a training child runs on one core (issue 12 item 9): a copy of a p=113
   ``mod_add`` run with 100+ checkpoints (``bench-mod-p113-dense``, a checkpoint every 3
   epochs) is trained by ``grok_engine.train_process`` pinned to core 0 while the app,
   with its prefetch as shipped, steps the original: for every pane, a step to a checkpoint
   not seen before (first visit: its prefetch had the pause between key presses, as a
   user's would) and a step back (revisit), each from the key press to the pane showing
   that checkpoint's result with its plots built. Then the Neurons pane steps through 100
   checkpoints and the process's RSS is read (VmRSS, the app in-process). Targets: a step
   < 500 ms, a revisit < 100 ms, RSS < 1 GiB.

5. Multi-run screens (issue 15): the sweep screen on a 100-member sweep (4 lr x 5 weight
   decay x 5 frac_train, mod_add p=23, 300 epochs; made under bench/runs if missing), from
   pushing the screen to the phase diagram and members table on screen (target < 1 s); a
   change of the x axis and of the colour, from the key to the redrawn diagram (target
   < 100 ms); the comparison of 8 p=113 runs (the notebook's model, seeds 0-7, 300 epochs,
   a checkpoint every 25), cold (no progress cache: the screen computes the progress
   measures) then warm (from the cache the cold pass left), each as two figures from
   pushing the screen: "first paint", the loss overlay built and the table shown (what
   the user waits for before comparing; target < 1 s), and "complete", every run's
   progress measures in and the progress plot built (no target: cold, it is the progress
   study's time for 8 runs).

    .venv/bin/python bench/tui_bench.py [--runs-dir bench/runs] [--skip-paint]
        [--only paint|switch|latency|step|multi] [--tiny]
    .venv/bin/python bench/tui_bench.py --only multi --quick   (small runs: checks it runs)

``--tiny`` runs only figure 4 on a small p=23 run with 12 checkpoints (a check that the
bench works, not a measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import itertools
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_run(runs_dir: Path, run_id: str, **fields) -> None:
    from grok_engine.config import RunConfig
    from grok_engine.store import RunStore

    store = RunStore(runs_dir)
    if run_id in store.run_ids():
        return
    print(f"making {run_id} ...", flush=True)
    run = store.create(RunConfig().replace(**fields), run_id=run_id)
    run.trainer().run(callback=run)


def first_paint(runs_dir: Path, run_id: str, repeats: int = 3) -> list[float]:
    tmux = shutil.which("tmux")
    command = shutil.which("grok-tui") or str(Path(sys.prefix) / "bin" / "grok-tui")
    if tmux is None:
        print("first paint: tmux missing, skipped")
        return []
    times = []
    for _ in range(repeats):
        session = f"bench-{uuid.uuid4().hex[:6]}"
        start = time.perf_counter()
        subprocess.run([tmux, "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                        f"{command} {run_id} --runs-dir {runs_dir}"], check=True)
        try:
            while time.perf_counter() - start < 30:
                screen = subprocess.run([tmux, "capture-pane", "-p", "-t", session],
                                        capture_output=True, text=True).stdout
                if "grok-tui" in screen or "1 Training" in screen:
                    times.append(time.perf_counter() - start)
                    break
                time.sleep(0.005)
        finally:
            subprocess.run([tmux, "kill-session", "-t", session], capture_output=True)
        time.sleep(0.5)
    return times


from textual.worker import WorkerCancelled  # noqa: E402


async def settle(app, pilot) -> None:
    for _ in range(400):
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive worker replaced by a newer one
            pass
        await pilot.pause()
        if all(w.is_finished for w in app.workers):
            return


def send_key(app, key: str) -> None:
    """Post a key event the way the driver does, without Pilot's wait for an idle screen
    (which would add the time to repaint everything to the figure)."""
    from textual import events

    app.post_message(events.Key(key, key if len(key) == 1 else None))


async def wait_until(predicate, timeout: float = 30.0) -> float:
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


def plots_built(pane) -> bool:
    """Every plot shown in ``pane`` shows the figure of its current data."""
    from grok_tui.widgets.plots import BasePlot

    return not any(plot.build_pending for plot in pane.query(BasePlot)
                   if plot.display and plot.region.area)


async def checkpoint_switch(runs_dir: Path, run_id: str) -> dict[str, list[float]]:
    from grok_tui.app import GrokApp

    app = GrokApp(run_id, runs_dir)
    out: dict[str, list[float]] = {}
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        for study, pane in screen.panes.items():
            await pilot.press(pane.KEY)
            await settle(app, pilot)  # warm: this pane's study ran once
            times = []
            screen.session.prefetch_enabled = False  # cold: no neighbour computed ahead
            for key in ("left", "right", "left"):
                screen.session.drop_caches()  # cold: the Context is rebuilt every time
                target = screen.epochs[screen.index + (-1 if key == "left" else 1)]
                start = time.perf_counter()
                send_key(app, key)
                await wait_until(lambda: screen.shown.get(study, (None,))[0] == target
                                 and plots_built(pane))
                await asyncio.sleep(0)  # the refresh of the new result
                times.append(time.perf_counter() - start)
                await settle(app, pilot)
            out[study] = times
    return out


async def latency_while_training(runs_dir: Path, run_id: str) -> list[float]:
    from grok_tui.app import GrokApp

    work = Path(tempfile.mkdtemp())
    shutil.copytree(runs_dir / run_id, work / run_id)
    app = GrokApp(run_id, work)
    times: list[float] = []
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        await pilot.press("end", "c")
        await pilot.press("ctrl+a", "ctrl+k", *"20000", "enter")
        await wait_until(lambda: screen.training)
        await asyncio.sleep(1.0)
        keys = ["2", "1"] * 10
        for key in keys:
            if not screen.training:
                break
            study = next(s for s, p in screen.panes.items() if p.KEY == key)
            start = time.perf_counter()
            send_key(app, key)
            await wait_until(lambda: screen.current_pane.STUDY == study)
            times.append(time.perf_counter() - start)
            await asyncio.sleep(0.2)
        screen.action_stop_training()
        await settle(app, pilot)
    shutil.rmtree(work, ignore_errors=True)
    return times


def rss_mib() -> float:
    """This process's resident set size (VmRSS), MiB."""
    with open("/proc/self/status") as fh:
        line = next(l for l in fh if l.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def start_training_child(runs_dir: Path, run_id: str) -> subprocess.Popen:
    """``grok_engine.train_process`` on a copy of ``run_id`` (in a temp folder), pinned to
    core 0 and trained far beyond its end: the load of a run training beside the app."""
    work = Path(tempfile.mkdtemp())
    shutil.copytree(runs_dir / run_id, work / run_id)
    done = max(int(p.stem.split("_")[1]) for p in (work / run_id / "checkpoints").glob("epoch_*"))

    def one_core() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {0})

    return subprocess.Popen([sys.executable, "-m", "grok_engine.train_process", str(work), run_id,
                             "--until-epoch", str(done + 10**6)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=one_core, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})


def stop_training_child(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.write("stop\n")
        proc.stdin.close()
        proc.wait(timeout=60)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        proc.kill()


async def shown_after(app, screen, pane, key: str, pause: float, extras: list | None = None) -> float:
    """Seconds from pressing ``key`` (a checkpoint step) to ``pane`` showing the new
    checkpoint's result with its plots built; ``pause`` first (a user's pace). With
    ``extras`` (a list), the seconds until its extra studies (the Neurons pane's probe
    line) are in too are appended to it."""
    await asyncio.sleep(pause)
    step = {"left": -1, "right": 1}[key]
    target = screen.epochs[screen.index + step]
    start = time.perf_counter()
    send_key(app, key)
    await wait_until(lambda: screen.shown.get(pane.STUDY, (None,))[0] == target and plots_built(pane), 120)
    await asyncio.sleep(0)
    shown = time.perf_counter() - start
    if extras is not None:
        await wait_until(lambda: not pane.pending_extras, 120)
        extras.append(time.perf_counter() - start)
    return shown


PAIRS = 3  # per pane: steps to a checkpoint not seen before and back to the one just seen


async def step_while_training(runs_dir: Path, run_id: str, steps: int = 100,
                              pause: float = 0.5) -> dict[str, object]:
    """Figure 4: per pane (first visit, revisit) times, and RSS after ``steps`` steps."""
    from grok_tui.app import GrokApp

    child = start_training_child(runs_dir, run_id)
    out: dict[str, object] = {}
    try:
        app = GrokApp(run_id, runs_dir)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(app, pilot)
            screen = app.screen
            for study, pane in screen.panes.items():
                await pilot.press(pane.KEY)
                await wait_until(lambda: study in screen.shown, 120)
                firsts, revisits, first_extras, revisit_extras = [], [], [], []
                for _ in range(PAIRS):  # the medians of PAIRS steps back (new) and forth (just seen)
                    extras: list[float] | None = [] if pane.EXTRA_STUDIES else None
                    firsts.append(await shown_after(app, screen, pane, "left", pause, extras))
                    revisits.append(await shown_after(app, screen, pane, "right", pause, extras))
                    await shown_after(app, screen, pane, "left", pause)  # on to the next new one
                    if extras:
                        first_extras.append(extras[0])
                        revisit_extras.append(extras[1])
                out[study] = tuple(statistics.median(v) for v in (firsts, revisits, first_extras, revisit_extras) if v)
            await pilot.press(next(p.KEY for p in screen.panes.values() if p.STUDY == "neurons"))
            await pilot.press("end")
            pane = screen.current_pane
            n = min(steps, len(screen.epochs) - 1)
            for _ in range(n):
                await shown_after(app, screen, pane, "left", 0.05)
            out["rss_mib"] = rss_mib()
            out["steps"] = n
            out["cache_mib"] = {k: v / 2**20 for k, v in screen.session.cache_bytes().items()}
    finally:
        stop_training_child(child)
    return out


def print_steps(run_id: str, result: dict[str, object]) -> None:
    print(f"stepping {run_id} while a training child runs on one core, medians of {PAIRS} "
          f"(targets: step < 500 ms, revisit < 100 ms, RSS < 1024 MiB):")
    for study, value in result.items():
        if isinstance(value, tuple):
            extra = (f"   (its extra studies in: {value[2] * 1000:.0f} ms, {value[3] * 1000:.0f} ms)"
                     if len(value) == 4 else "")
            print(f"  {study:10s} first visit {value[0] * 1000:6.0f} ms   revisit {value[1] * 1000:6.0f} ms{extra}")
    cache = ", ".join(f"{k} {v:.0f}" for k, v in result["cache_mib"].items())
    print(f"  RSS after {result['steps']} steps: {result['rss_mib']:.0f} MiB (caches MiB: {cache})")
def ensure_sweep(runs_dir: Path, sweep_id: str, axes: list[tuple[str, list]], **fields) -> None:
    """The sweep ``sweep_id`` (grok_engine.sweep.store) with every member trained, unless present."""
    from grok_engine.config import RunConfig
    from grok_engine.sweep.grid import Axis, Member
    from grok_engine.sweep.store import SweepStore, field_of

    sweeps = SweepStore(runs_dir)
    if sweep_id in sweeps.sweep_ids():
        return
    base = RunConfig().replace(**fields)
    grid = [Axis(flag, tuple(values)) for flag, values in axes]
    points = [dict(zip((a.flag for a in grid), combo)) for combo in itertools.product(*(a.values for a in grid))]
    members = [Member(v, base.replace(**{field_of(f): x for f, x in v.items()})) for v in points]
    print(f"making sweep {sweep_id} ({len(members)} members) ...", flush=True)
    sweep = sweeps.create(base, grid, members, sweep_id=sweep_id)
    for run_id in sweep.run_ids:
        run = sweeps.runs.open(run_id)
        run.trainer().run(callback=run)


async def sweep_screen(runs_dir: Path, sweep_id: str) -> dict[str, list[float]]:
    """Paint of the sweep screen, then x-axis and colour changes (module docstring, 4)."""
    from grok_tui.app import GrokApp
    from grok_tui.screens.sweep import SweepScreen

    app = GrokApp(None, runs_dir)
    out: dict[str, list[float]] = {"paint": [], "axis": [], "colour": []}
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        for _ in range(3):
            screen = SweepScreen(app.store, sweep_id)
            start = time.perf_counter()
            app.push_screen(screen)
            await wait_until(lambda: screen.diagram is not None and screen.is_current)
            await asyncio.sleep(0)  # the refresh of the diagram and the table
            out["paint"].append(time.perf_counter() - start)
            await settle(app, pilot)
            for key, name, read in (("x", "axis", lambda: screen.diagram.x), ("c", "colour", lambda: screen.diagram.mode)):
                for _ in range(4):
                    before = read()
                    start = time.perf_counter()
                    send_key(app, key)
                    await wait_until(lambda: read() != before)
                    await asyncio.sleep(0)
                    out[name].append(time.perf_counter() - start)
                    await settle(app, pilot)
            app.pop_screen()
            await settle(app, pilot)
    return out


def compare_painted(screen) -> bool:
    """The comparison's first paint: phase 1 posted, the loss overlay built, the table shown."""
    return (bool(screen.runs) and not screen.query_one("#compare-curves").build_pending
            and screen.query_one("#compare-table").row_count > 0)


async def compare_screen(runs_dir: Path, run_ids: list[str]) -> dict[str, list[float]]:
    """Comparison of ``run_ids``: cold (progress measures computed) then warm (cached);
    for each, first paint and complete (module docstring, 5)."""
    from grok_tui.app import GrokApp
    from grok_tui.screens.compare import CompareScreen

    work = Path(tempfile.mkdtemp())
    for run_id in run_ids:  # a copy without the progress cache: the cold figure computes it
        shutil.copytree(runs_dir / run_id, work / run_id, ignore=shutil.ignore_patterns("analysis"))
    app = GrokApp(None, work)
    out: dict[str, list[float]] = {f"{name} {what}": [] for name in ("cold", "warm") for what in ("paint", "complete")}
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        for name in ("cold", "warm", "warm", "warm"):
            screen = CompareScreen(app.store, run_ids)
            start = time.perf_counter()
            app.push_screen(screen)
            await wait_until(lambda: compare_painted(screen), timeout=600)
            await asyncio.sleep(0)  # the refresh of the table and the plot
            out[f"{name} paint"].append(time.perf_counter() - start)
            await wait_until(lambda: bool(screen.runs) and not screen.pending() and plots_built(screen),
                             timeout=600)
            await asyncio.sleep(0)
            out[f"{name} complete"].append(time.perf_counter() - start)
            await settle(app, pilot)
            app.pop_screen()
            await settle(app, pilot)
    shutil.rmtree(work, ignore_errors=True)
    return out


def multi_run(runs_dir: Path, quick: bool) -> None:
    if quick:  # tiny members: checks the bench runs, its figures mean little
        small = dict(task="mod_add", n_layers=1, n_heads=2, d_model=32, d_head=16, d_mlp=64, device="cpu")
        sweep_id, compare_p, epochs = "bench-sweep-quick", 23, 20
        ensure_sweep(runs_dir, sweep_id, [("lr", [1e-3, 3e-3, 1e-2, 3e-2]), ("weight-decay", [0.1, 0.3, 1.0, 3.0, 10.0]),
                                          ("frac-train", [0.3, 0.4, 0.5, 0.6, 0.7])],
                     p=11, epochs=epochs, checkpoint_every=10, **small)
        compare_ids = [f"bench-compare-quick-{i}" for i in range(8)]
        for i, run_id in enumerate(compare_ids):
            ensure_run(runs_dir, run_id, p=compare_p, seed=i, epochs=epochs, checkpoint_every=10, **small)
    else:
        sweep_id = "bench-sweep-100"
        ensure_sweep(runs_dir, sweep_id, [("lr", [1e-3, 3e-3, 1e-2, 3e-2]), ("weight-decay", [0.1, 0.3, 1.0, 3.0, 10.0]),
                                          ("frac-train", [0.3, 0.4, 0.5, 0.6, 0.7])],
                     task="mod_add", p=23, n_layers=1, n_heads=4, d_model=32, d_head=8, d_mlp=128,
                     epochs=300, checkpoint_every=100, device="cpu")
        compare_ids = [f"bench-mod-p113-seed{i}" for i in range(8)]
        for i, run_id in enumerate(compare_ids):
            ensure_run(runs_dir, run_id, task="mod_add", p=113, frac_train=0.3, seed=i, epochs=300,
                       checkpoint_every=25)
    times = asyncio.run(sweep_screen(runs_dir, sweep_id))
    print(f"sweep screen, {sweep_id} (100 members): paint {fmt(times['paint'])}   target < 1000 ms")
    print(f"  x axis change {fmt(times['axis'])}   colour change {fmt(times['colour'])}   target < 100 ms")
    times = asyncio.run(compare_screen(runs_dir, compare_ids))
    print(f"compare 8 runs ({compare_ids[0]} ...), first paint (loss overlay + table):")
    print(f"  cold {fmt(times['cold paint'])}   warm {fmt(times['warm paint'])}   target < 1000 ms")
    print(f"  complete (every run's progress measures in, no target): cold {fmt(times['cold complete'])}"
          f"   warm {fmt(times['warm complete'])}")


def fmt(times: list[float]) -> str:
    if not times:
        return "-"
    ms = [t * 1000 for t in times]
    return f"median {statistics.median(ms):6.0f} ms  max {max(ms):6.0f} ms  (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default=str(ROOT / "bench" / "runs"))
    parser.add_argument("--skip-paint", action="store_true")
    parser.add_argument("--only", choices=("paint", "switch", "latency", "step", "multi"), default=None)
    parser.add_argument("--tiny", action="store_true", help="figure 4 on a tiny run: checks the bench runs")
    parser.add_argument("--quick", action="store_true", help="--only multi on small runs")
    args = parser.parse_args()
    runs_dir = Path(args.runs_dir)
    if args.only == "multi":
        multi_run(runs_dir, args.quick)
        return
    if args.tiny:
        ensure_run(runs_dir, "bench-tiny-p23", task="mod_add", p=23, d_model=32, d_mlp=64, n_heads=2,
                   d_head=16, epochs=60, checkpoint_every=5, frac_train=0.5)
        print_steps("bench-tiny-p23", asyncio.run(step_while_training(runs_dir, "bench-tiny-p23", 10, 0.1)))
        return
    ensure_run(runs_dir, "bench-add-p10", task="add", p=10, epochs=300, checkpoint_every=25)
    ensure_run(runs_dir, "bench-mod-p113", task="mod_add", p=113, frac_train=0.3, epochs=300,
               checkpoint_every=25)
    if args.only in (None, "paint") and not args.skip_paint:
        print(f"first paint (tmux, whole process): {fmt(first_paint(runs_dir, 'bench-add-p10'))}"
              f"   target < 1000 ms")
    for run_id, target in (("bench-add-p10", 150), ("bench-mod-p113", 500)):
        if args.only not in (None, "switch"):
            break
        result = asyncio.run(checkpoint_switch(runs_dir, run_id))
        print(f"checkpoint switch, {run_id} (target < {target} ms):")
        for study, times in result.items():
            print(f"  {study:10s} {fmt(times)}")
    if args.only in (None, "latency"):
        for run_id in ("bench-add-p10", "bench-mod-p113"):
            print(f"key latency while training {run_id}: "
                  f"{fmt(asyncio.run(latency_while_training(runs_dir, run_id)))}   target < 100 ms")
    if args.only in (None, "step"):
        ensure_run(runs_dir, "bench-mod-p113-dense", task="mod_add", p=113, frac_train=0.3, epochs=300,
                   checkpoint_every=3)
        print_steps("bench-mod-p113-dense", asyncio.run(step_while_training(runs_dir, "bench-mod-p113-dense")))
    if args.only is None:
        multi_run(runs_dir, quick=False)


if __name__ == "__main__":
    main()
    from grok_engine import runtime

    runtime.exit_now(0)  # as grok-tui leaves: no teardown under an engine thread's prefetch
