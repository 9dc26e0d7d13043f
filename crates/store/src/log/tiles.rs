//! The Merkle tree as tiles, in the shape of C2SP tlog-tiles: the hashes at tree level `8·L`
//! are cut into tiles of [`TILE_WIDTH`] (256); tile `(L, N)` holds hashes `256·N ..` of that
//! level. A full tile is written once and never changes; the last tile of a level may be
//! partial, and is replaced as it fills. Any node of the tree is a tile hash or hashed up from
//! at most 255 of them, so a root or a proof reads O(log n) tiles — and the tree costs 32 bytes
//! per event on disk (level 0, the leaf hashes) plus 1/256 of that per level above, instead of
//! a row per node.
//!
//! The tiles cover the events whose block has been written; the events still held in memory
//! contribute their leaf hashes directly ([`TileReader`]).

use std::cell::RefCell;
use std::collections::HashMap;

use trailmark_ledger::LedgerError;
use trailmark_ledger::tree::{Hash, NodeReader, node_hash};

/// Hashes per full tile.
pub(crate) const TILE_WIDTH: u64 = 256;
/// Tree levels one tile spans.
pub(crate) const TILE_HEIGHT: u32 = 8;

/// A tile as stored: its level, index, and hashes (256 if full).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tile {
    pub(crate) level: u32,
    pub(crate) index: u64,
    pub(crate) hashes: Vec<Hash>,
}

/// The last, partial tile of each tile level of one organization's tree: what is still to be
/// filled as leaves are added. Full tiles leave it as they complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TileEdge {
    /// Leaves the tiles cover.
    size: u64,
    /// `partial[L]`: the hashes of level `8·L` past the last full tile.
    partial: Vec<Vec<Hash>>,
}

impl TileEdge {
    /// The edge of a tree of `size` leaves whose last tile of each level is `partial` (in level
    /// order; empty for a level with no partial tile).
    pub(crate) fn from_parts(size: u64, partial: Vec<Vec<Hash>>) -> Self {
        TileEdge { size, partial }
    }

    #[cfg(test)]
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Adds `leaves` (the next leaf hashes, in order) and returns every tile they changed:
    /// full tiles once, and each level's new partial tile.
    pub(crate) fn extend(&mut self, leaves: impl IntoIterator<Item = Hash>) -> Vec<Tile> {
        let mut changed: HashMap<(u32, u64), Tile> = HashMap::new();
        for leaf in leaves {
            let mut level = 0u32;
            let mut hash = leaf;
            // The number of hashes already at level 8·L tells this hash's index there.
            let mut count = self.size;
            loop {
                if self.partial.len() <= level as usize {
                    self.partial.push(Vec::new());
                }
                let index_in_level = count;
                let partial = &mut self.partial[level as usize];
                partial.push(hash);
                let tile_index = index_in_level / TILE_WIDTH;
                changed.insert(
                    (level, tile_index),
                    Tile {
                        level,
                        index: tile_index,
                        hashes: partial.clone(),
                    },
                );
                if partial.len() as u64 != TILE_WIDTH {
                    break;
                }
                hash = subtree_root(partial);
                partial.clear();
                level += 1;
                count >>= TILE_HEIGHT;
            }
            self.size += 1;
        }
        let mut tiles: Vec<Tile> = changed.into_values().collect();
        tiles.sort_by_key(|t| (t.level, t.index));
        tiles
    }
}

/// The root of a perfect subtree whose leaves (at its bottom level) are `hashes` (a power of
/// two of them).
pub(crate) fn subtree_root(hashes: &[Hash]) -> Hash {
    let mut level = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level.first().copied().unwrap_or([0; 32])
}

/// Where stored tiles come from.
pub(crate) trait TileSource {
    /// Tile `(level, index)` as stored (full or partial), if any.
    ///
    /// # Errors
    ///
    /// Storage errors, as text.
    fn tile(&self, level: u32, index: u64) -> Result<Option<Vec<Hash>>, String>;
}

/// Any node of one organization's tree, from stored tiles and the leaf hashes of events not yet
/// in tiles (`recent`, the leaves from `tiled` on).
/// Tiles already read, by level and index (`None`: not stored).
type TileCache = HashMap<(u32, u64), Option<Vec<Hash>>>;

pub(crate) struct TileReader<'a, S> {
    source: &'a S,
    tiled: u64,
    recent: &'a [Hash],
    cache: RefCell<TileCache>,
}

