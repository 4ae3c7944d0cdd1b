"""Train one run in a process of its own, reporting as JSON lines: what the app runs.

    python -m grok_engine.train_process RUNS_DIR RUN_ID [--until-epoch N] [--force]

Why a process and not a thread of the app: training is Python driving many small ops
(the p=10 trainer runs ~150 numpy calls per 1.3 ms epoch), so in a thread it holds the GIL
about half the time the app wants it, and every render or key press of the app took about
twice as long while training ran. A process shares no GIL; it is also the only kind of
worker that can be stopped without killing the app.

Protocol. stdout, one JSON object per line (NaN allowed, as Python's json writes it):

- ``{"event": "started", "epoch": E}`` once the trainer is built (E: where it resumes);
- ``{"event": "progress", "epoch": E, "target": T, "elapsed_s": S, "metrics": {name: [...]}}``
  with the metrics of the epochs since the last one (``Metrics.as_dict`` as lists);
- ``{"event": "checkpoint", "epoch": E}`` after the checkpoint of epoch E is on disk;
- last, ``{"event": "finished", "epoch": E, "stopped": bool}`` or
  ``{"event": "error", "epoch": E, "message": "..."}``; a run that diverged (a loss or
  weight not finite) ends with an error whose ``"diverged"`` field is the epoch, and its
  message says so (exit code 3).

Before training it takes the run's lock (a run another process trains is an error naming
that process) and checks that the run fits in memory (``grok_engine.memory``; ``--force``
skips that check).

stdin: a line ``stop``, or end of file (the app went away), stops training after the next
epoch; the trainer writes a checkpoint there first, as it does for ``s`` in the app.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import IO, Any

from grok_engine.errors import GrokError


def _writer(out: IO[str]):
    lock = threading.Lock()

    def send(**fields: Any) -> None:
        line = json.dumps(fields)
        with lock:
            out.write(line + "\n")
            out.flush()

    return send


def _watch_stdin(stop: threading.Event, inp: IO[str]) -> None:
    for line in inp:
        if line.strip() == "stop":
            break
    stop.set()  # "stop", or EOF: nobody is listening any more


EXIT_DIVERGED = 3


def train(runs_dir: str, run_id: str, until_epoch: int | None, out: IO[str], inp: IO[str],
          force: bool = False) -> int:
    """Train ``run_id`` to ``until_epoch`` (default: its config's epochs), reporting on
    ``out`` and stopping on ``inp`` as the module docstring says. Returns the exit code."""
    send = _writer(out)
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop, inp), daemon=True, name="stdin").start()
    epoch = 0
    try:
        from grok_engine.memory import check_fits
        from grok_engine.store import RunStore
        from grok_engine.train import Checkpoint, Progress, pick_device

        run = RunStore(runs_dir).open(run_id)
        with run.lock():  # held until training ends; the kernel drops it if we are killed
            if not force:  # before the trainer allocates anything
                check_fits(run.config, pick_device(run.config.train.device))
            trainer = run.trainer()
            epoch = trainer.epoch
            send(event="started", epoch=epoch)

            def on_event(event: Any) -> None:
                run(event)  # persist first: a reported checkpoint is on disk
                if isinstance(event, Checkpoint):
                    send(event="checkpoint", epoch=event.epoch)
                elif isinstance(event, Progress):
                    send(event="progress", epoch=event.epoch, target=event.target_epoch,
                         elapsed_s=event.elapsed_s,
                         metrics={k: v.tolist() for k, v in event.metrics.as_dict().items()})

            trainer.run(callback=on_event, stop=stop.is_set, until_epoch=until_epoch)
        if trainer.diverged is not None:
            d = trainer.diverged
            send(event="error", epoch=d.epoch, diverged=d.epoch,
                 message=f"run {run.id} diverged at epoch {d.epoch} ({d.reason}): training stopped; "
                         f"checkpoints end at epoch {run.epochs_done()}")
            return EXIT_DIVERGED
        send(event="finished", epoch=trainer.epoch, stopped=stop.is_set())
        return 0
    except GrokError as exc:
        send(event="error", epoch=epoch, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - one line for the app, never a traceback
        send(event="error", epoch=epoch, message=f"{type(exc).__name__}: {exc}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grok_engine.train_process",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir")
    parser.add_argument("run_id")
    parser.add_argument("--until-epoch", type=int, default=None)
    parser.add_argument("--force", action="store_true", help="skip the memory check")
    args = parser.parse_args(argv)
    from grok_engine import runtime

    runtime.configure("child")  # a core left to the app, nice 10; here, not in train(): tests call that
    return train(args.runs_dir, args.run_id, args.until_epoch, sys.stdout, sys.stdin, args.force)


if __name__ == "__main__":  # pragma: no cover - run as a process by the app
    from grok_engine import runtime

    code = main()
    # Every file is closed (the run writes checkpoints synchronously); skip the ~0.5 s
    # interpreter teardown that torch costs, which the app would wait for.
    runtime.exit_now(code)
