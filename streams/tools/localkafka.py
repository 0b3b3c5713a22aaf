"""A local single-node Apache Kafka (KRaft) for development, tests and the demo.

The broker's jars come from Maven Central through Maven (the pom beside this module), cached under
`~/.cache/orderflow/kafka/<version>`; the broker runs in the background as plain `java kafka.Kafka`.
This is the only way orderflow starts Kafka: the CLI, the test suite and the demo all call it.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from streams.errors import BrokerError

KAFKA_VERSION = "4.1.1"
SCRAM = "SCRAM-SHA-512"
NO_JAVA = "Java 17+ is needed to run Kafka: install it (apt-get install openjdk-17-jre)"
POM = resources.files("streams.tools") / "kafka" / "pom.xml"

LOG4J2 = """\
Configuration:
  status: warn
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
"""


def cache_root() -> Path:
    """Where fetched jars live (ORDERFLOW_CACHE_DIR, default ~/.cache/orderflow)."""
    return Path(os.environ.get("ORDERFLOW_CACHE_DIR", Path.home() / ".cache" / "orderflow"))


def new_cluster_id() -> str:
    """A random KRaft cluster id as Kafka makes them (`Uuid.randomUuid`): URL-safe base64 of 16
    random bytes, never starting with `-`, which `kafka-storage format -t` would take for an option
    (one fresh data dir in 64 failed to format before)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class LocalKafka:
    """One local broker: where it listens and where it keeps its data, pid and log."""

    port: int = 9092
    data_dir: Path = Path.home() / ".local" / "share" / "orderflow" / "kafka"
    #: With a user name, the broker takes SASL (SCRAM-SHA-512 over plaintext) only, and this user
    #: is created when the data dir is formatted (`orderflow kafka start --sasl`).
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)

    @property
    def sasl(self) -> bool:
        return bool(self.sasl_username)

    def client_config(self) -> dict[str, str]:
        """librdkafka settings to reach this broker (what KAFKA_SECURITY_PROTOCOL etc. say)."""
        conf = {"bootstrap.servers": self.bootstrap}
        if self.sasl:
            conf.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": SCRAM,
                         "sasl.username": self.sasl_username, "sasl.password": self.sasl_password})
        return conf

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def libs_dir(self) -> Path:
        return cache_root() / "kafka" / KAFKA_VERSION / "libs"

    # -- fetching -----------------------------------------------------------------------------

    def fetch(self, progress: bool = True) -> Path:
        """Copy the broker's jars from Maven Central into the cache once; return the folder."""
        done = self.libs_dir / ".complete"
        if done.exists():
            return self.libs_dir
        _require("java", NO_JAVA)
        _require("mvn", "Maven is needed to fetch Kafka's jars: install it (apt-get install maven)")
        self.libs_dir.mkdir(parents=True, exist_ok=True)
        _say(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {self.libs_dir}")
        with resources.as_file(POM) as pom:
            cmd = [
                "mvn", "-B", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={self.libs_dir}", "-DincludeScope=runtime",
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            fetched, tail = 0, list[str]()
            for line in proc.stdout:
                tail = [*tail[-30:], line.rstrip()]
                if "Downloaded from" in line:
                    fetched += 1
                    if progress and fetched % 10 == 0:
                        _say(f"  … {fetched} artifacts downloaded")
            if proc.wait() != 0:
                raise BrokerError("Maven could not fetch Kafka's jars:\n" + "\n".join(tail))
        _say(f"  fetched ({fetched} artifacts downloaded)")
        done.touch()
        return self.libs_dir

    # -- lifecycle ----------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The broker's pid when its process is alive, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def answers(self, timeout: float = 2.0) -> bool:
        """True when a broker at `bootstrap` answers a metadata request."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({**self.client_config(), "log_level": 0})
        try:
            admin.list_topics(timeout=timeout)
        except Exception:
            return False
        return True

    def start(self, wait_s: float = 90.0) -> bool:
        """Start the broker unless one runs; wait until it answers. True when it was started."""
        if self.pid() is not None or self.answers(timeout=1.0):
            return False
        if self.sasl and (not self.sasl_password or any(c in self.sasl_password for c in '"\\,=[]')):
            raise BrokerError("the local broker's SASL password must be set and free of \" \\ , = [ ]")
        java = _require("java", NO_JAVA)
        libs = self.fetch()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        classpath = f"{libs}/*"
        marker = self.data_dir / "sasl-user"
        if not (self.data_dir / "log" / "meta.properties").exists():
            scram = (["--add-scram", f"{SCRAM}=[name={self.sasl_username},password={self.sasl_password}]"]
                     if self.sasl else [])
            fmt = subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
                 "-t", new_cluster_id(), "-c", str(props), *scram],
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                output = f"{fmt.stdout}{fmt.stderr}".strip()
                if self.sasl_password:
                    output = output.replace(self.sasl_password, "***")
                raise BrokerError(f"formatting KRaft storage failed: {output}")
            marker.unlink(missing_ok=True)
            if self.sasl:
                marker.write_text(self.sasl_username)
        formatted_for = marker.read_text().strip() if marker.exists() else ""
        if formatted_for != self.sasl_username:
            raise BrokerError(
                f"the data dir {self.data_dir} was formatted "
                + (f"for SASL user {formatted_for!r}" if formatted_for else "without SASL")
                + "; use another --data-dir (or the same settings as when it was made)")
        log = self.log_file.open("ab")
        proc = subprocess.Popen(
            [java, "-Xms256m", "-Xmx1g", f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.yaml'}",
             "-cp", classpath, "kafka.Kafka", str(props)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(f"Kafka exited with {proc.returncode}; see {self.log_file}:\n"
                                  + self._log_tail())
            if self.answers(timeout=1.0):
                return True
            time.sleep(0.5)
        self.stop()
        raise BrokerError(f"Kafka did not answer within {wait_s:.0f}s; see {self.log_file}")

    def stop(self, wait_s: float = 60.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after `wait_s`). True when one was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.pid() is None or _is_zombie(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _write_config(self) -> Path:
        (self.data_dir / "log4j2.yaml").write_text(LOG4J2)
        props = self.data_dir / "server.properties"
        props.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners={self._listener}://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners={self._listener}://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{self._listener}:{self._listener}",
                f"inter.broker.listener.name={self._listener}",
                *self._sasl_config(),
                f"log.dirs={self.data_dir / 'log'}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=8",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "",
            ])
        )
        props.chmod(0o600)  # it may hold the SASL password
        return props

    @property
    def _listener(self) -> str:
        return "SASL_PLAINTEXT" if self.sasl else "PLAINTEXT"

    def _sasl_config(self) -> list[str]:
        if not self.sasl:
            return []
        login = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                 f'username="{self.sasl_username}" password="{self.sasl_password}";')
        return [f"sasl.enabled.mechanisms={SCRAM}", f"sasl.mechanism.inter.broker.protocol={SCRAM}",
                f"listener.name.sasl_plaintext.{SCRAM.lower()}.sasl.jaas.config={login}"]

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _require(tool: str, message: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(message)
    return path


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return False


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
