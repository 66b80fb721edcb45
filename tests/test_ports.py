"""The harness's ports: the ports a cluster's nodes are given are distinct and free, so no node
fails at start on a port its neighbour took."""

from __future__ import annotations

import socket

from harness.kafka_cluster import KafkaCluster
from harness.ports import free_ports


def test_ports_drawn_together_are_distinct_and_each_free() -> None:
    # one at a time, the kernel handed out a port twice in 7 of 5,000 draws of nine
    for _ in range(2000):
        ports = free_ports(9)
        assert len(set(ports)) == 9, ports
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_clusters_nodes_and_listeners_get_distinct_ports(tmp_path) -> None:
    cluster = KafkaCluster(n=3, data_dir=tmp_path, extra_listeners=("PRODUCER",))
    ports = [p for node in cluster.nodes.values() for p in (node.port, node.controller_port)]
    ports += list(cluster.listener_ports["PRODUCER"].values())
    assert len(ports) == 9 and len(set(ports)) == 9
