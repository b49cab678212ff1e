//! Reading hnsw_rs's dump files into the compact graph a served index searches
//! (`frozen.rs`), checking every field on the way.
//!
//! hnsw_rs's own loader trusts its dump (it allocates whatever lengths the files
//! claim, asserts on a bad magic number or id, and calls `std::process::exit(1)`
//! when a vector cannot be read) and builds about 2 KB of `Arc`s, locks and
//! per-layer vectors per point. So a served graph never goes through it: every
//! field is read here, with bounds, checked against the manifest, and the links are
//! kept as `u32` ids. The format (hnsw_rs 0.3.5, `hnswio.rs`, native byte order,
//! "full" dump mode):
//!
//! ```text
//! NAME.hnsw.graph
//!   description: magic u32 (format 4), dump mode u8 (1 = full), M u8,
//!     level scale f64, layers u8 (16), ef_construction usize, points usize,
//!     dim usize, distance name (usize length + bytes), type name (same)
//!   layers u8, then per layer: magic u32, points usize, then per point:
//!     magic u32, data id usize, layer u8, rank i32,
//!     per each of the 16 layers: count usize, then per neighbour:
//!       data id usize, layer u8, rank i32, distance f32
//!   entry point: data id usize, layer u8, rank i32
//! NAME.hnsw.data
//!   magic u32, dim usize, then per point (in the graph's order):
//!     magic u32, data id u64, byte length u64, dim x f32 (or dim x i8 for an
//!     int8 graph, whose distance and type names differ too)
//! ```

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::hnsw::{Int8Dot, UnitDot};
use super::quant::Quantization;
use crate::error::{Error, Result};

const MAGIC_DESCRIPTION: u32 = 0x002a_6779;
const MAGIC_LAYER: u32 = 0x000a_676f;
const MAGIC_POINT: u32 = 0x000a_678f;
const MAGIC_DATA: u32 = 0xa67f_0000;
/// hnsw_rs's `NB_LAYER_MAX`: every point records a neighbour list per layer.
const LAYERS: u8 = 16;
/// hnsw_rs refuses names longer than this.
const MAX_NAME: usize = 256;
const USIZE: u64 = std::mem::size_of::<usize>() as u64;

/// What the manifest says the dump holds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expected {
    pub len: usize,
    pub dim: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub quantization: Quantization,
}

impl Expected {
    /// Bytes of one stored component.
    fn component_bytes(&self) -> u64 {
        match self.quantization {
            Quantization::F32 => 4,
            Quantization::Int8 => 1,
        }
    }

    /// The distance and element type names hnsw_rs records.
    fn names(&self) -> (&'static str, &'static str) {
        match self.quantization {
            Quantization::F32 => (
                std::any::type_name::<UnitDot>(),
                std::any::type_name::<f32>(),
            ),
            Quantization::Int8 => (
                std::any::type_name::<Int8Dot>(),
                std::any::type_name::<i8>(),
            ),
        }
    }
}

/// Size of a data file holding `len` vectors of `dim` components of
/// `component_bytes` each: a 4 + usize header, then per vector a 20-byte header and
/// the components.
pub(super) fn data_file_size(len: usize, dim: usize, component_bytes: u64) -> u64 {
    let per = 20u64.saturating_add((dim as u64).saturating_mul(component_bytes));
    (4 + USIZE).saturating_add((len as u64).saturating_mul(per))
}

/// The most bytes a graph file of `len` points can take: the description, 16
/// layer headers, and per point its header and 16 neighbour counts plus at most
/// 2M neighbours at layer 0 and M at each of the 15 others (hnsw_rs's limits).
fn max_graph_size(exp: &Expected) -> u64 {
    let neighbour = USIZE + 1 + 4 + 4;
    let per_point = (4 + USIZE + 1 + 4) + 16 * USIZE + 17 * exp.m as u64 * neighbour;
    let fixed = 1024 + 16 * (4 + USIZE) + USIZE + 1 + 4;
    fixed.saturating_add((exp.len as u64).saturating_mul(per_point))
}

/// A reader that names its file and offset in every error.
struct Cursor {
    inner: BufReader<File>,
    path: PathBuf,
    offset: u64,
}

impl Cursor {
    fn open(path: &Path) -> Result<Self> {
        let file =
            File::open(path).map_err(|e| Error::corrupt(path, format!("cannot read it: {e}")))?;
        Ok(Cursor {
            inner: BufReader::new(file),
            path: path.to_path_buf(),
            offset: 0,
        })
    }

