"""DNS discovery against a real dnsmasq on loopback: traffic follows the records, SRV weights, ports and
priorities are honoured, and DNS failures (dnsmasq killed, NXDOMAIN) keep the last good set.

Backends are TCP (protocol: tcp listeners) on distinct loopback addresses (127.0.0.2, 127.0.0.3, ...:
all of 127.0.0.0/8 is loopback on Linux) sharing one port, as replicas behind one A record do.
dnsmasq serves everything with a 1 s TTL; clusters refresh within [100ms, 1s].
"""

import collections
import socket
import time
import unittest

from harness import (DroverTestCase, Dnsmasq, SrvRecord, TaggedBackend, dns_cluster, make_config, recv_all,
                     tcp_listener, to_yaml, wait_until)

WEB = "web.drover.test"


class DnsDiscoveryTest(DroverTestCase):

    def dnsmasq(self, hosts=None, srv=()):
        server = Dnsmasq(hosts, srv)
        self.addCleanup(server.cleanup)
        return server

    def replicas(self, tags, first_host=2):
        """Tagged backends on 127.0.0.<first_host>, <first_host+1>, ... all on the same port."""
        backends = [self.backend(TaggedBackend(tags[0], host=f"127.0.0.{first_host}"))]
        port = backends[0].port
        for i, tag in enumerate(tags[1:], start=first_host + 1):
            backends.append(self.backend(TaggedBackend(tag, host=f"127.0.0.{i}", port=port)))
        self.replica_port = port
        return backends

    def web_cluster(self, dns, **kw):
        """Cluster `back`: the A records of web.drover.test, on the port of the replicas. Round robin, so
        that which replicas a handful of connections reach is exact, not probabilistic."""
        return dns_cluster("back", WEB, dns, port=self.replica_port, load_balancing="round_robin", **kw)

    def proxy(self, cluster, **config_extra):
        config = make_config([tcp_listener("front", cluster["name"])], [cluster], **config_extra)
        drover = self.start_drover(config)
        return drover, drover.listener_addr("front")

    @staticmethod
    def fetch(addr):
        """One connection: the backend's tag, or b'' when drover closes it without an upstream."""
        try:
            with socket.create_connection(addr, timeout=5) as sock:
                sock.settimeout(5)
                return recv_all(sock)
        except ConnectionResetError:
            return b""

    def tags(self, addr, n):
        return collections.Counter(self.fetch(addr) for _ in range(n))

    def wait_tags(self, addr, want, timeout=6.0, n=12):
        """Polls until n connections in a row reach exactly the backends tagged `want` (all of them)."""
        seen = {}

        def check():
            seen["last"] = self.tags(addr, n)
            return set(seen["last"]) == set(want)
        wait_until(check, timeout, interval=0.05, message=lambda: f"tags {seen.get('last')} want {sorted(want)}")

    @staticmethod
    def discovery(drover, cluster="back"):
        for c in drover.admin_json("/clusters")["clusters"]:
            if c["name"] == cluster:
                return c["discovery"], c["hosts"]
        raise AssertionError(f"cluster {cluster} not in /clusters")

    # -- following the records --------------------------------------------------------------------------

    def test_traffic_follows_added_and_removed_replicas_within_the_ttl(self):
        a, b, c = self.replicas(["A", "B", "C"])
        dns = self.dnsmasq({WEB: ["127.0.0.2"]})
        drover, addr = self.proxy(self.web_cluster(dns))
        self.assertEqual(self.tags(addr, 5), {b"A": 5})

        start = time.monotonic()
        dns.set_hosts({WEB: ["127.0.0.2", "127.0.0.3", "127.0.0.4"]})
        self.wait_tags(addr, {b"A", b"B", b"C"})
        self.assertLess(time.monotonic() - start, 4.0, "a 1 s TTL took too long to follow")

        dns.set_hosts({WEB: ["127.0.0.3"]})
        self.wait_tags(addr, {b"B"})
        self.assertEqual(self.tags(addr, 6), {b"B": 6})

        drover.wait_metric("drover_cluster_host_changes_total", {"cluster": "back", "change": "added"},
                           lambda v: v == 3)
        drover.wait_metric("drover_cluster_host_changes_total", {"cluster": "back", "change": "removed"},
                           lambda v: v == 2)
        self.assertGreaterEqual(drover.metric_value("drover_discovery_refreshes_total",
                                                    {"cluster": "back", "result": "success"}), 3)
        info, hosts = self.discovery(drover)
        self.assertEqual(info["kind"], "dns")
        self.assertTrue(info["resolved"])
        self.assertFalse(info["stale"])
        self.assertEqual([h["address"] for h in hosts], [f"127.0.0.3:{a.port}"])

    def test_a_and_aaaa_together(self):
        (a,) = self.replicas(["A"])
        dns = self.dnsmasq({WEB: ["127.0.0.2", "::1"]})
        drover, _ = self.proxy(self.web_cluster(dns, type="a+aaaa"))
        _, hosts = self.discovery(drover)
        self.assertEqual(sorted(h["address"] for h in hosts), sorted([f"127.0.0.2:{a.port}", f"[::1]:{a.port}"]))

    def test_a_name_with_hundreds_of_addresses_lists_them_all(self):
        # More than fit in a UDP answer (c-ares asks again over TCP) and more than the 256 that used
        # to be read: every replica is a host.
        addresses = [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(300)]
        self.replica_port = 9
        dns = self.dnsmasq({WEB: addresses})
        drover, _ = self.proxy(self.web_cluster(dns, health_check={"enabled": False}))
        _, hosts = self.discovery(drover)
        self.assertEqual(sorted(h["address"] for h in hosts), sorted(f"{a}:9" for a in addresses))

    def test_srv_weights_ports_and_priorities_are_honoured(self):
        heavy = self.backend(TaggedBackend("heavy", host="127.0.0.2"))
        light = self.backend(TaggedBackend("light", host="127.0.0.3"))
        standby = self.backend(TaggedBackend("standby", host="127.0.0.4"))
        service = "_pg._tcp.drover.test"
        dns = self.dnsmasq(
            {"heavy.drover.test": ["127.0.0.2"], "light.drover.test": ["127.0.0.3"],
             "standby.drover.test": ["127.0.0.4"]},
            [SrvRecord(service, "heavy.drover.test", heavy.port, priority=10, weight=3),
             SrvRecord(service, "light.drover.test", light.port, priority=10, weight=1),
             SrvRecord(service, "standby.drover.test", standby.port, priority=20, weight=1)])
        drover, addr = self.proxy(dns_cluster("back", service, dns, type="srv", load_balancing="round_robin"))

        _, hosts = self.discovery(drover)
        self.assertEqual({h["address"]: h["weight"] for h in hosts if h["eligible"]},
                         {heavy.addr: 3, light.addr: 1})  # each its own port; the standby group unused
        self.assertEqual({h["address"]: h["priority"] for h in hosts},
                         {heavy.addr: 10, light.addr: 10, standby.addr: 20})
        counts = self.tags(addr, 40)
        self.assertEqual(counts[b"standby"], 0)
        self.assertAlmostEqual(counts[b"heavy"], 30, delta=1)
        self.assertAlmostEqual(counts[b"light"], 10, delta=1)

        # New weights (dnsmasq restarted on the same port): applied without a restart of drover.
        dns.set_srv([SrvRecord(service, "heavy.drover.test", heavy.port, priority=10, weight=1),
                     SrvRecord(service, "light.drover.test", light.port, priority=10, weight=1),
                     SrvRecord(service, "standby.drover.test", standby.port, priority=20, weight=1)])
        drover.wait_metric("drover_cluster_host_changes_total", {"cluster": "back", "change": "weight"},
                           lambda v: v == 1)
        _, hosts = self.discovery(drover)
        self.assertEqual({h["address"]: h["weight"] for h in hosts if h["eligible"]}, {heavy.addr: 1, light.addr: 1})

        # The best group leaves DNS: the next priority takes over.
        dns.set_srv([SrvRecord(service, "standby.drover.test", standby.port, priority=20, weight=1)])
        self.wait_tags(addr, {b"standby"})

    def test_a_best_group_short_of_hosts_spills_to_the_next_by_its_health(self):
        # Best group: 3 hosts, then 2 of them stop (connections refused, their checks fail); backup: 1
        # host. The cluster has 2 of 4 up (no panic). The best group's health is 140% x 1/3 = 46.7%:
        # the rest of the load goes to the backup, not all of it to the one host left (strict
        # failover), nor all to the backup. At 10000% the best group keeps everything.
        best = [self.backend(TaggedBackend("best", host="127.0.0.2")) for _ in range(3)]
        backup = self.backend(TaggedBackend("backup", host="127.0.0.3"))
        service = "_web._tcp.drover.test"
        names = {"best.drover.test": ["127.0.0.2"], "backup.drover.test": ["127.0.0.3"]}
        records = [SrvRecord(service, "best.drover.test", b.port, priority=0, weight=1) for b in best]
        records.append(SrvRecord(service, "backup.drover.test", backup.port, priority=1, weight=1))
        dns = self.dnsmasq(names, records)
        check = {"interval": "200ms", "unhealthy_interval": "100ms", "timeout": "150ms", "tcp": {}}
        cluster = dns_cluster("back", service, dns, type="srv", load_balancing="round_robin",
                              health_check=check, slow_start="0s", self_healing=True)
        drover, addr = self.proxy(cluster)

        def states(want):
            clusters = drover.admin_json("/clusters")["clusters"]
            return clusters[0] if sorted(h["state"] for h in clusters[0]["hosts"]) == want else None
        wait_until(lambda: states(["healthy"] * 4), 10, message="every host healthy")
        best[1].stop()
        best[2].stop()
        view = wait_until(lambda: states(["healthy", "healthy", "unhealthy", "unhealthy"]), 10,
                          message="two hosts healthy, two unhealthy")
        self.assertEqual([(g["priority"], g["hosts_counted"], g["hosts_available"]) for g in view["priorities"]],
                         [(0, 3, 1), (1, 1, 1)])
        self.assertAlmostEqual(view["priorities"][0]["load_percent"], 46.7, delta=0.1)
        self.assertFalse(view["panic"])
        counts = self.tags(addr, 100)
        self.assertEqual(counts[b"best"] + counts[b"backup"], 100)
        self.assertAlmostEqual(counts[b"best"], 47, delta=2)

        cluster["priority_overprovisioning"] = "10000%"
        with open(drover.config_path, "w", encoding="utf-8") as f:
            f.write(to_yaml(make_config([tcp_listener("front", "back")], [cluster])))
        self.assertEqual(drover.admin_post("/reload").status, 200)
        wait_until(lambda: drover.admin_json("/clusters")["clusters"][0]["priorities"][0]["load_percent"] == 100, 5,
                   message="the best group takes everything at 10000%")
        self.assertEqual(self.tags(addr, 20), collections.Counter({b"best": 20}))

    def test_a_part_of_the_answer_that_keeps_failing_is_logged_once(self):
        # Three SRV targets with IPv4 addresses only, outside the domain dnsmasq answers for alone: it
        # has no AAAA for them to give and no upstream to ask, so their AAAA questions are REFUSED at
        # every refresh, and it lists the targets in another order each time. One warning, not one
        # per refresh.
        service = "_web._tcp.drover.test"
        targets = [f"t{i}.elsewhere.test" for i in range(3)]
        dns = self.dnsmasq({t: [f"127.0.0.{2 + i}"] for i, t in enumerate(targets)},
                           [SrvRecord(service, t, 9, priority=0, weight=1) for t in targets])
        drover, _ = self.proxy(dns_cluster("back", service, dns, type="srv", health_check={"enabled": False}))
        wait_until(lambda: self.discovery(drover)[0]["refreshes_succeeded"] >= 5, 15, message="five refreshes")
        warnings = [line for line in drover.stderr_lines if "part of the answer failed" in line]
        self.assertEqual(len(warnings), 1, warnings)

    # -- failures keep the last good set ---------------------------------------------------------------

    def test_killing_dnsmasq_keeps_traffic_on_the_last_good_set_and_shows_stale(self):
        self.replicas(["A", "B"])
        dns = self.dnsmasq({WEB: ["127.0.0.2", "127.0.0.3"]})
        drover, addr = self.proxy(self.web_cluster(dns))
        self.wait_tags(addr, {b"A", b"B"})

        dns.stop()
        wait_until(lambda: self.discovery(drover)[0]["consecutive_failures"] >= 3, 10,
                   message=lambda: f"discovery: {self.discovery(drover)[0]}")
        info, hosts = self.discovery(drover)
        self.assertTrue(info["stale"])
        self.assertTrue(info["resolved"])
        self.assertNotEqual(info["last_error"], "")
        self.assertEqual(len(hosts), 2)
        self.assertEqual(drover.metric_value("drover_discovery_stale", {"cluster": "back"}), 1)
        self.assertGreaterEqual(drover.metric_value("drover_discovery_refreshes_total",
                                                    {"cluster": "back", "result": "failure"}), 3)
        self.assertGreater(drover.metric_value("drover_discovery_last_success_age_seconds", {"cluster": "back"}),
                           0.5)
        self.assertEqual(drover.admin_get("/ready").status, 200)  # resolved once: still ready
        self.assertEqual(set(self.tags(addr, 10)), {b"A", b"B"})  # traffic flows on the last good set

        dns.start()
        wait_until(lambda: not self.discovery(drover)[0]["stale"], 10,
                   message=lambda: f"discovery: {self.discovery(drover)[0]}")
        self.assertEqual(drover.metric_value("drover_discovery_stale", {"cluster": "back"}), 0)
        self.assertEqual(self.discovery(drover)[0]["consecutive_failures"], 0)

    def test_a_reload_during_a_dns_outage_keeps_the_hosts_and_their_drains(self):
        self.replicas(["A", "B"])
        dns = self.dnsmasq({WEB: ["127.0.0.2", "127.0.0.3"], "new.drover.test": ["127.0.0.3"]})
        cluster = self.web_cluster(dns)
        config = make_config([tcp_listener("front", "back")], [cluster])
        drover = self.start_drover(config)
        addr = drover.listener_addr("front")
        self.wait_tags(addr, {b"A", b"B"})
        drained = f"127.0.0.3:{self.replica_port}"
        self.assertEqual(drover.admin_post(f"/clusters/back/{drained}/drain").status, 200)
        self.wait_tags(addr, {b"A"})

        dns.stop()
        wait_until(lambda: self.discovery(drover)[0]["consecutive_failures"] >= 1, 10, message="DNS fails")

        def reload(summary):
            with open(drover.config_path, "w", encoding="utf-8") as f:
                f.write(to_yaml(config))
            resp = drover.admin_post("/reload")
            self.assertEqual(resp.status, 200, resp.text)
            self.assertIn(summary, resp.text)
            self.assertEqual(self.tags(addr, 6), {b"A": 6})   # still served, B still drained
            self.assertEqual(drover.admin_get("/ready").status, 200)
            self.assertEqual(sorted(h["address"] for h in self.discovery(drover)[1]),
                             sorted([f"127.0.0.2:{self.replica_port}", drained]))

        # What an operator does in an outage: let the stale set serve longer. The same question to the
        # same server: the running resolver takes it, and so does a new balancing policy.
        cluster["discovery"]["dns"]["max_stale"] = "1h"
        cluster["load_balancing"] = "least_request"
        reload("clusters: 1 updated, 0 replaced")
        # Another name: a new resolver, and the hosts serve until it answers.
        cluster["discovery"]["dns"]["name"] = "new.drover.test"
        reload("clusters: 0 updated, 1 replaced")
        info, _ = self.discovery(drover)
        self.assertTrue(info["stale"])
        self.assertTrue(info["resolved"])
        dns.start()   # the new name answers: its set replaces the old one
        wait_until(lambda: [h["address"] for h in self.discovery(drover)[1]] == [drained], 10,
                   message=lambda: f"hosts {self.discovery(drover)[1]}")

    def test_nxdomain_keeps_the_last_set(self):
        self.replicas(["A", "B"])
        dns = self.dnsmasq({WEB: ["127.0.0.2", "127.0.0.3"]})
        drover, addr = self.proxy(self.web_cluster(dns))
        self.wait_tags(addr, {b"A", b"B"})

        dns.set_hosts({"other.drover.test": ["127.0.0.9"]})  # web.drover.test is gone: NXDOMAIN
        wait_until(lambda: "NXDOMAIN" in self.discovery(drover)[0]["last_error"], 6,
                   message=lambda: f"discovery: {self.discovery(drover)[0]}")
        info, hosts = self.discovery(drover)
        self.assertTrue(info["stale"])
        self.assertEqual(len(hosts), 2)
        self.assertEqual(set(self.tags(addr, 10)), {b"A", b"B"})

        # A successful answer that lists fewer hosts is what removes one.
        dns.set_hosts({WEB: ["127.0.0.2"]})
        self.wait_tags(addr, {b"A"})
        self.assertFalse(self.discovery(drover)[0]["stale"])

    def test_max_stale_drops_the_set_once_it_has_served_stale_long_enough(self):
        self.replicas(["A"])
        dns = self.dnsmasq({WEB: ["127.0.0.2"]})
        drover, addr = self.proxy(self.web_cluster(dns, max_stale="1s"))
        self.assertEqual(self.tags(addr, 3), {b"A": 3})
        dns.stop()
        drover.wait_metric("drover_discovery_stale_drops_total", {"cluster": "back"}, lambda v: v == 1, timeout=10)
        self.assertEqual(self.discovery(drover)[1], [])
        self.assertEqual(self.fetch(addr), b"")  # no hosts: the connection is closed
        drover.wait_metric("drover_cluster_upstream_unavailable_total", {"cluster": "back", "reason": "no_host"},
                           lambda v: v >= 1, default=0)
        dns.start()
        self.wait_tags(addr, {b"A"})

    # -- never resolved -------------------------------------------------------------------------------

    def test_never_resolved_cluster_has_no_hosts_and_is_named_by_ready(self):
        self.replicas(["A"])
        dns = self.dnsmasq({"other.drover.test": ["127.0.0.9"]})
        # A connection waits hold_timeout for discovery to answer before it is closed: keep that short.
        config = make_config([tcp_listener("front", "back")], [{**self.web_cluster(dns), "hold_timeout": "300ms"}])
        drover = self.start_drover(config, wait_ready=False)
        addr = drover.listener_addr("front")

        wait_until(lambda: self.discovery(drover)[0]["consecutive_failures"] >= 1, 5)
        ready = drover.admin_get("/ready")
        self.assertEqual(ready.status, 503)
        self.assertIn("unresolved clusters: back", ready.text)
        info, hosts = self.discovery(drover)
        self.assertFalse(info["resolved"])
        self.assertNotIn("last_success_age_seconds", info)
        self.assertIn("NXDOMAIN", info["last_error"])
        self.assertEqual(hosts, [])
        self.assertEqual(drover.metric_value("drover_discovery_resolved", {"cluster": "back"}), 0)

        sock = self.connect(addr)
        self.assertClosedPromptly(sock)
        drover.wait_metric("drover_cluster_upstream_unavailable_total", {"cluster": "back", "reason": "no_host"},
                           lambda v: v == 1, default=0)

        dns.set_hosts({WEB: ["127.0.0.2"]})
        drover.wait_ready(6)
        self.wait_tags(addr, {b"A"})



if __name__ == "__main__":
    unittest.main()
