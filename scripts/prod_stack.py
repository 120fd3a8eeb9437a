"""The production shape on one machine: PostgreSQL as Dagster's storage, an S3-compatible bucket as the warehouse.

`python scripts/prod_stack.py up` (`make up-prod`) starts, all on loopback:

* a throwaway PostgreSQL cluster in a temp directory (Debian's `postgresql` server binaries; as root the
  server runs as the `postgres` system user, since PostgreSQL refuses to run as root), holding Dagster's run,
  event-log and schedule storage through `dagster-postgres`;
* moto's standalone S3 server with one bucket, the warehouse root (`s3://technic/warehouse`);
* a Dagster instance directory whose dagster.yaml is the project's (run queue, launcher, run monitoring,
  pools) plus `storage: postgres`;
* the Dagster webserver and daemon, and `technic serve` on the bucket;

prints the addresses and the environment that points `technic` at the same instance and bucket, and stops
everything, its data included, on Ctrl-C or when any of its processes exits.

`tests/integration/test_production_shape.py` starts the same stack from `production_stack()` below.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BUCKET = "technic"
WAREHOUSE = f"s3://{BUCKET}/warehouse"
DATABASE = "dagster"
DB_USER = "technic"
#: moto accepts any credentials; these only have to be present, so pyarrow, DuckDB and boto sign requests.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "technic", "AWS_SECRET_ACCESS_KEY": "technic-local", "AWS_REGION": "us-east-1"}
#: PostgreSQL's server binaries outside PATH, one directory per major version (Debian's layout).
DEBIAN_POSTGRES = Path("/usr/lib/postgresql")
START_TIMEOUT_S = 60.0


class StackError(RuntimeError):
    """A part of the stack is missing or did not start; the message says which and what to do."""


def free_port() -> int:
    """A TCP port nothing listens on at the moment (the server that takes it binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path:
    """The directory of PostgreSQL's `initdb` and `pg_ctl`: from PATH, else Debian's newest installed server."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(
        (int(path.parent.parent.name), path.parent)
        for path in DEBIAN_POSTGRES.glob("*/bin/initdb")
        if path.parent.parent.name.isdigit()
    )
    if not versions:
        raise StackError(
            "PostgreSQL's server (initdb, pg_ctl) is not installed: `apt-get install postgresql` on Debian "
            "(`make test` and `make up-prod` do it when run as root)"
        )
    return versions[-1][1]


def wait_until(condition: Callable[[], object], what: str, timeout_s: float, explain: Callable[[], str]) -> None:
    """Poll `condition` until it is truthy; after `timeout_s` raise `StackError` naming `what` with `explain()`."""
    give_up = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up:
            raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{explain()}")
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # an HTTP answer of any status: the server is up
    except OSError:
        return False


@dataclass
class Postgres:
    """A throwaway cluster in `directory`, listening on 127.0.0.1:`port`, trusting local connections."""

    directory: Path
    port: int
    bin: Path
    #: The system user the server runs as: `postgres` when we are root, else None (ourselves).
    user: str | None

    @classmethod
    def start(cls) -> Postgres:
        binaries = postgres_bin()
        user = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise StackError("running as root needs the `postgres` system user (Debian's postgresql)") from None
            user = owner.pw_name
        # Not under the caller's directory: a root-owned 0700 parent (pytest's tmp_path) would lock `postgres` out.
        directory = Path(tempfile.mkdtemp(prefix="technic-postgres-"))
        if user is not None:
            shutil.chown(directory, user, user)
        server = cls(directory, free_port(), binaries, user)
        try:
            server._pg("initdb", "-D", str(server.data), "-U", DB_USER, "--auth=trust", "--encoding=UTF8", "--no-sync")
            options = (
                f"-p {server.port} -k {directory} -c listen_addresses=127.0.0.1 "
                # A throwaway cluster: durability costs time and buys nothing.
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            server._pg("pg_ctl", "start", "-D", str(server.data), "-l", str(server.log), "-w", "-o", options)
            server._create_database()
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def _pg(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / program), *args],
            user=self.user,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise StackError(f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def _create_database(self) -> None:
        import psycopg2  # a dependency of dagster-postgres

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=DB_USER, dbname="postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            connection.close()

    def connect(self):  # -> psycopg2 connection; untyped library
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=DB_USER, dbname=DATABASE)

    @property
    def storage_config(self) -> dict[str, object]:
        """The instance's `storage:` section: run, event-log and schedule storage in this server."""
        database = {
            "hostname": "127.0.0.1",
            "port": self.port,
            "username": DB_USER,
            "db_name": DATABASE,
            # dagster-postgres installs psycopg2, while SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3.
            "scheme": "postgresql+psycopg2",
        }
        return {"postgres": {"postgres_db": database}}

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w"],
                user=self.user,
                cwd=self.directory,
                capture_output=True,
                timeout=START_TIMEOUT_S,
            )
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Stack:
    """The running parts: Postgres, the S3 server, the instance directory; processes started through it."""

    directory: Path
    postgres: Postgres
    s3_port: int
    #: Settings every process of the stack gets besides the S3 ones (e.g. TECHNIC_SIM_SYMBOLS).
    settings: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        """DAGSTER_HOME: its dagster.yaml keeps storage in Postgres; compute logs stay in this directory."""
        return self.directory / "dagster_home"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process of the stack: ours without AWS_* and TECHNIC_* variables (a developer's
        own profile or warehouse must not leak in), plus the instance, the bucket and `settings`."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TECHNIC_"))}
        return {
            **inherited,
            **AWS_ENV,
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "DAGSTER_HOME": str(self.home),
            "TECHNIC_WAREHOUSE": WAREHOUSE,
            **self.settings,
            **extra,
        }

    def s3_filesystem(self, *, allow_bucket_creation: bool = False) -> pafs.S3FileSystem:
        """pyarrow's S3 filesystem on the bucket's server, configured explicitly (no environment needed)."""
        return pafs.S3FileSystem(
            access_key=AWS_ENV["AWS_ACCESS_KEY_ID"],
            secret_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            region=AWS_ENV["AWS_REGION"],
            endpoint_override=self.s3_endpoint,
            allow_bucket_creation=allow_bucket_creation,
        )

    def start(self, name: str, args: list[str], **extra_env: str) -> subprocess.Popen[bytes]:
        """Start `args` in the repository in a session of its own (so a stop reaches its children), output to
        logs/<name>.log; stopped with the stack unless it ended before."""
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                args,
                cwd=REPO,
                env=self.env(**extra_env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def log_tails(self) -> str:
        """The end of every log of the stack, for failure messages."""
        logs = [*sorted(self.logs.glob("*.log")), self.postgres.log]
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())

    def serve_api(self, port: int, **extra_env: str) -> str:
        """`technic serve` on the bucket; its base URL once it answers."""
        process = self.start("api", [str(BIN / "technic"), "serve", "--port", str(port)], **extra_env)
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: process.poll() is not None or _answers(f"{url}/health"), "the API", START_TIMEOUT_S, self.log_tails
        )
        if process.poll() is not None:
            raise StackError(f"`technic serve` exited with {process.returncode}\n{self.log_tails()}")
        return url

    def start_daemon(self) -> subprocess.Popen[bytes]:
        """The Dagster daemon: run queue, run monitoring, schedules, sensors and backfills of the instance."""
        return self.start("dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")])

    def serve_dagster(self, port: int) -> str:
        """The Dagster daemon and webserver over the instance; the UI's URL once it answers."""
        self.start_daemon()
        webserver = self.start(
            "dagster-webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")],
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: webserver.poll() is not None or _answers(f"{url}/server_info"),
            "the Dagster webserver",
            START_TIMEOUT_S * 2,  # it loads the code location before it answers
            self.log_tails,
        )
        if webserver.poll() is not None:
            raise StackError(f"dagster-webserver exited with {webserver.returncode}\n{self.log_tails()}")
        return url

    def stop_processes(self) -> None:
        """SIGTERM every started process group still running, newest first; SIGKILL what outlives 10 s."""
        running = [p for p in reversed(self.processes.values()) if p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _start_s3(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with (directory / "moto.log").open("ab") as log:
        server = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return server, port


def _instance_config(postgres: Postgres, run_monitoring: dict[str, object]) -> str:
    """The project's dagster.yaml (run queue, launcher, run monitoring, pools) with Postgres storage added and
    `run_monitoring` settings overridden."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    if "storage" in config:
        raise StackError(f"{REPO / 'dagster.yaml'} already names a storage; the stack adds its own")
    config["run_monitoring"] = {**config.get("run_monitoring", {}), **run_monitoring}
    return yaml.safe_dump({"storage": postgres.storage_config, **config}, sort_keys=False)


@contextlib.contextmanager
def production_stack(
    directory: Path, settings: dict[str, str] | None = None, run_monitoring: dict[str, object] | None = None
) -> Iterator[Stack]:
    """Postgres, the S3 server with its bucket and the instance directory, under `directory` (Postgres's data
    in a temp directory of its own); everything started through the stack stops on exit, data removed.
    `settings` go to every process of the stack; `run_monitoring` overrides the project's settings of it."""
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as cleanup:
        postgres = Postgres.start()
        cleanup.callback(postgres.stop)
        s3, s3_port = _start_s3(directory)
        cleanup.callback(lambda: (os.killpg(s3.pid, signal.SIGKILL), s3.wait()))
        stack = Stack(directory, postgres, s3_port, dict(settings or {}))
        cleanup.callback(stack.stop_processes)
        stack.logs.mkdir(exist_ok=True)
        stack.home.mkdir(exist_ok=True)
        (stack.home / "dagster.yaml").write_text(_instance_config(postgres, run_monitoring or {}))
        wait_until(
            lambda: s3.poll() is not None or _answers(stack.s3_endpoint),
            "the S3 server",
            START_TIMEOUT_S,
            lambda: (directory / "moto.log").read_text(errors="replace"),
        )
        if s3.poll() is not None:
            raise StackError(f"moto_server exited with {s3.returncode}: {(directory / 'moto.log').read_text()}")
        stack.s3_filesystem(allow_bucket_creation=True).create_dir(BUCKET)
        yield stack


def _session(value: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a date in YYYY-MM-DD form")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack; Ctrl-C stops it and removes its data")
    up.add_argument("--ui-port", type=int, default=3000, help="Dagster UI port (default 3000)")
    up.add_argument("--api-port", type=int, default=8000, help="API port (default 8000)")
    up.add_argument("--symbols", type=int, default=500, help="simulated market size (default 500)")
    up.add_argument(
        "--start-date",
        type=_session,
        help="first session of bar history (TECHNIC_START_DATE); later means a shorter first backfill",
    )
    options = parser.parse_args(argv)
    if options.symbols < 1:
        parser.error("--symbols must be at least 1")
    # Ctrl-C, `kill` and a closed terminal all unwind through the cleanup below; SIGINT is set explicitly because
    # a shell starts background jobs with it ignored, and Python then installs no handler of its own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.default_int_handler)
    settings = {"TECHNIC_SIM_SYMBOLS": str(options.symbols)}
    if options.start_date:
        settings["TECHNIC_START_DATE"] = options.start_date
    with tempfile.TemporaryDirectory(prefix="technic-prod-") as directory:
        try:
            with production_stack(Path(directory), settings) as stack:
                ui = stack.serve_dagster(options.ui_port)
                api = stack.serve_api(options.api_port)
                print(
                    f"Dagster UI:  {ui}   (storage: postgresql://{DB_USER}@127.0.0.1:{stack.postgres.port}/{DATABASE})"
                )
                print(f"API:         {api}/   docs: {api}/docs")
                print(f"warehouse:   {WAREHOUSE} on {stack.s3_endpoint}   logs: {stack.logs}")
                print("Run a scan against the same instance and bucket from another terminal:")
                exports = {k: v for k, v in stack.env().items() if k not in os.environ or os.environ[k] != v}
                print("  " + " ".join(f"{k}={v}" for k, v in sorted(exports.items())) + " .venv/bin/technic run")
                print("Ctrl-C stops everything and removes its data.", flush=True)
                while all(process.poll() is None for process in stack.processes.values()):
                    time.sleep(0.5)
                ended = [name for name, process in stack.processes.items() if process.poll() is not None]
                print(f"{', '.join(ended)} exited; stopping\n{stack.log_tails()}", file=sys.stderr)
                return 1
        except KeyboardInterrupt:
            return 0
        except StackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