    fn fail(&self, what: impl std::fmt::Display) -> Error {
        Error::corrupt(&self.path, format!("at byte {}: {what}", self.offset))
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| self.fail(format!("cannot read {what}: {e}")))?;
        self.offset += N as u64;
        Ok(buf)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.bytes::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_ne_bytes(self.bytes(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_ne_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_ne_bytes(self.bytes(what)?))
    }

    fn usize(&mut self, what: &str) -> Result<usize> {
        Ok(usize::from_ne_bytes(self.bytes(what)?))
    }

    fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_ne_bytes(self.bytes(what)?))
    }

    fn f64(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_ne_bytes(self.bytes(what)?))
    }

    /// Reads `what` (a `usize`) and requires it to equal `expected`.
    fn expect_usize(&mut self, what: &str, expected: usize) -> Result<()> {
        let found = self.usize(what)?;
        if found != expected {
            return Err(self.fail(format!("{what} is {found}, expected {expected}")));
        }
        Ok(())
    }

    fn expect_magic(&mut self, what: &str, expected: u32) -> Result<()> {
        let found = self.u32(what)?;
        if found != expected {
            return Err(self.fail(format!("{what} is {found:#x}, expected {expected:#x}")));
        }
        Ok(())
    }

    /// A length-prefixed name, which must be `expected`.
    fn expect_name(&mut self, what: &str, expected: &str) -> Result<()> {
        let len = self.usize(what)?;
        if len > MAX_NAME {
            return Err(self.fail(format!("{what} is {len} bytes long, at most {MAX_NAME}")));
        }
        let mut buf = vec![0u8; len];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| self.fail(format!("cannot read {what}: {e}")))?;
        self.offset += len as u64;
        if buf != expected.as_bytes() {
            return Err(self.fail(format!(
                "{what} is {:?}, expected {expected:?}",
                String::from_utf8_lossy(&buf)
            )));
        }
        Ok(())
    }

    fn expect_end(&mut self) -> Result<()> {
        let mut one = [0u8; 1];
        match self.inner.read(&mut one) {
            Ok(0) => Ok(()),
            Ok(_) => Err(self.fail("trailing bytes after the dump")),
            Err(e) => Err(self.fail(format!("cannot read: {e}"))),
        }
    }
}

/// The links of one layer: for each member point, its neighbours' data ids.
#[derive(Debug, Default)]
pub(super) struct LayerLinks {
    /// Where each member's list is in `links`: (start, length). Layer 0 holds every
    /// point, so it is indexed by data id; the upper layers hold few.
    pub index: LayerIndex,
    pub links: Vec<u32>,
}

/// How a layer finds a point's list.
#[derive(Debug)]
pub(super) enum LayerIndex {
    /// By data id (layer 0).
    Dense(Vec<(u32, u32)>),
    /// Members only (the layers above 0).
    Sparse(std::collections::HashMap<u32, (u32, u32)>),
}

impl Default for LayerIndex {
    fn default() -> Self {
        LayerIndex::Sparse(Default::default())
    }
}

impl LayerLinks {
    /// The neighbours of `id` in this layer (none when it is not a member).
    #[inline]
    pub fn of(&self, id: u32) -> &[u32] {
        let span = match &self.index {
            LayerIndex::Dense(v) => v.get(id as usize).copied(),
            LayerIndex::Sparse(m) => m.get(&id).copied(),
        };
        match span {
            Some((start, len)) => self
                .links
                .get(start as usize..start as usize + len as usize)
                .unwrap_or(&[]),
            None => &[],
        }
    }
}

/// What a dump holds, as the served graph keeps it.
#[derive(Debug)]
pub(super) struct Layout {
    /// Byte offset of each point's vector (by data id) in the data file.
    pub offsets: Vec<u64>,
    /// The links of each stored layer, from layer 0 up.
    pub layers: Vec<LayerLinks>,
    /// The entry point's data id and layer (`None` for an empty graph).
    pub entry: Option<(u32, u8)>,
}

