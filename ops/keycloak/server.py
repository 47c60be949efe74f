"""Keycloak for the OIDC tests: the real server, fetched from Maven Central.

``keycloak_dist()`` fetches ``org.keycloak:keycloak-quarkus-dist`` (a zip) once with Maven and
unpacks it into a cache outside the work tree. ``KeycloakServer`` runs ``kc.sh start-dev`` on
free loopback ports from a home of its own (the cached jars linked, the rest copied: start-dev
rewrites its build files and data, and several test sessions may run at once), with realms
imported from JSON files, an in-memory database and a bounded heap.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx

from ops.kafka.broker import free_port
from ops.maven_cache import cache_dir, fetched

KEYCLOAK_VERSION = "26.5.6"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:zip"


def dist_cache() -> Path:
    """Where Keycloak is unpacked: ``$TSUNAGU_KEYCLOAK_HOME``, else ``~/.cache/tsunagu/...``."""
    return cache_dir("TSUNAGU_KEYCLOAK_HOME", f"keycloak-{KEYCLOAK_VERSION}")


def keycloak_dist() -> Path:
    """The unpacked distribution, fetched with Maven on first use (locked, atomic)."""
    return fetched(dist_cache(), _fetch_dist, KEYCLOAK_VERSION)


def _fetch_dist(staging: Path) -> Path:
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "dependency:copy",
            f"-Dartifact={ARTIFACT}",
            f"-DoutputDirectory={staging}",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    (archive,) = staging.glob("*.zip")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(staging)
    archive.unlink()
    (top,) = (p for p in staging.iterdir() if p.is_dir())
    # zipfile keeps no permission bits: the launch scripts must run.
    for script in (top / "bin").glob("*.sh"):
        script.chmod(0o755)
    return top


class KeycloakServer:
    """One ``kc.sh start-dev`` on 127.0.0.1 with the given realms imported; stopped on exit."""

    def __init__(self, realms: Sequence[Path], *, workdir: Path | None = None) -> None:
        self.realms = list(realms)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="keycloak-"))
        self.port = free_port()
        self.management_port = free_port()
        self.log_path = self.workdir / "keycloak.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:port``: realms are under ``/realms/<name>``."""
        return f"http://127.0.0.1:{self.port}"

    def issuer(self, realm: str) -> str:
        """The issuer of ``realm`` as Keycloak names it when asked on ``base_url``."""
        return f"{self.base_url}/realms/{realm}"

    def token(self, realm: str, **form: str) -> dict[str, object]:
        """The token endpoint's answer to this form (``grant_type``, client, user...)."""
        response = httpx.post(
            f"{self.issuer(realm)}/protocol/openid-connect/token", data=form, timeout=30
        )
        response.raise_for_status()
        answer: dict[str, object] = response.json()
        return answer

    def _home(self) -> Path:
        """A home of this server's own: the jars and themes linked, what it writes copied."""
        dist = keycloak_dist()
        home = self.workdir / "home"
        (home / "lib").mkdir(parents=True)
        for name in ("bin", "conf", "providers"):
            shutil.copytree(dist / name, home / name, symlinks=True)
        for entry in (dist / "lib").iterdir():
            if entry.name == "lib":
                (home / "lib" / "lib").symlink_to(entry)
            elif entry.is_dir():
                shutil.copytree(entry, home / "lib" / entry.name, symlinks=True)
            else:
                shutil.copy2(entry, home / "lib" / entry.name)
        (home / "themes").symlink_to(dist / "themes")
        imports = home / "data" / "import"
        imports.mkdir(parents=True)
        for realm in self.realms:
            shutil.copy(realm, imports / realm.name)
        return home

    def start(self, timeout_s: float = 600.0) -> None:
        """Start Keycloak and wait until every imported realm serves its OIDC metadata."""
        home = self._home()
        env = {
            **os.environ,
            "JAVA_OPTS_KC_HEAP": "-Xms128m -Xmx768m",
            "KC_LOG_CONSOLE_COLOR": "false",
        }
        command = [
            str(home / "bin" / "kc.sh"),
            "start-dev",
            "--import-realm",
            "--db=dev-mem",
            f"--http-port={self.port}",
            "--http-host=127.0.0.1",
            f"--http-management-port={self.management_port}",
            "--cache=local",
        ]
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own process group: kc.sh may run a build JVM before the server's.
                start_new_session=True,
            )
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        names = [realm.stem for realm in self.realms]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"Keycloak exited with {self._proc.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            try:
                if all(
                    httpx.get(
                        f"{self.issuer(n)}/.well-known/openid-configuration", timeout=2
                    ).status_code
                    == 200
                    for n in names
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"Keycloak did not serve realms {names} within {timeout_s} s")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop Keycloak (SIGTERM to its process group), killing it if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> KeycloakServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    print(keycloak_dist())
