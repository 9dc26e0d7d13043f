//! RFC 6962 Merkle trees (RFC 9162 §2.1): hashing, appending, roots and proofs.
//!
//! Hashes (RFC 6962 §2.1): a leaf is `SHA-256(0x00 ‖ data)`, an interior node is
//! `SHA-256(0x01 ‖ left ‖ right)`, the empty tree is `SHA-256("")`. The tree over *n* leaves
//! splits at the largest power of two smaller than *n*.
//!
//! Storage model: every *complete* subtree is a [`Node`] — level *L*, index *i* — covering leaves
//! `[i·2^L, (i+1)·2^L)`. Appending leaf *n* completes the leaf node and one node per trailing one
//! bit of *n*, fewer than two per leaf on average; the store keeps them forever (and keeps them
//! when retention purges an event's contents, so proofs never break). Any root or proof then
//! needs O(log n) stored nodes: every range the RFC 6962 recursion visits is either a complete
//! aligned subtree or splits into one.
//!
//! The [`Frontier`] is the list of complete subtrees whose concatenation is the whole tree (one per
//! set bit of the size). It is what an appender needs: the new nodes and the root follow from it
//! and the new leaf alone, with no reads.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::LedgerError;
use crate::sha256x2;

pub type Hash = [u8; 32];

/// RFC 6962 §2.1: the hash of an empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// RFC 6962 §2.1: `SHA-256(0x00 ‖ data)`. The prefix keeps leaves and nodes from colliding.
pub fn leaf_hash(data: &[u8]) -> Hash {
    leaf_hash_of_parts(&[data])
}

/// [`leaf_hash`] of the concatenation of `parts`.
pub(crate) fn leaf_hash_of_parts(parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// [`leaf_hash`] of two leaves at once, their blocks compressed two by two: a verifier hashes
/// every event's leaf, and one leaf's blocks, each waiting on the one before, leave the
/// processor idle between rounds that another leaf's can fill (`sha256x2`).
pub fn leaf_hash_pair(a: &[u8], b: &[u8]) -> (Hash, Hash) {
    let (a, b) = (LeafMessage::new(a), LeafMessage::new(b));
    let (mut a_state, mut b_state) = (sha256x2::INITIAL, sha256x2::INITIAL);
    let both = a.blocks.min(b.blocks);
    for index in 0..both {
        sha256x2::compress_pair(&mut a_state, a.block(index), &mut b_state, b.block(index));
    }
    for index in both..a.blocks {
        sha256x2::compress(&mut a_state, a.block(index));
    }
    for index in both..b.blocks {
        sha256x2::compress(&mut b_state, b.block(index));
    }
    (sha256x2::digest(a_state), sha256x2::digest(b_state))
}

/// A leaf's SHA-256 message, `0x00 ‖ data` padded (FIPS 180-4 §5.1.1), block by block: the
/// whole blocks after the first read from `data` where they lie, the first (which starts with
/// the prefix) and the last one or two (the padding) from copies.
struct LeafMessage<'a> {
    data: &'a [u8],
    /// Blocks wholly within the message, before its padding.
    whole: usize,
    /// The first block, when it is whole.
    first: [u8; 64],
    /// The rest of the message, padded.
    tail: [u8; 128],
    blocks: usize,
}

impl<'a> LeafMessage<'a> {
    fn new(data: &'a [u8]) -> Self {
        let length = data.len() + 1;
        let whole = length / 64;
        let rest = length % 64;
        let mut first = [0u8; 64];
        if whole > 0 {
            first[1..].copy_from_slice(&data[..63]);
        }
        let mut tail = [0u8; 128];
        if whole == 0 {
            // The prefix byte is in the tail, zero as the buffer is.
            tail[1..rest].copy_from_slice(data);
        } else {
            tail[..rest].copy_from_slice(&data[64 * whole - 1..]);
        }
        let tail_blocks = sha256x2::pad_tail(&mut tail, rest, length);
        LeafMessage {
            data,
            whole,
            first,
            tail,
            blocks: whole + tail_blocks,
        }
    }

    fn block(&self, index: usize) -> &[u8; 64] {
        if index >= self.whole {
            return sha256x2::tail_block(&self.tail, index - self.whole);
        }
        let bytes = if index == 0 {
            &self.first[..]
        } else {
            &self.data[64 * index - 1..64 * index + 63]
        };
        bytes.try_into().expect("64 bytes are a block")
    }
}

/// RFC 6962 §2.1: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// A complete subtree's hash: level `level`, covering leaves `[index·2^level, (index+1)·2^level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub level: u32,
    pub index: u64,
    pub hash: Hash,
}

