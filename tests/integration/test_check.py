"""The command line: --check, config errors as `file:line:col: key.path: message`, exit codes."""

import os
import re
import socket
import subprocess
import tempfile
import textwrap
import unittest

from harness import run_drover

# `file:line:col: key.path: message`; problems that belong to no key (YAML syntax, I/O) leave out
# `key.path: `.
ERROR_RE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?:(?P<path>[A-Za-z_][\w.\[\]]*): )?"
                      r"(?P<message>.+)$")

GOOD = """\
admin:
  address: 127.0.0.1:0
workers: 2
log:
  level: info
shutdown:
  drain_timeout: 5s
listeners:
  - name: front
    address: 127.0.0.1:0
    protocol: tcp
    cluster: api
    limits:
      max_connections: 100
    timeouts:
      idle: 30s
clusters:
  - name: api
    discovery:
      static: [127.0.0.1:9001, { address: 127.0.0.1:9002, weight: 2 }]
    load_balancing: round_robin
    retries:
      attempts: 1
    timeouts:
      connect: 250ms
    limits:
      max_connections: 10
"""

LISTENER = """\
admin:
  address: 127.0.0.1:0
listeners:
  - name: front
    address: 127.0.0.1:0
    protocol: tcp
    cluster: api
"""


def line_of(text, needle, occurrence=1):
    """1-based number of the line holding the n-th occurrence of `needle`."""
    count = 0
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            count += 1
            if count == occurrence:
                return number
    raise ValueError(f"{needle!r} not in text")


