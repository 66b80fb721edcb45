"""docker-compose.yml's Kafka services run as Docker would run them, without Docker.

Why a package of the harness, not of tests: these modules are tooling (they read the compose
file, build its network with Linux namespaces and launch the apache/kafka image's own steps from
its jars); tests/test_compose.py and tests/test_compose_broker.py only drive them.
- ``file``: the compose file read the way Compose reads it (variables, profiles, ports);
- ``broker``: the single `kafka` service (``python -m harness.compose.broker``);
- ``network``: the project's network, containers and published ports;
- ``cluster``: the `cluster` profile's nodes (``python -m harness.compose.cluster``).
"""
