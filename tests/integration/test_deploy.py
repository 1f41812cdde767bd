"""deploy/ must not rot: the Kubernetes manifests, the systemd unit and the container recipe are checked
against the real binary and against each other (configs pass `drover --check`, probes hit the admin
port and paths the config serves, grace periods outlast the drain, the image installs every library the
binary links), and the systemd readiness protocol is exercised for real."""

import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

import yaml

from harness import DroverTestCase, drover_bin, make_config, run_drover, static_cluster, tcp_listener

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
DURATION = re.compile(r"^(\d+)(ms|s|m)$")


def seconds(text):
    n, unit = DURATION.match(text).groups()
    return int(n) / 1000 if unit == "ms" else int(n) * (60 if unit == "m" else 1)


def manifests():
    folder = os.path.join(DEPLOY, "kubernetes")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".yaml"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                yield name, [d for d in yaml.safe_load_all(f) if d is not None]


class KubernetesManifestTest(unittest.TestCase):

    def test_every_document_is_a_named_kubernetes_object(self):
        for name, docs in manifests():
            self.assertTrue(docs, name)
            for doc in docs:
                with self.subTest(file=name, kind=doc.get("kind")):
                    self.assertIn(doc.get("apiVersion"), ("v1", "apps/v1"))
                    self.assertIn(doc.get("kind"), ("ConfigMap", "Deployment", "Service"))
                    self.assertTrue(doc["metadata"]["name"])

    def test_drover_pods_are_probed_drained_and_configured_consistently(self):
        for name, docs in manifests():
            configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
            deployments = [d for d in docs if d["kind"] == "Deployment"]
            self.assertTrue(deployments, name)
            for deployment in deployments:
                pod = deployment["spec"]["template"]["spec"]
                self.assertEqual(deployment["spec"]["selector"]["matchLabels"],
                                 {k: v for k, v in deployment["spec"]["template"]["metadata"]["labels"].items()
                                  if k in deployment["spec"]["selector"]["matchLabels"]})
                drover = next(c for c in pod["containers"] if c["name"] == "drover")
                volume = next(v for v in pod["volumes"] if v["name"] == drover["volumeMounts"][0]["name"])
                config_text = configmaps[volume["configMap"]["name"]]["data"]["drover.yaml"]
                with self.subTest(file=name, deployment=deployment["metadata"]["name"]):
                    self.check_pod(pod, drover, config_text)

    def check_pod(self, pod, drover, config_text):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "drover.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(config_text)
            proc = run_drover(["--check", "-c", path])
            self.assertEqual(proc.returncode, 0, proc.stderr)
        config = yaml.safe_load(config_text)
        admin_host, admin_port = config["admin"]["address"].rsplit(":", 1)
        self.assertNotIn(admin_host, ("127.0.0.1", "::1", "[::1]"), "the kubelet probes the pod IP, not loopback")
        ports = {p["name"]: p["containerPort"] for p in drover["ports"]}
        self.assertEqual(ports["admin"], int(admin_port))
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/live")):
            get = drover[probe]["httpGet"]
            self.assertEqual((get["path"], get["port"]), (path, "admin"))
        for listener in config["listeners"]:
            port = int(listener["address"].rsplit(":", 1)[1])
            exposed = listener["address"].startswith("0.0.0.0:")
            if exposed:
                self.assertIn(port, ports.values(), f"listener {listener['name']} port not declared")
        pre_stop = " ".join(drover["lifecycle"]["preStop"]["exec"]["command"])
        self.assertIn(f"-X POST http://127.0.0.1:{admin_port}/drain", pre_stop)
        self.assertIn(f"http://127.0.0.1:{admin_port}/live", pre_stop)
        drain = seconds(config.get("shutdown", {}).get("drain_timeout", "15s")) + \
            seconds(config.get("shutdown", {}).get("delay", "0s"))
        self.assertGreater(pod["terminationGracePeriodSeconds"], drain, "the kubelet would kill a drain")
        self.assertEqual(drover["args"], ["-c", drover["volumeMounts"][0]["mountPath"] + "/drover.yaml"])
        limit = drover["resources"]["limits"]["memory"]
        self.assertTrue(limit.endswith("Mi") or limit.endswith("Gi"), limit)
        limit_mib = int(limit[:-2]) * (1024 if limit.endswith("Gi") else 1)
        max_memory = config.get("process", {}).get("max_memory")
        self.assertIsNotNone(max_memory, "process.max_memory: refuse new work before the OOM kill")
        self.assertLess(int(max_memory.removesuffix("MiB")), limit_mib)


