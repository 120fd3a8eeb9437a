"""`technic serve` plus the page's routers, for the browser tests while api/main.py does not register them.

`python -m tests.web.serve --port N --warehouse PATH` builds the app exactly as `technic serve` does
(`create_app` from `TECHNIC_*` variables, the garbage-collector tuning, uvicorn with the API's log config),
then includes `api.routers.web` and `api.routers.symbols` when the app lacks them. Once api/main.py includes
both routers, `tests.web.support.serve_command` starts `technic serve` itself and this module is unused.
"""

from __future__ import annotations

import argparse
from types import ModuleType

import uvicorn
from fastapi import FastAPI
from starlette.routing import NoMatchFound

from api.log_config import log_config
from api.main import create_app, tune_garbage_collection
from api.routers import symbols, web
from technic_core.config import Settings


def missing_routers(application: FastAPI) -> list[ModuleType]:
    """The page's routers the app does not include (found by their routes' names)."""
    missing = []
    for module, name, parameters in ((web, "web_index", {}), (symbols, "symbol_history", {"symbol": "A"})):
        try:
            application.url_path_for(name, **parameters)
        except NoMatchFound:
            missing.append(module)
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--warehouse", required=True)
    arguments = parser.parse_args()
    application = create_app(Settings.from_env(warehouse=arguments.warehouse))
    for module in missing_routers(application):
        application.include_router(module.router)
    tune_garbage_collection()
    uvicorn.run(application, host=arguments.host, port=arguments.port, log_config=log_config())


if __name__ == "__main__":
    main()
