"""deploy/kubernetes' pod specs, run in plain Docker: no Kubernetes cluster is available here.

Each StatefulSet's container (image, command, environment) runs as replicas containers named
like its pods (hostname ``zookeeper-0``...), reachable under the pods' headless-Service DNS
names, on a network of the test's own. This checks what the manifests add to the images: myid
and broker.id from the pod ordinal, the ZooKeeper server list, the advertised URLs built from
the pod's DNS name, the connect string and chroot. It does not check anything Kubernetes itself
does (scheduling, volumes, probes, Services).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from kbroker.testing.containers import LABEL

pytestmark = [pytest.mark.containers]

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
NAMESPACE = "default"


def _statefulset(name: str) -> dict[str, Any]:
    docs = list(yaml.safe_load_all((MANIFESTS / f"{name}.yaml").read_text()))
    return next(d for d in docs if d["kind"] == "StatefulSet")


def _environment(container: dict[str, Any]) -> dict[str, str]:
    env = {}
    for entry in container.get("env", []):
        if "valueFrom" in entry:  # the only one is the downward API's namespace
            assert entry["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
            env[entry["name"]] = NAMESPACE
        else:
            env[entry["name"]] = str(entry["value"])
    return env


@contextlib.contextmanager
def _pods(client: Any) -> Iterator[dict[str, Any]]:
    """Run every pod of both StatefulSets; yields containers by pod name; removes them all."""
    owner = f"kbroker-tc-k8s-{uuid.uuid4().hex[:8]}"
    network = client.networks.create(owner, labels={LABEL: owner})
    pods: dict[str, Any] = {}
    try:
        for name in ("zookeeper", "kbroker"):
            sts = _statefulset(name)
            spec = sts["spec"]["template"]["spec"]
            container = spec["containers"][0]
            headless = sts["spec"]["serviceName"]
            user = spec["securityContext"]
            for ordinal in range(sts["spec"]["replicas"]):
                pod = f"{sts['metadata']['name']}-{ordinal}"
                short = f"{pod}.{headless}"
                pods[pod] = client.containers.create(
                    container["image"],
                    entrypoint=container["command"],
                    environment=_environment(container),
                    hostname=pod,
                    name=f"{owner}-{pod}",
                    user=f"{user['runAsUser']}:{user['runAsGroup']}",
                    # A pod's restartPolicy is Always: the kubelet restarts a container that
                    # exits (a broker whose ZooKeeper did not answer in time, say).
                    restart_policy={"Name": "always"},
                    labels={LABEL: owner},
                    network=network.name,
                    networking_config={
                        network.name: client.api.create_endpoint_config(
                            aliases=[short, f"{short}.{NAMESPACE}.svc.cluster.local"]
                        )
                    },
                )
                pods[pod].start()
        yield pods
    finally:
        for container in pods.values():
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        network.remove()


def _http(pod: Any, url: str, body: Any = None) -> Any:
    script = (
        "import json, sys, urllib.request\n"
        "data = sys.argv[2].encode() or None\n"
        "request = urllib.request.Request(sys.argv[1], data=data, headers="
        "{'Content-Type': 'application/vnd.kafka.json.v2+json'})\n"
        "print(urllib.request.urlopen(request, timeout=10).read().decode())\n"
    )
    payload = json.dumps(body) if body is not None else ""
    code, output = pod.exec_run(["python3", "-c", script, url, payload])
    assert code == 0, output.decode()
    return json.loads(output.decode().strip().splitlines()[-1])


def _logs(pods: dict[str, Any]) -> str:
    """Each pod's restart count and last log lines, for a failure message."""
    parts = []
    for name, pod in pods.items():
        pod.reload()
        restarts = pod.attrs["RestartCount"]
        tail = pod.logs(tail=15).decode(errors="replace")
        parts.append(f"--- {name} ({pod.status}, {restarts} restarts)\n{tail}")
    return "\n".join(parts)


def _url(ordinal: int) -> str:
    return f"http://kbroker-{ordinal}.kbroker-headless.{NAMESPACE}.svc.cluster.local:8080"


def test_statefulset_pods_form_a_cluster(docker_ready: None) -> None:
    client = docker.from_env(timeout=60)
    try:
        with _pods(client) as pods:
            deadline = time.monotonic() + 120
            while True:
                # AssertionError: no answer yet; APIError 409: the container is restarting.
                with contextlib.suppress(AssertionError, docker.errors.APIError):
                    if _http(pods["kbroker-0"], _url(1) + "/brokers")["brokers"] == [1, 2, 3]:
                        break
                assert time.monotonic() < deadline, _logs(pods)
                time.sleep(1)
            for ordinal in range(3):
                # Two nodes make a quorum: the third may still be joining (it then answers srvr
                # without a mode; seen in CI). Ask again until it names one, for a bounded time.
                deadline = time.monotonic() + 30
                while True:
                    _, out = pods[f"zookeeper-{ordinal}"].exec_run(
                        ["bash", "-c", "cat /data/myid; echo srvr | nc -q1 127.0.0.1 2181"]
                    )
                    lines = out.decode().splitlines()
                    assert lines[0] == str(ordinal + 1)
                    if any(line in ("Mode: leader", "Mode: follower") for line in lines):
                        break
                    assert time.monotonic() < deadline, lines
                    time.sleep(1)
            clusters = _http(pods["kbroker-2"], _url(2) + "/v3/clusters")
            cluster_id = clusters["data"][0]["cluster_id"]
            brokers = _http(pods["kbroker-2"], f"{_url(2)}/v3/clusters/{cluster_id}/brokers")
            assert sorted(b["url"] for b in brokers["data"]) == [_url(i) for i in range(3)]
            topic = {"topic_name": "k8s", "partitions_count": 3, "replication_factor": 3}
            _http(pods["kbroker-0"], f"{_url(0)}/v3/clusters/{cluster_id}/topics", topic)
            for partition in range(3):  # through broker 1, whichever broker leads
                deadline = time.monotonic() + 30
                while True:
                    answer = _http(
                        pods["kbroker-1"],
                        f"{_url(1)}/topics/k8s/partitions/{partition}",
                        {"records": [{"value": partition}]},
                    )
                    if answer["offsets"][0]["error_code"] is None or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                assert answer["offsets"][0]["offset"] == 0, answer
                records = _http(
                    pods["kbroker-2"],
                    f"{_url(2)}/topics/k8s/partitions/{partition}/records?offset=0&timeout=0",
                )
                assert [r["value"] for r in records] == [partition]
    finally:
        client.close()
