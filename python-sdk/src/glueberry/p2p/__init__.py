"""libp2p over TCP: the part Glueberry needs, as sans-I/O cores with asyncio drivers."""