/// Reads stored complete-subtree hashes.
pub trait NodeReader {
    /// # Errors
    ///
    /// [`LedgerError::MissingNode`] if the node is not stored, [`LedgerError::Read`] if the
    /// storage failed.
    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError>;
}

/// Nodes in memory: for tests, and for verifiers that rebuild a tree from its leaves.
#[derive(Debug, Default, Clone)]
pub struct MemoryNodes(HashMap<(u32, u64), Hash>);

impl MemoryNodes {
    pub fn extend(&mut self, nodes: impl IntoIterator<Item = Node>) {
        for node in nodes {
            self.0.insert((node.level, node.index), node.hash);
        }
    }
}

impl NodeReader for MemoryNodes {
    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        self.0
            .get(&(level, index))
            .copied()
            .ok_or(LedgerError::MissingNode { level, index })
    }
}

/// The complete subtrees that make up a tree, largest (leftmost) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    pub fn empty() -> Self {
        Frontier {
            size: 0,
            hashes: Vec::new(),
        }
    }

    /// # Errors
    ///
    /// [`LedgerError::Malformed`] unless there is one hash per set bit of `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, LedgerError> {
        if hashes.len() != size.count_ones() as usize {
            return Err(LedgerError::Malformed(format!(
                "a frontier of a tree of {size} leaves has {} hashes, not {}",
                size.count_ones(),
                hashes.len()
            )));
        }
        Ok(Frontier { size, hashes })
    }

    /// Reads the frontier of a tree of `size` leaves from stored nodes.
    ///
    /// # Errors
    ///
    /// The reader's error if a node is missing.
    pub fn read(size: u64, reader: &impl NodeReader) -> Result<Self, LedgerError> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        for (level, index) in subtrees(size) {
            hashes.push(reader.node(level, index)?);
        }
        Ok(Frontier { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf; returns the nodes it completed (the leaf itself first), to be stored.
    pub fn append(&mut self, leaf: Hash) -> Vec<Node> {
        let index = self.size;
        let mut completed = vec![Node {
            level: 0,
            index,
            hash: leaf,
        }];
        let mut hash = leaf;
        let mut level = 0;
        // Each trailing one bit of the old size is a same-sized subtree to the left to merge with.
        while (index >> level) & 1 == 1 {
            let left = self
                .hashes
                .pop()
                .expect("one frontier hash per set bit of the size");
            hash = node_hash(&left, &hash);
            level += 1;
            completed.push(Node {
                level,
                index: index >> level,
                hash,
            });
        }
        self.hashes.push(hash);
        self.size += 1;
        completed
    }

    /// The tree's root hash.
    pub fn root(&self) -> Hash {
        fold_right(&self.hashes)
    }
}

fn fold_right(hashes: &[Hash]) -> Hash {
    match hashes.split_last() {
        None => empty_root(),
        Some((last, rest)) => rest
            .iter()
            .rev()
            .fold(*last, |right, left| node_hash(left, &right)),
    }
}

/// The `(level, index)` of each complete subtree of a tree of `size` leaves, left to right.
fn subtrees(size: u64) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for level in (0..64).rev() {
        if size & (1 << level) != 0 {
            out.push((level, start >> level));
            start += 1 << level;
        }
    }
    out
}

/// The root of the first `size` leaves.
///
/// # Errors
///
/// The reader's error if a needed node is missing.
pub fn tree_hash(size: u64, reader: &impl NodeReader) -> Result<Hash, LedgerError> {
    Ok(Frontier::read(size, reader)?.root())
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The hash of leaves `[start, end)`, for the ranges RFC 6962's recursion visits: `start` is a
/// multiple of the smallest power of two ≥ `end - start`.
fn range_hash(start: u64, end: u64, reader: &impl NodeReader) -> Result<Hash, LedgerError> {
    let width = end - start;
    if width.is_power_of_two() && start.is_multiple_of(width) {
        let level = width.trailing_zeros();
        return reader.node(level, start >> level);
    }
    let k = split(width);
    Ok(node_hash(
        &range_hash(start, start + k, reader)?,
        &range_hash(start + k, end, reader)?,
    ))
}

/// RFC 6962 §2.1.1 `PATH(index, D[size])`: the audit path from leaf `index` to the root of the
/// first `size` leaves, deepest sibling first.
///
/// # Errors
///
/// [`LedgerError::OutOfRange`] unless `index < size`; the reader's error if a node is missing.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    reader: &impl NodeReader,
) -> Result<Vec<Hash>, LedgerError> {
    if index >= size {
        return Err(LedgerError::OutOfRange(format!(
            "leaf {index} is not in a tree of {size} leaves"
        )));
    }
    let mut proof = Vec::new();
    path(index, 0, size, reader, &mut proof)?;
    Ok(proof)
}

