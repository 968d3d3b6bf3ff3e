"""The quiet console: our INFO lines as bare messages, file-only details and library INFO in the log file only."""

import logging as std_logging

from absl import logging

from rstar_jax.progress import Progress
from rstar_jax.workdir import quiet_console, setup_logging


def _drop_file_handlers():
    root = std_logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, std_logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()


def test_quiet_console_shows_bare_stage_lines_and_keeps_details_in_the_log(tmp_path, capfd):
    root = std_logging.getLogger()
    attached = logging.get_absl_handler() in root.handlers
    logging.use_absl_handler()  # as absl's app.run does for our commands
    log = setup_logging(tmp_path / "logs", "console")
    quiet_console(True)
    try:
        with Progress(total=1, desc="shown stage", unit="step", enabled=False) as bar:  # no bar: the line shows
            bar.update(1)
        with Progress(total=1, desc="barred stage", unit="step", enabled=True) as bar:  # the bar said it all
            bar.update(1)
        std_logging.getLogger("orbax.checkpoint").info("library chatter")
        logging.warning("a warning")
        err = capfd.readouterr().err
        lines = [line for line in err.splitlines() if "stage" in line or "chatter" in line or "warning" in line]
        assert any(line.startswith("shown stage: 1 step in ") for line in lines), err
        assert not any("barred stage: 1 step" in line for line in lines), err
        assert "library chatter" not in err and "warning: a warning" in err
        assert not any(line[:1] == "I" and "] " in line for line in err.splitlines())  # no absl prefix
        text = log.read_text()
        assert "shown stage: 1 step" in text and "barred stage: 1 step" in text and "library chatter" in text
        assert "progress.py" in text  # the file keeps absl's prefix
    finally:
        quiet_console(False)
        _drop_file_handlers()
        if not attached:
            root.removeHandler(logging.get_absl_handler())
