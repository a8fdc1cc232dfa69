"""contrib/: the systemd unit and the Kubernetes manifests (issue 11 section 5) say what they must and
refer to what exists: the unit verifies with systemd-analyze (when the machine has it) and carries the
readiness, reload and sandboxing keys; the manifests parse (python3-yaml), their ConfigMap holds a
configuration that `jwtgate --check` accepts, the probes hit the admin listener that configuration
opens, the grace period outlasts the drain, and every selector selects the Deployment's pods.
"""

import os
import re
import shutil
import subprocess

import pytest

import jgtest

yaml = pytest.importorskip("yaml")  # python3-yaml (tools/debian-packages)

CONTRIB = os.path.join(jgtest.SOURCE_ROOT, "contrib")
UNIT = os.path.join(CONTRIB, "systemd", "jwtgate.service")
K8S = os.path.join(CONTRIB, "kubernetes")
LOG_FLUSH_S = 2  # the log writer's exit bound (src/server/main.c MAIN_LOG_FLUSH_MS)


def seconds(text):
    """A duration like jwtgate's and systemd's: 10s, 1m, 500ms, 30 (seconds)."""
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|min|h)?\s*", str(text))
    assert m, f"duration {text!r}"
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[unit]


def parse_unit(path):
    """{section: {key: [values]}} of a systemd unit file (keys may repeat)."""
    sections, cur = {}, None
    with open(path) as f:
        for raw in f:
            ln = raw.strip()
            if not ln or ln.startswith(("#", ";")):
                continue
            if ln.startswith("["):
                cur = sections.setdefault(ln.strip("[]"), {})
                continue
            k, sep, v = ln.partition("=")
            assert sep and cur is not None, f"bad line {ln!r}"
            cur.setdefault(k.strip(), []).append(v.strip())
    return sections


def one(sec, key):
    vals = sec.get(key)
    assert vals, f"{key}= missing"
    return vals[-1]


def test_systemd_unit_keys():
    u = parse_unit(UNIT)
    svc = u["Service"]
    assert one(svc, "Type") == "notify"
    assert one(svc, "NotifyAccess") in ("main", "all")
    assert re.fullmatch(r"(/usr)?/bin/kill -(HUP|s HUP|SIGHUP) \$MAINPID", one(svc, "ExecReload"))
    start = one(svc, "ExecStart").split()
    assert start[0].endswith("/jwtgate") and "-c" in start
    assert one(svc, "DynamicUser") == "yes" or one(svc, "User") not in ("", "root")
    assert one(svc, "NoNewPrivileges") == "yes"
    assert one(svc, "ProtectSystem") == "strict"
    assert one(svc, "CapabilityBoundingSet").split() == ["CAP_NET_BIND_SERVICE"]
    assert one(svc, "AmbientCapabilities").split() == ["CAP_NET_BIND_SERVICE"]
    # The stop timeout outlasts the default drain (10s) and the log flush.
    assert seconds(one(svc, "TimeoutStopSec")) > 10 + LOG_FLUSH_S
    assert u["Install"]["WantedBy"]


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the keys are checked by test_systemd_unit_keys)")
    with open(UNIT) as f:
        text = f.read()
    # verify checks that the programs exist: point it at the binary under test.
    text = re.sub(r"/usr(/local)?/sbin/jwtgate", jgtest.BIN, text)
    unit = tmp_path / "jwtgate.service"
    unit.write_text(text)
    proc = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)
    # Unknown keys are only warnings for systemd: any output is a failure here.
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def load_manifests():
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    docs = []
    for name in kust["resources"]:
        with open(os.path.join(K8S, name)) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    listed = set(kust["resources"])
    on_disk = {n for n in os.listdir(K8S) if n.endswith(".yaml") and n != "kustomization.yaml"}
    assert on_disk == listed, f"kustomization.yaml lists {sorted(listed)}, folder has {sorted(on_disk)}"
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    return by_kind


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_kubernetes_manifests(tmp_path):
    k = load_manifests()
    assert set(k) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    cm, dep, svc, pdb = k["ConfigMap"][0], k["Deployment"][0], k["Service"][0], k["PodDisruptionBudget"][0]

    # The ConfigMap's configuration is one jwtgate accepts, with the JWKS beside it.
    for name, text in cm["data"].items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run([jgtest.BIN, "--check", "-c", str(tmp_path / "jwtgate.yaml")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    conf = yaml.safe_load(cm["data"]["jwtgate.yaml"])

    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert selects(dep["spec"]["selector"]["matchLabels"], labels)
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels), "PDB selects no pod of the Deployment"
    assert selects(svc["spec"]["selector"], labels), "Service selects no pod of the Deployment"
    assert dep["spec"]["replicas"] >= 2

    (c,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    # The container reads the mounted ConfigMap.
    args = c["args"]
    conf_path = args[args.index("-c") + 1]
    (mount,) = [m for m in c["volumeMounts"] if conf_path.startswith(m["mountPath"].rstrip("/") + "/")]
    (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    assert os.path.basename(conf_path) in cm["data"]

    # Probes: readiness /ready and liveness /live on the admin listener the configuration opens.
    admin_port = int(conf["admin"]["address"].rsplit(":", 1)[1])
    assert not conf["admin"]["address"].startswith("127."), "the kubelet cannot reach a loopback admin"
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/live")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        port = get["port"]
        assert (ports[port] if isinstance(port, str) else port) == admin_port

    # Traffic: the Service's target port is a listener of the configuration.
    listen_ports = {int(lst["address"].rsplit(":", 1)[1]) for lst in conf["listeners"]}
    for sp in svc["spec"]["ports"]:
        tp = sp["targetPort"]
        assert (ports[tp] if isinstance(tp, str) else tp) in listen_ports

    # The pod is given longer to stop than jwtgate takes to drain (and flush its log).
    drain = seconds(conf.get("limits", {}).get("drainTimeout", "10s"))
    assert pod["spec"]["terminationGracePeriodSeconds"] > drain + LOG_FLUSH_S
