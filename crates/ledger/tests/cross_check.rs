//! Trailmark's tree against an independent RFC 6962 implementation (`ct-merkle`), on trees of
//! many sizes, most of them not powers of two: roots, inclusion proofs and consistency proofs
//! must be byte-for-byte the same.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use trailmark_ledger::tree::{
    Frontier, MemoryNodes, consistency_proof, inclusion_proof, leaf_hash, tree_hash,
};

type Reference = MemoryBackedTree<sha2_next::Sha256, Vec<u8>>;

/// Deterministic sizes: every size up to 33, then pseudo-random ones up to 3,000.
fn sizes() -> Vec<u64> {
    let mut sizes: Vec<u64> = (1..=33).collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..12 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        sizes.push(34 + state % 3_000);
    }
    sizes
}

#[test]
fn roots_and_proofs_match_ct_merkle() {
    for size in sizes() {
        let mut reference = Reference::new();
        let mut frontier = Frontier::empty();
        let mut nodes = MemoryNodes::default();
        for n in 0..size {
            let data = format!("event {n}").into_bytes();
            nodes.extend(frontier.append(leaf_hash(&data)));
            reference.push(data);
        }
        let root = tree_hash(size, &nodes).expect("stored nodes");
        assert_eq!(
            root.as_slice(),
            reference.root().as_bytes().as_slice(),
            "root of {size} leaves"
        );
        assert_eq!(root, frontier.root());

        for index in [0, size / 3, size / 2, size - 1] {
            let ours: Vec<u8> = inclusion_proof(index, size, &nodes)
                .expect("proof")
                .concat();
            let theirs = reference.prove_inclusion(index as usize);
            assert_eq!(ours, theirs.as_bytes(), "inclusion of {index} in {size}");
        }
        for first in [1, size / 2, size - 1]
            .into_iter()
            .filter(|first| *first >= 1 && *first < size)
        {
            let ours: Vec<u8> = consistency_proof(first, size, &nodes)
                .expect("proof")
                .concat();
            let theirs = reference.prove_consistency((size - first) as usize);
            assert_eq!(ours, theirs.as_bytes(), "consistency {first} → {size}");
        }
    }
}
