//! How the SIMD kernels of the int8 and bf16 layers walk their output: tiles of
//! up to `R` rows by `P` panels of 16 columns, each tile a function generic over
//! its shape so that its accumulators are a fixed-size array the compiler keeps
//! in registers.

/// Runs `$tile::<R, P>` for the runtime tile shape `($nr, $np)`, for every `R`
/// in `$rows` and `P` in `$panels` (the callers cut tiles within those, with
/// [`tiles`]).
macro_rules! dispatch_tile {
    ($tile:ident, ($nr:expr, $np:expr), [$($r:literal)*], $panels:tt, $args:tt) => {
        match $nr {
            $($r => dispatch_tile!(@panels $tile, $r, $np, $panels, $args),)*
            nr => unreachable!("no tile of {nr} rows"),
        }
    };
    (@panels $tile:ident, $r:literal, $np:expr, [$($p:literal)*], $args:tt) => {
        match $np {
            $($p => $tile::<$r, $p> $args,)*
            np => unreachable!("no tile of {np} panels"),
        }
    };
}
pub(super) use dispatch_tile;

/// Walks `rows x panels` in tiles of up to `max_rows` rows and `max_panels`
/// panels, calling `f(first_row, rows, first_panel, panels)` for each; the tiles
/// cover every row of every panel exactly once.
#[inline(always)]
pub(super) fn tiles(
    rows: usize,
    panels: usize,
    max_rows: usize,
    max_panels: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let mut p = 0;
    while p < panels {
        let np = max_panels.min(panels - p);
        let mut i = 0;
        while i < rows {
            let nr = max_rows.min(rows - i);
            f(i, nr, p, np);
            i += nr;
        }
        p += np;
    }
}
