"""The Kafka Streams peer (bench/peers/kstreams/src/orderflow/peers/OrdersApp.java): built once, run
like the others.

Its libraries (kafka-streams of the broker's version, Jackson, slf4j-simple) come from Maven Central
through `mvn dependency:copy-dependencies`, as the broker's own jars do (streams/tools/localkafka.py),
and the one source file is compiled with `javac`: no Maven build plugins to fetch. The result is
kept under the orderflow cache (ORDERFLOW_CACHE_DIR, default ~/.cache/orderflow), one folder per
version of the pom and the source, so a second run starts at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from xml.etree import ElementTree

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "kstreams"
MAIN_CLASS = "orderflow.peers.OrdersApp"
_POM = "{http://maven.apache.org/POM/4.0.0}"


def version() -> str:
    """The kafka-streams version kstreams/pom.xml asks for (the broker's)."""
    root = ElementTree.parse(SOURCE / "pom.xml").getroot()
    for dependency in root.iter(f"{_POM}dependency"):
        if dependency.findtext(f"{_POM}artifactId") == "kafka-streams":
            return dependency.findtext(f"{_POM}version") or "?"
    return "?"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build(cache_root: Path) -> Path:
    """The built peer's folder (`classes/`, `lib/`), made first when this source was never built."""
    files = [SOURCE / "pom.xml", *sorted((SOURCE / "src").rglob("*"))]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files if f.is_file())).hexdigest()[:16]
    home = cache_root / "peers-kstreams" / digest
    if (home / ".complete").exists():
        return home
    for tool in ("mvn", "javac", "java"):
        if shutil.which(tool) is None:
            raise SystemExit(f"the Kafka Streams peer needs `{tool}` (Java 17 and Maven); "
                             "or run with --no-kafka-streams")
    shutil.rmtree(home, ignore_errors=True)
    (home / "classes").mkdir(parents=True)
    _say(f"building the Kafka Streams peer in {home} (its jars from Maven Central)")
    fetched = subprocess.run(
        ["mvn", "-B", "-q", "-f", str(SOURCE / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={home / 'lib'}", "-DincludeScope=runtime"],
        capture_output=True, text=True)
    if fetched.returncode != 0:
        raise SystemExit("Maven could not fetch the Kafka Streams peer's jars:\n"
                         + "\n".join((fetched.stdout + fetched.stderr).splitlines()[-30:]))
    sources = [str(p) for p in (SOURCE / "src").rglob("*.java")]
    compiled = subprocess.run(["javac", "-proc:none", "--release", "17", "-d", str(home / "classes"),
                               "-cp", str(home / "lib" / "*"), *sources], capture_output=True, text=True)
    if compiled.returncode != 0:
        raise SystemExit(f"javac failed on the Kafka Streams peer:\n{compiled.stderr[-3000:]}")
    for resource in (SOURCE / "src").glob("*.properties"):
        shutil.copy(resource, home / "classes" / resource.name)
    (home / ".complete").touch()
    return home


def start(home: Path, bootstrap: str, topic: str, dlq_topic: str, workdir: Path,
          effects_url: str = "") -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start the peer as a fresh application (consumer group): (its process, its group, its log)."""
    group = f"peers-kstreams-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "PEERS_TOPIC": topic, "PEERS_DLQ_TOPIC": dlq_topic,
           "PEERS_GROUP": group, "PEERS_STATE_DIR": str(workdir / group), "PEERS_EFFECTS_URL": effects_url}
    log = workdir / f"{group}.log"
    classpath = f"{home / 'classes'}{os.pathsep}{home / 'lib' / '*'}"
    proc = subprocess.Popen(["java", "-cp", classpath, MAIN_CLASS], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    return proc, group, log
