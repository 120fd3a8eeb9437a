"""`technic serve`'s logging: Technic's loggers reach the output with their structured fields."""

import logging
import logging.config

from api.log_config import StructuredFormatter, log_config


def test_extra_fields_follow_the_message_as_key_value_pairs():
    record = logging.LogRecord("api.scans", logging.INFO, __file__, 1, "scan finished", None, None)
    record.scan_id = "adhoc-1"
    record.reason = "max signals"
    line = StructuredFormatter("%(name)s: %(message)s").format(record)
    assert line == "api.scans: scan finished reason='max signals' scan_id=adhoc-1"


def test_a_record_without_extras_is_the_plain_line():
    record = logging.LogRecord("technic_core.daily", logging.INFO, __file__, 1, "scanned %s", ("2024-06-28",), None)
    assert StructuredFormatter("%(message)s").format(record) == "scanned 2024-06-28"


def test_api_and_core_loggers_write_to_the_server_output(capsys):
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "api", "technic_core")
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level, logging.getLogger(name).propagate)
        for name in names
    }
    logging.config.dictConfig(log_config())
    try:
        logging.getLogger("technic_core.sources.polygon").warning("retrying", extra={"attempt": 2})
        logging.getLogger("api.main").info("api started", extra={"warehouse": "/w"})
        logging.getLogger("technic_core.daily").debug("not at INFO")
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
    err = capsys.readouterr().err
    assert "WARNING technic_core.sources.polygon: retrying attempt=2" in err
    assert "INFO api.main: api started warehouse=/w" in err
    assert "not at INFO" not in err