fn path(
    index: u64,
    start: u64,
    end: u64,
    reader: &impl NodeReader,
    proof: &mut Vec<Hash>,
) -> Result<(), LedgerError> {
    if end - start == 1 {
        return Ok(());
    }
    let k = split(end - start);
    if index < start + k {
        path(index, start, start + k, reader, proof)?;
        proof.push(range_hash(start + k, end, reader)?);
    } else {
        path(index, start + k, end, reader, proof)?;
        proof.push(range_hash(start, start + k, reader)?);
    }
    Ok(())
}

/// RFC 6962 §2.1.2 `PROOF(first, D[second])`: proves the tree of `first` leaves is a prefix of the
/// tree of `second` leaves.
///
/// # Errors
///
/// [`LedgerError::OutOfRange`] unless `0 < first ≤ second`; the reader's error if a node is
/// missing.
pub fn consistency_proof(
    first: u64,
    second: u64,
    reader: &impl NodeReader,
) -> Result<Vec<Hash>, LedgerError> {
    if first == 0 || first > second {
        return Err(LedgerError::OutOfRange(format!(
            "no consistency proof from size {first} to size {second}"
        )));
    }
    let mut proof = Vec::new();
    subproof(first, 0, second, true, reader, &mut proof)?;
    Ok(proof)
}

