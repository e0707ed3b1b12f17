// Shared test helpers: the cross-implementation vectors and hex shorthands.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromHex, toHex } from '../src/bytes.js';

/** Find `tests/vectors/<file>` of the repository by walking up from this file. */
export function vectorsPath(file = 'glueberry.json'): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'tests', 'vectors', file);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`tests/vectors/${file} not found above ` + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

export interface PeerVector {
  ed25519_seed: string;
  ed25519_private_key_go: string;
  ed25519_public_key: string;
  x25519_private_key: string;
  x25519_public_key: string;
  libp2p_public_key_protobuf: string;
  peer_id_multihash: string;
  peer_id: string;
}

export interface FramingCase {
  payload?: string;
  wire?: string;
  payload_len?: number;
  payload_byte?: string;
  wire_prefix?: string;
  note: string;
}

export interface ReaderCase {
  wire: string;
  result: 'accept' | 'error' | 'eof';
  payloads: string[];
  note: string;
}

export interface Vectors {
  peer_a: PeerVector;
  peer_b: PeerVector;
  ecdh: { shared_secret: string };
  stream_key: { hkdf_info_ascii: string; key: string };
  encrypted_frame: {
    plaintext: string;
    nonce: string;
    ciphertext_and_tag: string;
    frame: string;
    frame_length: number;
    wire: string;
  };
  encrypted_frame_empty_plaintext: { frame: string; wire: string };
  encrypted_frame_tampered: { wire: string };
  handshake_message: { payload: string; wire: string };
  framing_examples: { cases: FramingCase[] };
  reader_acceptance: { cases: ReaderCase[] };
  rejected_remote_keys: { cases: { ed25519_public_key: string; x25519_public_key?: string; reason: string }[] };
}

export const vectors = JSON.parse(readFileSync(vectorsPath(), 'utf8')) as Vectors;

export const h = fromHex;
export const hex = toHex;
