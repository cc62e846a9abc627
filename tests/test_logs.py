"""hinet.logs: the CLIs' -v/-q flags and the one stderr handler they configure."""

import argparse
import logging

import pytest

from hinet.logs import PACKAGE_LOGGER, add_verbosity_flags, configure_logging, verbosity


@pytest.fixture(autouse=True)
def restore_package_logger():
    logger = logging.getLogger(PACKAGE_LOGGER)
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_verbosity_flags(parser)
    return parser.parse_args(list(argv))


def test_flags_give_a_verbosity():
    assert [verbosity(parse(*argv)) for argv in ([], ["-v"], ["-q"], ["-qq"], ["--quiet"])] == [0, 1, -1, -2, -1]
    with pytest.raises(SystemExit):
        parse("-v", "-q")  # one or the other


@pytest.mark.parametrize(
    "level, shown",
    [
        (1, ["debug: d", "i", "warning: w", "error: e"]),
        (0, ["i", "warning: w", "error: e"]),
        (-1, ["warning: w", "error: e"]),
        (-2, ["error: e"]),
        (-5, ["error: e"]),
    ],
)
def test_levels_and_format(capsys, level, shown):
    configure_logging(level)
    log = logging.getLogger("hinet.some_module")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert capsys.readouterr().err.splitlines() == shown


def test_configuring_twice_keeps_one_handler(capsys):
    configure_logging(0)
    configure_logging(0)
    logging.getLogger("hinet.x").info("once")
    assert capsys.readouterr().err == "once\n"
