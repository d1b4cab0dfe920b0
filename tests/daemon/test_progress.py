import io

from stratcast.daemon.progress import ProgressPrinter
from stratcast.shared.events import ProgressReported


class Terminal(io.StringIO):
    def isatty(self):
        return True


def report(step: int) -> ProgressReported:
    return ProgressReported(
        step=step,
        max_steps=300,
        epoch=1.0,
        train_loss=0.5,
        val_loss=None,
        best_val_loss=None,
        windows_per_s=1000.0,
        eta_s=0.0,
        learning_rate=1e-3,
        micro_batch=64,
    )


def test_a_line_printed_after_the_bar_starts_on_a_line_of_its_own():
    screen = Terminal()
    printer = ProgressPrinter(screen)
    printer(report(300))
    printer.log("trained to step 300")
    printer(report(10))
    printer.log("stopped at step 10/300")
    printer.close()
    assert "eta 0s\x1b[K\ntrained to step 300\n\r[" in screen.getvalue()
    assert screen.getvalue().endswith("eta 0s\x1b[K\nstopped at step 10/300\n")


def test_without_a_terminal_log_lines_and_progress_lines_alternate_plainly():
    stream = io.StringIO()
    printer = ProgressPrinter(stream)
    printer(report(300))
    printer.log("trained to step 300")
    printer.close()
    assert stream.getvalue().splitlines()[1] == "trained to step 300"