class SystemdUnitTest(unittest.TestCase):

    def setUp(self):
        self.path = os.path.join(DEPLOY, "systemd", "drover.service")
        self.unit = configparser.ConfigParser(strict=False, interpolation=None)
        self.unit.optionxform = str
        self.unit.read(self.path)

    def test_the_unit_runs_checks_reloads_and_drains_drover(self):
        service = self.unit["Service"]
        self.assertEqual(service["Type"], "notify")
        self.assertRegex(service["ExecStart"], r"^/usr/local/bin/drover -c /etc/drover/drover\.yaml$")
        self.assertIn("--check", service["ExecStartPre"])
        self.assertRegex(service["ExecReload"], r"^/usr/local/bin/drover --reload\b")   # fails when refused
        self.assertEqual(service["KillSignal"], "SIGTERM")
        self.assertGreater(seconds(service["TimeoutStopSec"]), 15, "more than the default drain_timeout")
        self.assertEqual(self.unit["Install"]["WantedBy"], "multi-user.target")

    def test_systemd_analyze_accepts_it(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is not installed")
        proc = subprocess.run([analyze, "verify", "--man=no", self.path], capture_output=True, text=True, timeout=30)
        # The binary path need not exist here; anything else it reports is a real problem.
        problems = [l for l in proc.stderr.splitlines() if l.strip() and "/usr/local/bin/drover" not in l]
        self.assertEqual(problems, [], proc.stderr)


class ContainerRecipeTest(unittest.TestCase):

    def setUp(self):
        with open(os.path.join(DEPLOY, "container", "Dockerfile"), encoding="utf-8") as f:
            self.text = f.read()

    def test_it_builds_with_the_repository_scripts_and_runs_the_binary(self):
        self.assertIn("./scripts/install-deps.sh", self.text)
        self.assertTrue(os.access(os.path.join(ROOT, "scripts", "install-deps.sh"), os.X_OK))
        self.assertIn('ENTRYPOINT ["/usr/local/bin/drover"]', self.text)
        self.assertRegex(self.text, r"FROM debian:12\b")
        self.assertRegex(self.text, r"USER \d+")

    def test_the_runtime_image_installs_every_library_the_binary_links(self):
        if shutil.which("ldd") is None or shutil.which("dpkg") is None:
            self.skipTest("needs ldd and dpkg")
        runtime = self.text.split("FROM debian:12-slim", 1)[1]
        installed = set(re.findall(r"\b(lib[a-z0-9.+-]+|ca-certificates|curl)\b", runtime))
        libs = subprocess.run(["ldd", drover_bin()], capture_output=True, text=True, check=True).stdout
        base = {"libc6", "libgcc-s1", "libstdc++6"}   # in debian:12-slim already
        for path in re.findall(r"=> (/\S+)", libs):
            if "asan" in path or "ubsan" in path:
                continue   # the sanitizer build's own runtime
            owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
            if owner.returncode != 0:
                owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
            package = owner.stdout.split(":", 1)[0]
            with self.subTest(library=path):
                self.assertTrue(package in installed or package in base, f"{path} ({package}) not installed")


class SystemdNotifyTest(DroverTestCase):

    def test_ready_when_listening_and_stopping_when_draining(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "notify")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.addCleanup(sock.close)
            sock.bind(path)
            sock.settimeout(10)
            backend = self.echo_backend()
            config = make_config([tcp_listener("front", "back")], [static_cluster("back", [backend])])
            drover = self.start_drover(config, env={"NOTIFY_SOCKET": path})
            self.assertEqual(sock.recv(256), b"READY=1")
            drover.send_signal(signal.SIGTERM)
            self.assertEqual(sock.recv(256), b"STOPPING=1")
            self.assertEqual(drover.wait_exit(5), 0)


if __name__ == "__main__":
    unittest.main()
