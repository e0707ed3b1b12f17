"""Start the demo: for now a libp2p node identity; the chat demo replaces this."""

from __future__ import annotations

from glueberry.p2p.keys import PeerID, generate_private_key


def main() -> None:
    key = generate_private_key()
    print(f"peer ID: {PeerID.from_private_key(key)}")


if __name__ == "__main__":
    main()
