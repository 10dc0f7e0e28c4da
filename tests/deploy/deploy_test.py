#!/usr/bin/python3
"""Checks of the deployment files under deploy/ (run by ctest with /usr/bin/python3).

- every YAML file of deploy/kubernetes and deploy/prometheus parses (python3-yaml);
- the DaemonSet has liveness and readiness probes, resource requests and limits, and the
  Prometheus scrape annotations, whose port is the container's metrics port;
- `systemd-analyze verify` passes on deploy/systemd/pageownerd.service (ExecStart pointed at the
  built pageownerd in a temporary copy), when systemd-analyze exists;
- `promtool check config deploy/prometheus/prometheus.yml` passes;
- deploy/grafana/pageownerd.json is JSON, uses ${datasource}, has job and instance variables,
  and names only metrics that a running pageownerd's /metrics exports;
- deploy/Dockerfile, which cannot be built here (no container engine), is checked statically:
  multi-stage, a non-root USER, a HEALTHCHECK, runtime packages that exist in Debian.
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import yaml

ARGS = None


def repo(*parts):
    return os.path.join(ARGS.source_dir, *parts)


def exported_metric_names(pageownerd):
    """The metric names of a running pageownerd's /metrics (histograms by their series names)."""
    daemon = subprocess.Popen(
        [pageownerd, "--listen=127.0.0.1:0", "--memory=64MiB", "--metrics_listen=127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True)
    try:
        daemon.stderr.readline()
        line = daemon.stderr.readline()
        m = re.fullmatch(r"pageownerd: metrics on (http://127\.0\.0\.1:\d+/metrics)\n", line)
        assert m, "unexpected metrics line: %r" % line
        with urllib.request.urlopen(m.group(1), timeout=5) as r:
            text = r.read().decode()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        daemon.stderr.close()
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


class DeployTest(unittest.TestCase):
    def test_yaml_parses(self):
        files = sorted(glob.glob(repo("deploy", "kubernetes", "*.yaml")) +
                       glob.glob(repo("deploy", "prometheus", "*.yml")))
        self.assertGreaterEqual(len(files), 4, files)
        for path in files:
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
            self.assertTrue(docs, path)

    def test_daemonset(self):
        with open(repo("deploy", "kubernetes", "10-daemonset.yaml")) as f:
            ds = yaml.safe_load(f)
        self.assertEqual(ds["kind"], "DaemonSet")
        template = ds["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(annotations["prometheus.io/path"], "/metrics")
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.assertEqual(ports, {"grpc": 50051, "metrics": 9464})
        self.assertEqual(int(annotations["prometheus.io/port"]), ports["metrics"])
        for kind in ("requests", "limits"):
            self.assertIn("cpu", container["resources"][kind])
            self.assertIn("memory", container["resources"][kind])
        # A sort holds ~510 bytes an allocated page (BENCHMARKS.md, "A sort's peak"): the limit
        # must hold a sort of a full machine, 0.15 x --memory + 128 MiB.
        units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
        limit = container["resources"]["limits"]["memory"]
        limit_bytes = int(limit[:-2]) * units[limit[-2:]]
        (memory,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--memory=")]
        memory_bytes = int(memory[:-3]) * units[memory[-3:-1]]
        self.assertGreaterEqual(limit_bytes, 0.15 * memory_bytes + (128 << 20), limit)
        self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/healthz")
        # Alive while recovering a big state, ready only once it serves (issue 12).
        self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertTrue(template["spec"]["securityContext"]["runAsNonRoot"])
        # The daemon must listen beyond loopback in a pod for the probes and the scrapes.
        args = " ".join(container.get("args", []))
        with open(repo("deploy", "Dockerfile")) as f:
            # The whole ENTRYPOINT instruction, with its continuation lines.
            entrypoint = re.search(r"^ENTRYPOINT (?:.*\\\n)*.*$", f.read(), re.M).group(0)
        self.assertIn("--metrics_listen=0.0.0.0:9464", entrypoint + args)
        self.assertIn("--listen=0.0.0.0:50051", entrypoint + args)
        # ... and so with TLS and tokens, from Secrets mounted read-only.
        for flag in ("--tls_cert=", "--tls_key=", "--tls_client_ca=", "--auth_tokens="):
            self.assertIn(flag, args)
            self.assertIn(flag, entrypoint)
        self.assertNotIn("--insecure", entrypoint + args)
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = template["spec"]["volumes"]
        secrets = {v["name"]: v["secret"]["secretName"] for v in volumes if "secret" in v}
        self.assertEqual(secrets, {"tls": "pageownerd-tls", "tokens": "pageownerd-tokens"})
        for name in secrets:
            self.assertTrue(mounts[name]["readOnly"], name)
        self.assertEqual(container["livenessProbe"]["httpGet"]["scheme"], "HTTPS")
        # The state survives the pod: a hostPath data dir, given to the daemon's user first.
        self.assertIn("--data_dir=/var/lib/pageownerd", entrypoint)
        self.assertIn("--data_dir=/var/lib/pageownerd", args)
        (state,) = [v for v in volumes if v["name"] == "state"]
        self.assertEqual(state["hostPath"]["path"], "/var/lib/pageownerd")
        self.assertEqual(mounts["state"]["mountPath"], "/var/lib/pageownerd")
        self.assertFalse(mounts["state"].get("readOnly", False))
        (init,) = template["spec"]["initContainers"]
        self.assertEqual(init["command"], ["/bin/chown", "10001:10001", "/var/lib/pageownerd"])
        self.assertEqual(init["image"], container["image"])
        # An image name the reader must fill in, not a local :latest a node cannot pull.
        self.assertTrue(container["image"].startswith("REGISTRY/pageownerd:"), container["image"])

    def test_kubectl_applies_the_namespace_first(self):
        # kubectl apply -f DIR takes the files in name order.
        files = sorted(os.path.basename(p)
                       for p in glob.glob(repo("deploy", "kubernetes", "*.yaml")))
        kinds = []
        for name in files:
            with open(repo("deploy", "kubernetes", name)) as f:
                kinds += [d["kind"] for d in yaml.safe_load_all(f) if d is not None]
        self.assertEqual(kinds[0], "Namespace", files)
        self.assertEqual(kinds.count("Namespace"), 1)

    def test_systemd_unit_verifies(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("no systemd-analyze")
        with open(repo("deploy", "systemd", "pageownerd.service")) as f:
            unit = f.read()
        for key in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
                    "StateDirectory=", "Restart=on-failure", "EnvironmentFile="):
            self.assertIn(key, unit)
        self.assertIn("ExecStart=/usr/local/bin/pageownerd --data_dir=/var/lib/pageownerd ", unit)
        self.assertIn("ExecReload=/bin/kill -HUP $MAINPID", unit)
        with open(repo("deploy", "systemd", "pageownerd-tls.conf")) as f:
            dropin = f.read()
        for line in ("LoadCredential=tls.key:", "--tls_key=%d/tls.key", "--auth_tokens=",
                     "--data_dir=/var/lib/pageownerd"):
            self.assertIn(line, dropin)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "pageownerd.service")
            with open(path, "w") as f:
                f.write(unit.replace("/usr/local/bin/pageownerd", os.path.abspath(ARGS.pageownerd)))
            r = subprocess.run([analyze, "verify", path], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertNotIn("pageownerd.service", r.stderr, r.stderr)  # no warnings on our unit

    def test_environment_file_flags_parse(self):
        with open(repo("deploy", "systemd", "pageownerd.default")) as f:
            m = re.search(r'^PAGEOWNERD_FLAGS="([^"]*)"', f.read(), re.M)
        self.assertTrue(m)
        # A --listen here would win over the TLS drop-in's 0.0.0.0 (the later flag wins).
        self.assertNotIn("--listen", m.group(1))
        self.assertNotIn("--metrics_listen", m.group(1))
        # --help parses nothing; check the flags with a bad extra flag after them instead: the
        # daemon must complain about that one, not about ours.
        r = subprocess.run([ARGS.pageownerd] + m.group(1).split() + ["--no_such_flag"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr, "pageownerd: unknown flag --no_such_flag\n")

    def test_promtool_check_config(self):
        promtool = "/usr/bin/promtool"
        self.assertTrue(os.access(promtool, os.X_OK), "promtool missing: Debian's prometheus")
        # promtool checks that the token and CA files exist: give it a copy of the config whose
        # /etc/prometheus/pageownerd/ files are in a temporary directory.
        with open(repo("deploy", "prometheus", "prometheus.yml")) as f:
            config = f.read()
        self.assertIn("bearer_token_file: /etc/prometheus/pageownerd/reader.token", config)
        self.assertIn("ca_file: /etc/prometheus/pageownerd/ca.crt", config)
        # Hosts come from file_sd only: a static local target would scrape a listed host twice.
        self.assertNotIn("static_configs", config)
        self.assertIn("file_sd_configs", config)
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("reader.token", "ca.crt"):
                open(os.path.join(tmp, name), "w").close()
            path = os.path.join(tmp, "prometheus.yml")
            with open(path, "w") as f:
                f.write(config.replace("/etc/prometheus/pageownerd/", tmp + "/"))
            r = subprocess.run([promtool, "check", "config", path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_grafana_dashboard(self):
        with open(repo("deploy", "grafana", "pageownerd.json")) as f:
            text = f.read()
        dashboard = json.loads(text)
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertIn("job", variables)
        self.assertIn("instance", variables)
        self.assertIn("${datasource}", text)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        self.assertTrue(exprs)
        for p in dashboard["panels"]:
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
        queries = [json.dumps(v.get("query", "")) for v in variables.values()]
        used = set()
        for e in exprs + queries:
            used |= set(re.findall(r"\b((?:pageowner|process)_[a-zA-Z0-9_]+)", e))
        exported = exported_metric_names(ARGS.pageownerd)
        self.assertFalse(used - exported, "the dashboard names metrics the daemon does not export")
        self.assertIn("pageowner_rpc_duration_seconds_bucket", used)
        # A stream's duration is the whole stream's: latency quantiles leave the streams out.
        for e in exprs:
            if "histogram_quantile" in e and "pageowner_rpc_duration_seconds_bucket" in e:
                self.assertIn('method!~".*/(Ingest|ListPages)"', e)

    def test_dockerfile_statically(self):
        # No container engine here: the Dockerfile is not built, only read.
        with open(repo("deploy", "Dockerfile")) as f:
            text = f.read().replace("\\\n", " ")  # continuation lines joined
        lines = [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("#")]
        stages = [l for l in lines if l.startswith("FROM ")]
        self.assertGreaterEqual(len(stages), 2)
        self.assertTrue(all("bookworm" in s for s in stages), stages)
        self.assertRegex(stages[0], r" AS \w+")
        self.assertTrue(any(l.startswith("COPY --from=") for l in lines))
        users = [l.split()[1] for l in lines if l.startswith("USER ")]
        self.assertTrue(users)
        self.assertNotIn(users[-1].split(":")[0], ("0", "root"))
        self.assertTrue(any(l.startswith("HEALTHCHECK ") and "/healthz" in l for l in lines))
        # The runtime packages exist in Debian (when apt's lists are here to ask).
        text = " ".join(lines)
        runtime = text[text.index("FROM debian:bookworm-slim"):]
        m = re.search(r"--no-install-recommends\s+(.*?)\s*&&", runtime)
        self.assertTrue(m)
        if shutil.which("apt-cache"):
            for package in m.group(1).replace("\\", " ").split():
                r = subprocess.run(["apt-cache", "show", package], capture_output=True)
                if r.returncode != 0 and b"No packages found" in r.stderr:
                    self.fail("Dockerfile installs %s, which Debian does not have" % package)

    def test_image_build_context_and_build_packages(self):
        # A local build/ in the context would bring its CMakeCache.txt into the image's build.
        with open(repo(".dockerignore")) as f:
            ignored = [l.strip() for l in f if l.strip() and not l.startswith("#")]
        self.assertIn("build*/", ignored)
        self.assertIn(".git", ignored)
        with open(repo("deploy", "Dockerfile")) as f:
            self.assertIn("RUN deploy/install-deps.sh --build-only\n", f.read())
        # The build stage installs no test-only package.
        with open(repo("deploy", "install-deps.sh")) as f:
            script = f.read()
        build = re.search(r"\nbuild_packages=\((.*?)\n\)", script, re.S).group(1).split()
        self.assertIn("libgrpc++-dev", build)
        for test_only in ("prometheus", "chromium", "golang-go", "clang-14", "libgtest-dev",
                          "libbenchmark-dev", "python3-grpcio"):
            self.assertNotIn(test_only, build)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--source_dir", required=True)
    parser.add_argument("--pageownerd", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