/// Reads the dump `dir/BASENAME.hnsw.{graph,data}`, checking it against `exp`
/// (see the module docs). Reads the graph twice (first its points, then that every
/// neighbour names one of them, keeping the links) and the data once.
pub(super) fn read(dir: &Path, basename: &str, exp: &Expected) -> Result<Layout> {
    let graph_path = dir.join(format!("{basename}.hnsw.graph"));
    let data_path = dir.join(format!("{basename}.hnsw.data"));
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| Error::corrupt(p, format!("cannot read it: {e}")))
    };
    let data_size = size(&data_path)?;
    let expected = data_file_size(exp.len, exp.dim, exp.component_bytes());
    if data_size != expected {
        return Err(Error::corrupt(
            &data_path,
            format!(
                "{data_size} bytes, but {} vectors of {} dims take {expected}",
                exp.len, exp.dim
            ),
        ));
    }
    let graph_size = size(&graph_path)?;
    if graph_size > max_graph_size(exp) {
        return Err(Error::corrupt(
            &graph_path,
            format!(
                "{graph_size} bytes, more than a graph of {} points with M = {} can take",
                exp.len, exp.m
            ),
        ));
    }
    if u32::try_from(exp.len).is_err() {
        return Err(Error::corrupt(
            &graph_path,
            format!("{} points, more than a graph can index (2^32)", exp.len),
        ));
    }
    let mut data = Cursor::open(&data_path)?;
    data.expect_magic("the data magic number", MAGIC_DATA)?;
    data.expect_usize("the data dimension", exp.dim)?;
    let mut offsets = vec![0u64; exp.len];
    let first = walk_graph(&graph_path, exp, Pass::Points(&mut data, &mut offsets))?;
    data.expect_end()?;
    let mut layers = Vec::new();
    let entry = walk_graph(&graph_path, exp, Pass::Links(&first.ids, &mut layers))?.entry;
    Ok(Layout {
        offsets,
        layers,
        entry,
    })
}

/// What one pass over the graph file does besides checking it.
enum Pass<'a> {
    /// Reads each point's vector from the data file, records its offset there,
    /// and returns the data id of every point by (layer, rank).
    Points(&'a mut Cursor, &'a mut [u64]),
    /// Given the first pass's ids, checks that every neighbour and the entry point
    /// name an existing point with the same data id, and keeps the links.
    Links(&'a [Vec<usize>], &'a mut Vec<LayerLinks>),
}

/// One pass's answer.
struct Walked {
    ids: Vec<Vec<usize>>,
    entry: Option<(u32, u8)>,
}

