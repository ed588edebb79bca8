"""Real services for tests: a PostgreSQL cluster, an ``mlflow server`` on it, a model server.

Each is started in a temporary folder on free loopback ports and stopped at the end. Missing
programs are an error that says what to install (``.ci/run`` installs them), never a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv's mlflow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({process.returncode}):\n{log_tail(log)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout} s:\n{log_tail(log)}")


def log_tail(path: Path, lines: int = 40) -> str:
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
    )


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    if which := shutil.which("initdb"):
        return Path(which).parent
    raise RuntimeError("PostgreSQL server programs not found: apt-get install postgresql")


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the distribution's ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster; yields the SQLAlchemy URI of its ``mlflow`` database.

    It lives in its own folder under the system temp dir (pytest's are private to root, and
    PostgreSQL runs as its own user when the tests run as root) and is removed afterwards."""
    bin_dir, port = postgres_bin(), free_port()
    root = Path(tempfile.mkdtemp(prefix="mer-postgres-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    _run(_as_postgres_user([f"{bin_dir}/initdb", "-D", str(data), "-U", "postgres", "-A", "trust"]))
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    pg_ctl = [f"{bin_dir}/pg_ctl", "-D", str(data)]
    _run(
        _as_postgres_user([*pg_ctl, "-l", str(root / "postgres.log"), "-w", "-o", options, "start"])
    )
    try:
        _run(
            [f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"]
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(_as_postgres_user([*pg_ctl, "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def http_server(
    arguments: list[str], health: str, log: Path, env: dict[str, str], timeout: float = 120
) -> Iterator[str]:
    """``mlflow <arguments> --host 127.0.0.1 --port <free>`` until ``health`` answers; yields
    its URL and stops it (with everything it started) afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "mlflow"), *arguments, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}{health}", process, log, timeout)
        yield url
    finally:
        stop(process)


def mlflow_server(backend_uri: str, artifacts: Path, log: Path):
    """``mlflow server`` on ``backend_uri`` serving artifacts from ``artifacts``."""
    arguments = ["server", "--backend-store-uri", backend_uri]
    arguments += ["--artifacts-destination", artifacts.as_uri(), "--workers", "1"]
    # no job runners (MLflow 3's GenAI jobs: seven huey processes the project never uses)
    env = {"MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return http_server(arguments, "/health", log, env)


def model_server(model_uri: str, tracking_uri: str, log: Path):
    """``mlflow models serve`` of ``model_uri`` in this environment (``--env-manager local``)."""
    arguments = ["models", "serve", "-m", model_uri, "--env-manager", "local"]
    return http_server(arguments, "/ping", log, {"MLFLOW_TRACKING_URI": tracking_uri}, 240)


def stop(process: subprocess.Popen) -> None:
    """Stop a server and everything it started (its session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait()


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise RuntimeError("Chromium not found: apt-get install chromium")


def render_page(url: str, screenshot: Path, profile: Path) -> str:
    """Render ``url`` in headless Chromium: save a screenshot, return the rendered DOM."""
    flags = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
        "--virtual-time-budget=20000",
    ]
    subprocess.run(
        [*flags, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=180
    )
    return subprocess.run(
        [*flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=180
    ).stdout
