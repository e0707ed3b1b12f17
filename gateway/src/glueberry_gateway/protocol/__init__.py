"""The ``glueberry.v1`` browser ⇄ gateway protocol (docs/gateway-protocol.md), sans I/O, shared by
the gateway (:mod:`glueberry_gateway.server`) and the Python client (:mod:`glueberry_gateway.client`):

* :mod:`.codes` — close and error codes (§8);
* :mod:`.errors` — the exceptions, and the one table that turns them into codes;
* :mod:`.control` — control messages, typed, both directions (§2–§6);
* :mod:`.frames` — data frames and batches (§5.2, §5.6);
* :mod:`.auth` — what a browser signs and what a gateway checks (§3, §5.1).
"""