impl<'a, S: TileSource> TileReader<'a, S> {
    pub(crate) fn new(source: &'a S, tiled: u64, recent: &'a [Hash]) -> Self {
        TileReader {
            source,
            tiled,
            recent,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// Hash `index` of tree level `8·tile_level`.
    fn level_hash(&self, tile_level: u32, index: u64) -> Result<Hash, LedgerError> {
        let tile_index = index / TILE_WIDTH;
        let within = (index % TILE_WIDTH) as usize;
        let cached = self.cache.borrow().get(&(tile_level, tile_index)).cloned();
        let tile = match cached {
            Some(tile) => tile,
            None => {
                let tile = self
                    .source
                    .tile(tile_level, tile_index)
                    .map_err(LedgerError::Read)?;
                self.cache
                    .borrow_mut()
                    .insert((tile_level, tile_index), tile.clone());
                tile
            }
        };
        if let Some(hash) = tile.as_ref().and_then(|hashes| hashes.get(within)) {
            return Ok(*hash);
        }
        if tile_level == 0 {
            return index
                .checked_sub(self.tiled)
                .and_then(|at| self.recent.get(at as usize))
                .copied()
                .ok_or(LedgerError::MissingNode { level: 0, index });
        }
        // Not in a tile yet: hash it up from the 256 hashes below it.
        let below: Vec<Hash> = (index * TILE_WIDTH..(index + 1) * TILE_WIDTH)
            .map(|i| self.level_hash(tile_level - 1, i))
            .collect::<Result<_, _>>()?;
        Ok(subtree_root(&below))
    }
}

impl<S: TileSource> NodeReader for TileReader<'_, S> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        let tile_level = level / TILE_HEIGHT;
        let height = level % TILE_HEIGHT;
        let first = index << height;
        let hashes: Vec<Hash> = (first..first + (1 << height))
            .map(|i| self.level_hash(tile_level, i))
            .collect::<Result<_, _>>()?;
        Ok(subtree_root(&hashes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailmark_ledger::tree::{
        Frontier, MemoryNodes, consistency_proof, inclusion_proof, leaf_hash, tree_hash,
    };

    struct Stored(HashMap<(u32, u64), Vec<Hash>>);

    impl TileSource for Stored {
        fn tile(&self, level: u32, index: u64) -> Result<Option<Vec<Hash>>, String> {
            Ok(self.0.get(&(level, index)).cloned())
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    /// Tiles written as leaves arrive in uneven pieces, read with the rest still in memory,
    /// give the same roots and proofs as every node stored one by one.
    #[test]
    fn tiles_and_recent_leaves_answer_like_stored_nodes() {
        let all = leaves(70_000);
        let mut nodes = MemoryNodes::default();
        let mut frontier = Frontier::empty();
        for leaf in &all {
            nodes.extend(frontier.append(*leaf));
        }
        let mut stored = Stored(HashMap::new());
        let mut edge = TileEdge::default();
        let tiled = 66_000u64;
        let mut at = 0u64;
        for piece in [1u64, 255, 300, 4096, 61_348].iter().copied() {
            let end = (at + piece).min(tiled);
            for tile in edge.extend(all[at as usize..end as usize].iter().copied()) {
                stored.0.insert((tile.level, tile.index), tile.hashes);
            }
            at = end;
        }
        assert_eq!(edge.size(), tiled);
        assert_eq!(stored.0[&(1, 0)].len(), 256, "a full level-1 tile");
        let reader = TileReader::new(&stored, tiled, &all[tiled as usize..]);
        for size in [
            1u64, 2, 255, 256, 257, 65_535, 65_536, 66_000, 66_001, 70_000,
        ] {
            assert_eq!(
                tree_hash(size, &reader).expect("root"),
                tree_hash(size, &nodes).expect("root"),
                "{size}"
            );
        }
        for (index, size) in [
            (0u64, 70_000u64),
            (65_999, 66_000),
            (66_500, 69_999),
            (300, 301),
        ] {
            assert_eq!(
                inclusion_proof(index, size, &reader).expect("proof"),
                inclusion_proof(index, size, &nodes).expect("proof")
            );
        }
        assert_eq!(
            consistency_proof(257, 70_000, &reader).expect("proof"),
            consistency_proof(257, 70_000, &nodes).expect("proof")
        );
        let restarted = TileEdge::from_parts(
            tiled,
            (0..3)
                .map(|level| {
                    let count = tiled >> (TILE_HEIGHT * level);
                    stored
                        .0
                        .get(&(level, count / TILE_WIDTH))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect(),
        );
        let mut continued = restarted.clone();
        let mut again = edge.clone();
        assert_eq!(
            continued.extend(all[tiled as usize..].iter().copied()),
            again.extend(all[tiled as usize..].iter().copied()),
            "an edge rebuilt from stored partial tiles goes on like the original"
        );
    }
}
