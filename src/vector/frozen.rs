//! The graph as a served index holds it: hnsw_rs's dump read into flat `u32` link
//! arrays (`dump.rs`), its vectors left in the memory-mapped data file, searched
//! here.
//!
//! hnsw_rs builds and writes the graph; its in-memory form is made for inserting
//! (a `Point` per vector, behind `Arc`s and locks, with 16 per-layer neighbour
//! vectors of `Arc`s each), about 2 KB per point beyond the vector. At a million
//! products that was most of a serving process's heap. A served graph never
//! changes, so it is kept as the links alone (4 bytes each, about 100 bytes a
//! point) and the vectors are read in place from the mapped file, shared with every
//! other process serving the index.
//!
//! The search is hnsw_rs's walk (Malkov & Yashunin 2016, algorithms 2 and 5, with
//! one hop per upper layer): from the entry point, at each upper layer move to the
//! nearest neighbour when it is nearer, then a best-first search of layer 0 keeping
//! `ef` candidates. Unfiltered, it returns what hnsw_rs returns on the same graph
//! (tests/properties.rs); descending each layer to its local minimum instead, as
//! the paper does, lost recall on the 300k-product benchmark (0.9582 against 0.9606
//! at ef 128). With a filter, rows it rejects are walked through but never
//! returned, and the walk stops as it would unfiltered once `ef` allowed rows are
//! held (hnsw_rs instead keeps walking while any candidate is nearer).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use super::dump::Layout;
use super::flat;
use super::quant::{dot_i8, Int8Scale};
use crate::error::{Error, Result};

/// A distance, ordered totally (a NaN from a damaged query sorts last, never
/// panics).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dist(f32);

impl Eq for Dist {}

impl PartialOrd for Dist {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dist {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A loaded, read-only HNSW graph.
pub(super) struct Frozen {
    layout: Layout,
    data: Mmap,
    dim: usize,
    /// `Some` for an int8 graph.
    scale: Option<Int8Scale>,
}

impl Frozen {
    /// Maps the data file `data_path` whose vectors `layout` (read from it and the
    /// graph file by `dump::read`) locates.
    pub(super) fn open(
        data_path: &Path,
        layout: Layout,
        dim: usize,
        scale: Option<Int8Scale>,
    ) -> Result<Self> {
        let file = File::open(data_path).map_err(|e| Error::io(data_path, e))?;
        // SAFETY: the file is opened read-only and an index's files never change
        // once published (builds write a new generation directory); dump::read has
        // just checked its size and every field.
        let data = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(data_path, e))?;
        // Graph walks read vectors in no order: no read-ahead, no fault-around.
        #[cfg(unix)]
        let _ = data.advise(memmap2::Advice::Random);
        let bytes = dim * if scale.is_some() { 1 } else { 4 };
        // Any byte is an i8; an f32 row must start on a 4-byte boundary.
        let base = data.as_ptr() as usize;
        let aligned = scale.is_some()
            || layout
                .offsets
                .iter()
                .all(|&o| (base + o as usize).is_multiple_of(4));
        let inside = layout
            .offsets
            .iter()
            .all(|&o| o as usize + bytes <= data.len());
        if !aligned || !inside {
            return Err(Error::corrupt(
                data_path,
                "a vector is misaligned or past the end of the mapping",
            ));
        }
        Ok(Frozen {
            layout,
            data,
            dim,
            scale,
        })
    }

    /// The int8 scale, for an int8 graph.
    pub(super) fn scale(&self) -> Option<Int8Scale> {
        self.scale
    }

    /// Bytes of row `id`'s stored vector.
    #[inline]
    fn raw(&self, id: u32, width: usize) -> &[u8] {
        let start = self.layout.offsets[id as usize] as usize;
        // Checked in `open`: every vector lies inside the mapping.
        &self.data[start..start + width]
    }

    /// The `n` nearest rows to `query` that `allowed` accepts, as (row, distance),
    /// nearest first, keeping `ef` candidates in layer 0.
    pub(super) fn search(
        &self,
        query: &[f32],
        n: usize,
        ef: usize,
        allowed: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Vec<(usize, f32)> {
        let dim = self.dim;
        match self.scale {
            None => self.search_with(
                |id| {
                    // Checked in `open`: f32 rows are 4-byte aligned.
                    let row: &[f32] = bytemuck::cast_slice(self.raw(id, dim * 4));
                    (1.0 - flat::dot(query, row)).max(0.0)
                },
                n,
                ef,
                allowed,
            ),
            Some(scale) => {
                let q = scale.quantize(query);
                let step2 = scale.step() * scale.step();
                self.search_with(
                    |id| {
                        let row: &[i8] = bytemuck::cast_slice(self.raw(id, dim));
                        (1.0 - dot_i8(&q, row) as f32 * step2).max(0.0)
                    },
                    n,
                    ef,
                    allowed,
                )
            }
        }
    }

    fn search_with(
        &self,
        dist: impl Fn(u32) -> f32,
        n: usize,
        ef: usize,
        allowed: Option<&(dyn Fn(usize) -> bool + Sync)>,
    ) -> Vec<(usize, f32)> {
        let Some((entry, top)) = self.layout.entry else {
            return Vec::new();
        };
        let ef = ef.max(n).max(1);
        // Down the upper layers, one hop a layer: to the nearest of the current
        // point's neighbours there, when it is nearer (hnsw_rs's descent).
        let (mut at, mut d_at) = (entry, Dist(dist(entry)));
        for layer in self
            .layout
            .layers
            .iter()
            .take(usize::from(top) + 1)
            .skip(1)
            .rev()
        {
            let mut next = at;
            for &nb in layer.of(at) {
                let d = Dist(dist(nb));
                if d < d_at {
                    (next, d_at) = (nb, d);
                }
            }
            at = next;
        }
        let Some(layer0) = self.layout.layers.first() else {
            return Vec::new();
        };
        let ok = |id: u32| allowed.is_none_or(|f| f(id as usize));
        let mut visited = Visited::new(self.layout.offsets.len());
        visited.insert(at);
        let mut candidates = BinaryHeap::with_capacity(ef * 2);
        let mut found: BinaryHeap<(Dist, u32)> = BinaryHeap::with_capacity(ef + 1);
        candidates.push(Reverse((d_at, at)));
        if ok(at) {
            found.push((d_at, at));
        }
        while let Some(Reverse((d_c, c))) = candidates.pop() {
            if found.len() >= ef && found.peek().is_some_and(|&(far, _)| d_c > far) {
                break;
            }
            for &nb in layer0.of(c) {
                if !visited.insert(nb) {
                    continue;
                }
                let d = Dist(dist(nb));
                let closer = found.len() < ef || found.peek().is_some_and(|&(far, _)| d < far);
                if closer {
                    candidates.push(Reverse((d, nb)));
                    if ok(nb) {
                        found.push((d, nb));
                        if found.len() > ef {
                            found.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<(Dist, u32)> = found.into_vec();
        out.sort_unstable();
        out.truncate(n);
        out.into_iter().map(|(d, id)| (id as usize, d.0)).collect()
    }
}

/// One bit per row.
struct Visited(Vec<u64>);

impl Visited {
    fn new(rows: usize) -> Self {
        Visited(vec![0; rows.div_ceil(64)])
    }

    /// Marks `id`; false when it already was.
    #[inline]
    fn insert(&mut self, id: u32) -> bool {
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        match self.0.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            _ => false,
        }
    }
}