fn subproof(
    first: u64,
    start: u64,
    end: u64,
    whole_old_tree: bool,
    reader: &impl NodeReader,
    proof: &mut Vec<Hash>,
) -> Result<(), LedgerError> {
    if first == end {
        if !whole_old_tree {
            proof.push(range_hash(start, end, reader)?);
        }
        return Ok(());
    }
    let k = split(end - start);
    if first <= start + k {
        subproof(first, start, start + k, whole_old_tree, reader, proof)?;
        proof.push(range_hash(start + k, end, reader)?);
    } else {
        subproof(first, start + k, end, false, reader, proof)?;
        proof.push(range_hash(start, start + k, reader)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: whether `proof` shows the leaf with `leaf` hash at `index` is in the tree
/// of `size` leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// Checks many inclusion proofs against one tree, remembering the nodes the last checked proof
/// established. A proof whose path reaches an established node stops there (its hash must be
/// the one established), so a run of neighbouring leaves costs about one hash each instead of
/// one per level: what makes checking a filtered export's proofs fast.
///
/// A node is established only by a path that reached the root (or an established node), and its
/// sibling with it: both are then bound to the root by the hash function. Only the last path is
/// kept, by depth: for leaves checked in increasing order (an export's order) every established
/// node a path can meet is on the last path or beside it — a subtree holding the new leaf and an
/// earlier one holds every leaf between, the last one included — so nothing is lost against
/// remembering every node, and the memory is a few kilobytes whatever the export's size. Leaves
/// in any other order are checked as correctly, only with more hashing.
pub struct InclusionChecker {
    size: u64,
    root: Hash,
    /// By depth from the root (1 = the root's children): the last path's node and its sibling,
    /// as a leaf range `[start, end)` and its hash; an empty range where none is known.
    established: [[Established; 2]; MAX_DEPTH + 1],
    /// The nodes of the path being checked, kept here so that a check allocates nothing.
    computing: [[Established; 2]; MAX_DEPTH + 1],
}

/// A node bound to the root: its leaf range and its hash.
type Established = ((u64, u64), Hash);

/// The deepest a leaf can be in a tree of at most 2^64 leaves.
const MAX_DEPTH: usize = 64;

const UNKNOWN: Established = ((0, 0), [0; 32]);

impl InclusionChecker {
    pub fn new(size: u64, root: Hash) -> Self {
        InclusionChecker {
            size,
            root,
            established: [[UNKNOWN; 2]; MAX_DEPTH + 1],
            computing: [[UNKNOWN; 2]; MAX_DEPTH + 1],
        }
    }

    /// [`verify_inclusion`] of leaf `index` (hash `leaf`) in this tree.
    pub fn check(&mut self, index: u64, leaf: &Hash, proof: &[Hash]) -> bool {
        self.check_with(index, leaf, proof.len(), |level| proof.get(level).copied())
    }

    /// [`InclusionChecker::check`] of a proof of `proof_len` hashes, read leaf side first with
    /// `proof_hash` only as far as the path goes before it meets an established node: in a run
    /// of neighbouring leaves that is a level or two, so the caller decodes only those. A hash
    /// `proof_hash` cannot give (`None`) fails the check.
    pub fn check_with(
        &mut self,
        index: u64,
        leaf: &Hash,
        proof_len: usize,
        mut proof_hash: impl FnMut(usize) -> Option<Hash>,
    ) -> bool {
        if index >= self.size {
            return false;
        }
        // The siblings along the path, root first: the RFC 6962 split of each range.
        let mut siblings = [(0u64, 0u64); MAX_DEPTH];
        let mut depth = 0;
        let (mut start, mut end) = (0, self.size);
        while end - start > 1 {
            let k = split(end - start);
            if index < start + k {
                siblings[depth] = (start + k, end);
                end = start + k;
            } else {
                siblings[depth] = (start, start + k);
                start += k;
            }
            depth += 1;
        }
        if proof_len != depth {
            return false;
        }
        let (mut node, mut hash) = ((index, index + 1), *leaf);
        // `at` is the depth of `node`, from the leaf's up to the root's children.
        for (level, at) in (1..=depth).rev().enumerate() {
            if let Some(known) = self.established[at]
                .iter()
                .find(|(range, _)| *range == node)
            {
                return known.1 == hash && self.learn(at + 1..=depth);
            }
            let Some(p) = proof_hash(level) else {
                return false;
            };
            let sibling = siblings[at - 1];
            self.computing[at] = [(node, hash), (sibling, p)];
            if sibling.0 < node.0 {
                hash = node_hash(&p, &hash);
                node = (sibling.0, node.1);
            } else {
                hash = node_hash(&hash, &p);
                node = (node.0, sibling.1);
            }
        }
        hash == self.root && self.learn(1..=depth)
    }

    /// Keeps the nodes computed at `depths`, now bound to the root.
    fn learn(&mut self, depths: std::ops::RangeInclusive<usize>) -> bool {
        for at in depths {
            self.established[at] = self.computing[at];
        }
        true
    }
}

/// RFC 9162 §2.1.4.2: whether `proof` shows the tree of `first` leaves with root `first_root`
/// is a prefix of the tree of `second` leaves with root `second_root`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 || first > second || proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *first_root && sr == *second_root && sn == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(size: u64) -> (MemoryNodes, Vec<Frontier>) {
        let mut nodes = MemoryNodes::default();
        let mut frontier = Frontier::empty();
        let mut history = vec![frontier.clone()];
        for n in 0..size {
            nodes.extend(frontier.append(leaf_hash(&n.to_be_bytes())));
            history.push(frontier.clone());
        }
        (nodes, history)
    }

    /// RFC 6962 MTH computed straight from the definition, over leaf hashes.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn the_inclusion_checker_accepts_what_verify_inclusion_accepts_and_nothing_else() {
        for size in [1u64, 2, 3, 7, 8, 13, 64, 70] {
            let (nodes, history) = build(size);
            let root = history[size as usize].root();
            let leaf = |index: u64| leaf_hash(&index.to_be_bytes());
            let proof = |index: u64| inclusion_proof(index, size, &nodes).expect("proof");
            // Every other leaf, then all of them in reverse: paths meet established nodes from
            // both sides.
            let mut checker = InclusionChecker::new(size, root);
            for index in (0..size).step_by(2).chain((0..size).rev()) {
                assert!(verify_inclusion(
                    index,
                    size,
                    &leaf(index),
                    &proof(index),
                    &root
                ));
                assert!(
                    checker.check(index, &leaf(index), &proof(index)),
                    "{index}/{size}"
                );
                let other = leaf_hash(b"another event");
                assert!(
                    !checker.check(index, &other, &proof(index)),
                    "{index}/{size}"
                );
            }
            assert!(
                !checker.check(size, &leaf(0), &proof(0)),
                "outside the tree"
            );
            // What a checker that established nothing yet refuses.
            for index in 0..size {
                let mut fresh = InclusionChecker::new(size, root);
                let mut bent = proof(index);
                if let Some(first) = bent.first_mut() {
                    *first = leaf_hash(b"bent");
                    assert!(!fresh.check(index, &leaf(index), &bent), "{index}/{size}");
                    assert!(!fresh.check(index, &leaf(index), &bent[1..]), "short");
                }
                let mut elsewhere = InclusionChecker::new(size, leaf_hash(b"another root"));
                assert!(!elsewhere.check(index, &leaf(index), &proof(index)));
                assert!(fresh.check(index, &leaf(index), &proof(index)));
            }
        }
    }

    /// In an export's order the checker reads a level or two of each proof, whether the leaves
    /// are neighbours or far apart, and a bent hash among those it reads is still refused.
    #[test]
    fn leaves_in_increasing_order_read_few_proof_hashes() {
        let size = 1000u64;
        let (nodes, history) = build(size);
        let root = history[size as usize].root();
        let leaf = |index: u64| leaf_hash(&index.to_be_bytes());
        let proof = |index: u64| inclusion_proof(index, size, &nodes).expect("proof");
        for step in [1u64, 3, 17] {
            let mut checker = InclusionChecker::new(size, root);
            let mut read = 0;
            let mut checked = 0;
            for index in (0..size).step_by(step as usize) {
                let path = proof(index);
                let mut bent = path.clone();
                bent[0] = leaf_hash(b"bent");
                assert!(
                    !checker.check(index, &leaf(index), &bent) || index % 2 == 1 && step == 1,
                    "a bent first hash is refused unless the leaf itself is established"
                );
                assert!(
                    checker.check_with(index, &leaf(index), path.len(), |level| {
                        read += 1;
                        path.get(level).copied()
                    })
                );
                checked += 1;
            }
            // A proof here has 10 hashes; leaves `step` apart share all but about log2(step)
            // levels of their paths.
            assert!(
                read <= checked * (3 + step.ilog2() as usize),
                "step {step}: {read} hashes read for {checked} leaves"
            );
        }
    }

    #[test]
    fn leaves_hashed_two_at_once_hash_as_each_alone() {
        let bytes: Vec<u8> = (0..400u32).map(|i| (i * 131 % 251) as u8).collect();
        // Every length around the one- and two-block tails, and both leaves longer in turn.
        for a_length in (0..140).chain([191, 192, 255, 256, 399]) {
            for b_length in [0, 54, 55, 62, 63, 64, 119, 127, 128, 300] {
                let (a, b) = (&bytes[..a_length], &bytes[400 - b_length..]);
                assert_eq!(
                    leaf_hash_pair(a, b),
                    (leaf_hash(a), leaf_hash(b)),
                    "{a_length} and {b_length} bytes"
                );
            }
        }
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 6962 test vector: the leaf hash of the empty string.
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    fn hex(hash: &Hash) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn roots_match_the_definition_for_every_size_up_to_70() {
        let (nodes, history) = build(70);
        let leaves: Vec<Hash> = (0..70u64).map(|n| leaf_hash(&n.to_be_bytes())).collect();
        for size in 0..=70u64 {
            let expected = reference_root(&leaves[..size as usize]);
            assert_eq!(
                history[size as usize].root(),
                expected,
                "frontier root at {size}"
            );
            assert_eq!(
                tree_hash(size, &nodes).expect("stored"),
                expected,
                "stored root at {size}"
            );
        }
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_tampering_fails() {
        let (nodes, history) = build(40);
        for size in 1..=40u64 {
            let root = history[size as usize].root();
            for index in 0..size {
                let leaf = leaf_hash(&index.to_be_bytes());
                let proof = inclusion_proof(index, size, &nodes).expect("proof");
                assert!(
                    verify_inclusion(index, size, &leaf, &proof, &root),
                    "inclusion {index} in {size}"
                );
                assert!(!verify_inclusion(
                    index,
                    size,
                    &leaf_hash(b"other"),
                    &proof,
                    &root
                ));
                if size > 1 {
                    assert!(!verify_inclusion(
                        (index + 1) % size,
                        size,
                        &leaf,
                        &proof,
                        &root
                    ));
                }
            }
            for first in 1..=size {
                let first_root = history[first as usize].root();
                let proof = consistency_proof(first, size, &nodes).expect("proof");
                assert!(
                    verify_consistency(first, size, &first_root, &root, &proof),
                    "consistency {first} → {size}"
                );
                if first < size {
                    assert!(!verify_consistency(
                        first,
                        size,
                        &leaf_hash(b"x"),
                        &root,
                        &proof
                    ));
                    assert!(!verify_consistency(
                        first,
                        size,
                        &first_root,
                        &leaf_hash(b"x"),
                        &proof
                    ));
                }
            }
        }
        assert!(inclusion_proof(5, 5, &nodes).is_err());
        assert!(consistency_proof(0, 5, &nodes).is_err());
    }

    #[test]
    fn appending_stores_fewer_than_two_nodes_per_leaf() {
        let mut frontier = Frontier::empty();
        let stored: usize = (0..1024u64)
            .map(|n| frontier.append(leaf_hash(&n.to_be_bytes())).len())
            .sum();
        assert_eq!(
            stored, 2047,
            "a complete tree of 1024 leaves has 2047 nodes"
        );
        assert!(Frontier::from_parts(3, vec![[0; 32]]).is_err());
    }
}