/// One pass over the graph file (see [`Pass`]).
fn walk_graph(path: &Path, exp: &Expected, pass: Pass<'_>) -> Result<Walked> {
    let (mut points, refs, mut kept) = match pass {
        Pass::Points(data, offsets) => (Some((data, offsets)), None, None),
        Pass::Links(refs, kept) => (None, Some(refs), Some(kept)),
    };
    let mut g = Cursor::open(path)?;
    // Description.
    g.expect_magic("the description magic number (format 4)", MAGIC_DESCRIPTION)?;
    let mode = g.u8("the dump mode")?;
    if mode != 1 {
        return Err(g.fail(format!("dump mode {mode}, expected 1 (full)")));
    }
    let m = g.u8("M")?;
    if usize::from(m) != exp.m {
        return Err(g.fail(format!("M is {m}, the manifest says {}", exp.m)));
    }
    let scale = g.f64("the level scale")?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(g.fail(format!("the level scale {scale} is not a positive number")));
    }
    let nb_layer = g.u8("the layer count")?;
    if nb_layer != LAYERS {
        return Err(g.fail(format!("{nb_layer} layers, expected {LAYERS}")));
    }
    g.expect_usize("ef_construction", exp.ef_construction)?;
    g.expect_usize("the point count", exp.len)?;
    g.expect_usize("the dimension", exp.dim)?;
    let (dist_name, type_name) = exp.names();
    g.expect_name("the distance name", dist_name)?;
    g.expect_name("the type name", type_name)?;
    // Layers.
    let stored_layers = g.u8("the stored layer count")?;
    if stored_layers > LAYERS {
        return Err(g.fail(format!("{stored_layers} layers, at most {LAYERS}")));
    }
    let mut seen = vec![false; exp.len];
    let mut out: Vec<Vec<usize>> = Vec::with_capacity(usize::from(stored_layers));
    if let Some(kept) = kept.as_deref_mut() {
        kept.clear();
        kept.extend((0..stored_layers).map(|_| LayerLinks::default()));
        if let Some(layer0) = kept.first_mut() {
            layer0.index = LayerIndex::Dense(vec![(0, 0); exp.len]);
        }
    }
    let mut position = 0u64;
    let stride = 20 + exp.dim as u64 * exp.component_bytes();
    let mut total = 0usize;
    let max_neighbours = 2 * exp.m;
    for l in 0..stored_layers {
        g.expect_magic("a layer magic number", MAGIC_LAYER)?;
        let count = g.usize("a layer's point count")?;
        if count > exp.len - total {
            return Err(g.fail(format!(
                "layer {l} claims {count} points, but only {} of {} are left",
                exp.len - total,
                exp.len
            )));
        }
        total += count;
        let mut ids = Vec::with_capacity(count);
        for r in 0..count {
            g.expect_magic("a point magic number", MAGIC_POINT)?;
            let id = g.usize("a point's data id")?;
            if id >= exp.len || std::mem::replace(&mut seen[id], true) {
                return Err(g.fail(format!("point data id {id} is out of range or repeated")));
            }
            let (layer, rank) = (g.u8("a point's layer")?, g.i32("a point's rank")?);
            if layer != l || usize::try_from(rank).ok() != Some(r) {
                return Err(g.fail(format!("point ({layer}, {rank}) is stored at ({l}, {r})")));
            }
            for li in 0..LAYERS {
                let n = g.usize("a neighbour count")?;
                if n > max_neighbours {
                    return Err(g.fail(format!("{n} neighbours, at most 2M = {max_neighbours}")));
                }
                // A point has lists in the layers up to its own; hnsw_rs leaves the
                // ones above empty, and a search never reads them.
                let mut keep = match kept.as_deref_mut() {
                    Some(kept) if li <= l => kept.get_mut(usize::from(li)),
                    _ => None,
                };
                if let Some(kept) = keep.as_deref_mut() {
                    let start = u32::try_from(kept.links.len())
                        .ok()
                        .filter(|s| s.checked_add(n as u32).is_some())
                        .ok_or_else(|| g.fail("more than 2^32 links in one layer"))?;
                    let span = (start, n as u32);
                    match &mut kept.index {
                        LayerIndex::Dense(v) => v[id] = span,
                        LayerIndex::Sparse(m) => {
                            m.insert(id as u32, span);
                        }
                    }
                }
                for _ in 0..n {
                    let n_id = g.usize("a neighbour's data id")?;
                    let n_layer = g.u8("a neighbour's layer")?;
                    let n_rank = g.i32("a neighbour's rank")?;
                    let d = g.f32("a neighbour's distance")?;
                    if !(d.is_finite() && d >= 0.0) {
                        return Err(g.fail(format!("neighbour distance {d}")));
                    }
                    if let Some(layers) = refs {
                        check_ref(&g, layers, n_id, n_layer, n_rank, "neighbour")?;
                    }
                    if let Some(kept) = keep.as_deref_mut() {
                        // check_ref above: n_id < len <= 2^32.
                        kept.links.push(n_id as u32);
                    }
                }
            }
            if let Some((data, offsets)) = points.as_mut() {
                offsets[id] = 4 + USIZE + position * stride + 20;
                position += 1;
                data.expect_magic("a vector magic number", MAGIC_DATA)?;
                let data_id = data.u64("a vector's data id")?;
                if data_id != id as u64 {
                    return Err(data.fail(format!(
                        "vector data id {data_id}, the graph's point here is {id}"
                    )));
                }
                let bytes = data.u64("a vector's byte length")?;
                let expected = exp.dim as u64 * exp.component_bytes();
                if bytes != expected {
                    return Err(data.fail(format!("vector of {bytes} bytes, expected {expected}")));
                }
                for _ in 0..exp.dim {
                    match exp.quantization {
                        Quantization::F32 => {
                            let v = data.f32("a vector component")?;
                            if !v.is_finite() {
                                return Err(data.fail(format!("vector component {v}")));
                            }
                        }
                        // Every byte is a valid int8 component.
                        Quantization::Int8 => {
                            data.u8("a vector component")?;
                        }
                    }
                }
            }
            ids.push(id);
        }
        out.push(ids);
    }
    if total != exp.len {
        return Err(g.fail(format!("{total} points, the manifest says {}", exp.len)));
    }
    let ep_id = g.usize("the entry point's data id")?;
    let ep_layer = g.u8("the entry point's layer")?;
    let ep_rank = g.i32("the entry point's rank")?;
    check_ref(
        &g,
        refs.unwrap_or(&out),
        ep_id,
        ep_layer,
        ep_rank,
        "entry point",
    )?;
    g.expect_end()?;
    // check_ref: ep_id is a point, so below len <= 2^32.
    Ok(Walked {
        ids: out,
        entry: Some((ep_id as u32, ep_layer)),
    })
}

/// `(layer, rank)` names a point of `layers` whose data id is `id`.
fn check_ref(
    g: &Cursor,
    layers: &[Vec<usize>],
    id: usize,
    layer: u8,
    rank: i32,
    what: &str,
) -> Result<()> {
    let found = usize::try_from(rank)
        .ok()
        .and_then(|r| layers.get(usize::from(layer))?.get(r));
    if found != Some(&id) {
        return Err(g.fail(format!(
            "{what} ({layer}, {rank}) with data id {id} is not a point of the graph"
        )));
    }
    Ok(())
}