class CheckTest(unittest.TestCase):

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="drover-check-")
        self.addCleanup(self._tmp.cleanup)
        self.dir = self._tmp.name

    def write(self, name, text):
        with open(os.path.join(self.dir, name), "w", encoding="utf-8") as f:
            f.write(text)
        return name

    def drover(self, *args, timeout=15):
        """Runs drover in the temp dir, so file names are printed the way we passed them."""
        try:
            return run_drover(args, timeout=timeout, cwd=self.dir)
        except subprocess.TimeoutExpired as exc:
            self.fail(f"drover {' '.join(args)} still running after {timeout}s; stderr:\n{exc.stderr}")

    def test_shipped_examples_are_valid(self):
        examples = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")
        files = sorted(f for f in os.listdir(examples) if f.endswith(".yaml"))
        self.assertGreaterEqual(len(files), 3)
        for name in files:
            with self.subTest(name):
                proc = self.drover("--check", "-c", os.path.join(examples, name))
                self.assertEqual(proc.returncode, 0, proc.stderr)

    def errors(self, proc, name):
        """The error lines of stderr, parsed; asserts each names the file as passed (or absolute)."""
        found = []
        for line in proc.stderr.splitlines():
            m = ERROR_RE.match(line)
            if m:
                self.assertIn(m["file"], (name, os.path.join(self.dir, name)), line)
                found.append({"line": int(m["line"]), "col": int(m["col"]), "path": m["path"] or "",
                              "message": m["message"], "text": line})
        return found

    def check_fails(self, text, name="bad.yaml"):
        self.write(name, text)
        proc = self.drover("--check", "-c", name)
        self.assertEqual(proc.returncode, 2, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        errors = self.errors(proc, name)
        self.assertTrue(errors, f"no `file:line:col: key.path: message` line in stderr:\n{proc.stderr}")
        for e in errors:
            self.assertGreaterEqual(e["line"], 1, e["text"])
            self.assertGreaterEqual(e["col"], 1, e["text"])
        return errors

    def only_error(self, text):
        errors = self.check_fails(text)
        self.assertEqual(len(errors), 1, [e["text"] for e in errors])
        return errors[0]

    # -- good ----------------------------------------------------------------------------------------

    def test_good_file_passes(self):
        name = self.write("good.yaml", GOOD)
        proc = self.drover("--check", "-c", name)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(proc.stdout.strip(), (f"{name}: ok", f"{os.path.join(self.dir, name)}: ok"))

    def test_long_config_option(self):
        name = self.write("good.yaml", GOOD)
        for args in (["--config", name], [f"--config={name}"]):
            proc = self.drover("--check", *args)
            self.assertEqual(proc.returncode, 0, (args, proc.stderr))

    def test_usage_mistakes_are_refused(self):
        name = self.write("good.yaml", GOOD)
        for args, why in ((["--check", "-c", name, "-c", name], "more than one config file"),
                          (["--check=yes", "-c", name], "'--check' takes no value"),
                          (["--config=", "--check"], "-c needs a file"),
                          (["--demo-listen", "127.0.0.1:0", "-c", name], "--demo-listen and --demo-admin go with --demo")):
            with self.subTest(args=args):
                proc = self.drover(*args)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn(f"drover: {why}", proc.stderr)

    # -- one error each ------------------------------------------------------------------------------

    def test_unknown_key_suggests_the_known_one(self):
        text = LISTENER + textwrap.dedent("""\
            clusters:
              - name: api
                discovery:
                  static: [127.0.0.1:9001]
                helth_check:
                  interval: 1s
            """)
        e = self.only_error(text)
        self.assertEqual(e["line"], line_of(text, "helth_check"), e["text"])
        self.assertEqual(e["path"], "clusters[0].helth_check", e["text"])
        self.assertIn("unknown key", e["message"])
        self.assertIn("did you mean 'health_check'", e["message"])

    def test_bad_duration(self):
        text = LISTENER + textwrap.dedent("""\
            clusters:
              - name: api
                discovery:
                  static: [127.0.0.1:9001]
                timeouts:
                  connect: 5parsecs
            """)
        e = self.only_error(text)
        self.assertEqual(e["line"], line_of(text, "5parsecs"), e["text"])
        self.assertEqual(e["path"], "clusters[0].timeouts.connect", e["text"])

    def test_duplicate_cluster_names(self):
        text = LISTENER + textwrap.dedent("""\
            clusters:
              - name: api
                discovery:
                  static: [127.0.0.1:9001]
              - name: api
                discovery:
                  static: [127.0.0.1:9002]
            """)
        e = self.only_error(text)
        self.assertEqual(e["line"], line_of(text, "- name: api", occurrence=2), e["text"])
        self.assertTrue(e["path"].startswith("clusters[1]"), e["text"])

    def test_listener_to_unknown_cluster(self):
        text = LISTENER.replace("cluster: api", "cluster: nope") + textwrap.dedent("""\
            clusters:
              - name: api
                discovery:
                  static: [127.0.0.1:9001]
            """)
        e = self.only_error(text)
        self.assertEqual(e["line"], line_of(text, "cluster: nope"), e["text"])
        self.assertEqual(e["path"], "listeners[0].cluster", e["text"])
        self.assertIn("unknown cluster", e["message"])

    def test_tcp_listener_without_cluster(self):
        text = LISTENER.replace("    cluster: api\n", "") + textwrap.dedent("""\
            clusters:
              - name: api
                discovery:
                  static: [127.0.0.1:9001]
            """)
        e = self.only_error(text)
        first, last = line_of(text, "- name: front"), line_of(text, "protocol: tcp")
        self.assertTrue(first <= e["line"] <= last, e["text"])
        self.assertTrue(e["path"].startswith("listeners[0]"), e["text"])

    def test_yaml_syntax_error(self):
        text = LISTENER + "clusters:\n  - name: api\n    discovery:\n      static: [127.0.0.1:9001\n"
        self.check_fails(text)

    def test_missing_file(self):
        proc = self.drover("--check", "-c", "missing.yaml")
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertTrue(any(line.startswith(("missing.yaml:", os.path.join(self.dir, "missing.yaml:")))
                            for line in proc.stderr.splitlines()), proc.stderr)

    # -- several errors at once --------------------------------------------------------------------

    THREE_ERRORS = textwrap.dedent("""\
        admin:
          address: 127.0.0.1:0
        listeners:
          - name: front
            address: 127.0.0.1:0
            protocol: tcp
            cluster: nope
        clusters:
          - name: api
            discovery:
              static: [127.0.0.1:9001]
            timeouts:
              connect: soon
            helth_check:
              interval: 1s
        """)

    def test_every_error_is_reported_on_its_own_line(self):
        text = self.THREE_ERRORS
        errors = self.check_fails(text)
        self.assertEqual(len(errors), 3, [e["text"] for e in errors])
        self.assertEqual(sorted(e["line"] for e in errors),
                         sorted([line_of(text, "cluster: nope"), line_of(text, "connect: soon"),
                                 line_of(text, "helth_check")]), [e["text"] for e in errors])

    def test_run_mode_refuses_a_bad_config_without_starting(self):
        name = self.write("bad.yaml", self.THREE_ERRORS)
        proc = self.drover("-c", name)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertEqual(len(self.errors(proc, name)), 3, proc.stderr)
        self.assertNotIn("listening on", proc.stderr)

    def test_startup_failure_exits_1(self):
        # The listener's port is taken. With SO_REUSEPORT on the holder, as another Drover of the same
        # user has it, the kernel would let drover's own SO_REUSEPORT sockets join and split the
        # connections between the two processes: that too must be "in use".
        for reuseport in (False, True):
            with self.subTest(reuseport=reuseport):
                taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.addCleanup(taken.close)
                if reuseport:
                    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                taken.bind(("127.0.0.1", 0))
                taken.listen(1)
                port = taken.getsockname()[1]
                text = GOOD.replace("  - name: front\n    address: 127.0.0.1:0", f"  - name: front\n    address: 127.0.0.1:{port}")
                self.assertIn(f"127.0.0.1:{port}", text)
                name = self.write("busy.yaml", text)
                proc = self.drover("-c", name)
                self.assertEqual(proc.returncode, 1, proc.stderr)
                self.assertNotIn("listener front listening on", proc.stderr)
                # Where, and why, in the user's terms: not the boost header the error came from.
                self.assertRegex(proc.stderr, rf"{re.escape(name)}:{line_of(text, '- name: front')}:\d+: listeners\[0\]: "
                                              rf"cannot listen on 127\.0\.0\.1:{port}: Address already in use")
                self.assertNotIn("boost", proc.stderr)

    def test_an_admin_port_in_use_says_where_it_was_set(self):
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        text = f"admin:\n  address: 127.0.0.1:{port}\n" + GOOD.replace("admin:\n  address: 127.0.0.1:0\n", "")
        name = self.write("busy-admin.yaml", text)
        proc = self.drover("-c", name)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertRegex(proc.stderr, rf"{re.escape(name)}:2:\d+: admin\.address: cannot listen on 127\.0\.0\.1:{port}: "
                                      r"Address already in use")

    # -- files that read as valid YAML but cannot run as they are ----------------------------------

    def test_an_empty_or_listenerless_file_is_refused(self):
        for text in ("", "# truncated\n", "admin:\n  address: 127.0.0.1:0\n"):
            with self.subTest(text=text):
                e = self.only_error(text)
                self.assertEqual((e["line"], e["col"], e["path"]), (1, 1, "listeners"), e["text"])
                self.assertIn("no listeners", e["message"])

    def test_an_access_log_that_cannot_be_opened_is_refused_by_check(self):
        text = GOOD + "access_log:\n  path: no/such/folder/access.log\n"
        e = self.only_error(text)
        self.assertEqual((e["line"], e["path"]), (line_of(text, "path: no/such"), "access_log.path"), e["text"])
        self.assertIn("cannot open no/such/folder/access.log for appending", e["message"])
        self.assertIn("No such file or directory", e["message"])
        self.assertFalse(os.path.exists(os.path.join(self.dir, "no")))

    def test_a_setting_without_effect_is_a_warning_not_an_error(self):
        text = GOOD.replace("    load_balancing: round_robin\n",
                            "    load_balancing: round_robin\n    hash: { source_ip: true }\n")
        name = self.write("warn.yaml", text)
        proc = self.drover("--check", "-c", name)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(f"{name}:{line_of(text, 'hash:')}:5: warning: clusters[0].hash: hash is ignored: only "
                      "load_balancing: maglev hashes", proc.stderr)
        self.assertIn(f"{name}: ok", proc.stdout)

    # -- other options -----------------------------------------------------------------------------

    def test_version(self):
        proc = self.drover("--version")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout.splitlines()[0] if proc.stdout else "", r"^drover \d+\.\d+\.\d+")

    def test_help(self):
        proc = self.drover("--help")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("--check", proc.stdout + proc.stderr)


if __name__ == "__main__":
    unittest.main()
