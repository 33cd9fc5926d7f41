"""Rich progress bars on stderr, so stdout stays clean for --json."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stderr_console = Console(stderr=True)


class TrainingProgress:
    """One bar per epoch with running loss and accuracy, and a line per finished epoch like Keras prints."""

    def __init__(self, epochs: int, steps_per_epoch: int, enabled: bool) -> None:
        self.epochs, self.steps_per_epoch, self.enabled = epochs, steps_per_epoch, enabled
        self.bar = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[accuracy]:.4f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=stderr_console,
            disable=not enabled,
        )
        self.task = None

    def __enter__(self) -> TrainingProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        self.task = self.bar.add_task(
            "train", total=self.steps_per_epoch, epoch=epoch, epochs=self.epochs, loss=0.0, accuracy=0.0
        )

    def advance(self, loss: float, accuracy: float) -> None:
        self.bar.update(self.task, advance=1, loss=loss, accuracy=accuracy)

    def end_epoch(self, record: dict) -> None:
        if self.enabled:
            self.bar.console.print(
                f"epoch {record['epoch']}: loss {record['loss']:.4f} accuracy {record['accuracy']:.4f} "
                f"val_loss {record['val_loss']:.4f} val_accuracy {record['val_accuracy']:.4f}"
            )
